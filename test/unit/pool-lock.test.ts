/**
 * thin/pool-lock.ts in one process (flock conflicts between two opens in one
 * process as between processes; tools/pool-lock runs the multi-process cases):
 * the lock file's name, what a timeout says about the holder, and the errors
 * of a lock path that cannot be opened. Written for the StrykerJS run of the
 * module (docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, existsSync, symlinkSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockPool, poolLockPath } from '../../src/thin/pool-lock.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'thinship-poollock-')); });
after(() => { rmSync(dir, { recursive: true, force: true }); });

async function refusal(p: Promise<unknown>): Promise<ThinshipError> {
  try { await p; } catch (e) { return e as ThinshipError; }
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
  for (const [text, said] of [[`${process.pid}\n`, `pid ${process.pid}`], [' 77 \n', 'pid 77'], ['1\n', 'pid 1'], ['0\n', 'another process'], ['-5\n', 'another process'], ['1.5\n', 'another process'], ['abc\n', 'another process'], ['', 'another process']] as const) {
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
