/**
 * Every refusal of the LINBIT decoder (stream/linbit/decode.ts) says where, in
 * its message and in its details: the byte, the record, the field, the volume
 * offset, and for a checksum mismatch the byte of the checksum it was compared
 * with. The other decoder tests match what is wrong; StrykerJS found the
 * field names and details unchecked. Also the one refusal no other test
 * reaches: a v1 checksum record after a record delivered in pieces, in a
 * stream that declared no sha256 (its pieces were not hashed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ThinshipError } from '../../src/errors.js';
import { decodeStream, type DecodeOptions } from '../../src/stream/linbit/decode.js';
import { dataChecksum } from '../../src/stream/digest.js';
import { beginInfo, collect, digestRec, hdr, header, M10, stats, u64 } from '../helpers/linbit-bytes.js';

const BEGIN = hdr(0, 0, 2);
const END = hdr(0, 24, 3);
const P8 = Buffer.from('0102030405060708', 'hex');
const SUM8 = dataChecksum(P8, 'sha256');
const V1 = beginInfo('{"v":1,"checksum":"sha256"}'); // 28 + 27 bytes
const V2 = beginInfo('{"v":2,"checksum":"sha256"}');
const CMD_SUM = 0x8054_5302;
const CMD_GROUP = 0x8054_5304;
const data = (offset: number | bigint, payload: Buffer) => Buffer.concat([hdr(offset, payload.length, 0), payload]);
const sumRec = (offset: number, algo: number, sum: Buffer) => Buffer.concat([hdr(offset, 33, CMD_SUM), Buffer.from([algo]), sum]);
function group(entries: Array<[number | bigint, number | bigint, Buffer]>, o: { algo?: number; headerOffset?: number } = {}): Buffer {
  const body = Buffer.concat([Buffer.from([o.algo ?? 1]), ...entries.map(([off, len, s]) => Buffer.concat([Buffer.from(u64(off) + u64(len), 'hex'), s]))]);
  return Buffer.concat([hdr(o.headerOffset ?? entries[0]![0], body.length, CMD_GROUP), body]);
}

interface Where {
  code?: 'BAD_STREAM' | 'CHECKSUM_MISMATCH';
  pos: number;
  record?: number;
  field: string;
  volumeOffset?: number;
  checksumAt?: number;
}

/** Decodes `bytes` (whole): refused with the message "… at byte P (record R, field, volume offset V): `what`" and the same details. */
async function refusedAt(bytes: Buffer, w: Where, what: RegExp, opts: DecodeOptions = {}): Promise<void> {
  const e = await collect(decodeStream([bytes], opts)).then(
    () => assert.fail('expected a refusal'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof ThinshipError, String(e));
  const code = w.code ?? 'BAD_STREAM';
  assert.equal(e.code, code, e.message);
  const ctx = [w.record === undefined ? undefined : `record ${w.record}`, w.field, w.volumeOffset === undefined ? undefined : `volume offset ${w.volumeOffset}`]
    .filter((x) => x !== undefined)
    .join(', ');
  const prefix = `${code === 'CHECKSUM_MISMATCH' ? 'checksum mismatch' : 'bad stream'} at byte ${w.pos} (${ctx}): `;
  assert.ok(e.message.startsWith(prefix), `${JSON.stringify(e.message)} should start with ${JSON.stringify(prefix)}`);
  assert.match(e.message.slice(prefix.length), what);
  const details: Record<string, unknown> = { streamPosition: w.pos, record: w.record, field: w.field, volumeOffsetBytes: w.volumeOffset };
  if (w.checksumAt !== undefined) details.checksumRecordPosition = w.checksumAt;
  assert.deepEqual(e.details, details);
}

test('header refusals: magic, truncation, offsets and lengths past 2^53, the data limit and the volume size, each at its field', async () => {
  await refusedAt(Buffer.concat([BEGIN, header(M10, 0, 8, 0)]), { pos: 28, record: 2, field: 'header magic' }, /^magic 0xCA7F00D5DE7EC7ED differs/);
  await refusedAt(
    Buffer.concat([BEGIN, hdr(0, 8, 0).subarray(0, 10)]),
    { pos: 28, record: 2, field: 'header' },
    /^truncated header: the stream ends after 10 of 28/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(2n ** 60n, 8, 0)]),
    { pos: 36, record: 2, field: 'header offset' },
    /^DATA offset 1152921504606846976 exceeds 2\^53$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(0, 2n ** 60n, 1)]),
    { pos: 44, record: 2, field: 'header length' },
    /^UNMAP length 1152921504606846976 exceeds 2\^53$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(4096, 9, 0)]),
    { pos: 44, record: 2, field: 'header length', volumeOffset: 4096 },
    /^DATA length 9 exceeds the limit of 8 bytes$/,
    { maxDataBytes: 8 },
  );
  await refusedAt(
    Buffer.concat([BEGIN, beginInfo('{"v":1,"volumeSizeBytes":8192}'), hdr(4096, 4097, 0)]),
    { pos: 28 + 28 + 30 + 16, record: 3, field: 'header length', volumeOffset: 4096 },
    /^DATA \[4096, \+4097\) goes past the end of the volume \(begin-info volumeSizeBytes 8192\)$/,
  );
  const half = 2 ** 52;
  await refusedAt(
    Buffer.concat([BEGIN, hdr(half, half, 0)]),
    { pos: 28, record: 2, field: 'header', volumeOffset: half },
    /^DATA end 4503599627370496 \+ 4503599627370496 exceeds 2\^53$/,
  );
  await refusedAt(Buffer.concat([BEGIN, hdr(half, half, 1)]), { pos: 28, record: 2, field: 'header', volumeOffset: half }, /^UNMAP end .* exceeds 2\^53$/);
});

