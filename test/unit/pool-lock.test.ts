/**
 * thin/pool-lock.ts in one process (flock conflicts between two opens in one
 * process as between processes; tools/pool-lock runs the multi-process cases):
 * the lock file's name, what a timeout says about the holder, and the errors
 * of a lock path that cannot be opened. Written for the StrykerJS run of the
 * module (docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs, { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, existsSync, symlinkSync, readdirSync, readlinkSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { lockPool, poolLockPath } from '../../src/thin/pool-lock.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-poollock-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<ThinshipError> {
  try {
    await p;
  } catch (e) {
    return e as ThinshipError;
  }
  assert.fail('expected lockPool to be refused');
}

test('the lock file name keeps letters, digits and + _ . - of the key and turns anything else into _', () => {
  assert.equal(poolLockPath('vg0-pool', '/x'), '/x/vg0-pool.flock');
  assert.equal(poolLockPath('Vg_9+a.b-c', '/x'), '/x/Vg_9+a.b-c.flock');
  assert.equal(poolLockPath('vg/../pool x:y', '/x'), '/x/vg_.._pool_x_y.flock');
  assert.equal(poolLockPath('a/b/c', '/x'), '/x/a_b_c.flock', 'every character, not only the first');
  assert.equal(poolLockPath('\u00e9\n', '/x'), '/x/__.flock');
});

test('the holder writes its pid; a timeout names that pid, or "another process" when the file holds no positive integer', async () => {
  const d = join(dir, 'owner');
  const held = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  assert.equal(held.path, poolLockPath('vg0-pool', d));
  assert.equal(readFileSync(held.path, 'utf8'), `${process.pid}\n`);
  for (const [text, said] of [
    [`${process.pid}\n`, `pid ${process.pid}`],
    [' 77 \n', 'pid 77'],
    ['1\n', 'pid 1'],
    ['0\n', 'another process'],
    ['-5\n', 'another process'],
    ['1.5\n', 'another process'],
    ['abc\n', 'another process'],
    ['', 'another process'],
  ] as const) {
    writeFileSync(held.path, text);
    const e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 0 }));
    assert.ok(e instanceof ThinshipError, String(e));
    assert.equal(e.code, 'LOCK_TIMEOUT');
    assert.equal(e.retryable, true);
    assert.equal(e.message, `timed out waiting for the pool lock ${held.path} (held by ${said})`, JSON.stringify(text));
  }
  await held.release();
  await held.release(); // twice: a no-op, not an error
  assert.deepEqual(readdirSync(d), [], 'released: no lock file left');
});

test('a lock file left behind (a crashed owner never unlinked it) is taken and rewritten whole with this pid', async () => {
  const d = join(dir, 'leftover');
  mkdirSync(d);
  writeFileSync(poolLockPath('vg0-pool', d), '123456789\nleft by a crashed owner\n');
  const l = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  assert.equal(readFileSync(l.path, 'utf8'), `${process.pid}\n`);
  await l.release();
});

test('the default lock directory is /run/lock/thinship (THINSHIP_LOCK_DIR is read by the CLI, cli/plan-options.ts)', () => {
  assert.equal(poolLockPath('vg0-pool'), join('/run/lock/thinship', 'vg0-pool.flock'));
});

test('timeoutMs bounds the wait (a short one waits about that long, then gives up)', async () => {
  const d = join(dir, 'timeout');
  const held = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  const t0 = Date.now();
  const e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 250 }));
  const waited = Date.now() - t0;
  assert.equal(e.code, 'LOCK_TIMEOUT');
  assert.ok(waited >= 250, `gave up after ${waited} ms, before its 250 ms`);
  await held.release();
});

test('a lock path that is a directory or a symlink is an IO_ERROR naming the path (nothing followed, nothing created)', async () => {
  const d = join(dir, 'bad');
  mkdirSync(d);
  mkdirSync(poolLockPath('as-dir', d));
  let e = await refusal(lockPool('as-dir', { dir: d, timeoutMs: 0 }));
  assert.equal(e.code, 'IO_ERROR');
  assert.ok(e.message.startsWith(`cannot open the pool lock ${poolLockPath('as-dir', d)}: `), e.message);
  assert.match(e.message, /EISDIR/);

  const victim = join(dir, 'victim');
  symlinkSync(victim, poolLockPath('as-link', d));
  e = await refusal(lockPool('as-link', { dir: d, timeoutMs: 0 }));
  assert.equal(e.code, 'IO_ERROR');
  assert.match(e.message, /ELOOP/);
  assert.ok(!existsSync(victim), 'the symlink was not followed');
});

test('an aborted signal refuses before any lock is taken', async () => {
  const d = join(dir, 'aborted');
  const e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 0, signal: AbortSignal.abort(new ThinshipError('ABORTED', 'stop now')) }));
  assert.equal(e.code, 'ABORTED');
  assert.deepEqual(readdirSync(d), [], 'no lock file made');
});

/**
 * Runs `after(path)` right after each openSync of the module (and of this file): the only moment
 * between a waiter's open and its flock, where the owner's release can land in another process.
 * The module imports openSync from node:fs; syncBuiltinESMExports re-points that binding.
 */
