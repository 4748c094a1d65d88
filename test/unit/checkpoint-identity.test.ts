/**
 * The target identity a checkpoint records (read back from disk: trusted no
 * more than any other field): absent (older checkpoints) and well-formed
 * values load, anything else is refused naming the file and the field.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointStore, checkpointFileName, type TransferCheckpoint } from '../../src/receiver/checkpoint.js';
import type { ThinshipError } from '../../src/errors.js';

let dir: string;
let store: CheckpointStore;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-cpid-'));
  store = new CheckpointStore(dir);
  await store.init();
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const base: TransferCheckpoint = {
  format: 2,
  transferId: 't1',
  status: 'complete',
  identity: 'a',
  target: '/srv/x.img',
  targetKey: '/srv/x.img',
  mode: 'full',
  sourceId: 's',
  baseId: '',
  volumeSizeBytes: 4096,
  blockSizeBytes: 4096,
  checksum: 'sha256',
  durableOffsetBytes: 4096,
  digestState: '0'.repeat(64),
  dataRecords: 1,
  unmapRecords: 0,
  dataBytes: 4096,
  unmapBytes: 0,
  createdUnixMs: 1,
  updatedUnixMs: 2,
};

test('a checkpoint without a target identity (older versions) and with one both round-trip', async () => {
  await store.save(base);
  assert.equal((await store.load('a', 't1'))!.targetIdentity, undefined);
  const withId = { ...base, transferId: 't2', targetIdentity: 'file dev=2049 ino=12 born=1796161141677572329 size=4096' };
  await store.save(withId);
  assert.deepEqual(await store.load('a', 't2'), withId);
});

test('a malformed target identity in a checkpoint file is refused, naming the file and the field', async () => {
  for (const [i, bad] of [42, '', 'x'.repeat(301), 'file\nforged', { kind: 'file' }].entries()) {
    const id = `bad${i}`;
    writeFileSync(join(store.dir, checkpointFileName('a', id)), JSON.stringify({ ...base, transferId: id, targetIdentity: bad }));
    await assert.rejects(store.load('a', id), (e: ThinshipError) => {
      assert.equal(e.code, 'INTERNAL');
      assert.match(e.message, new RegExp(`${checkpointFileName('a', id).replace('.', '\\.')}: field "targetIdentity" is missing or invalid`));
      return true;
    });
  }
});
