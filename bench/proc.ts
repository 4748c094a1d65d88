/**
 * Process accounting for the transfer benchmark: per-process CPU and peak RSS
 * (GNU time around each process of a pipeline, /proc for a daemon), page
 * cache residency (fincore), cache dropping (fadvise through the project's
 * device layer), loopback ports.
 *
 * Pipelines are run by bash (pipefail) rather than by joining Node child
 * streams: the shell gives each stage the pipe's file descriptor directly,
 * so the parent process never sits in the data path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createServer } from 'node:net';
import { cp, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool } from '../src/exec/run.js';
import { openVolume } from '../src/device/volume.js';

/** Single-quotes a word for bash. */
export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface ProcUsage {
  name: string;
  side: 'sender' | 'receiver';
  wallS: number;
  userS: number;
  sysS: number;
  /** Peak resident set size (ru_maxrss: the largest of the process and the children it waited for). */
  maxRssKiB: number;
  exitCode: number;
}

const TIME_FORMAT = '%e %U %S %M %x';

/** `argv` prefixed with GNU time writing its figures to `outFile` (for spawn; readTimed parses the file). */
export function timedArgv(outFile: string, argv: string[]): string[] {
  return ['/usr/bin/time', '-o', outFile, '-f', TIME_FORMAT, ...argv];
}

/** timedArgv as one bash command line. */
export function timed(outFile: string, argv: string[]): string {
  return timedArgv(outFile, argv).map(sq).join(' ');
}

/** Parses what timed() wrote (the last line; GNU time may add a "Command exited with non-zero status" line first). */
export async function readTimed(outFile: string, name: string, side: ProcUsage['side']): Promise<ProcUsage> {
  const text = await readFile(outFile, 'utf8');
  const last = text.trim().split('\n').pop() ?? '';
  const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+) (-?\d+)$/.exec(last.trim());
  if (!m) throw new Error(`${outFile}: unexpected GNU time output: ${JSON.stringify(text)}`);
  return { name, side, wallS: Number(m[1]), userS: Number(m[2]), sysS: Number(m[3]), maxRssKiB: Number(m[4]), exitCode: Number(m[5]) };
}

export interface BashResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const OUTPUT_CAP = 256 * 1024;

/** Starts `bash -c script`; `done` settles when it exits (never rejects on a non-zero status). */
export function startBash(script: string, env?: NodeJS.ProcessEnv): { child: ChildProcess; done: Promise<BashResult> } {
  const child = spawn('bash', ['-c', `set -o pipefail\n${script}`], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    if (stdout.length < OUTPUT_CAP) stdout += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < OUTPUT_CAP) stderr += b.toString();
  });
  const done = new Promise<BashResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

let clkTck: number | undefined;

/** User and system CPU time of a running process (all its threads), in seconds. */
export async function procCpuTimes(pid: number): Promise<{ userS: number; sysS: number }> {
  clkTck ??= Number((await runTool('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const s = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { userS: Number(f[11]) / clkTck, sysS: Number(f[12]) / clkTck };
}

/** utime + stime of a running process (all its threads), in seconds. */
export async function procCpuSeconds(pid: number): Promise<number> {
  const t = await procCpuTimes(pid);
  return t.userS + t.sysS;
}

/** VmHWM (peak RSS) of a running process. */
export async function procHwmKiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(s)?.[1] ?? NaN);
}

/** Bytes of `path` in the page cache. */
export async function cachedBytes(path: string): Promise<number> {
  const r = await runTool('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]);
  return Number(r.stdout.trim());
}

/** Drops a (clean) file from the page cache: POSIX_FADV_DONTNEED over all of it. */
export async function dropCache(path: string): Promise<void> {
  const h = await openVolume(path, { mode: 'read' });
  try {
    await h.adviseDontNeed(0, 0);
  } finally {
    await h.close();
  }
}

/** A loopback TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Waits until something listens on a local TCP port, reading /proc/net/tcp
 * (connecting to find out would use up socat's single accept).
 */
export async function waitListening(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile(f, 'utf8').catch(() => '');
      // local_address is "ADDR:PORT", st 0A = LISTEN.
      if (
        text.split('\n').some((l) => {
          const c = l.trim().split(/\s+/);
          return c[1]?.endsWith(`:${hex}`) && c[3] === '0A';
        })
      )
        return;
    }
    if (!alive()) throw new Error(`the process that should listen on port ${port} exited`);
    if (performance.now() > deadline) throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A private copy of the build at `into` (dist/, the native addon, the .proto,
 * package.json; node_modules linked), so others rebuilding dist/ during a
 * long run change nothing that runs.
 */
export async function copyBuild(repoRoot: string, into: string): Promise<void> {
  await rm(into, { recursive: true, force: true });
  await mkdir(join(into, 'build'), { recursive: true });
  await cp(join(repoRoot, 'dist'), join(into, 'dist'), { recursive: true });
  await cp(join(repoRoot, 'build/Release'), join(into, 'build/Release'), { recursive: true });
  await cp(join(repoRoot, 'proto'), join(into, 'proto'), { recursive: true });
  await cp(join(repoRoot, 'package.json'), join(into, 'package.json'));
  await symlink(join(repoRoot, 'node_modules'), join(into, 'node_modules'));
}

/** sha256 of a whole file, hex (a target against the pool's image). */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(path, { highWaterMark: 8 * 1024 * 1024 })) h.update(b as Buffer);
  return h.digest('hex');
}

/** A daemon child process of the bench, stopped with SIGTERM (SIGKILL after 15 s). */
export interface BenchDaemon {
  pid: number;
  alive: () => boolean;
  stderr: () => string;
  stop(): Promise<void>;
}

export async function startBenchDaemon(argv: string[], port: number, what: string): Promise<BenchDaemon> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, THINSHIP_LOG: 'warn' } });
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    if (err.length < 64 * 1024) err += b.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let alive = true;
  void exited.then(() => {
    alive = false;
  });
  const stop = async () => {
    if (!alive) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  };
  try {
    await waitListening(port, 30_000, () => alive);
  } catch (e) {
    await stop();
    throw new Error(`${what} did not listen: ${(e as Error).message}: ${err.trim()}`, { cause: e });
  }
  return { pid: child.pid!, alive: () => alive, stderr: () => err, stop };
}