function hookOpen(after: (path: string) => void): () => void {
  const mutableFs = fs as unknown as Record<string, unknown>;
  const real = fs.openSync;
  mutableFs.openSync = (...args: Parameters<typeof fs.openSync>) => {
    const fd = real(...args);
    after(String(args[0]));
    return fd;
  };
  syncBuiltinESMExports();
  return () => {
    mutableFs.openSync = real;
    syncBuiltinESMExports();
  };
}

/** This process's open files whose path is `path` (" (deleted)" when unlinked since). */
function openFilesOf(path: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target === path || target === `${path} (deleted)`) out.push(target);
  }
  return out;
}

/** Waits (bounded) until `cond()` holds; checks every 5 ms. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(5);
  }
}

test('a waiter that locks the file its owner unlinked meanwhile starts over on a new file at the path (and leaks no fd)', async () => {
  const d = join(dir, 'race-unlinked');
  const a = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  let fired = false;
  // The owner releases (unlink, then close) between the waiter's open and its flock.
  const restore = hookOpen((p) => {
    if (p === a.path && !fired) {
      fired = true;
      void a.release();
    }
  });
  let b;
  try {
    b = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  } finally {
    restore();
  }
  assert.ok(fired, 'the owner released between open and flock');
  assert.equal(readFileSync(b.path, 'utf8'), `${process.pid}\n`, 'the file at the path is the one the waiter holds');
  assert.deepEqual(openFilesOf(b.path), [b.path], 'one fd, on the new file: the unlinked one was closed');
  const e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 0 }));
  assert.equal(e.code, 'LOCK_TIMEOUT', 'the lock at the path is held (by the waiter), so a third one waits');
  await b.release();
  assert.deepEqual(readdirSync(d), []);
});

test('a waiter that locks the unlinked file while a third one took the new file at the path waits for that third one', async () => {
  const d = join(dir, 'race-replaced');
  const a = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  let fired = false;
  let c: Awaited<ReturnType<typeof lockPool>> | undefined;
  const restore = hookOpen((p) => {
    if (p !== a.path || fired) return;
    fired = true;
    void a.release();
    // lockPool takes a free lock synchronously; its promise only delivers it.
    void lockPool('vg0-pool', { dir: d, timeoutMs: 0 }).then((l) => {
      c = l;
    });
  });
  let e;
  try {
    e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 0 }));
  } finally {
    restore();
  }
  assert.ok(fired);
  assert.equal(e.code, 'LOCK_TIMEOUT', 'the waiter does not keep the lock of the unlinked file while the third one holds the path');
  assert.ok(c !== undefined, 'the third one holds the lock');
  assert.deepEqual(openFilesOf(c.path), [c.path], 'the waiter closed both files it opened');
  await c.release();
});

test('a lock directory this user may not write is PERMISSION_DENIED naming the path (EACCES)', async () => {
  const top = mkdtempSync(join(tmpdir(), 'thinship-poollock-eacces-'));
  try {
    chmodSync(top, 0o755);
    const d = join(top, 'read-only');
    mkdirSync(d);
    chmodSync(d, 0o555);
    // Root may write anywhere: take an unprivileged effective uid for the open (lockPool opens synchronously).
    const asRoot = process.geteuid?.() === 0;
    if (asRoot) process.seteuid!(65534);
    let p;
    try {
      p = lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
    } finally {
      if (asRoot) process.seteuid!(0);
    }
    const e = await refusal(p);
    assert.equal(e.code, 'PERMISSION_DENIED');
    assert.ok(e.message.startsWith(`cannot open the pool lock ${poolLockPath('vg0-pool', d)}: `), e.message);
    assert.match(e.message, /EACCES/);
    assert.equal((e.cause as NodeJS.ErrnoException).code, 'EACCES', 'the open error is kept as the cause');
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
});

test('an immutable lock file (chattr +i: EPERM even for root) is PERMISSION_DENIED naming the path', async (t) => {
  const d = join(dir, 'immutable');
  mkdirSync(d);
  const path = poolLockPath('vg0-pool', d);
  writeFileSync(path, '');
  try {
    execFileSync('chattr', ['+i', path], { stdio: 'pipe' });
  } catch (e) {
    // Only a file system without the flag (tmpfs before Linux 6.0, overlayfs) is a reason to skip.
    const why = String((e as { stderr?: Buffer }).stderr ?? e);
    if (/not supported|Inappropriate ioctl/i.test(why)) {
      t.skip(`chattr +i is not supported here: ${why.trim()}`);
      return;
    }
    throw e;
  }
  try {
    const e = await refusal(lockPool('vg0-pool', { dir: d, timeoutMs: 0 }));
    assert.equal(e.code, 'PERMISSION_DENIED');
    assert.ok(e.message.startsWith(`cannot open the pool lock ${path}: `), e.message);
    assert.match(e.message, /EPERM/);
  } finally {
    execFileSync('chattr', ['-i', path]);
  }
});

test('without timeoutMs a waiter waits 10 minutes, retrying every 50 ms, and logs once whom it waits for', async () => {
  const d = join(dir, 'default-timeout');
  const a = await lockPool('vg0-pool', { dir: d, timeoutMs: 0 });
  const logged: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write: (line: string) => {
        logged.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  const tries: number[] = [];
  const restore = hookOpen((p) => {
    if (p === a.path) tries.push(performance.now());
  });
  // The module's clock is Date.now: frozen here and moved by hand to the deadline.
  const realNow = Date.now;
  const t0 = realNow();
  let clock = t0;
  Date.now = () => clock;
  let settled = false;
  const outcome = lockPool('vg0-pool', { dir: d, log: logger })
    .then(
      (l) => l,
      (e: unknown) => e,
    )
    .finally(() => {
      settled = true;
    });
  try {
    await until(() => tries.length >= 4, '4 tries');
    for (let i = 1; i < tries.length; i++)
      assert.ok(tries[i]! - tries[i - 1]! >= 45, `tries ${i - 1} and ${i} ${(tries[i]! - tries[i - 1]!).toFixed(1)} ms apart, not ~50`);
    clock = t0 + 10 * 60_000 - 1;
    let n = tries.length;
    await until(() => tries.length >= n + 2 || settled, 'two more tries');
    assert.equal(settled, false, 'still waiting 1 ms before the 10 minutes are up');
    clock = t0 + 10 * 60_000;
    n = tries.length;
    await until(() => settled || tries.length >= n + 3, 'the timeout');
    assert.ok(settled, `still waiting ${tries.length - n} tries after the 10 minutes were up`);
    const e = await outcome;
    assert.ok(e instanceof ThinshipError && e.code === 'LOCK_TIMEOUT', `timed out at the 10-minute mark, on the next try: ${String(e)}`);
    assert.equal(tries.length, n + 1, 'gave up on the first try at the deadline');
    const waits = logged.filter((l) => l.msg === 'another thinship process holds this pool; waiting for our turn');
    assert.equal(waits.length, 1, `logged once: ${JSON.stringify(logged)}`);
    assert.equal(waits[0]!.lock, a.path);
    assert.equal(waits[0]!.pid, process.pid);
    assert.equal(waits[0]!.level, 30, 'at info');
  } finally {
    Date.now = realNow;
    restore();
    await a.release();
    // A waiter that failed to give up takes the lock now: let it go.
    void outcome.then((l) => (l instanceof ThinshipError ? undefined : (l as Awaited<ReturnType<typeof lockPool>>).release()));
  }
});