test('payload refusals: a truncated DATA, optional or begin-info payload, an invalid begin-info, the end of input without END_STREAM', async () => {
  await refusedAt(
    Buffer.concat([BEGIN, hdr(4096, 8, 0), P8.subarray(0, 3)]),
    { pos: 56, record: 2, field: 'DATA payload', volumeOffset: 4096 },
    /^truncated payload: the stream ends at byte 59, after 3 of 8 bytes$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(4096, 16, 0), P8]),
    { pos: 56, record: 2, field: 'DATA payload', volumeOffset: 4096 },
    /^truncated payload: the stream ends at byte 64, after 8 of 16 bytes$/,
    { pieceBytes: 4 },
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(0, 100, 0x8000_1234), P8]),
    { pos: 56, record: 2, field: 'optional 0x80001234 payload' },
    /^truncated payload: the stream ends at byte 64, after 8 of 100 bytes$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(0, 2n ** 60n, 0x8000_1234)]),
    { pos: 44, record: 2, field: 'header length' },
    /^optional 0x80001234 record length .* exceeds 2\^53$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, hdr(0, 10, 0x8054_5301), Buffer.from('{"v":1')]),
    { pos: 56, record: 2, field: 'begin-info payload' },
    /^truncated payload/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, beginInfo('{"v":1,"incremental":1}')]),
    { pos: 56, record: 2, field: 'begin-info payload' },
    /^begin-info incremental must be true or false, got 1$/,
  );
  await refusedAt(Buffer.concat([BEGIN, data(0, P8)]), { pos: 64, record: 2, field: 'end of input' }, /^the stream ends after 2 records without END_STREAM/);
});

test('checksum records (v1): a missing one names the DATA record; a wrong one names the payload and the checksum record; one after a record in pieces without a sha256 declaration cannot be checked', async () => {
  // v1: DATA @83, then UNMAP where its checksum record should be
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), hdr(0x20000, 4096, 1)]),
    { pos: 83, record: 3, field: 'DATA', volumeOffset: 0x10000 },
    /^begin-info declares sha256 checksums but this DATA record is followed by UNMAP at byte 119, not by its checksum record$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), sumRec(0x10000, 1, Buffer.alloc(32, 9))]),
    { code: 'CHECKSUM_MISMATCH', pos: 111, record: 3, field: 'DATA payload', volumeOffset: 0x10000, checksumAt: 119 },
    /^sha256 of the 8-byte payload is [0-9a-f]{64}, but the checksum record at byte 119 says (09){32}$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), sumRec(0x10000, 3, SUM8)]),
    { pos: 147, record: 4, field: 'DATA checksum algorithm' },
    /^unknown checksum algorithm 3 \(1 = sha256, 2 = blake3\)$/,
  );
  // A known algorithm, but not the one the begin-info declared.
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), sumRec(0x10000, 2, SUM8)]),
    { pos: 147, record: 4, field: 'DATA checksum algorithm' },
    /^checksum algorithm 2 \(blake3\), but begin-info declares sha256 \(1\)$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), sumRec(0x10008, 1, SUM8)]),
    { pos: 119, record: 4, field: 'header offset' },
    /^DATA checksum record names volume offset 65544, but the DATA record before it is at 65536$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V1, data(0x10000, P8), hdr(0x10000, 34, CMD_SUM)]),
    { pos: 119, record: 4, field: 'header' },
    /^DATA checksum record length must be 33, got 34$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V1, sumRec(0, 1, SUM8)]),
    { pos: 83, record: 3, field: 'header' },
    /^a DATA checksum record must directly follow its DATA record$/,
  );
  // No begin-info (so no sha256 declared): a 16-byte record in 4-byte pieces, then a checksum record for it.
  const big = Buffer.alloc(16, 7);
  await refusedAt(
    Buffer.concat([BEGIN, data(0x10000, big), sumRec(0x10000, 1, dataChecksum(big, 'sha256'))]),
    { pos: 72, record: 3, field: 'header' },
    /^a DATA checksum record after a 16-byte DATA record \(delivered in pieces\) in a stream whose begin-info does not declare checksums: it cannot be checked$/,
    { pieceBytes: 4 },
  );
  // The same record whole: checked against its bytes, and delivered with its checksum.
  const whole = await collect(decodeStream([Buffer.concat([BEGIN, data(0x10000, big), sumRec(0x10000, 1, dataChecksum(big, 'sha256')), END, stats(4, 1, 0)])]));
  assert.deepEqual(whole[1], { type: 'data', offsetBytes: 0x10000, data: big, checksum: dataChecksum(big, 'sha256') });
});

