/**
 * The undo journal (src/receiver/target-state/undo-journal.ts, staging.ts) on
 * real files: old bytes are written back newest first, a torn last entry (a
 * crash while appending) is ignored, a commit marker finishes the commit
 * instead of rolling back, a grown target is cut back to its original size.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, truncateSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openVolume } from '../../src/device/volume.js';
import { open } from 'node:fs/promises';
import { UndoJournal, readJournal, readOldBytes } from '../../src/receiver/target-state/undo-journal.js';
import { openFileStage, recoverFileTarget, journalPath } from '../../src/receiver/target-state/staging.js';
import { readFileRecord, type TargetRecord } from '../../src/receiver/target-state/record.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-undo-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const record: TargetRecord = {
  format: 1,
  sourceId: 'snap-2',
  baseId: 'snap-1',
  volumeSizeBytes: 8192,
  digest: 'ab'.repeat(32),
  transferId: 'pipe',
  receivedUnixMs: 1,
};

test('a torn last entry is ignored; the intact ones are read in order', async () => {
  const p = join(dir, 'torn.undo');
  const j = await UndoJournal.create(p, { owner: 'pipe', ino: '1', dev: '2', originalSizeBytes: 100 });
  await j.saveOld(0, Buffer.from('first'));
  await j.saveOld(10, Buffer.from('second'));
  await j.close();
  const whole = readFileSync(p);
  truncateSync(p, whole.length - 3);
  const c = await readJournal(p);
  const fh = await open(p, 'r');
  try {
    assert.deepEqual(await Promise.all(c.ranges.map(async (r) => [r.offsetBytes, (await readOldBytes(fh, r)).toString()])), [[0, 'first']]);
  } finally {
    await fh.close();
  }
  assert.equal(c.committed, undefined);
});

test('old bytes that were zeros are journaled as their length only, and rolled back as zeros', async () => {
  const t = join(dir, 'zeros.img');
  const old = Buffer.concat([Buffer.alloc(1024 * 1024), Buffer.alloc(4096, 5)]);
  writeFileSync(t, old);
  const h = await openVolume(t, { mode: 'write' });
  const stage = await openFileStage({
    targetPath: t,
    target: h,
    mode: 'in-place',
    volumeSizeBytes: old.length,
    owner: 'pipe',
    resume: false,
    grow: false,
    noReflink: true,
  });
  await stage.handle.writeAt(Buffer.alloc(1024 * 1024 + 4096, 7), 0);
  assert.ok(statSync(journalPath(t, 'pipe')).size < 4096 + 1024, `a zero MiB costs a few bytes (journal ${statSync(journalPath(t, 'pipe')).size} bytes)`);
  await stage.close();
  await h.close();
  assert.deepEqual(
    (await recoverFileTarget(t)).map((a) => a.action),
    ['rolled-back'],
  );
  assert.ok(readFileSync(t).equals(old), 'zeros and old bytes back');
});

test('rollback writes the old bytes back (overlapping writes too) and cuts a grown target to its size', async () => {
  const t = join(dir, 'target.img');
  const old = Buffer.alloc(8192, 1);
  writeFileSync(t, old);
  const h = await openVolume(t, { mode: 'write' });
  const stage = await openFileStage({
    targetPath: t,
    target: h,
    mode: 'in-place',
    volumeSizeBytes: 12288,
    owner: 'pipe',
    resume: false,
    grow: true,
    noReflink: true,
  });
  assert.equal(stage.kind, 'journal');
  await stage.handle.writeAt(Buffer.alloc(4096, 2), 0);
  await stage.handle.writeAt(Buffer.alloc(4096, 3), 2048);
  await stage.handle.makeZero(6000, 6000);
  assert.equal(statSync(t).size, 12288);
  // A crash here: the next recv recovers from the journal alone.
  await stage.close();
  await h.close();
  const acts = await recoverFileTarget(t);
  assert.deepEqual(
    acts.map((a) => a.action),
    ['rolled-back'],
  );
  assert.ok(readFileSync(t).equals(old), 'the old bytes, at the old size');
  assert.ok(!existsSync(journalPath(t, 'pipe')));
});

test('a journal with its commit marker finishes the commit: the new bytes stay and the record is set', async () => {
  const t = join(dir, 'committing.img');
  writeFileSync(t, Buffer.alloc(8192, 1));
  const h = await openVolume(t, { mode: 'write' });
  const stage = await openFileStage({
    targetPath: t,
    target: h,
    mode: 'in-place',
    volumeSizeBytes: 8192,
    owner: 'pipe',
    resume: false,
    grow: false,
    noReflink: true,
  });
  await stage.handle.writeAt(Buffer.alloc(4096, 9), 0);
  await stage.close();
  // What commit() does first, then a crash before the record is written and the journal deleted.
  const j = await UndoJournal.reopen(journalPath(t, 'pipe'));
  await j.markCommitted(record);
  await j.close();
  await h.close();
  const acts = await recoverFileTarget(t);
  assert.deepEqual(
    acts.map((a) => a.action),
    ['commit-finished'],
  );
  assert.ok(readFileSync(t).subarray(0, 4096).equals(Buffer.alloc(4096, 9)));
  const h2 = await openVolume(t, { mode: 'read' });
  try {
    assert.equal((await readFileRecord(h2.fd, t))?.record.sourceId, 'snap-2');
  } finally {
    await h2.close();
  }
});
