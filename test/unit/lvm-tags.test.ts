/**
 * The record of an LVM target in its LV tags (target-state/lvm-tags.ts) and the
 * names beside a target (lvm-target.ts): round trips through LVM's tag charset,
 * hostile tags refused naming the tag, snapshot naming and what targetStateOf
 * reads from an lvs listing. (The real LVM behaviour: test/vm/recv-lvm.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeTagValue, encodeTagValue, recordFromTags, recordTags, tag } from '../../src/receiver/target-state/lvm-tags.js';
import { receivedSnapshotName, stagingLvName, targetStateOf, type LvRow } from '../../src/receiver/target-state/lvm-target.js';
import type { TargetRecord } from '../../src/receiver/target-state/record.js';

const LVM_TAG = /^[A-Za-z0-9_+.\-/=!:&#]+$/;

test("tag values round-trip through LVM's tag charset", () => {
  for (const v of ['SpJpFp-1reI-6OuR-Hdy5-9xr6-qwZj-0mF7lb', 'vg0/snap2', 'a b&c', 'ünï©ødé ☃', '/pool/meta.bin#3', '', '&26']) {
    const e = encodeTagValue(v);
    assert.match(`x${e}`, LVM_TAG, `encoded ${JSON.stringify(v)} as ${e}`);
    assert.equal(decodeTagValue(e, 't'), v);
  }
  assert.equal(encodeTagValue('a b&c'), 'a&20b&26c');
});

test('a record round-trips through its tags; absent fields stay absent', () => {
  const r: TargetRecord = {
    format: 1,
    sourceId: 'uuid-2',
    baseId: 'uuid 1',
    snapshotName: 'vg0/snap2',
    volumeSizeBytes: 33554432,
    digest: 'ab'.repeat(32),
    transferId: 'pipe',
    receivedUnixMs: 1796182290945,
  };
  const tags = recordTags(r);
  for (const t of tags) assert.match(t, LVM_TAG);
  assert.deepEqual(recordFromTags([...tags, 'other-tag', tag('snap', 'r.snap2')], 'LV dst/r'), r);
  const full = recordFromTags(recordTags({ ...r, baseId: '', digest: '', snapshotName: undefined }), 'LV dst/r');
  assert.equal(full?.baseId, '');
  assert.equal(full?.digest, '');
  assert.equal(full?.snapshotName, undefined);
  assert.ok(!recordTags({ ...r, baseId: '' }).some((t) => t.startsWith('thinship.base:')));
  assert.equal(recordFromTags(['foo', 'bar'], 'LV dst/r'), undefined, 'no thinship.src: no record');
});

test('hostile tags are refused naming the LV and the tag', () => {
  assert.throws(
    () => recordFromTags(['thinship.src:x', 'thinship.v:1', 'thinship.size:12ab', 'thinship.at:1'], 'LV dst/r'),
    (e: Error & { code?: string }) => e.code === 'BAD_METADATA' && /LV dst\/r: tag thinship\.size is "12ab"/.test(e.message),
  );
  assert.throws(() => recordFromTags(['thinship.src:x', 'thinship.v:2', 'thinship.size:1', 'thinship.at:1'], 'LV dst/r'), /thinship\.v is "2", not 1/);
  assert.throws(() => recordFromTags(['thinship.src:x&4', 'thinship.v:1'], 'LV dst/r'), /LV tag "thinship\.src:x&4" is not a thinship tag value/);
  assert.throws(() => recordFromTags(['thinship.src:x', 'thinship.v:1', 'thinship.size:1'], 'LV dst/r'), /tag thinship\.at is missing/);
  assert.throws(() => tag('name', 'x'.repeat(1100)), /more than LVM's 1024/);
});

const row = (lv: string, tags: string[] = [], extra: Partial<LvRow> = {}): LvRow => ({
  vg: 'dst',
  lv,
  uuid: `u-${lv}`,
  sizeBytes: 1 << 25,
  pool: 'tp',
  origin: '',
  thinId: 1,
  attr: 'Vwi-a-tz--',
  tags,
  open: false,
  ...extra,
});

test('received snapshot names: after the source snapshot, sanitised, hashed when nameless or taken by another LV', () => {
  assert.equal(receivedSnapshotName('r', { sourceId: 'x', snapshotName: 'vg0/snap2' }, []), 'r.snap2');
  assert.equal(receivedSnapshotName('r', { sourceId: 'x', snapshotName: 'vg0/daily 2026:12' }, []), 'r.daily_2026_12');
  assert.match(receivedSnapshotName('r', { sourceId: 'x' }, []), /^r\.src-[0-9a-f]{12}$/);
  assert.equal(
    receivedSnapshotName('r', { sourceId: 'x', snapshotName: 'vg0/snap2' }, [row('r.snap2', ['thinship.snapof:r'])]),
    'r.snap2',
    'our own earlier snapshot: same name (replaced at commit)',
  );
  assert.match(
    receivedSnapshotName('r', { sourceId: 'x', snapshotName: 'vg0/snap2' }, [row('r.snap2')]),
    /^r\.snap2\.[0-9a-f]{8}$/,
    'a user LV keeps its name',
  );
  assert.throws(() => stagingLvName('l'.repeat(120)), /longer than LVM's 127/);
});

test('targetStateOf: record, last snapshot, kept snapshots newest first, staging by name', () => {
  const rec = (src: string, at: number) =>
    recordTags({ format: 1, sourceId: src, baseId: '', volumeSizeBytes: 1 << 25, digest: '', transferId: 'pipe', receivedUnixMs: at });
  const s = targetStateOf('dst', 'r', [
    row('r', [...rec('s3', 30), tag('snap', 'r.snap3')]),
    row('r.snap2', [...rec('s2', 20), tag('snapof', 'r')]),
    row('r.snap3', [...rec('s3', 30), tag('snapof', 'r')]),
    row('other.snap1', [...rec('s1', 10), tag('snapof', 'other')]),
    row('r.thinship-staging'),
  ]);
  assert.equal(s.record?.sourceId, 's3');
  assert.equal(s.lastSnapshot?.lv, 'r.snap3');
  assert.deepEqual(
    s.snapshots.map((x) => x.row.lv),
    ['r.snap3', 'r.snap2'],
  );
  assert.equal(s.staging?.lv, 'r.thinship-staging');
  assert.equal(targetStateOf('dst', 'missing', []).target, undefined);
});
