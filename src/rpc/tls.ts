/**
 * TLS for the gRPC service: mTLS by default (server certificate and key, a
 * CA bundle, client certificates required and verified), the client's
 * identity from its certificate, and the loopback rule for --insecure.
 */
import { readFile } from 'node:fs/promises';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, checkServerIdentity, createSecureContext, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError } from '../errors.js';
import { CONNECT_ERRNOS } from './status.js';
import { ownerName, type ClientIdentity } from '../receiver/access.js';

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

/**
 * The credentials a daemon listens with: mTLS from its config's tls files (the
 * default), or plaintext with --insecure, which only a loopback address may use
 * unless --allow-insecure-remote. `tls` is there to swap the certificate later
 * (reload on SIGHUP); undefined with --insecure.
 */
export async function listenCredentials(
  listen: string,
  o: { insecure?: boolean; allowInsecureRemote?: boolean; tls?: TlsFiles; configFile: string },
): Promise<{ creds: grpc.ServerCredentials; tls?: ReloadableServerTls }> {
  const hp = parseHostPort(listen, '--listen');
  if (o.insecure) {
    checkInsecureAllowed(hp.host, o.allowInsecureRemote, '--allow-insecure-remote');
    return { creds: grpc.ServerCredentials.createInsecure() };
  }
  if (!o.tls)
    throw new ThinshipError('USAGE', `${o.configFile} has no "tls" section (ca, cert, key): mTLS is the default; use --insecure only for a test on loopback`);
  const tls = new ReloadableServerTls(await loadServerTls(o.tls));
  return { creds: tls.credentials, tls };
}

/** A server's TLS files, read and checked (what a reload swaps in, or refuses with the old ones kept). */
export interface ServerTlsMaterial {
  files: TlsFiles;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Of the server certificate, for the log line of a reload. */
  serialNumber: string;
  fingerprint256: string;
  validTo: string;
}

/**
 * Reads the server's certificate, key and CA bundle and checks them the way
 * the TLS stack will use them (the certificate parses, the key is its pair, the
 * CA bundle holds certificates, OpenSSL builds a context from them), so that a
 * bad renewal is refused with its file named instead of breaking new connections.
 */
