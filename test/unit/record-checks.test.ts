/**
 * The receiver's record checks (record-checks.ts checkRecord / finishWith) in
 * the corners StrykerJS found untested: transfers without checksums, the
 * marks (cursor, counts, digest) each record leaves for a checkpoint, the
 * exact limits, and the offset every refusal carries in its details.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  checkBegin,
  checkRecord,
  decodeRecord,
  DEFAULT_MAX_VOLUME_BYTES,
  finishRecord,
  modeOf,
  newDecodeContext,
  type DecodeContext,
  type TransferBegin,
  type WireRecord,
} from '../../src/receiver/record-checks.js';
import { checkData } from '../../src/receiver/decode-data.js';
import { MAX_ID_FIELD_BYTES, MAX_TARGET_BYTES } from '../../src/receiver/checkpoint.js';
import { ChunkDecompressor } from '../../src/stream/zstd.js';
import { StreamDigest } from '../../src/stream/digest.js';
import { ThinshipError } from '../../src/errors.js';
import { throwsThinship } from '../helpers/errors.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest();
const KiB = 1024;
const ZERO_DIGEST = Buffer.alloc(32);

function ctx(over: Partial<TransferBegin> = {}, maxChunkBytes = 64 * KiB): DecodeContext {
  const b: TransferBegin = {
    transferId: 't',
    target: '/x',
    incremental: false,
    volumeSizeBytes: 1024 * KiB,
    blockSizeBytes: 65536,
    sourceId: 's',
    baseId: '',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'none',
    checksum: 'sha256',
    ...over,
  };
  return newDecodeContext(b, maxChunkBytes);
}
const dz = new ChunkDecompressor();
const raw = (offsetBytes: number, payload: Buffer, checksum: Buffer = sha(payload)): WireRecord => ({
  type: 'data',
  offsetBytes,
  lengthBytes: payload.length,
  payload,
  encoding: 'raw',
  checksum,
});
const zero = (offsetBytes: number, lengthBytes: number, checksum: Buffer, payload = Buffer.alloc(0)): WireRecord => ({
  type: 'data',
  offsetBytes,
  lengthBytes,
  payload,
  encoding: 'zero',
  checksum,
});

test('a transfer without checksums: records carry none, no digest is kept, and the end carries none', () => {
  const c = ctx({ checksum: 'none' });
  const a = Buffer.alloc(4 * KiB, 1);
  const d1 = decodeRecord(raw(0, a, Buffer.alloc(0)), c, dz);
  assert.deepEqual((d1.msg as { data: Buffer }).data, a);
  const d2 = decodeRecord(zero(4 * KiB, 4 * KiB, Buffer.alloc(0)), c, dz);
  assert.equal(d2.msg.type, 'unmap');
  const d3 = decodeRecord({ type: 'unmap', offsetBytes: 16 * KiB, lengthBytes: 4 * KiB }, c, dz);
  for (const d of [d1, d2, d3]) assert.deepEqual(d.mark.digest, ZERO_DIGEST, 'no digest chain without checksums');
  throwsThinship(
    () => decodeRecord(raw(32 * KiB, a, sha(a)), c, dz),
    'BAD_STREAM',
    /data record at volume offset 32768: carries a checksum but the transfer has none/,
    32 * KiB,
  );
  const withDigest = {
    type: 'end',
    records: 5,
    dataRecords: 2,
    unmapRecords: 1,
    dataBytes: 8 * KiB,
    unmapBytes: 4 * KiB,
    digest: Buffer.alloc(32, 1),
  } as const;
  const c2 = ctx({ checksum: 'none' });
  decodeRecord(raw(0, a, Buffer.alloc(0)), c2, dz);
  decodeRecord(zero(4 * KiB, 4 * KiB, Buffer.alloc(0)), c2, dz);
  decodeRecord({ type: 'unmap', offsetBytes: 16 * KiB, lengthBytes: 4 * KiB }, c2, dz);
  assert.throws(
    () => decodeRecord(withDigest, c2, dz),
    (e: ThinshipError) => e.code === 'BAD_STREAM' && /^end record carries a digest but the transfer has no checksums$/.test(e.message),
  );
  const end = decodeRecord({ ...withDigest, digest: Buffer.alloc(0) }, c, dz);
  assert.deepEqual(end.msg, { type: 'end', dataRecords: 2, unmapRecords: 1, dataBytes: 8 * KiB, unmapBytes: 4 * KiB, digest: ZERO_DIGEST });
});

test('each record leaves the mark a checkpoint at it records: cursor, counts, digest', () => {
  const c = ctx();
  const a = Buffer.alloc(8 * KiB, 2);
  const want = new StreamDigest();
  const m1 = decodeRecord(raw(4 * KiB, a), c, dz).mark;
  want.addData(4 * KiB, 8 * KiB, sha(a));
  // lastData: the last RAW/ZSTD record, re-read on the target before a resume (ZERO and UNMAP leave it)
  const lastData = { offsetBytes: 4 * KiB, lengthBytes: 8 * KiB, checksum: sha(a).toString('hex') };
  assert.deepEqual(m1, { offsetBytes: 12 * KiB, digest: want.state, lastData, dataRecords: 1, unmapRecords: 0, dataBytes: 8 * KiB, unmapBytes: 0 });
  const u = decodeRecord({ type: 'unmap', offsetBytes: 20 * KiB, lengthBytes: 12 * KiB }, c, dz);
  assert.deepEqual(u.msg, { type: 'unmap', offsetBytes: 20 * KiB, lengthBytes: 12 * KiB });
  const m2 = u.mark;
  want.addUnmap(20 * KiB, 12 * KiB);
  assert.deepEqual(m2, { offsetBytes: 32 * KiB, digest: want.state, lastData, dataRecords: 1, unmapRecords: 1, dataBytes: 8 * KiB, unmapBytes: 12 * KiB });
  const z = decodeRecord(zero(40 * KiB, 16 * KiB, sha(Buffer.alloc(16 * KiB))), c, dz);
  // a ZERO record is applied as a range made to read as zeros (discard / hole), not written
  assert.deepEqual(z.msg, { type: 'unmap', offsetBytes: 40 * KiB, lengthBytes: 16 * KiB });
  const m3 = z.mark;
  want.addData(40 * KiB, 16 * KiB, sha(Buffer.alloc(16 * KiB)));
  assert.deepEqual(m3, { offsetBytes: 56 * KiB, digest: want.state, lastData, dataRecords: 2, unmapRecords: 1, dataBytes: 24 * KiB, unmapBytes: 12 * KiB });
  const end = decodeRecord({ type: 'end', records: 5, dataRecords: 2, unmapRecords: 1, dataBytes: 24 * KiB, unmapBytes: 12 * KiB, digest: want.state }, c, dz);
  assert.deepEqual(end.msg, { type: 'end', dataRecords: 2, unmapRecords: 1, dataBytes: 24 * KiB, unmapBytes: 12 * KiB, digest: want.state });
  assert.deepEqual(end.mark, {
    offsetBytes: 56 * KiB,
    digest: want.state,
    lastData,
    dataRecords: 2,
    unmapRecords: 1,
    dataBytes: 24 * KiB,
    unmapBytes: 12 * KiB,
  });
});

test('limits are exact: a record of exactly the chunk limit passes, one byte more does not', () => {
  const c = ctx({}, 64 * KiB);
  assert.equal(decodeRecord(raw(0, Buffer.alloc(64 * KiB, 3)), c, dz).msg.type, 'data');
  throwsThinship(
    () => decodeRecord(raw(64 * KiB, Buffer.alloc(64 * KiB + 1, 3)), c, dz),
    'BAD_STREAM',
    /data record at volume offset 65536: length 65537 is more than this receiver's limit of 65536 bytes per record/,
    64 * KiB,
  );
});

test('every refusal says what is wrong and carries the offset in its details', () => {
  const c = ctx();
  const a = Buffer.alloc(4 * KiB, 4);
  throwsThinship(() => decodeRecord({ type: 'invalid', what: 'a second Begin' }, c, dz), 'BAD_STREAM', /^after volume offset 0: a second Begin$/, 0);
  throwsThinship(
    () => decodeRecord(raw(0, a, sha(a).subarray(0, 31)), c, dz),
    'BAD_STREAM',
    /^data record at volume offset 0: checksum must be 32 bytes \(sha256\), got 31$/,
    0,
  );
  throwsThinship(
    () => decodeRecord(zero(0, 4 * KiB, sha(Buffer.alloc(4 * KiB)), Buffer.alloc(1)), c, dz),
    'BAD_STREAM',
    /^data record at volume offset 0: encoding ZERO with a 1-byte payload \(must be empty\)$/,
    0,
  );
  throwsThinship(
    () => decodeRecord(zero(0, 4 * KiB, sha(a)), c, dz),
    'CHECKSUM_MISMATCH',
    /data record at volume offset 0: checksum mismatch over 4096 zero bytes; not written/,
    0,
  );
  throwsThinship(
    () => decodeRecord({ type: 'data', offsetBytes: 8 * KiB, lengthBytes: 4 * KiB, payload: Buffer.from('x'), encoding: 'zstd', checksum: sha(a) }, c, dz),
    'BAD_STREAM',
    /data record at volume offset 8192: zstd payload in a transfer that announced no compression/,
    8 * KiB,
  );
  throwsThinship(
    () => decodeRecord({ type: 'data', offsetBytes: 16 * KiB, lengthBytes: 8 * KiB, payload: a, encoding: 'raw', checksum: sha(a) }, c, dz),
    'BAD_STREAM',
    /^data record at volume offset 16384: raw payload of 4096 bytes, the record says 8192$/,
    16 * KiB,
  );
  const g = ctx();
  decodeRecord(raw(4 * KiB, a), g, dz);
  throwsThinship(
    () => decodeRecord({ type: 'end', records: 9, dataRecords: 1, unmapRecords: 0, dataBytes: 4 * KiB, unmapBytes: 0, digest: ZERO_DIGEST }, g, dz),
    'BAD_STREAM',
    /^end record: the sender counts 9 records for the whole transfer, the receiver 3$/,
    8 * KiB,
  );
  const e = ctx();
  decodeRecord({ type: 'end', records: 2, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, digest: ZERO_DIGEST }, e, dz);
  throwsThinship(() => decodeRecord(raw(0, a), e, dz), 'BAD_STREAM', /^a data record follows the end of the stream$/, 0);
  const f = ctx();
  throwsThinship(
    () => decodeRecord({ type: 'end', records: 2, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, digest: Buffer.alloc(0) }, f, dz),
    'CHECKSUM_MISMATCH',
    /stream digest mismatch \(sender none, receiver 0{64}\)/,
    0,
  );
});

test('checkBegin: each field at its limit passes, one past it is refused naming the field (lengths in UTF-8 bytes)', () => {
  const GiB = 1024 * 1024 * KiB;
  const b0: TransferBegin = {
    transferId: 't1',
    target: '/x',
    incremental: false,
    volumeSizeBytes: GiB,
    sourceId: 's',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'none',
    checksum: 'sha256',
  };
  const ok = (over: Partial<TransferBegin>, o: { maxVolumeBytes?: number } = {}) => checkBegin({ ...b0, ...over }, { requireChecksum: true, ...o });
  const no = (over: Partial<TransferBegin>, why: string, o: { maxVolumeBytes?: number } = {}) =>
    assert.throws(
      () => ok(over, o),
      (e: unknown) => {
        assert.ok(e instanceof ThinshipError && e.code === 'BAD_STREAM', String(e));
        assert.equal(e.message, `begin of transfer t1: ${why}`);
        return true;
      },
    );
  // no base_id and no block size given: a full transfer of a pool that did not say its block size
  ok({});
  const e2 = (n: number) => 'é'.repeat(n); // 2 bytes each
  ok({ target: '/' + e2((MAX_TARGET_BYTES - 2) / 2) + 'x' });
  no({ target: '/' + e2((MAX_TARGET_BYTES - 2) / 2) + 'xy' }, `target must be 1 to ${MAX_TARGET_BYTES} bytes, got ${MAX_TARGET_BYTES + 1}`);
  no({ target: '' }, `target must be 1 to ${MAX_TARGET_BYTES} bytes, got 0`);
  ok({ sourceId: e2(MAX_ID_FIELD_BYTES / 2) });
  no({ sourceId: e2(MAX_ID_FIELD_BYTES / 2) + 'x' }, `source_id is ${MAX_ID_FIELD_BYTES + 1} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  ok({ incremental: true, baseId: e2(MAX_ID_FIELD_BYTES / 2) });
  no({ incremental: true, baseId: e2(MAX_ID_FIELD_BYTES / 2) + 'x' }, `base_id is ${MAX_ID_FIELD_BYTES + 1} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  no({ sourceId: '' }, 'source_id is empty');
  no({ incremental: true, baseId: '' }, 'an incremental transfer needs base_id');
  no({ baseId: 'b' }, 'a full transfer must not name a base');
  // the volume size: default limit 1 PiB, or the receiver's
  ok({ volumeSizeBytes: DEFAULT_MAX_VOLUME_BYTES });
  no(
    { volumeSizeBytes: DEFAULT_MAX_VOLUME_BYTES + 1 },
    `volume_size_bytes ${DEFAULT_MAX_VOLUME_BYTES + 1} is more than this receiver's maxVolumeBytes ${DEFAULT_MAX_VOLUME_BYTES}`,
  );
  ok({ volumeSizeBytes: 8 * GiB }, { maxVolumeBytes: 8 * GiB });
  no({ volumeSizeBytes: 8 * GiB + 1 }, `volume_size_bytes ${8 * GiB + 1} is more than this receiver's maxVolumeBytes ${8 * GiB}`, { maxVolumeBytes: 8 * GiB });
  no({ volumeSizeBytes: 1.5 }, 'volume_size_bytes 1.5 must be positive');
  // the block size: 0 (not given) or dm-thin's, a multiple of 64 KiB from 64 KiB to 1 GiB
  for (const bs of [0, 64 * KiB, 3 * 64 * KiB, GiB]) ok({ blockSizeBytes: bs });
  for (const bs of [32 * KiB, 96 * KiB, GiB + 64 * KiB, 64 * KiB + 0.5, -64 * KiB]) {
    no({ blockSizeBytes: bs }, `block_size_bytes ${bs} must be 0 (not given) or a dm-thin block size: a multiple of ${64 * KiB} from ${64 * KiB} to ${GiB}`);
  }
  // planned bytes: each 0 to the volume size, and together no more than it
  for (const f of ['plannedDataBytes', 'plannedUnmapBytes'] as const) {
    const name = f === 'plannedDataBytes' ? 'planned_data_bytes' : 'planned_unmap_bytes';
    ok({ [f]: GiB });
    for (const v of [-1, 0.5, GiB + 1]) no({ [f]: v }, `${name} ${v} must be 0 to volume_size_bytes (${GiB})`);
  }
  ok({ plannedDataBytes: GiB / 2, plannedUnmapBytes: GiB / 2 });
  no({ plannedDataBytes: GiB, plannedUnmapBytes: 1 }, `planned_data_bytes + planned_unmap_bytes (${GiB + 1}) is more than volume_size_bytes (${GiB})`);
  // the resume offset: anywhere in the volume, its end included
  ok({ resumeOffsetBytes: GiB });
  for (const v of [-1, 0.5, GiB + 1]) no({ resumeOffsetBytes: v }, `resume_offset_bytes ${v} is outside the volume`);
});

test('modeOf: only incremental === true is an incremental transfer', () => {
  assert.equal(modeOf({ incremental: true }), 'incremental');
  assert.equal(modeOf({ incremental: false }), 'full');
  assert.equal(modeOf({}), 'full');
});

test('checkData: a payload that does not match its checksum is refused naming the offset, both sums and the length; a matching one is returned with its sum', () => {
  const payload = Buffer.alloc(8, 1);
  const wrong = Buffer.alloc(32, 9);
  throwsThinship(
    () => checkData({ offsetBytes: 4 * KiB, lengthBytes: 8, payload, encoding: 'raw', checksum: { algorithm: 'sha256', expected: wrong } }, dz),
    'CHECKSUM_MISMATCH',
    new RegExp(
      `^data record at volume offset 4096: checksum mismatch over 8 bytes \\(sha256: sender 0909090909090909…, data ${sha(payload).toString('hex').slice(0, 16)}…\\); not written$`,
    ),
    4 * KiB,
  );
  assert.deepEqual(checkData({ offsetBytes: 0, lengthBytes: 8, payload, encoding: 'raw', checksum: { algorithm: 'sha256', expected: sha(payload) } }, dz), {
    data: payload,
    sum: sha(payload),
  });
  assert.deepEqual(checkData({ offsetBytes: 0, lengthBytes: 8, payload, encoding: 'raw' }, dz), { data: payload });
});

test('a payload check that fails while earlier records are still being written is not an unhandled rejection; finishRecord reports it in order', async () => {
  const c = ctx();
  const a = Buffer.alloc(4 * KiB, 5);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const failing = checkRecord(raw(0, a), c, () => Promise.reject(new ThinshipError('CHECKSUM_MISMATCH', 'from a decode worker')));
    // the receiver awaits earlier records first: a few turns of the event loop pass
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, []);
    await assert.rejects(finishRecord(failing, c), /from a decode worker/);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