test('checksum groups (v2): a wrong payload names the group; algorithm, entries, header offset and a missing group each at their field', async () => {
  const G = 83; // the group's header
  const oneEntry = 28 + 1 + 48;
  await refusedAt(
    Buffer.concat([BEGIN, V2, group([[0x10000, 8, Buffer.alloc(32, 9)]]), data(0x10000, P8)]),
    { code: 'CHECKSUM_MISMATCH', pos: G + oneEntry + 28, record: 4, field: 'DATA payload', volumeOffset: 0x10000, checksumAt: G },
    /^sha256 of the 8-byte payload is [0-9a-f]{64}, but the DATA checksum group at byte 83 says (09){32}$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]], { algo: 3 })]),
    { pos: G + 28, record: 3, field: 'DATA checksum group algorithm' },
    /^unknown checksum algorithm 3 \(1 = sha256, 2 = blake3\)$/,
  );
  await refusedAt(
    Buffer.concat([
      BEGIN,
      V2,
      group([
        [0x10000, 8, SUM8],
        [2n ** 53n, 8, SUM8],
      ]),
    ]),
    { pos: G + 28 + 1 + 48, record: 3, field: 'DATA checksum group entry 2' },
    /^offset 9007199254740992 \+ length 8 exceeds 2\^53$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]], { headerOffset: 0 })]),
    { pos: G, record: 3, field: 'header offset' },
    /^DATA checksum group header names volume offset 0, but its first entry is at 65536$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V2, data(0x10000, P8)]),
    { pos: G, record: 3, field: 'header', volumeOffset: 0x10000 },
    /^begin-info declares sha256 checksum groups but no DATA checksum group covers this DATA record$/,
  );
  await refusedAt(
    Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]]), data(0x10008, P8)]),
    { pos: G + oneEntry, record: 4, field: 'header', volumeOffset: 0x10008 },
    /^DATA record of 8 bytes, but the DATA checksum group at byte 83 lists offset 65536, length 8 as its entry 1 of 1$/,
  );
});

test('the stream digest and END_STREAM: algorithm, digest, counts and trailing bytes, each at its byte and field', async () => {
  const body = Buffer.concat([BEGIN, V1, data(0x10000, P8), sumRec(0x10000, 1, SUM8)]); // 4 records, 180 bytes
  const D = body.length;
  await refusedAt(
    Buffer.concat([body, hdr(0, 33, 0x8054_5303), Buffer.from([2]), Buffer.alloc(32)]),
    { pos: D + 28, record: 5, field: 'stream digest algorithm' },
    /^unknown stream digest algorithm 2 \(1 = sha256, the chain of every stream\)$/,
  );
  await refusedAt(
    Buffer.concat([body, digestRec(Buffer.alloc(32, 4))]),
    { code: 'CHECKSUM_MISMATCH', pos: D + 29, record: 5, field: 'stream digest' },
    /^the stream digest over 1 DATA and 0 UNMAP records is [0-9a-f]{64}, but the record says (04){32}$/,
  );
  const plain = Buffer.concat([BEGIN, data(0x10000, P8), hdr(0x20000, 4096, 1), END]); // END @92, stats @120
  await refusedAt(
    Buffer.concat([plain, stats(5, 1, 1)]),
    { pos: 120, record: 4, field: 'END_STREAM n_chunks' },
    /^END_STREAM says n_chunks = 5 but the stream had 4$/,
  );
  await refusedAt(
    Buffer.concat([plain, stats(4, 2, 1)]),
    { pos: 128, record: 4, field: 'END_STREAM n_data' },
    /^END_STREAM says n_data = 2 but the stream had 1$/,
  );
  await refusedAt(
    Buffer.concat([plain, stats(4, 1, 0)]),
    { pos: 136, record: 4, field: 'END_STREAM n_unmap' },
    /^END_STREAM says n_unmap = 0 but the stream had 1$/,
  );
  await refusedAt(
    Buffer.concat([plain, stats(4, 1, 1), Buffer.from([0])]),
    { pos: 144, record: 4, field: 'after END_STREAM' },
    /^trailing bytes after END_STREAM$/,
  );
});

test('offsets and lengths up to 2^53 - 1 pass (only the record kinds that use a field check it)', async () => {
  const MAX = Number.MAX_SAFE_INTEGER;
  const bytes = Buffer.concat([BEGIN, hdr(MAX - 8191, 4096, 1), hdr(MAX, 0, 1), hdr(2n ** 60n, 8, 0x8000_1234), P8, END, stats(5, 0, 2)]);
  const got = await collect(decodeStream([bytes]));
  assert.deepEqual(got.slice(1), [
    { type: 'unmap', offsetBytes: MAX - 8191, lengthBytes: 4096 },
    { type: 'unmap', offsetBytes: MAX, lengthBytes: 0 },
    { type: 'end', records: 5, dataRecords: 0, unmapRecords: 2, dataBytes: 0, unmapBytes: 4096, skippedRecords: 1 },
  ]);
});
