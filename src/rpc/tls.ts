/**
 * TLS for the gRPC service: mTLS by default (server certificate and key, a
 * CA bundle, client certificates required and verified), the client's
 * identity from its certificate, and the loopback rule for --insecure.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError } from '../errors.js';

export interface TlsFiles {
  /** PEM CA bundle that signed the peer's certificate. */
  ca: string;
  /** This side's PEM certificate (chain) and private key. */
  cert: string;
  key: string;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** Server credentials that require and verify a client certificate signed by `ca`. */
export async function serverCredentials(f: TlsFiles): Promise<grpc.ServerCredentials> {
  const [ca, cert, key] = await Promise.all([readPem(f.ca, 'CA bundle'), readPem(f.cert, 'server certificate'), readPem(f.key, 'server key')]);
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

export async function clientCredentials(f: TlsFiles): Promise<grpc.ChannelCredentials> {
  const [ca, cert, key] = await Promise.all([readPem(f.ca, 'CA bundle'), readPem(f.cert, 'client certificate'), readPem(f.key, 'client key')]);
  return grpc.credentials.createSsl(ca, key, cert);
}

/** The names a verified peer certificate carries: subject CN first, then every SAN value (DNS, URI, IP, email). */
export function certificateNames(cert: { subject?: Record<string, string | string[]>; subjectaltname?: string } | undefined): string[] {
  if (!cert) return [];
  const names: string[] = [];
  const cn = cert.subject?.CN;
  for (const c of Array.isArray(cn) ? cn : cn ? [cn] : []) names.push(c);
  // Node formats SANs as 'DNS:a, URI:b, IP Address:1.2.3.4, email:x@y'.
  for (const part of (cert.subjectaltname ?? '').split(/,\s*/)) {
    const i = part.indexOf(':');
    if (i > 0) names.push(part.slice(i + 1));
  }
  return [...new Set(names.filter((n) => n.length > 0))];
}

/** What grpc-js's getAuthContext() returns (its AuthContext type is not exported). */
export interface AuthContextLike { transportSecurityType?: string; sslPeerCertificate?: unknown }

/** The names of the caller of a gRPC handler ([] if the connection is not mutually authenticated). */
export function callerNames(call: { getAuthContext(): AuthContextLike }): string[] {
  const ctx = call.getAuthContext();
  return ctx.transportSecurityType === 'ssl' ? certificateNames(ctx.sslPeerCertificate as never) : [];
}

export interface HostPort { host: string; port: number }

/** Parses HOST:PORT or [IPv6]:PORT. */
export function parseHostPort(s: string, what: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  if (!m) throw new ThinshipError('USAGE', `${what} "${s}" is not HOST:PORT (IPv6 as [::1]:PORT)`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ThinshipError('USAGE', `${what} "${s}": port ${m[2]} is out of range`);
  return { host: m[1]!, port };
}

export function formatHostPort(h: HostPort): string {
  return isIP(h.host) === 6 ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`;
}

/** Loopback by name or address: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** --insecure is for tests on one machine: refuse it off loopback unless forced. */
export function checkInsecureAllowed(host: string, force: boolean | undefined, flag: string): void {
  if (!isLoopbackHost(host) && !force) {
    throw new ThinshipError('USAGE', `--insecure sends volumes in clear and without authentication; it is allowed only on loopback (127.0.0.1, ::1, localhost), not ${host}, unless you also give ${flag}`);
  }
}