export async function loadServerTls(f: TlsFiles): Promise<ServerTlsMaterial> {
  const [ca, cert, key] = await Promise.all([readPem(f.ca, 'CA bundle'), readPem(f.cert, 'server certificate'), readPem(f.key, 'server key')]);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (e) {
    throw new ThinshipError('USAGE', `the server certificate ${f.cert} is not a PEM certificate: ${(e as Error).message}`, { cause: e });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new ThinshipError('USAGE', `the server key ${f.key} is not a PEM private key (or it is encrypted): ${(e as Error).message}`, { cause: e });
  }
  if (!certificate.checkPrivateKey(privateKey))
    throw new ThinshipError('USAGE', `the server certificate ${f.cert} and the key ${f.key} are not a pair: the key does not belong to the certificate`);
  if (pemBlocks(ca).length === 0) throw new ThinshipError('USAGE', `the CA bundle ${f.ca} holds no PEM certificate`);
  try {
    createSecureContext({ ca, cert, key });
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot use the TLS files (CA ${f.ca}, certificate ${f.cert}, key ${f.key}): ${(e as Error).message}`, { cause: e });
  }
  return { files: f, ca, cert, key, serialNumber: certificate.serialNumber, fingerprint256: certificate.fingerprint256, validTo: certificate.validTo };
}

/**
 * Server credentials whose certificate, key and CA bundle can be replaced while
 * the server runs: grpc-js's certificate-provider credentials (its
 * experimental API) call setSecureContext on its HTTP/2 server with what this
 * provider hands them. Connections made before keep the context they were
 * made with (a running transfer is not touched); new handshakes use the new one.
 * Client certificates are required and verified against the CA bundle.
 */
export class ReloadableServerTls implements grpc.experimental.CertificateProvider {
  readonly credentials: grpc.ServerCredentials;
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();

  constructor(private current: ServerTlsMaterial) {
    // One provider for both: grpc-js's parameter order (CA, identity) is then moot.
    this.credentials = grpc.experimental.createCertificateProviderServerCredentials(this, this, true);
  }

  get material(): ServerTlsMaterial {
    return this.current;
  }

  /** Swaps in checked material (loadServerTls): the certificate new connections see. */
  update(m: ServerTlsMaterial): void {
    this.current = m;
    for (const l of this.caListeners) l({ caCertificate: m.ca });
    for (const l of this.identityListeners) l({ certificate: m.cert, privateKey: m.key });
  }

  // grpc-js registers its watcher only after adding these listeners: the current material goes
  // out on a microtask (before any connection can be accepted, which takes an I/O turn).
  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(l);
    queueMicrotask(() => {
      if (this.caListeners.has(l)) l({ caCertificate: this.current.ca });
    });
  }

  removeCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(l);
  }

  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(l);
    queueMicrotask(() => {
      if (this.identityListeners.has(l)) l({ certificate: this.current.cert, privateKey: this.current.key });
    });
  }

  removeIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(l);
  }
}

/** The client's TLS files, read and checked: the certificate parses, the key is its pair. */
export interface ClientTls {
  files: TlsFiles;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  certificate: X509Certificate;
  /** The certificate's subject CN (the identity a receiver sees first). */
  commonName: string;
  caCertificates: X509Certificate[];
}

function pemBlocks(pem: Buffer): string[] {
  return pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Reads and checks the client's files before any connection: a certificate
 * and key that are not a pair would otherwise surface as a raw OpenSSL string
 * ("key values mismatch") from deep inside grpc-js.
 */
export async function loadClientTls(f: TlsFiles): Promise<ClientTls> {
  const [ca, cert, key] = await Promise.all([readPem(f.ca, 'CA bundle'), readPem(f.cert, 'client certificate'), readPem(f.key, 'client key')]);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (e) {
    throw new ThinshipError('USAGE', `the client certificate ${f.cert} is not a PEM certificate: ${(e as Error).message}`, { cause: e });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new ThinshipError('USAGE', `the client key ${f.key} is not a PEM private key (or it is encrypted): ${(e as Error).message}`, { cause: e });
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new ThinshipError('USAGE', `the client certificate ${f.cert} and the key ${f.key} are not a pair: the key does not belong to the certificate`);
  }
  const caCertificates: X509Certificate[] = [];
  for (const b of pemBlocks(ca)) {
    try {
      caCertificates.push(new X509Certificate(b));
    } catch (e) {
      throw new ThinshipError('USAGE', `the CA bundle ${f.ca} holds a certificate that does not parse: ${(e as Error).message}`, { cause: e });
    }
  }
  if (caCertificates.length === 0) throw new ThinshipError('USAGE', `the CA bundle ${f.ca} holds no PEM certificate`);
  const commonName = /^CN=(.*)$/m.exec(certificate.subject)?.[1] ?? certificate.subject;
  return { files: f, ca, cert, key, certificate, commonName, caCertificates };
}

/**
 * Channel credentials for `l`. `verifyHost`, if given, is the name the
 * server certificate is checked against whatever name travels in SNI.
 */
export function clientCredentialsOf(l: ClientTls, verifyHost?: string): grpc.ChannelCredentials {
  try {
    return grpc.credentials.createSsl(
      l.ca,
      l.key,
      l.cert,
      verifyHost === undefined ? undefined : { checkServerIdentity: (_host, cert) => checkServerIdentity(verifyHost, cert) },
    );
  } catch (e) {
    throw new ThinshipError('USAGE', `cannot use the TLS files (CA ${l.files.ca}, certificate ${l.files.cert}, key ${l.files.key}): ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** What our own certificate looks like from here: reasons a receiver may refuse it. */
export function clientCertificateProblems(l: ClientTls, nowMs = Date.now()): string[] {
  const c = l.certificate;
  const out: string[] = [];
  if (Date.parse(c.validTo) < nowMs) out.push(`it expired on ${c.validTo}`);
  if (Date.parse(c.validFrom) > nowMs) out.push(`it is not valid before ${c.validFrom}`);
  if (!l.caCertificates.some((ca) => c.checkIssued(ca) && c.verify(ca.publicKey))) {
    out.push(`it is not signed by a CA in ${l.files.ca} (its issuer is ${c.issuer.replace(/\n/g, ', ')}); the receiver may trust another CA`);
  }
  return out;
}

/**
 * What one TCP + TLS handshake of our own finds at the receiver. grpc-js
 * reports a receiver that refuses our client certificate only as "Failed to
 * connect": a Node receiver verifies the certificate after the handshake and
 * closes the socket without a TLS alert. A receiver that accepts us sends its
 * HTTP/2 SETTINGS at once.
 */
export type ConnectionProbe =
  | { kind: 'connect'; reason: string } // TCP found nobody
  | { kind: 'dropped'; reason: string } // closed or reset before the TLS handshake completed
  | { kind: 'server-certificate'; reason: string } // we do not trust the receiver's certificate or name
  | { kind: 'alert'; alert?: number; description: string; reason: string } // the receiver sent a TLS alert
  | { kind: 'closed-after-handshake' } // closed, without a word, right after the handshake
  | { kind: 'accepted' } // it sent data: it takes us
  | { kind: 'no-answer' }; // connected, nothing within the time limit

export interface ProbeOptions {
  host: string;
  port: number;
  /** Absent: a plaintext (--insecure) receiver, only TCP is checked. */
  tls?: ClientTls;
  /** SNI; undefined sends none (an IP address). */
  servername?: string;
  /** The name the server certificate must carry. */
  verifyHost: string;
  timeoutMs: number;
}

export function probeConnection(o: ProbeOptions): Promise<ConnectionProbe> {
  return new Promise((resolve) => {
    let settled = false;
    let sock: Socket | undefined;
    const done = (r: ConnectionProbe) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ kind: 'no-answer' }), o.timeoutMs);
    const tcp = netConnect({ host: o.host, port: o.port });
    sock = tcp;
    tcp.once('error', (e: NodeJS.ErrnoException) => done({ kind: 'connect', reason: `${CONNECT_ERRNOS[e.code ?? ''] ?? e.code ?? 'error'} (${e.message})` }));
    tcp.once('connect', () => {
      if (!o.tls) {
        done({ kind: 'accepted' });
        return;
      }
      tcp.removeAllListeners('error');
      let secure = false;
      const s = tlsConnect({
        socket: tcp,
        ca: o.tls.ca,
        cert: o.tls.cert,
        key: o.tls.key,
        servername: o.servername,
        ALPNProtocols: ['h2'],
        checkServerIdentity: (_h: string, c: PeerCertificate) => checkServerIdentity(o.verifyHost, c),
      });
      sock = s;
      s.once('secureConnect', () => {
        secure = true;
      });
      s.once('data', () => done({ kind: 'accepted' }));
      s.once('error', (e: NodeJS.ErrnoException & { reason?: string }) => {
        const code = e.code ?? '';
        if (/^ERR_SSL_.*ALERT/.test(code)) {
          const alert = /SSL alert number (\d+)/.exec(e.message)?.[1];
          const description = (e.reason ?? code)
            .replace(/^(sslv3|tlsv1\d*) alert /, '')
            .replace(/^ERR_SSL_\w*?ALERT_/, '')
            .toLowerCase()
            .replace(/_/g, ' ');
          done({ kind: 'alert', alert: alert === undefined ? undefined : Number(alert), description, reason: e.message });
        } else if (secure) {
          done({ kind: 'closed-after-handshake' });
        } else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || (/^[A-Z_]+$/.test(code) && !code.startsWith('E') && !code.startsWith('ERR_'))) {
          done({ kind: 'server-certificate', reason: `${e.message}${code.startsWith('ERR_') ? '' : ` (${code})`}` });
        } else {
          done({ kind: 'dropped', reason: e.message });
        }
      });
      s.once('close', () => done(secure ? { kind: 'closed-after-handshake' } : { kind: 'dropped', reason: 'the connection closed during the TLS handshake' }));
    });
  });
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
export interface AuthContextLike {
  transportSecurityType?: string;
  sslPeerCertificate?: unknown;
}

