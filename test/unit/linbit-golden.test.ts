/**
 * Golden LINBIT streams written out byte by byte from the format description
 * (docs/stream-format.md): decoded to the
 * expected messages and re-encoded byte-exact. Headers are explicit hex:
 * magic u64 | offset u64 | length u64 | cmd u32, all big-endian.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import { encodeStream } from '../../src/stream/linbit/encode.js';
import type { LinbitMessage } from '../../src/stream/linbit/format.js';
import { M10, M11, collect, encodeAll, pieces } from '../helpers/linbit-bytes.js';

const ZERO64 = '0000000000000000';

function hex(...parts: string[]): Buffer {
  return Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');
}

const payload8 = hex('0102030405060708');
const payload3 = hex('a1a2a3');

// Format 1.1 as thin_send writes it: BEGIN, DATA, DATA, UNMAP, END.
const plain11 = hex(
  M11,
  ZERO64,
  ZERO64,
  '00000002', // record 1 BEGIN_STREAM @0
  M11,
  '0000000000010000',
  '0000000000000008',
  '00000000', // record 2 DATA @64 KiB, 8 bytes  (byte 28)
  '0102030405060708',
  M11,
  '0000000100000000',
  '0000000000000003',
  '00000000', // record 3 DATA @4 GiB, 3 bytes  (byte 64)
  'a1a2a3',
  M11,
  '0000000000020000',
  '0000000000030000',
  '00000001', // record 4 UNMAP [128 KiB, +192 KiB) (byte 95)
  M11,
  ZERO64,
  '0000000000000018',
  '00000003', // record 5 END_STREAM (byte 123)
  '0000000000000005',
  '0000000000000002',
  '0000000000000001', // n_chunks 5, n_data 2, n_unmap 1
);

const expected11: LinbitMessage[] = [
  { type: 'begin', info: { formatVersion: '1.1' } },
  { type: 'data', offsetBytes: 0x10000, data: payload8 },
  { type: 'data', offsetBytes: 0x1_0000_0000, data: payload3 },
  { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x30000 },
  { type: 'end', records: 5, dataRecords: 2, unmapRecords: 1, dataBytes: 11, unmapBytes: 0x30000, skippedRecords: 0 },
];

test('golden 1.1 (plain thin_send stream): decodes to the expected messages, no checksum needed', async () => {
  assert.equal(plain11.length, 123 + 28 + 24);
  for (const size of [plain11.length, 1, 5, 28, 29]) {
    const got = await collect(decodeStream(pieces(plain11, size)));
    assert.deepEqual(got, expected11, `chunk size ${size}`);
  }
});

test('golden 1.1: re-encodes byte-exact without extensions', async () => {
  const msgs = await collect(decodeStream([plain11]));
  const again = await encodeAll(msgs, { extensions: false });
  assert.equal(again.toString('hex'), plain11.toString('hex'));
});

test('golden 1.1 with an unknown optional record: skipped, counted in n_chunks and skippedRecords', async () => {
  const withOptional = hex(
    M11,
    ZERO64,
    ZERO64,
    '00000002', // BEGIN
    M11,
    '0000000000010000',
    '0000000000000008',
    '00000000', // DATA
    '0102030405060708',
    M11,
    '0000000000000000',
    '0000000000000005',
    '80000007', // optional 0x80000007, 5 bytes (someone else's)
    'deadbeef00',
    M11,
    '0000000000020000',
    '0000000000030000',
    '00000001', // UNMAP
    M11,
    ZERO64,
    '0000000000000018',
    '00000003', // END
    '0000000000000005',
    '0000000000000001',
    '0000000000000001', // n_chunks 5 (the optional record counts)
  );
  for (const size of [withOptional.length, 1, 3]) {
    const got = await collect(decodeStream(pieces(withOptional, size)));
    assert.deepEqual(
      got,
      [
        { type: 'begin', info: { formatVersion: '1.1' } },
        { type: 'data', offsetBytes: 0x10000, data: payload8 },
        { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x30000 },
        { type: 'end', records: 5, dataRecords: 1, unmapRecords: 1, dataBytes: 8, unmapBytes: 0x30000, skippedRecords: 1 },
      ],
      `chunk size ${size}`,
    );
  }
});

// Format 1.0: the same header with the 1.0 magic, only DATA and UNMAP, no BEGIN/END.
const plain10 = hex(
  M10,
  '0000000000000000',
  '0000000000000008',
  '00000000', // DATA @0, 8 bytes
  '0102030405060708',
  M10,
  '0000000000100000',
  '0000000000010000',
  '00000001', // UNMAP [1 MiB, +64 KiB)
  M10,
  '0000000000200000',
  '0000000000000003',
  '00000000', // DATA @2 MiB, 3 bytes
  'a1a2a3',
);

test('golden 1.0: decodes (begin and end synthesized) and re-encodes byte-exact', async () => {
  const expected: LinbitMessage[] = [
    { type: 'begin', info: { formatVersion: '1.0' } },
    { type: 'data', offsetBytes: 0, data: payload8 },
    { type: 'unmap', offsetBytes: 0x100000, lengthBytes: 0x10000 },
    { type: 'data', offsetBytes: 0x200000, data: payload3 },
    { type: 'end', records: 3, dataRecords: 2, unmapRecords: 1, dataBytes: 11, unmapBytes: 0x10000, skippedRecords: 0 },
  ];
  for (const size of [plain10.length, 1, 13]) {
    assert.deepEqual(await collect(decodeStream(pieces(plain10, size))), expected, `chunk size ${size}`);
  }
  const again = await encodeAll(expected);
  assert.equal(again.toString('hex'), plain10.toString('hex'));
  // A Readable works as input as well as an iterable of Buffers.
  assert.deepEqual(await collect(decodeStream(Readable.from(pieces(plain10, 7)))), expected);
});

/** Independent computation of the documented hash chain (docs/stream-format.md). */
function chain(records: Array<{ kind: 0 | 1; offset: bigint; length: bigint; sum: Buffer }>): Buffer {
  let d = Buffer.alloc(32);
  for (const r of records) {
    const canon = Buffer.concat([Buffer.from([r.kind]), hex(r.offset.toString(16).padStart(16, '0')), hex(r.length.toString(16).padStart(16, '0')), r.sum]);
    assert.equal(canon.length, 49);
    d = createHash('sha256').update(d).update(canon).digest();
  }
  return d;
}

