/**
 * The LINBIT codec's rules: every malformed stream is refused with BAD_STREAM or
 * CHECKSUM_MISMATCH naming the byte position (checked under several chunkings),
 * checksums and the stream digest catch tampering, and random message sequences
 * survive encode -> random re-chunking -> decode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ThinshipError } from '../../src/errors.js';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import { encodeStream } from '../../src/stream/linbit/encode.js';
import { HEADER_BYTES, DATA_PIECE_BYTES } from '../../src/stream/linbit/format.js';
import { StreamDigest, canonicalRecord, dataChecksum } from '../../src/stream/digest.js';
import type { LinbitBeginInfo, LinbitMessage } from '../../src/stream/linbit/format.js';
import { prng } from '../helpers/prng.js';
import { beginInfo, collect, digestRec, encodeAll, expectBad, header, M10, M11, pieces, stats, u64 } from '../helpers/linbit-bytes.js';

const BEGIN = header(M11, 0, 0, 2);
const END = header(M11, 0, 24, 3);
const P8 = Buffer.from('0102030405060708', 'hex');

// A valid 1.1 stream and its layout: BEGIN @0, DATA @28 (payload 56..63), UNMAP @64, END @92 (stats 120..143).
const valid11 = Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, header(M11, 0x20000, 0x10000, 1), END, stats(4, 1, 1)]);

test('the reference valid stream decodes (sanity for the cases below)', async () => {
  const msgs = await collect(decodeStream([valid11]));
  assert.equal(msgs.length, 4);
  assert.deepEqual(msgs[3], { type: 'end', records: 4, dataRecords: 1, unmapRecords: 1, dataBytes: 8, unmapBytes: 0x10000, skippedRecords: 0 });
});

test('empty input is a format 1.0 stream without records (thin_send 1.0 writes it; thin_recv accepts it)', async () => {
  for (const input of [[], [Buffer.alloc(0)], [Buffer.alloc(0), Buffer.alloc(0)]]) {
    assert.deepEqual(await collect(decodeStream(input)), [
      { type: 'begin', info: { formatVersion: '1.0' } },
      { type: 'end', records: 0, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, skippedRecords: 0 },
    ]);
  }
  // And it is what the encoder writes for a 1.0 stream without records: the round trip holds.
  const empty10 = await encodeAll([
    { type: 'begin', info: { formatVersion: '1.0' } },
    { type: 'end', records: 0, dataRecords: 0, unmapRecords: 0 },
  ]);
  assert.equal(empty10.length, 0);
});

test('magic: previous format, unknown, and a change of magic mid-stream', async () => {
  const old = Buffer.from('e85bc5636cc72a05' + u64(0) + '00000008' + '00000000', 'hex'); // 24-byte pre-1.0 header
  await expectBad(old, { pos: 0, match: /previous thin_send format.*not supported/ });
  await expectBad(header('1122334455667788', 0, 0, 2), { pos: 0, match: /unknown magic 0x1122334455667788/ });
  await expectBad(Buffer.concat([BEGIN, header(M10, 0, 8, 0), P8]), { pos: 28, match: /record 2, header magic\): magic 0xCA7F00D5DE7EC7ED differs/ });
  await expectBad(Buffer.concat([header(M10, 0, 8, 0), P8, header(M11, 0, 8, 0), P8]), { pos: 36, match: /differs from the format 1.0 magic/ });
  // Both 32-bit halves count: a magic with one half right is unknown (first record) or a change (later).
  for (const m of [M11, M10, 'e85bc5636cc72a05']) {
    for (const half of [m.slice(0, 8) + '00000000', '00000000' + m.slice(8)]) {
      await expectBad(header(half, 0, 0, 2), {
        pos: 0,
        match: new RegExp(
          `record 1, header magic\\): unknown magic 0x${BigInt('0x' + half)
            .toString(16)
            .toUpperCase()} \\(expected`,
        ),
      });
    }
  }
  for (const half of [M11.slice(0, 8) + '00000000', '00000000' + M11.slice(8)]) {
    await expectBad(Buffer.concat([BEGIN, header(half, 0, 8, 0), P8]), {
      pos: 28,
      match: /record 2, header magic\): magic 0x[0-9A-F]+ differs from the format 1.1 magic/,
    });
  }
});

test('BEGIN_STREAM: must come first, with offset 0 and length 0, and only once', async () => {
  await expectBad(Buffer.concat([header(M11, 0, 8, 0), P8]), { pos: 0, match: /must start with BEGIN_STREAM/ });
  await expectBad(Buffer.concat([header(M11, 1, 0, 2), END, stats(2, 0, 0)]), { pos: 0, match: /offset 0 and length 0, got offset 1 length 0/ });
  await expectBad(Buffer.concat([header(M11, 0, 4, 2), END, stats(2, 0, 0)]), { pos: 0, match: /offset 0 and length 0/ });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 8, 0), P8, BEGIN]), { pos: 64, match: /record 3, header\): BEGIN_STREAM again/ });
});

test('unknown mandatory command names byte, record and command', async () => {
  const bytes = Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, header(M11, 0, 0, 7)]);
  const before = await expectBad(bytes, { pos: 64, match: /^bad stream at byte 64 \(record 3, header\): unknown mandatory command 7$/ });
  // The DATA before it was complete and is delivered; nothing after.
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin', 'data'],
  );
});

test('END_STREAM: offset 0, length exactly 24, counts checked field by field', async () => {
  const body = Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, header(M11, 0x20000, 0x10000, 1)]);
  await expectBad(Buffer.concat([body, header(M11, 0, 25, 3), stats(4, 1, 1), Buffer.alloc(1)]), {
    pos: 92,
    match: /record 4, header\): END_STREAM must have offset 0 and length 24, got offset 0 length 25/,
  });
  await expectBad(Buffer.concat([body, header(M11, 1, 24, 3), stats(4, 1, 1)]), { pos: 92, match: /got offset 1 length 24/ });
  const before = await expectBad(Buffer.concat([body, END, stats(5, 1, 1)]), {
    pos: 120,
    match: /END_STREAM n_chunks\): END_STREAM says n_chunks = 5 but the stream had 4/,
  });
  assert.ok(!before.some((m) => m.type === 'end'));
  await expectBad(Buffer.concat([body, END, stats(4, 2, 1)]), { pos: 128, match: /n_data = 2 but the stream had 1/ });
  await expectBad(Buffer.concat([body, END, stats(4, 1, 0)]), { pos: 136, match: /n_unmap = 0 but the stream had 1/ });
  await expectBad(Buffer.concat([body, END, stats(4, 1, 1).subarray(0, 20)]), {
    pos: 120,
    match: /END_STREAM payload\): truncated payload: the stream ends at byte 140, after 20 of 24 bytes/,
  });
});

test('nothing may follow END_STREAM, and end is not delivered then', async () => {
  const before = await expectBad(Buffer.concat([valid11, Buffer.from([0])]), { pos: 144, match: /trailing bytes after END_STREAM/ });
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin', 'data', 'unmap'],
  );
  await expectBad(Buffer.concat([valid11, valid11]), { pos: 144, match: /trailing bytes/ });
});

test('truncation: short header, short payload, EOF without END', async () => {
  await expectBad(valid11.subarray(0, 64 + 10), { pos: 64, match: /record 3, header\): truncated header: the stream ends after 10 of 28 bytes/ });
  await expectBad(valid11.subarray(0, 64 + 5), { pos: 64, match: /truncated header: the stream ends after 5 of 28 bytes/ });
  await expectBad(valid11.subarray(0, 59), {
    pos: 56,
    match: /record 2, DATA payload, volume offset 65536\): truncated payload: the stream ends at byte 59, after 3 of 8 bytes/,
  });
  const before = await expectBad(valid11.subarray(0, 92), { pos: 92, match: /ends after 3 records without END_STREAM/ });
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin', 'data', 'unmap'],
  );
  await expectBad(BEGIN, { pos: 28, match: /ends after 1 records without END_STREAM/ });
});

test('DATA length: no limit by default (thin_send writes one record per mapped run); 2^53, the volume size and an explicit limit are refused from the header', async () => {
  await expectBad(Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8]), {
    pos: 44,
    maxDataBytes: 4,
    match: /record 2, header length, volume offset 65536\): DATA length 8 exceeds the limit of 4 bytes/,
  });
  // Exactly at an explicit limit is fine.
  const ok = await collect(decodeStream([Buffer.concat([BEGIN, header(M11, 0, 8, 0), P8, END, stats(3, 1, 0)])], { maxDataBytes: 8 }));
  assert.equal(ok.length, 3);
  // 1 TiB announced without a limit: accepted from its header, streamed in pieces, so what fails is the missing payload (no 1 TiB allocation).
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 2n ** 40n, 0), Buffer.alloc(100)]), {
    pos: 56,
    match: /record 2, DATA payload, volume offset 0\): truncated payload: the stream ends at byte 156, after 100 of 1099511627776 bytes$/,
  });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 2n ** 53n, 0)]), { pos: 44, match: /header length\): DATA length 9007199254740992 exceeds 2\^53/ });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 2n ** 64n - 1n, 0)]), { pos: 44, match: /DATA length 18446744073709551615 exceeds 2\^53/ });
  // With a volume size in begin-info, a record past the volume's end is refused before its payload.
  const bi = beginInfo('{"v":1,"volumeSizeBytes":1048576}');
  await expectBad(Buffer.concat([BEGIN, bi, header(M11, 1048576 - 4, 8, 0), P8]), {
    pos: 28 + bi.length + 16,
    match: /volume offset 1048572\): DATA \[1048572, \+8\) goes past the end of the volume \(begin-info volumeSizeBytes 1048576\)/,
  });
});

test('DATA records longer than pieceBytes arrive as consecutive pieces, under any chunking', async () => {
  const big = Buffer.alloc(10_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 13) & 0xff;
  const bytes = Buffer.concat([BEGIN, header(M11, 0x10000, big.length, 0), big, header(M11, 0x20000, 8, 0), P8, END, stats(4, 2, 0)]);
  for (const size of [bytes.length, 1, 7, 4096]) {
    const msgs = await collect(decodeStream(pieces(bytes, size), { pieceBytes: 3000 }));
    assert.deepEqual(
      msgs.map((m) => m.type),
      ['begin', 'data', 'data', 'data', 'data', 'data', 'end'],
      `chunk size ${size}`,
    );
    const parts = msgs.filter((m) => m.type === 'data').slice(0, 4);
    assert.deepEqual(
      parts.map((m) => [m.offsetBytes, m.data.length, m.piece]),
      [0, 3000, 6000, 9000].map((o, i) => [0x10000 + o, i < 3 ? 3000 : 1000, { recordOffsetBytes: 0x10000, recordLengthBytes: 10_000, last: i === 3 }]),
    );
    assert.ok(Buffer.concat(parts.map((m) => m.data)).equals(big));
    // A record of exactly pieceBytes or less arrives whole.
    assert.deepEqual(msgs[5], { type: 'data', offsetBytes: 0x20000, data: P8 });
    assert.deepEqual(msgs[6], { type: 'end', records: 4, dataRecords: 2, unmapRecords: 0, dataBytes: 10_008, unmapBytes: 0, skippedRecords: 0 });
  }
  // Cut inside the payload: the record's payload start, its volume offset and where the stream ended are named.
  const cut = bytes.subarray(0, 56 + 7000);
  for (const size of [cut.length, 7]) {
    const seen: LinbitMessage[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of decodeStream(pieces(cut, size), { pieceBytes: 3000 })) seen.push(m);
      })(),
      /bad stream at byte 56 \(record 2, DATA payload, volume offset 65536\): truncated payload: the stream ends at byte 7056, after 7000 of 10000 bytes$/,
    );
    assert.deepEqual(
      seen.map((m) => (m.type === 'data' ? m.data.length : m.type)),
      ['begin', 3000, 3000],
    );
  }
});

test('offsets and lengths beyond 2^53 are refused', async () => {
  await expectBad(Buffer.concat([BEGIN, header(M11, 0xffff_ffff_ffff_ffffn, 8, 0), P8]), {
    pos: 36,
    match: /header offset\): DATA offset 18446744073709551615 exceeds 2\^53/,
  });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 2n ** 60n, 1)]), { pos: 44, match: /UNMAP length 1152921504606846976 exceeds 2\^53/ });
  await expectBad(Buffer.concat([BEGIN, header(M11, 2n ** 52n, 2n ** 52n, 1)]), { pos: 28, match: /UNMAP end .* exceeds 2\^53/ });
});

test('format 1.0 carries only DATA and UNMAP', async () => {
  await expectBad(header(M10, 0, 0, 2), { pos: 0, match: /BEGIN_STREAM is not allowed in a format 1.0 stream/ });
  await expectBad(Buffer.concat([header(M10, 0, 8, 0), P8, header(M10, 0, 3, 0x8000_0007), Buffer.alloc(3)]), {
    pos: 36,
    match: /record 2, header\): optional 0x80000007 is not allowed in a format 1.0 stream/,
  });
  await expectBad(Buffer.concat([header(M10, 0, 8, 0), P8, header(M10, 0, 0, 9)]), { pos: 36, match: /command 9 is not allowed/ });
});

test('unknown optional records are skipped even when split and large; truncated ones are errors', async () => {
  const blob = Buffer.alloc(100_000, 0xee);
  const bytes = Buffer.concat([BEGIN, header(M11, 0, blob.length, 0x8123_4567), blob, END, stats(3, 0, 0)]);
  for (const size of [bytes.length, 997]) {
    const msgs = await collect(decodeStream(pieces(bytes, size)));
    assert.deepEqual(msgs.at(-1), { type: 'end', records: 3, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, skippedRecords: 1 });
  }
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 10, 0x8123_4567), Buffer.alloc(4)]), {
    pos: 56,
    match: /optional 0x81234567 payload\): truncated payload: the stream ends at byte 60, after 4 of 10/,
  });
});

// --- thinship's optional records ---------------------------------------------------------------

function checksumRec(offset: number, sum: Buffer, algo = 1, length = 33): Buffer {
  return Buffer.concat([header(M11, offset, length, 0x8054_5302), Buffer.from([algo]), sum]);
}
const SUM8 = createHash('sha256').update(P8).digest();

test('begin-info: must directly follow BEGIN, be v1 or v2 JSON with valid fields', async () => {
  const bi = beginInfo('{"v":1}');
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 8, 0), P8, bi]), { pos: 64, match: /begin-info record must directly follow BEGIN_STREAM/ });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":1,')]), { pos: 56, match: /record 2, begin-info payload\): begin-info is not valid JSON/ });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":3}')]), { pos: 56, match: /begin-info version 3 is not supported \(expected 1 or 2\)/ });
  await expectBad(Buffer.concat([BEGIN, beginInfo('[1]')]), { pos: 56, match: /not a JSON object/ });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":1,"volumeSizeBytes":-1}')]), {
    pos: 56,
    match: /volumeSizeBytes must be a non-negative integer, got -1/,
  });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":1,"incremental":"yes"}')]), { pos: 56, match: /incremental must be true or false/ });
  await expectBad(Buffer.concat([BEGIN, beginInfo('{"v":1,"checksum":"md5"}')]), { pos: 56, match: /checksum "md5" is not supported/ });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0, 70_000, 0x8054_5301)]), { pos: 28, match: /begin-info length 70000 exceeds 65536/ });
  // Unknown keys are ignored (added compatibly within v1).
  const ok = await collect(decodeStream([Buffer.concat([BEGIN, beginInfo('{"v":1,"sourceId":"a","future":{"x":1}}'), END, stats(3, 0, 0)])]));
  assert.deepEqual(ok[0], { type: 'begin', info: { formatVersion: '1.1', sourceId: 'a' } });
});

test('DATA checksum record: placement, length, offset, algorithm', async () => {
  await expectBad(Buffer.concat([BEGIN, checksumRec(0, SUM8)]), { pos: 28, match: /must directly follow its DATA record/ });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, header(M11, 0x20000, 0x10000, 1), checksumRec(0x10000, SUM8)]), {
    pos: 92,
    match: /must directly follow its DATA record/,
  });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, checksumRec(0x10000, SUM8.subarray(0, 31), 1, 32)]), {
    pos: 64,
    match: /checksum record length must be 33, got 32/,
  });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, checksumRec(0x20000, SUM8)]), {
    pos: 64,
    match: /names volume offset 131072, but the DATA record before it is at 65536/,
  });
  await expectBad(Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, checksumRec(0x10000, SUM8, 7)]), {
    pos: 92,
    match: /unknown checksum algorithm 7 \(1 = sha256, 2 = blake3\)/,
  });
  // Without begin-info a checksum record is optional, and verified when present.
  const ok = await collect(decodeStream([Buffer.concat([BEGIN, header(M11, 0x10000, 8, 0), P8, checksumRec(0x10000, SUM8), END, stats(4, 1, 0)])]));
  assert.deepEqual(ok[1], { type: 'data', offsetBytes: 0x10000, data: P8, checksum: SUM8 });
});

test('declared sha256: every DATA needs its checksum record and END needs the digest record', async () => {
  const bi = beginInfo('{"v":1,"checksum":"sha256"}'); // 28 + 27 bytes: DATA header at 83
  assert.equal(bi.length, 55);
  await expectBad(Buffer.concat([BEGIN, bi, header(M11, 0x10000, 8, 0), P8, header(M11, 0x20000, 0x10000, 1)]), {
    pos: 83,
    match: /record 3, DATA, volume offset 65536\): begin-info declares sha256 checksums but this DATA record is followed by UNMAP at byte 119/,
  });
  await expectBad(Buffer.concat([BEGIN, bi, header(M11, 0x10000, 8, 0), P8]), { pos: 83, match: /followed by the end of the stream/ });
  const d = new StreamDigest();
  d.addData(0x10000, 8, SUM8);
  const body = Buffer.concat([BEGIN, bi, header(M11, 0x10000, 8, 0), P8, checksumRec(0x10000, SUM8)]); // 180 bytes
  await expectBad(Buffer.concat([body, END, stats(5, 1, 0)]), { pos: 180, match: /END_STREAM is not preceded by the stream digest record/ });
  await expectBad(Buffer.concat([body, digestRec(d.state), header(M11, 0, 0, 1), END, stats(7, 1, 1)]), {
    pos: 241,
    match: /UNMAP after the stream digest record/,
  });
  const ok = await collect(decodeStream([Buffer.concat([body, digestRec(d.state), END, stats(6, 1, 0)])]));
  assert.deepEqual(ok.at(-1), { type: 'end', records: 6, dataRecords: 1, unmapRecords: 0, dataBytes: 8, unmapBytes: 0, skippedRecords: 0, digest: d.state });
  // The digest record's own header and algorithm (record 5 at byte 180, its payload at 208).
  const digestPayload = Buffer.concat([Buffer.from([1]), d.state]);
  await expectBad(Buffer.concat([body, header(M11, 1, 33, 0x8054_5303), digestPayload, END, stats(6, 1, 0)]), {
    pos: 180,
    match: /record 5, header\): stream digest record must have offset 0 and length 33, got offset 1 length 33$/,
  });
  await expectBad(Buffer.concat([body, header(M11, 0, 34, 0x8054_5303), digestPayload, Buffer.alloc(1), END, stats(6, 1, 0)]), {
    pos: 180,
    match: /stream digest record must have offset 0 and length 33, got offset 0 length 34$/,
  });
  await expectBad(Buffer.concat([body, header(M11, 0, 33, 0x8054_5303), Buffer.from([2]), d.state, END, stats(6, 1, 0)]), {
    pos: 208,
    match: /^bad stream at byte 208 \(record 5, stream digest algorithm\): unknown stream digest algorithm 2 \(1 = sha256, the chain of every stream\)$/,
  });
  // A digest record without a declaration cannot be checked: refused.
  await expectBad(Buffer.concat([BEGIN, digestRec(d.state), END, stats(3, 0, 0)]), {
    pos: 28,
    match: /stream digest record needs a begin-info that declares checksums \(sha256 or blake3\)/,
  });
});

const infoWithSums: LinbitBeginInfo = { formatVersion: '1.1', volumeSizeBytes: 8 << 20, blockSizeBytes: 65536, sourceId: 'src', checksum: 'sha256' };

test('tampered DATA payload: CHECKSUM_MISMATCH naming the payload byte and volume offset; the data is not delivered', async () => {
  const payload = Buffer.alloc(70_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
  const bytes = await encodeAll([
    { type: 'begin', info: infoWithSums },
    { type: 'data', offsetBytes: 0, data: P8 },
    { type: 'data', offsetBytes: 3 << 20, data: payload },
    { type: 'end', records: 0, dataRecords: 2, unmapRecords: 0 },
  ]);
  const at = bytes.indexOf(payload);
  assert.ok(at > 0);
  const tampered = Buffer.from(bytes);
  tampered[at + 12345] = tampered[at + 12345]! ^ 0x01;
  const group = bytes.indexOf(header(M11, 0, 1 + 2 * 48, 0x8054_5304));
  assert.ok(group > 0 && group < at, 'one group, before both DATA records');
  const before = await expectBad(tampered, {
    code: 'CHECKSUM_MISMATCH',
    pos: at,
    match: new RegExp(
      `^checksum mismatch at byte ${at} \\(record 5, DATA payload, volume offset 3145728\\): sha256 of the 70000-byte payload is [0-9a-f]{64}, but the DATA checksum group at byte ${group} says [0-9a-f]{64}$`,
    ),
  });
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin', 'data'],
  );
  // The untampered stream decodes.
  const ok = await collect(decodeStream(pieces(bytes, 4096)));
  assert.equal(ok.length, 4);
});

test('stream digest catches what per-DATA checksums cannot (an UNMAP changed) and a tampered digest', async () => {
  const bytes = await encodeAll([
    { type: 'begin', info: infoWithSums },
    { type: 'data', offsetBytes: 0x10000, data: P8 },
    { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x10000 },
    { type: 'end', records: 0, dataRecords: 1, unmapRecords: 1 },
  ]);
  const unmapHeader = header(M11, 0x20000, 0x10000, 1);
  const u = bytes.indexOf(unmapHeader);
  assert.ok(u > 0);
  const digestHeader = header(M11, 0, 33, 0x8054_5303);
  const dpos = bytes.indexOf(digestHeader);
  assert.equal(dpos, u + HEADER_BYTES);
  const changed = Buffer.from(bytes);
  changed.writeUInt32BE(0x20000, u + 20); // UNMAP length 64 KiB -> 128 KiB
  await expectBad(changed, {
    code: 'CHECKSUM_MISMATCH',
    pos: dpos + 29,
    match: /record 6, stream digest\): the stream digest over 1 DATA and 1 UNMAP records is [0-9a-f]{64}, but the record says/,
  });
  const forged = Buffer.from(bytes);
  forged[dpos + 40] = forged[dpos + 40]! ^ 0x80;
  await expectBad(forged, { code: 'CHECKSUM_MISMATCH', pos: dpos + 29, match: /stream digest/ });
});

// --- encoder rules ----------------------------------------------------------------------------

test('encoder: 1.0 cannot carry extensions; message order is enforced; counts and digest checked', async () => {
  const msgs = (info: LinbitBeginInfo): LinbitMessage[] => [
    { type: 'begin', info },
    { type: 'end', records: 0, dataRecords: 0, unmapRecords: 0 },
  ];
  assert.throws(
    () => encodeStream(msgs({ formatVersion: '1.0' }), { format: '1.0', extensions: true }),
    (e: unknown) => e instanceof ThinshipError && e.code === 'USAGE',
  );
  await assert.rejects(encodeAll(msgs({ formatVersion: '1.0' }), { extensions: true }), (e: unknown) => e instanceof ThinshipError && e.code === 'USAGE');
  await assert.rejects(encodeAll(msgs({ formatVersion: '1.1' }), { format: '1.0' }), /begin says format 1.1 but the encoder was asked for 1.0/);
  await assert.rejects(encodeAll([{ type: 'unmap', offsetBytes: 0, lengthBytes: 1 }]), /message 1 \(unmap\): the first message must be begin/);
  await assert.rejects(encodeAll([{ type: 'begin', info: { formatVersion: '1.1' } }]), /ended without an end message/);
  await assert.rejects(
    encodeAll([...msgs({ formatVersion: '1.1' }), { type: 'unmap', offsetBytes: 0, lengthBytes: 1 }]),
    /message 3 \(unmap\): message after end/,
  );
  await assert.rejects(
    encodeAll([
      { type: 'begin', info: { formatVersion: '1.1' } },
      { type: 'begin', info: { formatVersion: '1.1' } },
    ]),
    /a second begin/,
  );
  await assert.rejects(
    encodeAll([
      { type: 'begin', info: { formatVersion: '1.1' } },
      { type: 'unmap', offsetBytes: -1, lengthBytes: 1 },
    ]),
    /offsetBytes must be a non-negative safe integer, got -1/,
  );
  await assert.rejects(
    encodeAll([
      { type: 'begin', info: { formatVersion: '1.1' } },
      { type: 'end', records: 0, dataRecords: 1, unmapRecords: 0 },
    ]),
    /end counts data 1 \/ unmap 0, but 0 \/ 0 were sent/,
  );
  await assert.rejects(
    encodeAll([
      { type: 'begin', info: infoWithSums },
      { type: 'end', records: 0, dataRecords: 0, unmapRecords: 0, digest: Buffer.alloc(32, 1) },
    ]),
    (e: unknown) => e instanceof ThinshipError && e.code === 'CHECKSUM_MISMATCH',
  );
  await assert.rejects(
    encodeAll([
      { type: 'begin', info: infoWithSums },
      { type: 'data', offsetBytes: 0, data: P8, checksum: Buffer.alloc(31) },
      { type: 'end', records: 0, dataRecords: 1, unmapRecords: 0 },
    ]),
    /checksum must be 32 bytes, got 31/,
  );
});

test('encoder: a checksum the sender supplies is written as given (and so caught by the receiver when wrong)', async () => {
  const wrong = Buffer.alloc(32, 0xab);
  const bytes = await encodeAll([
    { type: 'begin', info: infoWithSums },
    { type: 'data', offsetBytes: 0, data: P8, checksum: wrong },
    { type: 'end', records: 0, dataRecords: 1, unmapRecords: 0 },
  ]);
  assert.ok(bytes.includes(wrong));
  await assert.rejects(
    collect(decodeStream([bytes])),
    (e: unknown) => e instanceof ThinshipError && e.code === 'CHECKSUM_MISMATCH' && /volume offset 0\)/.test(e.message),
  );
});

test('encoder batches small records into few buffers', async () => {
  const msgs: LinbitMessage[] = [{ type: 'begin', info: { formatVersion: '1.1' } }];
  for (let i = 0; i < 10_000; i++) msgs.push({ type: 'unmap', offsetBytes: i * 65536, lengthBytes: 65536 });
  msgs.push({ type: 'end', records: 0, dataRecords: 0, unmapRecords: 10_000 });
  const parts = await collect(encodeStream(msgs, { extensions: false }));
  const total = parts.reduce((n, p) => n + p.length, 0);
  assert.equal(total, 28 * 10_002 + 24);
  assert.ok(parts.length <= Math.ceil(total / (32 * 1024)) + 1, `${parts.length} buffers for ${total} bytes`);
  const back = await collect(decodeStream(parts));
  assert.deepEqual(back.at(-1), {
    type: 'end',
    records: 10_002,
    dataRecords: 0,
    unmapRecords: 10_000,
    dataBytes: 0,
    unmapBytes: 10_000 * 65536,
    skippedRecords: 0,
  });
});

test('stopping early closes the input stream', async () => {
  const input = Readable.from(pieces(valid11, 10));
  for await (const m of decodeStream(input)) {
    assert.equal(m.type, 'begin');
    break;
  }
  assert.ok(input.destroyed);
});

// --- digest -----------------------------------------------------------------------------------

test('stream digest: canonical layout, chain, and resuming from a stored state', () => {
  const sum = dataChecksum(P8, 'sha256');
  const canon = canonicalRecord('data', 0x1_0000_0002, 8, sum);
  assert.equal(canon.toString('hex'), '00' + '0000000100000002' + '0000000000000008' + sum.toString('hex'));
  assert.equal(canonicalRecord('unmap', 1, 2).toString('hex'), '01' + u64(1) + u64(2) + '00'.repeat(32));
  const whole = new StreamDigest();
  const first = new StreamDigest();
  const ops: Array<[number, number, Buffer | undefined]> = [
    [0, 8, sum],
    [65536, 65536, undefined],
    [131072, 8, sum],
  ];
  ops.forEach(([o, l, s], i) => {
    for (const d of i === 0 ? [whole, first] : [whole]) {
      if (s) d.addData(o, l, s);
      else d.addUnmap(o, l);
    }
  });
  // Resume after the first record from its stored state.
  const resumed = new StreamDigest(first.state);
  resumed.addUnmap(65536, 65536);
  resumed.addData(131072, 8, sum);
  assert.ok(whole.matches(resumed.state));
  assert.notDeepEqual(whole.state, first.state);
  // Order matters.
  const swapped = new StreamDigest();
  swapped.addUnmap(65536, 65536);
  swapped.addData(0, 8, sum);
  swapped.addData(131072, 8, sum);
  assert.ok(!whole.matches(swapped.state));
});

// --- round trip property --------------------------------------------------------------------

/** Joins the pieces of each DATA record back into one data message (with the checksum the last piece carries). */
function joinPieces(msgs: LinbitMessage[]): LinbitMessage[] {
  const out: LinbitMessage[] = [];
  let parts: Buffer[] = [];
  for (const m of msgs) {
    if (m.type !== 'data' || m.piece === undefined) {
      out.push(m);
      continue;
    }
    parts.push(m.data);
    if (!m.piece.last) continue;
    const whole: LinbitMessage = { type: 'data', offsetBytes: m.piece.recordOffsetBytes, data: Buffer.concat(parts) };
    assert.equal(whole.data.length, m.piece.recordLengthBytes);
    if (m.checksum !== undefined) whole.checksum = m.checksum;
    out.push(whole);
    parts = [];
  }
  return out;
}