/** The names of the caller of a gRPC handler ([] if the connection is not mutually authenticated). */
function callerNames(call: { getAuthContext(): AuthContextLike }): string[] {
  const ctx = call.getAuthContext();
  return ctx.transportSecurityType === 'ssl' ? certificateNames(ctx.sslPeerCertificate as never) : [];
}

/**
 * Who calls a gRPC handler of either daemon: the names of its verified client
 * certificate ("anonymous" with --insecure), known by the first that has rules
 * in `identities` (else the first). UNAUTHENTICATED without a certificate.
 */
export function callerIdentity(
  call: { getAuthContext(): AuthContextLike },
  o: { insecure?: boolean; identities: ReadonlyMap<string, unknown> },
): ClientIdentity {
  const names = o.insecure ? ['anonymous'] : callerNames(call);
  if (names.length === 0) throw new ThinshipError('UNAUTHENTICATED', 'no verified client certificate on this connection');
  return { name: ownerName(o, names), names };
}

export interface HostPort {
  host: string;
  port: number;
}

/** Parses HOST:PORT or [IPv6]:PORT. */
export function parseHostPort(s: string, what: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]]+):(\d+)$/.exec(s);
  if (!m) throw new ThinshipError('USAGE', `${what} "${s}" is not HOST:PORT (IPv6 as [::1]:PORT)`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ThinshipError('USAGE', `${what} "${s}": port ${m[2]} is out of range`);
  return { host: m[1]!, port };
}

/** Loopback by name or address: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/** --insecure is for tests on one machine: refuse it off loopback unless forced. */
export function checkInsecureAllowed(host: string, force: boolean | undefined, flag: string): void {
  if (!isLoopbackHost(host) && !force) {
    throw new ThinshipError(
      'USAGE',
      `--insecure sends volumes in clear and without authentication; it is allowed only on loopback (127.0.0.1, ::1, localhost), not ${host}, unless you also give ${flag}`,
    );
  }
}
