/**
 * receiver/state-lock.ts in one process: flock(2) locks belong to an open file
 * description, so a second acquire in the same process is refused exactly as
 * a second `thinship serve` would be (service/receiver-process-state runs the
 * two processes). Written for the StrykerJS run of the module (docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDirLock, STATE_LOCK_FILE } from '../../src/receiver/state-lock.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-statelock-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function fresh(name: string): string {
  const d = join(dir, name);
  mkdirSync(d);
  return d;
}

async function refusal(p: Promise<unknown>): Promise<ThinshipError> {
  try {
    await p;
  } catch (e) {
    return e as ThinshipError;
  }
  assert.fail('expected the acquire to be refused');
}

test('one holder: the file says its pid (mode 0600), a second acquire is refused naming it, release lets the next one in', async () => {
  const d = fresh('one');
  const first = await StateDirLock.acquire(d);
  assert.equal(first.path, join(d, STATE_LOCK_FILE));
  assert.equal(STATE_LOCK_FILE, 'serve.lock');
  assert.equal(readFileSync(first.path, 'utf8'), `${process.pid}\n`);
  assert.equal(statSync(first.path).mode & 0o777, 0o600);

  const e = await refusal(StateDirLock.acquire(d));
  assert.ok(e instanceof ThinshipError);
  assert.equal(e.code, 'TARGET_BUSY');
  assert.equal(
    e.message,
    `the state directory ${d} is in use by another thinship serve (pid ${process.pid}, holding ${first.path}); one receiver per state directory`,
  );
  assert.deepEqual(e.details, { holderPid: String(process.pid) });
  // The refused acquire changed nothing in the holder's file.
  assert.equal(readFileSync(first.path, 'utf8'), `${process.pid}\n`);

  await first.release();
  await first.release(); // a second release is a no-op
  const next = await StateDirLock.acquire(d);
  assert.equal(readFileSync(next.path, 'utf8'), `${process.pid}\n`);
  await next.release();
});

test('a lock file left by an earlier daemon (longer text, no lock held) is taken over and rewritten whole', async () => {
  const d = fresh('left');
  writeFileSync(join(d, STATE_LOCK_FILE), '99999999999999999999\nold text that is longer than a pid\n');
  const l = await StateDirLock.acquire(d);
  assert.equal(readFileSync(l.path, 'utf8'), `${process.pid}\n`);
  await l.release();
});

test('the holder pid in the refusal is what the file says when it is a number, "unknown" otherwise (at most 64 characters read)', async () => {
  for (const [text, said] of [
    ['4242\n', '4242'],
    ['  4243  \n', '4243'],
    ['not a pid\n', 'unknown'],
    ['', 'unknown'],
    ['12 34\n', 'unknown'],
    [`${'8'.repeat(64)}x`, '8'.repeat(64)],
  ] as const) {
    const d = fresh(`pid-${Buffer.from(text).toString('hex').slice(0, 40)}`);
    const held = await StateDirLock.acquire(d);
    writeFileSync(held.path, text); // what another daemon would have written
    const e = await refusal(StateDirLock.acquire(d));
    assert.equal(e.code, 'TARGET_BUSY');
    assert.deepEqual(e.details, { holderPid: said }, JSON.stringify(text));
    assert.ok(e.message.includes(`(pid ${said}, holding`), e.message);
    await held.release();
  }
});

test('a symlink in place of the lock file is refused (O_NOFOLLOW), and the file it points to is untouched', async () => {
  const d = fresh('link');
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  symlinkSync(victim, join(d, STATE_LOCK_FILE));
  const e = await refusal(StateDirLock.acquire(d));
  assert.equal((e as unknown as NodeJS.ErrnoException).code, 'ELOOP');
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
});

test('a missing state directory is an error, not a lock', async () => {
  const e = await refusal(StateDirLock.acquire(join(dir, 'absent')));
  assert.equal((e as unknown as NodeJS.ErrnoException).code, 'ENOENT');
});
