/**
 * receiver/checkpoint.ts: a checkpoint file is read back trusting nothing
 * (each field checked, the bad one named), written atomically with private
 * permissions, and transfer ids are safe file names (written for the
 * StrykerJS survivors: docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointStore, checkTransferId, type TransferCheckpoint } from '../../src/receiver/checkpoint.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'thinship-cp-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

const good = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  format: 1, transferId: 'x-1', status: 'in_progress', identity: 'a', target: '/t', targetKey: '/t', mode: 'full', sourceId: 's', baseId: '',
  volumeSizeBytes: 100, blockSizeBytes: 10, checksum: 'sha256', durableOffsetBytes: 0, digestState: 'ab'.repeat(32),
  dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, createdUnixMs: 1, updatedUnixMs: 2, ...over,
});

test('every field of a checkpoint file is checked; the bad one is named', async () => {
  const store = new CheckpointStore(join(dir, 's1'));
  await store.init();
  const f = join(store.dir, 'x-1.json');
  const cases: [string, unknown][] = [['format', 2], ['format', undefined]];
  for (const k of ['transferId', 'identity', 'target', 'targetKey', 'sourceId', 'baseId']) cases.push([k, 5], [k, undefined]);
  for (const k of ['volumeSizeBytes', 'blockSizeBytes', 'durableOffsetBytes', 'dataRecords', 'unmapRecords', 'dataBytes', 'unmapBytes', 'createdUnixMs', 'updatedUnixMs']) {
    cases.push([k, -1], [k, 1.5], [k, 2 ** 53], [k, '5'], [k, undefined]);
  }
  cases.push(['status', 'done'], ['mode', 'partial'], ['checksum', 'md5'], ['digestState', 'ab'.repeat(31)], ['digestState', 'AB'.repeat(32)], ['digestState', `${'ab'.repeat(32)}0`], ['digestState', 5]);
  for (const [k, v] of cases) {
    writeFileSync(f, JSON.stringify(good({ [k]: v })));
    await assert.rejects(store.load('x-1'), (e: ThinshipError) => {
      assert.equal(e.code, 'INTERNAL');
      assert.equal(e.message, `checkpoint ${f}: field "${k}" is missing or invalid`, `${k}=${JSON.stringify(v)}`);
      return true;
    });
    await assert.rejects(store.list(), new RegExp(`field "${k}"`));
  }
  writeFileSync(f, JSON.stringify(good({ transferId: '../x' })));
  await assert.rejects(store.load('x-1'), (e: ThinshipError) => e.code === 'BAD_STREAM' && /transfer id "\.\.\/x"/.test(e.message));
  writeFileSync(f, '{"format": 1,');
  await assert.rejects(store.load('x-1'), (e: ThinshipError) => e.code === 'INTERNAL' && e.message.startsWith(`checkpoint ${f} is not valid JSON: `) && e.cause instanceof SyntaxError);
  // the values each field may take
  for (const over of [{ status: 'complete' }, { mode: 'incremental', baseId: 'b' }, { checksum: 'none' }, { durableOffsetBytes: 2 ** 53 - 1 }]) {
    writeFileSync(f, JSON.stringify(good(over)));
    assert.deepEqual(await store.load('x-1'), good(over));
  }
});

test('save, load, list and remove: atomic, private, temporaries of a crashed write cleaned up', async () => {
  const store = new CheckpointStore(join(dir, 's2'));
  await store.init();
  assert.equal(statSync(store.dir).mode & 0o777, 0o700);
  assert.equal(await store.load('nothing'), undefined);
  const cp = good({ transferId: 'a.b-c_d' }) as unknown as TransferCheckpoint;
  await store.save(cp);
  assert.deepEqual(readdirSync(store.dir), ['a.b-c_d.json'], 'no temporary left');
  assert.equal(statSync(join(store.dir, 'a.b-c_d.json')).mode & 0o777, 0o600);
  assert.equal(readFileSync(join(store.dir, 'a.b-c_d.json'), 'utf8'), JSON.stringify(cp, null, 1) + '\n');
  assert.deepEqual(await store.load('a.b-c_d'), cp);
  writeFileSync(join(store.dir, '.a.b-c_d.tmp-1-ffff'), '{');
  writeFileSync(join(store.dir, 'notes.txt'), 'not a checkpoint');
  writeFileSync(join(store.dir, '.keep'), '');
  const tmpLike = good({ transferId: 'x.tmp-2' }) as unknown as TransferCheckpoint; // an id may contain ".tmp-"
  await store.save(tmpLike);
  assert.deepEqual(await store.list(), [cp, tmpLike]);
  assert.deepEqual(readdirSync(store.dir).sort(), ['.keep', 'a.b-c_d.json', 'notes.txt', 'x.tmp-2.json'], 'the temporary is removed, other files are left alone');
  await store.remove('x.tmp-2');
  await store.remove('a.b-c_d');
  await store.remove('a.b-c_d');
  assert.deepEqual(await store.list(), []);
  await assert.rejects(store.load('../etc/passwd'), (e: ThinshipError) => e.code === 'BAD_STREAM');
  await assert.rejects(store.save({ ...cp, transferId: '.hidden' }), (e: ThinshipError) => e.code === 'BAD_STREAM');
  // a directory where a checkpoint should be: the error is not swallowed
  const d2 = join(store.dir, 'dir.json');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(d2);
  await assert.rejects(store.load('dir'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  await assert.rejects(store.remove('dir'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR' || e.code === 'EPERM');
  // a save that cannot rename into place leaves no temporary behind
  writeFileSync(join(d2, 'inside'), 'x'); // a non-empty directory cannot be replaced
  await assert.rejects(store.save({ ...cp, transferId: 'dir' }), (e: NodeJS.ErrnoException) => ['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes(e.code!));
  assert.deepEqual(readdirSync(store.dir).filter((n) => n.includes('.tmp-')), []);
  // the state directory removed under a running receiver: IO_ERROR, with the cause kept
  rmSync(store.dir, { recursive: true });
  await assert.rejects(store.save(cp), (e: ThinshipError) => e.code === 'IO_ERROR' && (e.cause as NodeJS.ErrnoException).code === 'ENOENT');
});

test('transfer ids: 1 to 128 of [A-Za-z0-9._-], not starting with "."', () => {
  for (const id of ['a', '_', '-', '0', 'A.b_c-9', 'x'.repeat(128)]) assert.equal(checkTransferId(id), id);
  for (const id of ['', '.', '.a', 'a/b', 'a b', 'a\n', 'é', 'x'.repeat(129), 5 as unknown as string]) {
    assert.throws(() => checkTransferId(id), (e: ThinshipError) => e.code === 'BAD_STREAM' && /is not 1 to 128 characters from \[A-Za-z0-9\._-\] \(not starting with '\.'\)/.test(e.message), JSON.stringify(id));
  }
  assert.throws(() => checkTransferId('y'.repeat(200)), (e: ThinshipError) => e.message.startsWith(`transfer id "${'y'.repeat(140)}" is not`));
});
