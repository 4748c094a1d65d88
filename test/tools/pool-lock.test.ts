/**
 * The per-pool lock (flock through the native addon) between real processes:
 * this file re-runs itself as the contending processes (THINSHIP_LOCK_CHILD).
 * Contenders never overlap, a SIGKILLed owner's lock is free at once, the
 * timeout and the AbortSignal end a wait, and no lock file is left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { lockPool, poolLockPath } from '../../src/thin/pool-lock.js';
import { ThinshipError } from '../../src/errors.js';

const CHILD_ENV = 'THINSHIP_LOCK_CHILD';
const self = fileURLToPath(import.meta.url);
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

async function child(): Promise<void> {
  const [mode, dir, key, arg1, arg2] = JSON.parse(process.env[CHILD_ENV]!) as string[];
  if (mode === 'hold') {
    await lockPool(key!, { dir, timeoutMs: 30_000 });
    process.stdout.write('locked\n');
    setInterval(() => undefined, 60_000); // hold until killed
    return;
  }
  // contend: `iterations` times take the lock, check that nobody else is inside, leave.
  const iterations = Number(arg1);
  const shared = arg2!;
  for (let i = 0; i < iterations; i++) {
    const lock = await lockPool(key!, { dir, timeoutMs: 60_000 });
    const enter = nowUs();
    const before = readFileSync(join(shared, 'inside'), 'utf8');
    writeFileSync(join(shared, 'inside'), String(process.pid));
    for (let k = 0; k < 20; k++) await yieldTurn(); // give a wrongly admitted contender time to show
    const after = readFileSync(join(shared, 'inside'), 'utf8');
    writeFileSync(join(shared, 'inside'), '');
    const exit = nowUs();
    appendFileSync(
      join(shared, 'log'),
      `${process.pid} ${enter} ${exit} ${before === '' && after === String(process.pid) ? 'ok' : `overlap(before=${before},after=${after})`}\n`,
    );
    await lock.release();
  }
}

function startChild(args: string[]): { child: ChildProcess; exited: Promise<number | null> } {
  const c = spawn(process.execPath, [self], { env: { ...process.env, [CHILD_ENV]: JSON.stringify(args) }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
  return { child: c, exited };
}

/** Waits (bounded) until the child printed `line`. */
async function waitForLine(c: ChildProcess, line: string, ms = 20_000): Promise<void> {
  let out = '';
  const seen = new Promise<void>((resolve, reject) => {
    c.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes(line)) resolve();
    });
    c.on('exit', () => reject(new Error(`child exited before printing "${line}" (printed: ${JSON.stringify(out)})`)));
  });
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for "${line}"`)), ms);
  });
  try {
    await Promise.race([seen, limit]);
  } finally {
    clearTimeout(timer);
  }
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'thinship-lock-'));
}

if (process.env[CHILD_ENV]) {
  await child();
} else {
  test('6 processes contending on one pool never overlap, and every turn is taken', async () => {
    const dir = tempDir();
    const shared = join(dir, 'shared');
    mkdirSync(shared);
    writeFileSync(join(shared, 'inside'), '');
    writeFileSync(join(shared, 'log'), '');
    const N = 6;
    const ITER = 25;
    try {
      const kids = Array.from({ length: N }, () => startChild(['contend', join(dir, 'locks'), 'vg0-pool', String(ITER), shared]));
      const codes = await Promise.all(kids.map((k) => k.exited));
      assert.deepEqual(codes, Array(N).fill(0));
      const rows = readFileSync(join(shared, 'log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '));
      assert.equal(rows.length, N * ITER, 'every turn recorded');
      assert.deepEqual(
        rows.filter((r) => r[3] !== 'ok'),
        [],
        'nobody found another process inside',
      );
      const spans = rows.map((r) => [Number(r[1]), Number(r[2])] as const).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) {
        assert.ok(spans[i]![0] >= spans[i - 1]![1], `turn ${i} entered at ${spans[i]![0]} us, before turn ${i - 1} left at ${spans[i - 1]![1]} us`);
      }
      assert.deepEqual(readdirSync(join(dir, 'locks')), [], 'no lock file left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a SIGKILLed owner's lock is free at once; while it lives, the timeout ends a wait and names its pid", async () => {
    const dir = tempDir();
    const holder = startChild(['hold', dir, 'vg0-pool']);
    try {
      await waitForLine(holder.child, 'locked');
      const t0 = Date.now();
      await assert.rejects(lockPool('vg0-pool', { dir, timeoutMs: 300 }), (e: unknown) => {
        assert.ok(e instanceof ThinshipError);
        assert.equal(e.code, 'LOCK_TIMEOUT');
        assert.ok(e.message.includes(poolLockPath('vg0-pool', dir)), e.message);
        assert.ok(e.message.includes(`pid ${holder.child.pid}`), e.message);
        return true;
      });
      assert.ok(Date.now() - t0 >= 300, 'waited the whole timeout');
      // Another pool is not blocked by this one.
      await (await lockPool('vg0-other', { dir, timeoutMs: 0 })).release();
      holder.child.kill('SIGKILL');
      await holder.exited;
      // timeoutMs 0: a single try, no waiting: the kernel released the dead owner's lock.
      const lock = await lockPool('vg0-pool', { dir, timeoutMs: 0 });
      await lock.release();
      assert.ok(!existsSync(lock.path), 'released lock file removed');
    } finally {
      holder.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a live owner whose pid cannot be read (file empty, as while it is written) still holds the lock', async () => {
    // The old lock read the owner file to decide whether the owner lived: an empty
    // file read as pid 0, "dead", and a live lock was taken over.
    const dir = tempDir();
    const holder = startChild(['hold', dir, 'vg0-pool']);
    try {
      await waitForLine(holder.child, 'locked');
      writeFileSync(poolLockPath('vg0-pool', dir), '');
      await assert.rejects(lockPool('vg0-pool', { dir, timeoutMs: 200 }), (e: unknown) => {
        assert.ok(e instanceof ThinshipError && e.code === 'LOCK_TIMEOUT', String(e));
        assert.match(e.message, /held by another process/);
        return true;
      });
    } finally {
      holder.child.kill('SIGKILL');
      await holder.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an AbortSignal ends a wait for the lock', async () => {
    const dir = tempDir();
    const holder = startChild(['hold', dir, 'vg0-pool']);
    try {
      await waitForLine(holder.child, 'locked');
      const ac = new AbortController();
      const waiting = lockPool('vg0-pool', { dir, timeoutMs: 60_000, signal: ac.signal });
      ac.abort(new ThinshipError('ABORTED', 'test abort'));
      const t0 = Date.now();
      await assert.rejects(waiting, /test abort/);
      assert.ok(Date.now() - t0 < 5_000, 'the abort ended the wait, not the timeout');
    } finally {
      holder.child.kill('SIGKILL');
      await holder.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an old-style lock directory (<key>.lock) from an earlier version neither blocks nor breaks the lock', async () => {
    const dir = tempDir();
    try {
      mkdirSync(join(dir, 'vg0-pool.lock'));
      writeFileSync(join(dir, 'vg0-pool.lock', 'owner'), '1 1\n');
      const lock = await lockPool('vg0-pool', { dir, timeoutMs: 0 });
      assert.equal(readFileSync(lock.path, 'utf8').trim(), String(process.pid), 'the owner file names this process');
      await assert.rejects(lockPool('vg0-pool', { dir, timeoutMs: 0 }), /timed out waiting for the pool lock/);
      await lock.release();
      assert.ok(existsSync(join(dir, 'vg0-pool.lock')), 'the old directory is left alone');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a waiter gets the lock when the owner releases it, on the file the path names', async () => {
    // flock conflicts between two opens in one process too, so this runs in-process.
    const dir = tempDir();
    try {
      const a = await lockPool('vg0-pool', { dir, timeoutMs: 0 });
      const waiting = lockPool('vg0-pool', { dir, timeoutMs: 20_000 });
      await a.release();
      const b = await waiting;
      await assert.rejects(lockPool('vg0-pool', { dir, timeoutMs: 0 }), /timed out/, 'b holds the lock on the file the path names');
      assert.ok(existsSync(b.path));
      await b.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
