/**
 * The receiver's record validation (record-checks.ts decodeRecord / checkBegin),
 * zstd chunk helpers, and the error <-> gRPC status mapping: pure functions,
 * no network, no device.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { decodeRecord, checkBegin, newDecodeContext, type DecodeContext, type TransferBegin, type WireRecord } from '../../src/receiver/record-checks.js';
import { ChunkCompressor, ChunkDecompressor, isAllZero, worthCompressing } from '../../src/stream/zstd.js';
import { StreamDigest } from '../../src/stream/digest.js';
import { ThinshipError } from '../../src/errors.js';
import { toServiceError, fromServiceError, grpcCodeOf } from '../../src/rpc/status.js';
import { beginFromProto, recordFromProto } from '../../src/rpc/server.js';
import type { Begin__Output } from '../../src/rpc/proto.js';
import { throwsThinship } from '../helpers/errors.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest();
const MiB = 1024 * 1024;

function begin(over: Partial<TransferBegin> = {}): TransferBegin {
  return {
    transferId: 't1',
    target: '/x',
    incremental: false,
    volumeSizeBytes: 16 * MiB,
    blockSizeBytes: 65536,
    sourceId: 's',
    baseId: '',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'zstd',
    checksum: 'sha256',
    ...over,
  };
}

function ctx(b = begin()): DecodeContext {
  return newDecodeContext(b, 4 * MiB);
}

const dz = new ChunkDecompressor();
const data = (offsetBytes: number, payload: Buffer, over: Partial<Extract<WireRecord, { type: 'data' }>> = {}): WireRecord => ({
  type: 'data',
  offsetBytes,
  lengthBytes: payload.length,
  payload,
  encoding: 'raw',
  checksum: sha(payload),
  ...over,
});

test('a valid stream decodes to messages and the digest chain a sender computes', () => {
  const c = ctx();
  const a = randomBytes(65536);
  const z = Buffer.alloc(65536);
  const comp = new ChunkCompressor().compress(Buffer.alloc(131072, 7))!;
  const recs: WireRecord[] = [
    data(0, a),
    data(65536, z, { payload: Buffer.alloc(0), encoding: 'zero' }),
    { type: 'unmap', offsetBytes: 131072, lengthBytes: 65536 },
    data(196608, Buffer.alloc(131072, 7), { payload: comp, encoding: 'zstd' }),
  ];
  const sender = new StreamDigest();
  sender.addData(0, 65536, sha(a));
  sender.addData(65536, 65536, sha(z));
  sender.addUnmap(131072, 65536);
  sender.addData(196608, 131072, sha(Buffer.alloc(131072, 7)));
  const out = recs.map((r) => decodeRecord(r, c, dz));
  assert.equal(out[0]!.msg.type, 'data');
  assert.equal(out[1]!.msg.type, 'unmap', 'a ZERO chunk becomes a zeroing of its range');
  assert.deepEqual((out[3]!.msg as { data: Buffer }).data, Buffer.alloc(131072, 7));
  assert.equal(out[3]!.mark.offsetBytes, 327680);
  assert.equal(out[3]!.mark.dataBytes, 262144);
  const end = decodeRecord({ type: 'end', records: 6, dataRecords: 3, unmapRecords: 1, dataBytes: 262144, unmapBytes: 65536, digest: sender.state }, c, dz);
  assert.equal(end.msg.type, 'end');
  throwsThinship(() => decodeRecord(data(400000, a), c, dz), 'BAD_STREAM', /follows the end/);
});

test('every malformed record is refused, naming its offset', () => {
  const a = Buffer.alloc(8192, 1);
  throwsThinship(() => decodeRecord(data(16 * MiB - 4096, a), ctx(), dz), 'BAD_STREAM', /offset 16773120: length 8192 goes beyond the end of the volume/);
  throwsThinship(() => decodeRecord(data(0, Buffer.alloc(0)), ctx(), dz), 'BAD_STREAM', /offset 0: length 0 must be a positive integer/);
  throwsThinship(() => decodeRecord({ type: 'unmap', offsetBytes: -1, lengthBytes: 5 }, ctx(), dz), 'BAD_STREAM', /offset -1: not a byte offset/);
  throwsThinship(
    () => decodeRecord({ type: 'unmap', offsetBytes: 2 ** 60, lengthBytes: 5 }, ctx(), dz),
    'BAD_STREAM',
    /offset 1152921504606847000: not a byte offset/,
  );
  throwsThinship(
    () => decodeRecord(data(0, Buffer.alloc(8 * MiB), { payload: Buffer.alloc(0), encoding: 'zero' }), ctx(), dz),
    'BAD_STREAM',
    /offset 0: length 8388608 is more than/,
  );
  throwsThinship(() => decodeRecord(data(4096, a, { checksum: sha(Buffer.from('x')) }), ctx(), dz), 'CHECKSUM_MISMATCH', /offset 4096: checksum mismatch/);
  throwsThinship(() => decodeRecord(data(4096, a, { checksum: Buffer.alloc(5) }), ctx(), dz), 'BAD_STREAM', /offset 4096: checksum must be 32 bytes/);
  throwsThinship(() => decodeRecord(data(0, a, { payload: Buffer.alloc(100) }), ctx(), dz), 'BAD_STREAM', /raw payload of 100 bytes, the record says 8192/);
  throwsThinship(() => decodeRecord(data(0, a, { payload: Buffer.from('garbage!'), encoding: 'zstd' }), ctx(), dz), 'BAD_STREAM', /offset 0.*bad zstd frame/);
  throwsThinship(() => decodeRecord(data(0, a, { payload: Buffer.alloc(3), encoding: 'zero' }), ctx(), dz), 'BAD_STREAM', /ZERO with a 3-byte payload/);
  const half = new ChunkCompressor().compress(Buffer.alloc(4096, 1))!;
  throwsThinship(
    () => decodeRecord(data(0, a, { payload: half, encoding: 'zstd' }), ctx(), dz),
    'BAD_STREAM',
    /frame says 4096 bytes of content, the record says 8192/,
  );
  const full = new ChunkCompressor().compress(a)!;
  throwsThinship(
    () => decodeRecord(data(0, a, { payload: Buffer.concat([full, Buffer.from([1, 2, 3])]), encoding: 'zstd' }), ctx(), dz),
    'BAD_STREAM',
    /3 bytes after the first frame/,
  );
  throwsThinship(
    () => decodeRecord(data(0, a, { payload: full, encoding: 'zstd' }), ctx(begin({ compression: 'none' })), dz),
    'BAD_STREAM',
    /announced no compression/,
  );
  const c = ctx(begin({ resumeOffsetBytes: 65536 }));
  throwsThinship(() => decodeRecord(data(0, a), c, dz), 'BAD_STREAM', /offset 0: below the resume offset 65536/);
  decodeRecord(data(65536, a), c, dz);
  throwsThinship(() => decodeRecord(data(65536, a), c, dz), 'BAD_STREAM', /out of order.*ends at 73728/);
  throwsThinship(() => decodeRecord({ type: 'invalid', what: 'a second Begin in one call' }, c, dz), 'BAD_STREAM', /after volume offset 73728: a second Begin/);
  throwsThinship(
    () => decodeRecord({ type: 'end', records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 8192, unmapBytes: 0, digest: Buffer.alloc(32) }, c, dz),
    'CHECKSUM_MISMATCH',
    /stream digest mismatch/,
  );
  throwsThinship(
    () => decodeRecord({ type: 'end', records: 2, dataRecords: 2, unmapRecords: 0, dataBytes: 8192, unmapBytes: 0, digest: Buffer.alloc(32) }, ctx(), dz),
    'BAD_STREAM',
    /sender counts 2 dataRecords.*receiver 0/,
  );
});

test('checkBegin refuses inconsistent begins', () => {
  checkBegin(begin(), { requireChecksum: true });
  throwsThinship(() => checkBegin(begin({ transferId: '../x' }), { requireChecksum: true }), 'BAD_STREAM', /transfer id/);
  throwsThinship(() => checkBegin(begin({ volumeSizeBytes: 0 }), { requireChecksum: true }), 'BAD_STREAM', /volume_size_bytes 0/);
  throwsThinship(() => checkBegin(begin({ incremental: true }), { requireChecksum: true }), 'BAD_STREAM', /needs base_id/);
  throwsThinship(() => checkBegin(begin({ baseId: 'b' }), { requireChecksum: true }), 'BAD_STREAM', /must not name a base/);
  throwsThinship(() => checkBegin(begin({ checksum: 'none' }), { requireChecksum: true }), 'BAD_STREAM', /requires checksums/);
  throwsThinship(() => checkBegin(begin({ resumeOffsetBytes: 17 * MiB }), { requireChecksum: true }), 'BAD_STREAM', /resume_offset_bytes/);
  checkBegin(begin({ checksum: 'none' }), { requireChecksum: false });
});

test('the protocol version is checked before anything else in a Begin', () => {
  const pb = { protocolVersion: 7, mode: 'NONSENSE' } as unknown as Begin__Output;
  throwsThinship(() => beginFromProto(pb), 'PROTOCOL_MISMATCH', /sender speaks .* version 7, this receiver speaks version 1/);
  throwsThinship(() => beginFromProto({ ...pb, protocolVersion: 1 }), 'BAD_STREAM', /mode NONSENSE is not one of/);
  assert.deepEqual(recordFromProto({}), { type: 'invalid', what: 'a message with no record in it (none of begin, data, unmap, end set)' });
  assert.equal(
    recordFromProto({
      kind: 'data',
      data: { offsetBytes: 5, lengthBytes: 1, payload: Buffer.alloc(1), encoding: 'ENCODING_UNSPECIFIED', checksum: Buffer.alloc(0) },
    }).type,
    'invalid',
  );
});

test('zstd helpers: round trip, raw when it does not shrink, zero detection', () => {
  const c = new ChunkCompressor();
  const text = Buffer.from('thin pool block snapshot '.repeat(4000));
  const f = c.compress(text)!;
  assert.ok(f.length < text.length / 10);
  assert.equal(f.byteOffset, 0);
  assert.equal(f.buffer.byteLength, f.length, 'the frame owns its memory (transferable)');
  assert.deepEqual(dz.decompress(f, { offsetBytes: 0, lengthBytes: text.length }), text);
  assert.equal(c.compress(randomBytes(65536)), undefined, 'random data is sent raw');
  assert.equal(worthCompressing(1000, 1024), false);
  assert.equal(worthCompressing(992, 1024), true);
  assert.equal(isAllZero(Buffer.alloc(65536)), true);
  const z = Buffer.alloc(65537);
  z[65536] = 1;
  assert.equal(isAllZero(z), false);
  assert.equal(isAllZero(Buffer.alloc(7)), true);
  const odd = Buffer.alloc(100).subarray(3);
  odd[50] = 2;
  assert.equal(isAllZero(odd), false, 'unaligned views are checked bytewise');
});

test('errors map to gRPC statuses and back, keeping the thinship code', () => {
  assert.equal(grpcCodeOf('BAD_STREAM'), grpc.status.INVALID_ARGUMENT);
  assert.equal(grpcCodeOf('CHECKSUM_MISMATCH'), grpc.status.DATA_LOSS);
  assert.equal(grpcCodeOf('PROTOCOL_MISMATCH'), grpc.status.FAILED_PRECONDITION);
  assert.equal(grpcCodeOf('TRANSFER_BUSY'), grpc.status.ABORTED);
  const st = toServiceError(new ThinshipError('RESUME_MISMATCH', 'resume offset 5\ndoes not match'));
  assert.equal(st.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(st.details, 'resume offset 5 does not match');
  const back = fromServiceError({ code: st.code, details: st.details, metadata: st.metadata }, 'ApplyStream');
  assert.equal(back.code, 'RESUME_MISMATCH');
  const tls = fromServiceError(
    {
      code: grpc.status.UNAVAILABLE,
      details: 'No connection established. Last error: Error: self-signed certificate in certificate chain',
      metadata: new grpc.Metadata(),
    },
    'x',
  );
  assert.equal(tls.code, 'UNAUTHENTICATED');
  assert.equal(tls.retryable, false);
  const down = fromServiceError({ code: grpc.status.UNAVAILABLE, details: 'Connection dropped', metadata: new grpc.Metadata() }, 'x');
  assert.equal(down.code, 'UNAVAILABLE');
  assert.equal(down.retryable, true);
});
