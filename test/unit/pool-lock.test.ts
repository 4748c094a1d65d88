/**
 * The per-pool lock between thinship processes (thin/pool-lock.ts) on a real
 * directory: one holder at a time, a waiter times out naming the holder, a
 * lock whose owner is gone (or that never got an owner) is taken over at
 * once, the key cannot escape the lock directory, and an abort stops a wait.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, existsSync, readdirSync, utimesSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockPool } from '../../src/thin/pool-lock.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'thinship-lock-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

/** A pid that existed and is gone: a child that has exited and been reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('one holder at a time: the owner file names this process, a second locker times out naming it, release frees it', async () => {
  const d = join(dir, 'a');
  const l = await lockPool('vg0/pool', { dir: d });
  assert.equal(l.tookOverStale, false);
  assert.deepEqual(readdirSync(d), ['vg0_pool.lock'], 'the key is made a file name inside the lock directory');
  const owner = readFileSync(join(d, 'vg0_pool.lock', 'owner'), 'utf8');
  assert.match(owner, new RegExp(`^${process.pid} \\d+\\n$`));
  const t0 = Date.now();
  await assert.rejects(lockPool('vg0/pool', { dir: d, timeoutMs: 300 }), (e: ThinshipError) => e.code === 'LOCK_TIMEOUT' && e.retryable && e.message.includes(`held by ${process.pid}`) && e.message.includes('vg0_pool.lock'));
  assert.ok(Date.now() - t0 >= 300, 'waited for the timeout');
  // another pool is independent
  const other = await lockPool('vg0/pool2', { dir: d });
  await other.release();
  await l.release();
  assert.equal(existsSync(join(d, 'vg0_pool.lock')), false);
  const again = await lockPool('vg0/pool', { dir: d, timeoutMs: 0 });
  await again.release();
});

test('a waiter gets the lock as soon as the holder releases it', async () => {
  const d = join(dir, 'b');
  const l = await lockPool('p', { dir: d });
  const waiting = lockPool('p', { dir: d, timeoutMs: 10_000 });
  setTimeout(() => { void l.release(); }, 250);
  const t0 = Date.now();
  const w = await waiting;
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(w.tookOverStale, false);
  await w.release();
});

test('a lock left by a process that is gone is taken over at once', async () => {
  const d = join(dir, 'c');
  mkdirSync(join(d, 'p.lock'), { recursive: true });
  writeFileSync(join(d, 'p.lock', 'owner'), `${deadPid()} 12345\n`);
  const l = await lockPool('p', { dir: d, timeoutMs: 0 });
  assert.equal(l.tookOverStale, true);
  assert.match(readFileSync(join(d, 'p.lock', 'owner'), 'utf8'), new RegExp(`^${process.pid} `));
  assert.deepEqual(readdirSync(d), ['p.lock'], 'the stale directory is removed');
  await l.release();
});

test('a live pid with another start time (pid reused) is stale; a live owner is not', async () => {
  const d = join(dir, 'd');
  mkdirSync(join(d, 'p.lock'), { recursive: true });
  writeFileSync(join(d, 'p.lock', 'owner'), `${process.pid} 1\n`); // this pid, but not this process's start time
  const l = await lockPool('p', { dir: d, timeoutMs: 0 });
  assert.equal(l.tookOverStale, true);
  await l.release();
  mkdirSync(join(d, 'p.lock'));
  writeFileSync(join(d, 'p.lock', 'owner'), `${process.ppid}\n`); // alive, no start time recorded
  await assert.rejects(lockPool('p', { dir: d, timeoutMs: 150 }), (e: ThinshipError) => e.code === 'LOCK_TIMEOUT');
  rmSync(join(d, 'p.lock'), { recursive: true });
});

test('a lock directory without an owner file: waited on while fresh, taken over after 5 s', async () => {
  const d = join(dir, 'e');
  mkdirSync(join(d, 'p.lock'), { recursive: true });
  await assert.rejects(lockPool('p', { dir: d, timeoutMs: 150 }), (e: ThinshipError) => e.code === 'LOCK_TIMEOUT' && /held by unknown/.test(e.message));
  const old = new Date(Date.now() - 10_000);
  utimesSync(join(d, 'p.lock'), old, old);
  const l = await lockPool('p', { dir: d, timeoutMs: 0 });
  assert.equal(l.tookOverStale, true);
  await l.release();
});

test('an abort stops the wait', async () => {
  const d = join(dir, 'f');
  const l = await lockPool('p', { dir: d });
  const ac = new AbortController();
  const waiting = lockPool('p', { dir: d, timeoutMs: 60_000, signal: ac.signal });
  setTimeout(() => ac.abort(new Error('stop waiting')), 200);
  await assert.rejects(waiting, /stop waiting/);
  await l.release();
});

test("the owner file records this process's start time (field 22 of /proc/self/stat)", async () => {
  const d = join(dir, 'g');
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  const l = await lockPool('p', { dir: d });
  assert.equal(readFileSync(join(d, 'p.lock', 'owner'), 'utf8'), `${process.pid} ${startTime}\n`);
  await l.release();
});

test('an owner file that names no process (0, negative, not a number) is stale', async () => {
  const d = join(dir, 'h');
  for (const owner of ['0 1\n', '-1 1\n', 'abc\n', '\n']) {
    mkdirSync(join(d, 'p.lock'), { recursive: true });
    writeFileSync(join(d, 'p.lock', 'owner'), owner);
    const l = await lockPool('p', { dir: d, timeoutMs: 0 });
    assert.equal(l.tookOverStale, true, JSON.stringify(owner));
    await l.release();
  }
});

test('without a timeout a waiter keeps waiting (the default is minutes, not milliseconds)', async () => {
  const d = join(dir, 'i');
  const l = await lockPool('p', { dir: d });
  const ac = new AbortController();
  const waiting = lockPool('p', { dir: d, signal: ac.signal }).then(() => 'locked', (e: Error) => (e instanceof ThinshipError ? e.code : e.message));
  const early = await Promise.race([waiting, new Promise((r) => setTimeout(() => r('still waiting'), 500))]);
  ac.abort(new Error('stop'));
  assert.equal(early, 'still waiting');
  assert.equal(await waiting, 'stop');
  await l.release();
});
