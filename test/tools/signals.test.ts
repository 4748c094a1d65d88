/**
 * Signals to the commands a user runs in a terminal or a script: the exit
 * status a shell sees is 128 + the signal number (143 for SIGTERM, 130 for
 * SIGINT), promptly, with no child process left behind. Each signal is sent
 * once the command is in the state it is about (first bytes of the stream on
 * stdout; the demo's receiver listening; `transfer abort` connected to a
 * receiver that never answers), never after a timer.
 * (An LVM send/plan releasing its metadata-snapshot reservation on a signal
 * is the VM tier's plan-signals case.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath } from '../helpers/cli.js';

let dir: string;
let pool: DemoPool;
const WAIT_MS = 30_000;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-sig-'));
  pool = await createDemoPool(join(dir, 'pool'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The status a shell reports: the exit code, or 128 + the number of the signal that ended the process. */
function shellStatus(code: number | null, signal: NodeJS.Signals | null): number {
  return code ?? 128 + constants.signals[signal!];
}

function descendants(pid: number): number[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  } catch {
    return [];
  } // pgrep exits 1 when there are none
  const kids = out.split('\n').filter(Boolean).map(Number);
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function exited(child: ChildProcess, what: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not exit within ${WAIT_MS} ms of the signal`));
    }, WAIT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

/** Resolves when `stream` has produced output matching `re` (bounded). */
function outputMatching(stream: NodeJS.ReadableStream, re: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; output so far: ${seen.slice(-2000)}`)), WAIT_MS);
    const on = (d: Buffer) => {
      seen += d.toString('latin1');
      if (re.test(seen)) {
        clearTimeout(t);
        stream.off('data', on);
        resolve(seen);
      }
    };
    stream.on('data', on);
  });
}

for (const [sig, status] of [
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const) {
  test(`${sig} to a pipe-mode send of an offline pool, stopped mid-stream: exit ${status}, no child left`, async () => {
    const child = spawn(process.execPath, [cliPath, 'send', '-q', '--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, String(pool.baseDevId)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    // the stream has begun: its first bytes are on stdout; then stop reading, so the send blocks mid-stream
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no stream bytes on stdout within ${WAIT_MS} ms: ${stderr}`)), WAIT_MS);
      child.stdout.once('data', () => {
        clearTimeout(t);
        child.stdout.pause();
        resolve();
      });
    });
    const kids = descendants(child.pid!);
    assert.equal(child.exitCode, null, 'still sending (the volume is far larger than a pipe buffer)');
    child.kill(sig);
    const e = await exited(child, 'send');
    assert.equal(shellStatus(e.code, e.signal), status, `exit ${e.code} signal ${e.signal}: ${stderr}`);
    for (const k of kids) assert.equal(alive(k), false, `child process ${k} of the send is gone`);
  });
}

test('SIGTERM to `thinship demo` once its receiver listens: exit 143, no child left', async (t) => {
  const child = spawn(process.execPath, [cliPath, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const out = await outputMatching(child.stdout, /receiver: listening on/, 'the demo receiver to listen');
  const demoDir = /building an offline thin pool in (\S+)/.exec(out)![1]!;
  const kids = descendants(child.pid!);
  child.kill('SIGTERM');
  const e = await exited(child, 'demo');
  assert.equal(shellStatus(e.code, e.signal), 143, `exit ${e.code} signal ${e.signal}: ${stderr}`);
  for (const k of kids) assert.equal(alive(k), false, `child process ${k} of the demo is gone`);
  // what the demo leaves behind in its temporary directory, if anything, is reported (not asserted): see docs/testing.md
  if (existsSync(demoDir)) {
    t.diagnostic(`demo left ${demoDir} (${readdirSync(demoDir).length} entries) after SIGTERM`);
    rmSync(demoDir, { recursive: true, force: true });
  }
});

test('SIGINT to `thinship transfer abort` waiting on a receiver that never answers: exit 130 at once', async () => {
  // a TCP server that accepts and then says nothing (a hung receiver)
  const conns = new Set<Socket>();
  let connected!: () => void;
  const gotConnection = new Promise<void>((r) => {
    connected = r;
  });
  const srv = createServer((s) => {
    conns.add(s);
    connected();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  try {
    const child = spawn(process.execPath, [cliPath, 'transfer', 'abort', 'some-transfer', '--insecure', '--to', `127.0.0.1:${port}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      gotConnection,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`transfer abort never connected: ${stderr}`)), WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(child.exitCode, null, `still waiting for the receiver: ${stderr}`);
    const t0 = Date.now();
    child.kill('SIGINT');
    const e = await exited(child, 'transfer abort');
    assert.equal(shellStatus(e.code, e.signal), 130, `exit ${e.code} signal ${e.signal}: ${stderr}`);
    assert.ok(Date.now() - t0 < 5000, `stopped ${Date.now() - t0} ms after the signal`);
  } finally {
    for (const s of conns) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
