/**
 * BLAKE3 as the per-DATA checksum (docs/stream-format.md, "Checksum
 * algorithms"): the algorithm against the published test vector, the LINBIT
 * codec with a BLAKE3 begin-info (algorithm byte 2 in the groups, the stream
 * digest still the sha256 chain), the receiver's record checks, the gRPC
 * Begin mapping, and the hostile cases: a corrupted payload refused naming
 * the record and its offset, an algorithm byte or enum value this version
 * does not know, and one that differs from what the begin declared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { dataChecksum, runningChecksum, StreamDigest } from '../../src/stream/digest.js';
import { checkDataChecksum, zeroChecksumMatches, StreamLedger } from '../../src/stream/integrity.js';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import type { LinbitMessage } from '../../src/stream/linbit/format.js';
import { decodeRecord, newDecodeContext, type TransferBegin, type WireRecord } from '../../src/receiver/record-checks.js';
import { ChunkDecompressor } from '../../src/stream/zstd.js';
import { beginFromProto } from '../../src/rpc/server.js';
import { refusedChecksumAlgorithm } from '../../src/rpc/client.js';
import type { Begin__Output } from '../../src/rpc/proto.js';
import { ThinshipError } from '../../src/errors.js';
import { throwsThinship } from '../helpers/errors.js';
import { beginInfo, collect, digestRec, encodeAll, expectBad, hdr, stats, u64 } from '../helpers/linbit-bytes.js';

const KiB = 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const b3 = (b: Uint8Array) => dataChecksum(b, 'blake3');

test('BLAKE3: the published test vectors; a running checksum over pieces equals the one-shot one; 32 bytes like sha256', () => {
  // BLAKE3 reference: "abc" and the empty input (default 32-byte output, unkeyed).
  assert.equal(b3(Buffer.from('abc')).toString('hex'), '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85');
  assert.equal(b3(Buffer.alloc(0)).toString('hex'), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131) & 0xff;
  const r = runningChecksum('blake3');
  for (let at = 0; at < big.length; at += 1_000_003) r.update(big.subarray(at, at + 1_000_003));
  assert.deepEqual(r.digest(), b3(big));
  assert.equal(b3(big).length, 32);
  assert.notDeepEqual(b3(big), sha(big));
  const s = runningChecksum('sha256');
  s.update(big.subarray(0, 5)).update(big.subarray(5));
  assert.deepEqual(s.digest(), sha(big), 'the sha256 running checksum is still sha256');
});

test('checkDataChecksum and zeroChecksumMatches take the algorithm: a sha256 value is no BLAKE3 value and the reverse', () => {
  const data = Buffer.from('the payload');
  assert.deepEqual(checkDataChecksum(data, b3(data), 'blake3'), { actual: b3(data), ok: true });
  assert.deepEqual(checkDataChecksum(data, sha(data), 'blake3'), { actual: b3(data), ok: false });
  assert.deepEqual(checkDataChecksum(data, b3(data), 'sha256'), { actual: sha(data), ok: false });
  for (const len of [1, 4096, 65536, 1024 * 1024]) {
    assert.equal(zeroChecksumMatches(len, b3(Buffer.alloc(len)), 'blake3'), true, `blake3 of ${len} zeros`);
    assert.equal(zeroChecksumMatches(len, sha(Buffer.alloc(len)), 'blake3'), false, `sha256 of ${len} zeros under blake3`);
    assert.equal(zeroChecksumMatches(len, b3(Buffer.alloc(len)), 'sha256'), false, `blake3 of ${len} zeros under sha256`);
  }
});

// --- LINBIT: encoder and decoder ---------------------------------------------------------------

const P8 = Buffer.from('0102030405060708', 'hex');
const BEGIN = hdr(0, 0, 2);
const END = hdr(0, 24, 3);
const V2B3 = beginInfo('{"v":2,"checksum":"blake3"}'); // 28 + 27 = 55 bytes: the group's header at byte 83
function group(entries: Array<[number, number, Buffer]>, algo: number): Buffer {
  const body = Buffer.concat([Buffer.from([algo]), ...entries.map(([o, l, sum]) => Buffer.concat([Buffer.from(u64(o) + u64(l), 'hex'), sum]))]);
  return Buffer.concat([hdr(entries[0]![0], body.length, 0x8054_5304), body]);
}
const data = (offset: number, payload: Buffer) => Buffer.concat([hdr(offset, payload.length, 0), payload]);

test('LINBIT: a BLAKE3 stream says so in its begin-info and its groups (algorithm 2), chains the sha256 digest, and decodes to what was sent', async () => {
  const a = Buffer.alloc(64 * KiB, 7);
  const b = Buffer.alloc(64 * KiB, 9);
  const msgs: LinbitMessage[] = [
    { type: 'begin', info: { volumeSizeBytes: 1024 * KiB, checksum: 'blake3' } },
    { type: 'data', offsetBytes: 0, data: a },
    { type: 'unmap', offsetBytes: 64 * KiB, lengthBytes: 64 * KiB },
    { type: 'data', offsetBytes: 128 * KiB, data: b },
    { type: 'end', dataRecords: 2, unmapRecords: 1 },
  ];
  const bytes = await encodeAll(msgs);
  const info = JSON.parse(bytes.subarray(56, 56 + Number(bytes.readBigUInt64BE(44))).toString('utf8')) as Record<string, unknown>;
  assert.equal(info.v, 2);
  assert.equal(info.checksum, 'blake3');
  const groupAt = 56 + Number(bytes.readBigUInt64BE(44));
  assert.equal(bytes.readUInt32BE(groupAt + 24), 0x8054_5304, 'a checksum group follows the begin-info');
  assert.equal(bytes[groupAt + 28], 2, 'its algorithm byte is 2 (blake3)');
  assert.deepEqual(bytes.subarray(groupAt + 28 + 17, groupAt + 28 + 49), b3(a), 'its first entry is the BLAKE3 of the first record');
  // The digest: the same sha256 chain as with sha256 checksums, fed the BLAKE3 values.
  const d = new StreamDigest();
  d.addData(0, a.length, b3(a));
  d.addUnmap(64 * KiB, 64 * KiB);
  d.addData(128 * KiB, b.length, b3(b));
  const out = await collect(decodeStream([bytes]));
  assert.deepEqual(out[0], { type: 'begin', info: { formatVersion: '1.1', volumeSizeBytes: 1024 * KiB, checksum: 'blake3' } });
  assert.deepEqual(out[1], { type: 'data', offsetBytes: 0, data: a, checksum: b3(a) });
  assert.deepEqual(out.at(-1), {
    type: 'end',
    records: 8,
    dataRecords: 2,
    unmapRecords: 1,
    dataBytes: 128 * KiB,
    unmapBytes: 64 * KiB,
    digest: d.state,
    skippedRecords: 0,
  });
});

test('LINBIT hostile: a corrupted payload under BLAKE3 is refused naming the payload byte, the record and the volume offset, before it is delivered', async () => {
  const sum = b3(P8);
  const d = new StreamDigest();
  d.addData(0x10000, 8, sum);
  const good = Buffer.concat([BEGIN, V2B3, group([[0x10000, 8, sum]], 2), data(0x10000, P8), digestRec(d.state), END, stats(6, 1, 0)]);
  assert.equal((await collect(decodeStream([good]))).length, 3, 'the intact stream decodes');
  const bad = Buffer.from(good);
  const payloadAt = 55 + 28 + 49 + 28 + 28; // BEGIN, begin-info, group (28 + 49), DATA header
  bad[payloadAt + 3]! ^= 0x01;
  const before = await expectBad(bad, {
    code: 'CHECKSUM_MISMATCH',
    pos: payloadAt,
    match: new RegExp(
      `record 4, DATA payload, volume offset 65536\\): blake3 of the 8-byte payload is ${b3(bad.subarray(payloadAt, payloadAt + 8)).toString('hex')}, but the DATA checksum group at byte 83 says ${sum.toString('hex')}`,
    ),
  });
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin'],
    'nothing of the corrupt record was delivered',
  );
  // A sha256 value in a BLAKE3 group is a mismatch too (the algorithm is the begin's, not guessed from the value).
  await expectBad(Buffer.concat([BEGIN, V2B3, group([[0x10000, 8, sha(P8)]], 2), data(0x10000, P8)]), {
    code: 'CHECKSUM_MISMATCH',
    pos: payloadAt,
    match: /blake3 of the 8-byte payload is .* but the DATA checksum group at byte 83 says/,
  });
});

test('LINBIT hostile: an algorithm byte this version does not know, or one other than the begin-info declared, is refused naming the field', async () => {
  await expectBad(Buffer.concat([BEGIN, V2B3, group([[0x10000, 8, b3(P8)]], 9), data(0x10000, P8)]), {
    pos: 111,
    match: /record 3, DATA checksum group algorithm\): unknown checksum algorithm 9 \(1 = sha256, 2 = blake3\)/,
  });
  await expectBad(Buffer.concat([BEGIN, V2B3, group([[0x10000, 8, sha(P8)]], 1), data(0x10000, P8)]), {
    pos: 111,
    match: /DATA checksum group algorithm\): checksum algorithm 1 \(sha256\), but begin-info declares blake3 \(2\)/,
  });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":2,"checksum":"blake4"}')]), {
    pos: 56,
    match: /begin-info checksum "blake4" is not supported \(sha256, blake3 or none\)/,
  });
  // The stream digest is the sha256 chain whatever the per-DATA checksum: algorithm 2 there is refused.
  const sum = b3(P8);
  const d = new StreamDigest();
  d.addData(0x10000, 8, sum);
  const digestWithAlgo2 = Buffer.concat([hdr(0, 33, 0x8054_5303), Buffer.from([2]), d.state]);
  await expectBad(Buffer.concat([BEGIN, V2B3, group([[0x10000, 8, sum]], 2), data(0x10000, P8), digestWithAlgo2, END, stats(6, 1, 0)]), {
    pos: 28 + 55 + 77 + 36 + 28, // the digest record's payload
    match: /stream digest algorithm\): unknown stream digest algorithm 2 \(1 = sha256, the chain of every stream\)/,
  });
});

test('LINBIT: a record delivered in pieces is verified with a running BLAKE3; a flipped byte in its last piece is refused before that piece', async () => {
  const big = Buffer.alloc(256 * KiB);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const bytes = await encodeAll([
    { type: 'begin', info: { volumeSizeBytes: 1024 * KiB, checksum: 'blake3' } },
    { type: 'data', offsetBytes: 0, data: big },
    { type: 'end', dataRecords: 1, unmapRecords: 0 },
  ]);
  const whole = await collect(decodeStream([bytes], { pieceBytes: 64 * KiB }));
  const pieces = whole.filter((m) => m.type === 'data');
  assert.equal(pieces.length, 4);
  assert.deepEqual(Buffer.concat(pieces.map((m) => (m as { data: Buffer }).data)), big);
  assert.deepEqual((pieces.at(-1) as { checksum?: Buffer }).checksum, b3(big));
  const bad = Buffer.from(bytes);
  bad[bytes.length - (28 + 24) - (28 + 33) - 5]! ^= 0x80; // in the payload's last piece: before the digest record and END_STREAM
  const seen: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const m of decodeStream([bad], { pieceBytes: 64 * KiB })) seen.push(m.type);
    })(),
    (e: unknown) => e instanceof ThinshipError && e.code === 'CHECKSUM_MISMATCH' && /volume offset 0\): blake3 of the 262144-byte payload/.test(e.message),
  );
  assert.deepEqual(seen, ['begin', 'data', 'data', 'data'], 'the last piece is held back');
});

// --- the receiver's record checks (both transports' gRPC path) ---------------------------------

const dz = new ChunkDecompressor();
function ctx(checksum: TransferBegin['checksum']) {
  return newDecodeContext(
    {
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
      checksum,
    },
    64 * KiB,
  );
}
const raw = (offsetBytes: number, payload: Buffer, checksum: Buffer): WireRecord => ({
  type: 'data',
  offsetBytes,
  lengthBytes: payload.length,
  payload,
  encoding: 'raw',
  checksum,
});
const zero = (offsetBytes: number, lengthBytes: number, checksum: Buffer): WireRecord => ({
  type: 'data',
  offsetBytes,
  lengthBytes,
  payload: Buffer.alloc(0),
  encoding: 'zero',
  checksum,
});

test('record checks under BLAKE3: records verify and chain as the sender did; the mark keeps the BLAKE3 of the last record for a resume', () => {
  const c = ctx('blake3');
  const a = Buffer.alloc(8 * KiB, 3);
  const r1 = decodeRecord(raw(0, a, b3(a)), c, dz);
  assert.deepEqual((r1.msg as { data: Buffer }).data, a);
  decodeRecord(zero(8 * KiB, 4 * KiB, b3(Buffer.alloc(4 * KiB))), c, dz);
  const sender = new StreamLedger(true);
  sender.addData(0, a.length, b3(a));
  sender.addData(8 * KiB, 4 * KiB, b3(Buffer.alloc(4 * KiB)));
  const end = decodeRecord({ type: 'end', records: 4, dataRecords: 2, unmapRecords: 0, dataBytes: 12 * KiB, unmapBytes: 0, digest: sender.digest }, c, dz);
  assert.deepEqual((end.msg as { digest: Buffer }).digest, sender.digest);
  assert.deepEqual(r1.mark.lastData, { offsetBytes: 0, lengthBytes: 8 * KiB, checksum: b3(a).toString('hex') });
});

test('record checks hostile under BLAKE3: a corrupted payload, a sha256 checksum, a wrong ZERO checksum and a short checksum are refused naming the offset', () => {
  const a = Buffer.alloc(8 * KiB, 3);
  const corrupted = Buffer.from(a);
  corrupted[100] = 4;
  throwsThinship(
    () => decodeRecord(raw(16 * KiB, corrupted, b3(a)), ctx('blake3'), dz),
    'CHECKSUM_MISMATCH',
    /^data record at volume offset 16384: checksum mismatch over 8192 bytes \(blake3: sender [0-9a-f]{16}…, data [0-9a-f]{16}…\); not written$/,
    16 * KiB,
  );
  throwsThinship(() => decodeRecord(raw(0, a, sha(a)), ctx('blake3'), dz), 'CHECKSUM_MISMATCH', /offset 0: checksum mismatch over 8192 bytes \(blake3/, 0);
  throwsThinship(
    () => decodeRecord(zero(0, 4 * KiB, sha(Buffer.alloc(4 * KiB))), ctx('blake3'), dz),
    'CHECKSUM_MISMATCH',
    /^data record at volume offset 0: checksum mismatch over 4096 zero bytes; not written \(blake3\)$/,
    0,
  );
  throwsThinship(
    () => decodeRecord(raw(0, a, b3(a).subarray(0, 16)), ctx('blake3'), dz),
    'BAD_STREAM',
    /^data record at volume offset 0: checksum must be 32 bytes \(blake3\), got 16$/,
    0,
  );
  // And the reverse: a BLAKE3 value in a sha256 transfer.
  throwsThinship(() => decodeRecord(raw(0, a, b3(a)), ctx('sha256'), dz), 'CHECKSUM_MISMATCH', /checksum mismatch over 8192 bytes \(sha256/, 0);
});

// --- gRPC ---------------------------------------------------------------------------------------

const pbBegin = (checksum: unknown): Begin__Output =>
  ({
    protocolVersion: 1,
    transferId: 't',
    target: '/x',
    mode: 'TRANSFER_MODE_FULL',
    volumeSizeBytes: 1024,
    blockSizeBytes: 0,
    sourceId: 's',
    baseId: '',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'COMPRESSION_NONE',
    checksum,
    force: false,
    grow: false,
  }) as unknown as Begin__Output;

test('gRPC Begin: CHECKSUM_ALGORITHM_BLAKE3 maps to blake3; an enum value this version does not know is refused naming the field and the known ones', () => {
  assert.equal(beginFromProto(pbBegin('CHECKSUM_ALGORITHM_BLAKE3')).checksum, 'blake3');
  assert.equal(beginFromProto(pbBegin('CHECKSUM_ALGORITHM_SHA256')).checksum, 'sha256');
  // protobufjs hands a receiver the number of an enum value its .proto does not have.
  throwsThinship(
    () => beginFromProto(pbBegin(9)),
    'BAD_STREAM',
    /^begin: checksum 9 is not one of CHECKSUM_ALGORITHM_NONE, CHECKSUM_ALGORITHM_SHA256, CHECKSUM_ALGORITHM_BLAKE3$/,
  );
  throwsThinship(
    () => beginFromProto(pbBegin('CHECKSUM_ALGORITHM_UNSPECIFIED')),
    'BAD_STREAM',
    /^begin: checksum CHECKSUM_ALGORITHM_UNSPECIFIED is not one of/,
  );
});

test("the sender recognises an older receiver's refusal of BLAKE3 (its exact words) and nothing else", () => {
  // What a receiver built before CHECKSUM_ALGORITHM_BLAKE3 answers a BLAKE3 Begin (rpc/server.ts pick() of that version).
  const old = new ThinshipError('BAD_STREAM', 'begin: checksum 3 is not one of CHECKSUM_ALGORITHM_NONE, CHECKSUM_ALGORITHM_SHA256');
  assert.equal(refusedChecksumAlgorithm(old), true);
  assert.equal(refusedChecksumAlgorithm(new ThinshipError('BAD_STREAM', 'begin: mode 7 is not one of TRANSFER_MODE_FULL, TRANSFER_MODE_INCREMENTAL')), false);
  assert.equal(refusedChecksumAlgorithm(new ThinshipError('CHECKSUM_MISMATCH', 'begin: checksum 3 is not one of X')), false, 'only a BAD_STREAM refusal');
  assert.equal(refusedChecksumAlgorithm(new ThinshipError('BAD_STREAM', 'data record at volume offset 0: checksum must be 32 bytes (blake3), got 16')), false);
});
