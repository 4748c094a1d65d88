/**
 * Shared pieces of the gRPC service tests: real certificates made with
 * openssl (a good CA, a foreign CA, an expired client), receiver configs,
 * a `thinship serve` child process whose JSON log lines can be awaited, and
 * byte-exact image checks against an independent oracle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync, readFileSync, mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { makeCa, makeCertificates, issueCertificate } from '../../src/rpc/certs.js';
import type { TlsFiles } from '../../src/rpc/tls.js';
import { cliPath, offlinePoolArgs } from '../helpers/cli.js';
import { expectedImage } from '../helpers/offline-image.js';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import type { ThinshipError } from '../../src/errors.js';

export interface TestCerts {
  dir: string;
  server: TlsFiles;
  /** Allowed identity "sender-a". */
  clientA: TlsFiles;
  /** Valid certificate, identity "sender-b", which the configs give no rules (or other rules). */
  clientB: TlsFiles;
  /** "sender-a" again, but signed by a CA the receiver does not trust. */
  foreign: TlsFiles;
  /** "sender-a" signed by the right CA, expired in 2020. */
  expired: TlsFiles;
  /** The CA bundle of the foreign CA (a client trusting only it rejects the server). */
  foreignCa: string;
  /** The good CA's key (to issue a renewed certificate). */
  caKey: string;
}

export async function makeTestCerts(dir: string): Promise<TestCerts> {
  const s = await makeCertificates({ dir, serverNames: ['localhost', '127.0.0.1'], clientNames: ['sender-a', 'sender-b'], days: 3 });
  const fdir = join(dir, 'foreign');
  await mkdir(fdir, { recursive: true });
  const fca = await makeCa(fdir, 'foreign CA', 3);
  const foreign = { ca: s.ca, cert: join(fdir, 'client.crt'), key: join(fdir, 'client.key') };
  await issueCertificate({
    caCert: fca.cert,
    caKey: fca.key,
    cert: foreign.cert,
    key: foreign.key,
    commonName: 'sender-a',
    altNames: ['sender-a'],
    usage: 'client',
    days: 3,
  });
  const expired = { ca: s.ca, cert: join(dir, 'expired.crt'), key: join(dir, 'expired.key') };
  await issueCertificate({
    caCert: s.ca,
    caKey: s.caKey,
    cert: expired.cert,
    key: expired.key,
    commonName: 'sender-a',
    altNames: ['sender-a'],
    usage: 'client',
    notBefore: '20200101000000Z',
    notAfter: '20200201000000Z',
  });
  const [a, b] = s.clients;
  return {
    dir,
    server: { ca: s.ca, cert: s.server.cert, key: s.server.key },
    clientA: { ca: s.ca, cert: a!.cert, key: a!.key },
    clientB: { ca: s.ca, cert: b!.cert, key: b!.key },
    foreign,
    expired,
    foreignCa: fca.cert,
    caKey: s.caKey,
  };
}

export function writeConfig(path: string, c: Record<string, unknown>): string {
  writeFileSync(path, JSON.stringify(c, null, 1));
  return path;
}

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  lines: Record<string, unknown>[];
  stderr(): string;
  /** Resolves with the first log line (already seen or future) matching pred. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `thinship serve ARGS` (the bundled CLI, or another build's `cli`) as a child process, once it listens. */
export function startServe(args: string[], env: NodeJS.ProcessEnv = {}, cli = cliPath): Promise<ServeProcess> {
  return startDaemon('serve', [cli, 'serve', ...args], 'receiver listening', env);
}

/** The sender daemon, `thinship sender serve ARGS` (or another spelling, e.g. ['sender-serve']), once it listens. */
export function startSenderServe(args: string[], spelling: string[] = ['sender', 'serve'], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  return startDaemon(spelling.join(' '), [cliPath, ...spelling, ...args], 'sender service listening', env);
}

/** `node ARGV` as a daemon whose JSON log lines can be awaited; resolves once it logs `listeningMsg` (with its port). */
async function startDaemon(what: string, argv: string[], listeningMsg: string, env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, THINSHIP_LOG: 'info', ...env } });
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  let pending = '';
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    raw += d;
    pending += d;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(l);
      for (const w of [...waiters])
        if (w.pred(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const waitFor = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 30_000) => {
    const seen = lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr so far:\n${raw.slice(-4000)}`)), timeoutMs);
      const w = {
        pred,
        resolve: (l: Record<string, unknown>) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      waiters.push(w);
      void exited.then((e) => {
        if (waiters.includes(w)) {
          clearTimeout(t);
          reject(new Error(`thinship ${what} exited (${e.code ?? e.signal}) before the awaited log line; stderr:\n${raw.slice(-4000)}`));
        }
      });
    });
  };
  const listening = await waitFor((l) => l.msg === listeningMsg, 60_000);
  return { child, port: listening.port as number, lines, stderr: () => raw, waitFor, exited };
}

export async function stopServe(s: ServeProcess): Promise<void> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  await s.exited;
}

/** Asserts two images are equal, naming the first differing block. */
export function assertSameImage(actual: Buffer, expected: Buffer, what: string, blockBytes = 65536): void {
  assert.equal(actual.length, expected.length, `${what}: size`);
  if (!actual.equals(expected)) {
    for (let off = 0; off < expected.length; off += blockBytes) {
      if (!actual.subarray(off, off + blockBytes).equals(expected.subarray(off, off + blockBytes)))
        assert.fail(`${what}: first difference in block ${off / blockBytes} (offset ${off})`);
    }
  }
}

export function readImage(path: string, sizeBytes: number): Buffer {
  return readFileSync(path).subarray(0, sizeBytes);
}

/** Awaits p, which must fail with the thinship error `code` (and a message matching re); returns the error. */
export async function rejects(p: Promise<unknown>, code: string, re?: RegExp): Promise<ThinshipError> {
  try {
    await p;
  } catch (e) {
    const err = e as ThinshipError;
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (re) assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected a ${code} error`);
}

/** Polls cond (state, never time) every 20 ms; fails after ms. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) assert.fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface DemoFixture {
  dir: string;
  pool: DemoPool;
  img1: Buffer;
  img2: Buffer;
  certs: TestCerts;
}

/** A new temporary directory with targets/, the offline demo pool, the images of its two snapshots (the oracle) and test certificates. */
export async function demoFixture(prefix: string): Promise<DemoFixture> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, 'targets'));
  const pool = await createDemoPool(join(dir, 'pool'));
  const img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  const img2 = expectedImage(pool.metadataPath, pool.dataPath, pool.snapDevId, pool.volumeSizeBytes);
  return { dir, pool, img1, img2, certs: await makeTestCerts(join(dir, 'certs')) };
}

/**
 * `thinship send … --to 127.0.0.1:PORT --target TARGET` of the demo pool's devices `ids` (one: full;
 * base and snapshot: incremental), as the gRPC process tests run it: ops of `opBytes`, mTLS from
 * `certsDir` (the --tls-dir layout), 6 retries, the JSON summary on stdout; `extra` before the ids.
 */
export function grpcSendArgs(
  pool: DemoPool,
  o: { port: number; target: string; ids: (number | string)[]; certsDir: string; opBytes: number; extra?: string[] },
): string[] {
  return [
    'send',
    ...offlinePoolArgs(pool),
    '--max-op-bytes',
    String(o.opBytes),
    '--to',
    `127.0.0.1:${o.port}`,
    '--server-name',
    'localhost',
    '--target',
    o.target,
    '--tls-dir',
    o.certsDir,
    '--retries',
    '6',
    '--json',
    ...(o.extra ?? []),
    ...o.ids.map(String),
  ];
}