test('golden 1.1 with thinship extensions: begin-info v2, a DATA checksum group before the DATA, stream digest', async () => {
  const info = { formatVersion: '1.1' as const, volumeSizeBytes: 1048576, blockSizeBytes: 65536, sourceId: 'vg/snap@tx5', incremental: false };
  const json = '{"v":2,"volumeSizeBytes":1048576,"blockSizeBytes":65536,"sourceId":"vg/snap@tx5","incremental":false,"checksum":"sha256"}';
  const jsonLen = Buffer.byteLength(json).toString(16).padStart(16, '0');
  const sum8 = createHash('sha256').update(payload8).digest();
  const d = chain([
    { kind: 0, offset: 0x10000n, length: 8n, sum: sum8 },
    { kind: 1, offset: 0x20000n, length: 0x30000n, sum: Buffer.alloc(32) },
  ]);
  const golden = Buffer.concat([
    hex(M11, ZERO64, ZERO64, '00000002'), // 1 BEGIN
    hex(M11, ZERO64, jsonLen, '80545301'),
    Buffer.from(json), // 2 begin-info (JSON, "v":2)
    hex(M11, '0000000000010000', '0000000000000031', '80545304'), // 3 DATA checksum group: offset of its first DATA, 1 + 48 bytes
    hex('01'), //   algorithm 1 = sha256
    hex('0000000000010000', '0000000000000008'),
    sum8, //   entry 1: the DATA's offset, length, sha256
    hex(M11, '0000000000010000', '0000000000000008', '00000000'), // 4 DATA
    payload8,
    hex(M11, '0000000000020000', '0000000000030000', '00000001'), // 5 UNMAP
    hex(M11, ZERO64, '0000000000000021', '80545303'), // 6 stream digest, 33 bytes
    hex('01'),
    d,
    hex(M11, ZERO64, '0000000000000018', '00000003'), // 7 END
    hex('0000000000000007', '0000000000000001', '0000000000000001'),
  ]);
  const msgs: LinbitMessage[] = [
    { type: 'begin', info },
    { type: 'data', offsetBytes: 0x10000, data: payload8 },
    { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x30000 },
    { type: 'end', records: 0, dataRecords: 1, unmapRecords: 1 },
  ];
  // Positions as in the example table of docs/stream-format.md.
  assert.equal(golden.length, 379 + 28 + 24);
  assert.equal(golden.indexOf(hex(M11, '0000000000010000', '0000000000000031', '80545304')), 177);
  assert.equal(golden.indexOf(hex(M11, '0000000000010000', '0000000000000008', '00000000')), 254);
  assert.equal(golden.indexOf(hex(M11, ZERO64, '0000000000000018', '00000003')), 379);
  const encoded = await encodeAll(msgs);
  assert.equal(encoded.toString('hex'), golden.toString('hex'));

  const expected: LinbitMessage[] = [
    { type: 'begin', info: { ...info, checksum: 'sha256' } },
    { type: 'data', offsetBytes: 0x10000, data: payload8, checksum: sum8 },
    { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x30000 },
    { type: 'end', records: 7, dataRecords: 1, unmapRecords: 1, dataBytes: 8, unmapBytes: 0x30000, skippedRecords: 0, digest: d },
  ];
  assert.deepEqual(await collect(decodeStream(pieces(golden, 3))), expected);

  // What the previous version wrote for the same messages (begin-info "v":1, a DATA checksum record after
  // each DATA) still decodes, to the same messages and the same stream digest.
  const v1 = Buffer.concat([
    hex(M11, ZERO64, ZERO64, '00000002'), // 1 BEGIN
    hex(M11, ZERO64, jsonLen, '80545301'),
    Buffer.from(json.replace('"v":2', '"v":1')), // 2 begin-info ("v":1)
    hex(M11, '0000000000010000', '0000000000000008', '00000000'), // 3 DATA
    payload8,
    hex(M11, '0000000000010000', '0000000000000021', '80545302'), // 4 DATA checksum: offset of the DATA, 33 bytes
    hex('01'),
    sum8,
    hex(M11, '0000000000020000', '0000000000030000', '00000001'), // 5 UNMAP
    hex(M11, ZERO64, '0000000000000021', '80545303'), // 6 stream digest
    hex('01'),
    d,
    hex(M11, ZERO64, '0000000000000018', '00000003'), // 7 END
    hex('0000000000000007', '0000000000000001', '0000000000000001'),
  ]);
  assert.equal(v1.length, 363 + 28 + 24);
  assert.deepEqual(await collect(decodeStream(pieces(v1, 3))), expected);
});

test('golden empty 1.0 stream: zero bytes, as thin_send 1.0 writes for an empty volume; decodes to begin and end', async () => {
  const expected: LinbitMessage[] = [
    { type: 'begin', info: { formatVersion: '1.0' } },
    { type: 'end', records: 0, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, skippedRecords: 0 },
  ];
  assert.deepEqual(await collect(decodeStream([])), expected);
  assert.equal((await encodeAll(expected)).length, 0);
});

test('encoder passes big DATA payloads through without copying', async () => {
  const big = Buffer.alloc(1 << 20, 7);
  const parts = await collect(
    encodeStream(
      [
        { type: 'begin', info: { formatVersion: '1.1' } },
        { type: 'data', offsetBytes: 0, data: big },
        { type: 'end', records: 0, dataRecords: 1, unmapRecords: 0 },
      ],
      { extensions: false },
    ),
  );
  assert.ok(
    parts.some((p) => p === big),
    'the payload Buffer itself is yielded',
  );
  const decoded = await collect(decodeStream(parts));
  const data = decoded[1];
  assert.ok(data?.type === 'data');
  // The payload arrived as its own chunk, so the decoder hands back a view of it, not a copy.
  assert.equal(data.data.buffer, big.buffer);
});