test('round trip: random messages -> encode -> random chunks (1 B .. 64 KiB) -> decode -> equal', async () => {
  const baseSeed = Number(process.env.LINBIT_SEED ?? 20240601);
  for (let iter = 0; iter < 150; iter++) {
    const seed = baseSeed + iter;
    const rnd = prng(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const format = rnd() < 0.25 ? '1.0' : '1.1';
    const extensions = format === '1.1' && rnd() < 0.6;
    const info: LinbitBeginInfo = { formatVersion: format };
    if (extensions) {
      info.volumeSizeBytes = 2 ** 52 + int(2 ** 40); // above every offset + length below
      info.blockSizeBytes = 65536;
      info.sourceId = `vg/snap-${seed}`;
      if (rnd() < 0.5) Object.assign(info, { incremental: true, baseId: `vg/base-${seed}` });
      info.checksum = rnd() < 0.8 ? 'sha256' : 'none';
    }
    const msgs: LinbitMessage[] = [{ type: 'begin', info }];
    let nData = 0;
    let nUnmap = 0;
    const count = int(12);
    for (let i = 0; i < count; i++) {
      const offsetBytes = int(2 ** 20) * 65536 + (rnd() < 0.1 ? 2 ** 50 : 0);
      if (rnd() < 0.65) {
        const sizes = [0, 1, 27, 28, 29, 4095, 4096, 65536, 100_000];
        const len = rnd() < 0.5 ? sizes[int(sizes.length)]! : int(200_000);
        const data = Buffer.allocUnsafe(len);
        for (let j = 0; j < len; j++) data[j] = (j * 7 + seed) & 0xff;
        msgs.push({ type: 'data', offsetBytes, data });
        nData++;
      } else {
        msgs.push({ type: 'unmap', offsetBytes, lengthBytes: int(2 ** 36) });
        nUnmap++;
      }
    }
    msgs.push({ type: 'end', records: 0, dataRecords: nData, unmapRecords: nUnmap });

    const stream = await encodeAll(msgs, { format, extensions });
    if (stream.length === 0) assert.equal(format, '1.0', 'only a 1.0 stream without records is zero bytes');
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length;) {
      const size = 1 + (rnd() < 0.5 ? int(64) : int(65536));
      chunks.push(stream.subarray(at, at + size));
      at += size;
    }
    // Records over pieceBytes arrive in pieces; joined back, they must equal the messages sent.
    const pieceBytes = rnd() < 0.5 ? DATA_PIECE_BYTES : 1 + int(150_000);
    const got = joinPieces(await collect(decodeStream(chunks, { pieceBytes })));

    const sums = extensions && info.checksum === 'sha256';
    const digest = new StreamDigest();
    let dataBytes = 0;
    let unmapBytes = 0;
    const want: LinbitMessage[] = msgs.map((m): LinbitMessage => {
      switch (m.type) {
        case 'begin':
          return { type: 'begin', info: extensions ? { ...info, checksum: info.checksum ?? 'sha256' } : { formatVersion: format } };
        case 'data': {
          dataBytes += m.data.length;
          if (!sums) return m;
          const checksum = dataChecksum(m.data, 'sha256');
          digest.addData(m.offsetBytes, m.data.length, checksum);
          return { ...m, checksum };
        }
        case 'unmap':
          unmapBytes += m.lengthBytes;
          if (sums) digest.addUnmap(m.offsetBytes, m.lengthBytes);
          return m;
        case 'end': {
          // begin-info; with checksums one group (these streams are far below a group's limits) and the digest.
          const optional = (extensions ? 1 : 0) + (sums ? (nData > 0 ? 1 : 0) + 1 : 0);
          const records = format === '1.1' ? 2 + nData + nUnmap + optional : nData + nUnmap;
          const end: LinbitMessage = { type: 'end', records, dataRecords: nData, unmapRecords: nUnmap, dataBytes, unmapBytes, skippedRecords: 0 };
          if (sums) end.digest = digest.state;
          return end;
        }
      }
    });
    assert.deepEqual(got, want, `seed ${seed} (format ${format}, extensions ${extensions}, ${chunks.length} chunks, pieces of ${pieceBytes})`);

    // Without extensions the stream re-encodes to the same bytes.
    if (!extensions) assert.ok((await encodeAll(got, { format, extensions: false })).equals(stream), `seed ${seed}: re-encode`);
  }
});
