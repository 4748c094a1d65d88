/**
 * DATA checksum groups (begin-info v2, docs/stream-format.md §3): one optional
 * record per ≤ 32 MiB / ≤ 1024 DATA records, placed before the records it covers,
 * so a thin_recv at the other end prints few "skipping" lines and thinship's
 * receiver still refuses a corrupt record before delivering it. Also: the
 * previous version's one-record-per-DATA form still decodes to the same digest,
 * and DATA records delivered in pieces re-encode byte-exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import { encodeStream } from '../../src/stream/linbit/encode.js';
import { GROUP_ENCODER_DATA_BYTES, GROUP_MAX_DATA_BYTES, GROUP_MAX_RECORDS, GROUP_PREFETCH_BYTES } from '../../src/stream/linbit/format.js';
import { StreamDigest, dataChecksum } from '../../src/stream/digest.js';
import type { LinbitBeginInfo, LinbitMessage } from '../../src/stream/linbit/format.js';
import { beginInfo, collect, digestRec, expectBad, hdr, pieces, stats, u64 } from '../helpers/linbit-bytes.js';

const BEGIN = hdr(0, 0, 2);
const END = hdr(0, 24, 3);
const P8 = Buffer.from('0102030405060708', 'hex');
const SUM8 = createHash('sha256').update(P8).digest();

/** A checksum group: header offset = first entry's offset unless given; entries (offset, length, sum). */
function group(entries: Array<[number, number, Buffer]>, opts: { algo?: number; headerOffset?: number } = {}): Buffer {
  const body = Buffer.concat([Buffer.from([opts.algo ?? 1]), ...entries.map(([o, l, sum]) => Buffer.concat([Buffer.from(u64(o) + u64(l), 'hex'), sum]))]);
  return Buffer.concat([hdr(opts.headerOffset ?? entries[0]![0], body.length, 0x8054_5304), body]);
}
const data = (offset: number, payload: Buffer) => Buffer.concat([hdr(offset, payload.length, 0), payload]);

const V2 = beginInfo('{"v":2,"checksum":"sha256"}'); // 28 + 27 = 55 bytes
const V1 = beginInfo('{"v":1,"checksum":"sha256"}');

test('v2: a group covers the DATA records after it (UNMAPs may come between); digest as for v1', async () => {
  const d = new StreamDigest();
  d.addData(0x10000, 8, SUM8);
  d.addUnmap(0x20000, 0x10000);
  d.addData(0x30000, 8, SUM8);
  const bytes = Buffer.concat([
    BEGIN,
    V2,
    group([
      [0x10000, 8, SUM8],
      [0x30000, 8, SUM8],
    ]),
    data(0x10000, P8),
    hdr(0x20000, 0x10000, 1),
    data(0x30000, P8),
    digestRec(d.state),
    END,
    stats(8, 2, 1),
  ]);
  for (const size of [bytes.length, 1, 5]) {
    assert.deepEqual(
      await collect(decodeStream(pieces(bytes, size))),
      [
        { type: 'begin', info: { formatVersion: '1.1', checksum: 'sha256' } },
        { type: 'data', offsetBytes: 0x10000, data: P8, checksum: SUM8 },
        { type: 'unmap', offsetBytes: 0x20000, lengthBytes: 0x10000 },
        { type: 'data', offsetBytes: 0x30000, data: P8, checksum: SUM8 },
        { type: 'end', records: 8, dataRecords: 2, unmapRecords: 1, dataBytes: 16, unmapBytes: 0x10000, skippedRecords: 0, digest: d.state },
      ],
      `chunk size ${size}`,
    );
  }
  // The previous version's form (v1: a checksum record after each DATA) of the same records: same digest.
  const sumRec = (o: number) => Buffer.concat([hdr(o, 33, 0x8054_5302), Buffer.from([1]), SUM8]);
  const old = Buffer.concat([
    BEGIN,
    V1,
    data(0x10000, P8),
    sumRec(0x10000),
    hdr(0x20000, 0x10000, 1),
    data(0x30000, P8),
    sumRec(0x30000),
    digestRec(d.state),
    END,
    stats(9, 2, 1),
  ]);
  const oldMsgs = await collect(decodeStream(pieces(old, 3)));
  assert.deepEqual(oldMsgs.at(-1), {
    type: 'end',
    records: 9,
    dataRecords: 2,
    unmapRecords: 1,
    dataBytes: 16,
    unmapBytes: 0x10000,
    skippedRecords: 0,
    digest: d.state,
  });
});

test('group rules: entries must match the DATA records in order; no new group while one is open; none left open', async () => {
  const g = group([
    [0x10000, 8, SUM8],
    [0x30000, 8, SUM8],
  ]); // 28 + 97 bytes, at 83
  const after = 83 + g.length; // first DATA header
  await expectBad(Buffer.concat([BEGIN, V2, g, data(0x20000, P8)]), {
    pos: after,
    match:
      /record 4, header, volume offset 131072\): DATA record of 8 bytes, but the DATA checksum group at byte 83 lists offset 65536, length 8 as its entry 1 of 2/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, g, hdr(0x10000, 9, 0), P8, Buffer.from([9])]), {
    pos: after,
    match: /DATA record of 9 bytes, but the DATA checksum group at byte 83 lists offset 65536, length 8/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, g, data(0x10000, P8), group([[0x30000, 8, SUM8]])]), {
    pos: after + 36,
    match: /record 5, header\): a new DATA checksum group while 1 DATA records of the group at byte 83 are still due/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, g, data(0x10000, P8), END, stats(5, 1, 0)]), {
    pos: after + 36,
    match: /the DATA checksum group at byte 83 lists 2 DATA records, but only 1 came before END_STREAM/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, g, data(0x10000, P8), digestRec(Buffer.alloc(32))]), {
    pos: after + 36,
    match: /only 1 came before the stream digest record/,
  });
  // EOF with a group open: the end of input is named (1.1 would also lack END; the group is reported first).
  await expectBad(Buffer.concat([BEGIN, V2, g, data(0x10000, P8)]), {
    pos: after + 36,
    match: /end of input\): the DATA checksum group at byte 83 lists 2 DATA records, but only 1 came before the end of the stream/,
  });
});

test('group record: length 1 + 48 n (1 ≤ n ≤ 1024), algorithm 1, header offset = first entry, entries below 2^53', async () => {
  await expectBad(Buffer.concat([BEGIN, V2, hdr(0, 1 + 47, 0x8054_5304), Buffer.alloc(48)]), {
    pos: 83,
    match: /DATA checksum group length must be 1 \+ 48 × n with 1 ≤ n ≤ 1024, got 48/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, hdr(0, 1, 0x8054_5304), Buffer.alloc(1)]), { pos: 83, match: /got 1$/ });
  await expectBad(Buffer.concat([BEGIN, V2, hdr(0, 1 + 48 * 1025, 0x8054_5304)]), { pos: 83, match: /got 49201$/ });
  await expectBad(Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]], { algo: 2 })]), {
    pos: 111,
    match: /DATA checksum group algorithm\): checksum algorithm 2 \(blake3\), but begin-info declares sha256 \(1\)/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]], { algo: 7 })]), {
    pos: 111,
    match: /DATA checksum group algorithm\): unknown checksum algorithm 7 \(1 = sha256, 2 = blake3\)/,
  });
  await expectBad(Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]], { headerOffset: 0 })]), {
    pos: 83,
    match: /header offset\): DATA checksum group header names volume offset 0, but its first entry is at 65536/,
  });
  const huge = Buffer.concat([
    BEGIN,
    V2,
    hdr(0, 1 + 96, 0x8054_5304),
    Buffer.from([1]),
    Buffer.from(u64(0) + u64(8), 'hex'),
    SUM8,
    Buffer.from(u64(2n ** 53n) + u64(8), 'hex'),
    SUM8,
  ]);
  await expectBad(huge, { pos: 111 + 1 + 48, match: /DATA checksum group entry 2\): offset 9007199254740992 \+ length 8 exceeds 2\^53/ });
  // Truncated inside the group payload.
  await expectBad(Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]])]).subarray(0, 111 + 20), {
    pos: 111,
    match: /DATA checksum group payload\): truncated payload: the stream ends at byte 131, after 20 of 49 bytes/,
  });
});

test('declared layouts are enforced: v2 needs a group for every DATA and refuses per-DATA records; v1 refuses groups', async () => {
  await expectBad(Buffer.concat([BEGIN, V2, data(0x10000, P8)]), {
    pos: 83,
    match: /begin-info declares sha256 checksum groups but no DATA checksum group covers this DATA record/,
  });
  const sumRec = Buffer.concat([hdr(0x10000, 33, 0x8054_5302), Buffer.from([1]), SUM8]);
  await expectBad(Buffer.concat([BEGIN, V2, group([[0x10000, 8, SUM8]]), data(0x10000, P8), sumRec]), {
    pos: 83 + 77 + 36,
    match: /DATA checksum record in a stream whose begin-info \(v2\) declares DATA checksum groups/,
  });
  await expectBad(Buffer.concat([BEGIN, V1, group([[0x10000, 8, SUM8]])]), {
    pos: 83,
    match: /DATA checksum group in a stream whose begin-info \(v1\) promises one DATA checksum record after each DATA/,
  });
  // Without a declaration, a group is still checked when present.
  const bad = Buffer.concat([BEGIN, group([[0x10000, 8, Buffer.alloc(32)]]), data(0x10000, P8), END, stats(4, 1, 0)]);
  await expectBad(bad, {
    code: 'CHECKSUM_MISMATCH',
    pos: 28 + 77 + 28,
    match: /record 3, DATA payload, volume offset 65536\): sha256 of the 8-byte payload is [0-9a-f]{64}, but the DATA checksum group at byte 28 says 0{64}$/,
  });
});

test('a corrupt record is refused before it is delivered (whole records), or before its last piece (records in pieces)', async () => {
  const payload = Buffer.alloc(10_000, 0x5a);
  const sum = dataChecksum(payload, 'sha256');
  const good = Buffer.concat([
    BEGIN,
    V2,
    group([
      [0, 8, SUM8],
      [0x100000, payload.length, sum],
    ]),
    data(0, P8),
    data(0x100000, payload),
  ]);
  const at = good.length - payload.length; // payload start of record 5
  const bad = Buffer.from(good);
  bad[at + 9_999] = bad[at + 9_999]! ^ 1;
  const before = await expectBad(bad, {
    code: 'CHECKSUM_MISMATCH',
    pos: at,
    match:
      /record 5, DATA payload, volume offset 1048576\): sha256 of the 10000-byte payload is [0-9a-f]{64}, but the DATA checksum group at byte 83 says [0-9a-f]{64}$/,
  });
  assert.deepEqual(
    before.map((m) => m.type),
    ['begin', 'data'],
  );
  const inPieces = await expectBad(bad, {
    code: 'CHECKSUM_MISMATCH',
    pos: at,
    pieceBytes: 4096,
    match: /the record was longer than 4096 bytes, so its earlier pieces were delivered before the check$/,
  });
  assert.deepEqual(
    inPieces.map((m) => (m.type === 'data' ? m.data.length : m.type)),
    ['begin', 8, 4096, 4096],
  );
  // The same in the v1 form: the checksum record after a record in pieces is checked against the running hash.
  const v1 = Buffer.concat([BEGIN, V1, data(0x100000, payload), hdr(0x100000, 33, 0x8054_5302), Buffer.from([1]), sum]);
  const v1bad = Buffer.from(v1);
  v1bad[83 + 28 + 5] = v1bad[83 + 28 + 5]! ^ 1;
  await expectBad(v1bad, { code: 'CHECKSUM_MISMATCH', pos: 83 + 28, pieceBytes: 4096, match: /but the checksum record at byte 10111 says/ });
});

/**
 * Walks the headers of an encoded stream: DATA records, optional records by cmd,
 * and each group's record count and covered bytes. `payloads: false` when the
 * DATA payloads were left out (they are then not stepped over).
 */
function walk(bytes: Buffer, payloads = true): { data: number; optional: Map<number, number>; groups: Array<{ records: number; bytes: number }> } {
  const optional = new Map<number, number>();
  const groups: Array<{ records: number; bytes: number }> = [];
  let nData = 0;
  for (let at = 0; at < bytes.length;) {
    const length = Number(bytes.readBigUInt64BE(at + 16));
    const cmd = bytes.readUInt32BE(at + 24);
    at += 28;
    if (cmd === 0x8054_5304) {
      let covered = 0;
      for (let e = 0; e < (length - 1) / 48; e++) covered += Number(bytes.readBigUInt64BE(at + 1 + e * 48 + 8));
      groups.push({ records: (length - 1) / 48, bytes: covered });
    }
    if (cmd === 0) {
      nData++;
      if (payloads) at += length;
    } else if (cmd >= 0x8000_0000) {
      optional.set(cmd, (optional.get(cmd) ?? 0) + 1);
      at += length;
    } else if (cmd === 3) at += 24;
  }
  return { data: nData, optional, groups };
}

test('optional records per GiB: begin-info, one group per GROUP_ENCODER_DATA_BYTES (8 MiB), digest, for 1 MiB and for 64 KiB records, instead of one per DATA', async () => {
  const GiB = 2 ** 30;
  for (const recordBytes of [1 << 20, 64 << 10]) {
    const buf = Buffer.alloc(recordBytes, 0x42);
    const sum = dataChecksum(buf, 'sha256'); // supplied, as the sender's workers would: the encoder does not re-hash 1 GiB
    async function* msgs(): AsyncGenerator<LinbitMessage> {
      yield { type: 'begin', info: { formatVersion: '1.1', volumeSizeBytes: GiB, checksum: 'sha256' } };
      for (let o = 0; o < GiB; o += recordBytes) yield { type: 'data', offsetBytes: o, data: buf, checksum: sum };
      yield { type: 'end', records: 0, dataRecords: GiB / recordBytes, unmapRecords: 0 };
    }
    // Records of ≥ 4 KiB are yielded as the caller's own Buffer: leave those out and walk the rest (headers, small records).
    const parts: Buffer[] = [];
    for await (const p of encodeStream(msgs())) if (p !== buf) parts.push(p);
    const w = walk(Buffer.concat(parts), false);
    assert.equal(w.data, GiB / recordBytes);
    assert.deepEqual(
      [...w.optional.entries()].sort(),
      [
        [0x8054_5301, 1],
        [0x8054_5303, 1],
        [0x8054_5304, GiB / GROUP_ENCODER_DATA_BYTES],
      ],
      `records of ${recordBytes} bytes`,
    );
    for (const g of w.groups)
      assert.ok(g.bytes <= GROUP_ENCODER_DATA_BYTES && GROUP_ENCODER_DATA_BYTES <= GROUP_MAX_DATA_BYTES && g.records <= GROUP_MAX_RECORDS, JSON.stringify(g));
  }
});

test('a small stream: groups hold at most 1024 records, and an encoded stream with groups round-trips', async () => {
  const info: LinbitBeginInfo = { formatVersion: '1.1', checksum: 'sha256' };
  const msgs: LinbitMessage[] = [{ type: 'begin', info }];
  for (let i = 0; i < 2500; i++) msgs.push({ type: 'data', offsetBytes: i * 65536, data: P8 });
  msgs.push({ type: 'unmap', offsetBytes: 2500 * 65536, lengthBytes: 65536 });
  msgs.push({ type: 'end', records: 0, dataRecords: 2500, unmapRecords: 1 });
  const bytes = Buffer.concat(await collect(encodeStream(msgs)));
  const w = walk(bytes);
  assert.deepEqual(
    w.groups.map((g) => g.records),
    [GROUP_MAX_RECORDS, GROUP_MAX_RECORDS, 2500 - 2 * GROUP_MAX_RECORDS],
  );
  const back = await collect(decodeStream(pieces(bytes, 1000)));
  assert.equal(back.length, msgs.length);
  assert.deepEqual(back.at(-1), {
    type: 'end',
    records: 2 + 2500 + 1 + 3 + 2,
    dataRecords: 2500,
    unmapRecords: 1,
    dataBytes: 20_000,
    unmapBytes: 65536,
    skippedRecords: 0,
    digest: (back.at(-1) as { digest: Buffer }).digest,
  });
  // The digest is the documented chain over the same records, whatever the checksum layout.
  const d = new StreamDigest();
  for (let i = 0; i < 2500; i++) d.addData(i * 65536, 8, SUM8);
  d.addUnmap(2500 * 65536, 65536);
  assert.ok(d.matches((back.at(-1) as { digest: Buffer }).digest));
});

test('records decoded in pieces re-encode byte-exact without checksums, and are refused with them', async () => {
  const big = Buffer.alloc(9000);
  for (let i = 0; i < big.length; i++) big[i] = i & 0xff;
  const plain = Buffer.concat([BEGIN, data(0x10000, big), hdr(0x20000, 0x10000, 1), END, stats(4, 1, 1)]);
  const decoded = await collect(decodeStream(pieces(plain, 100), { pieceBytes: 4000 }));
  assert.equal(decoded.filter((m) => m.type === 'data').length, 3);
  const again = Buffer.concat(await collect(encodeStream(decoded, { extensions: false })));
  assert.ok(again.equals(plain));
  await assert.rejects(
    collect(encodeStream([{ type: 'begin', info: { formatVersion: '1.1' } }, ...decoded.slice(1)])),
    /a DATA record in pieces cannot be covered by a checksum group/,
  );
  // Pieces out of sequence are refused.
  const [b, p1, p2, p3, ...rest] = decoded;
  await assert.rejects(collect(encodeStream([b!, p1!, p3!, p2!, ...rest], { extensions: false })), /does not continue the record/);
  await assert.rejects(
    collect(encodeStream([b!, p1!, rest[0]!], { extensions: false })),
    /the DATA record being written in pieces still needs 5000 bytes at 69536/,
  );
});

test('encoder with checksums: holds at most a group plus the prefetch; source errors arrive in order; stopping early closes the source', async () => {
  const MiB = 1 << 20;
  const buf = Buffer.alloc(MiB, 1);
  const sum = dataChecksum(buf, 'sha256');
  let pulledBytes = 0;
  let writtenBytes = 0;
  let maxAheadBytes = 0;
  let closed = false;
  async function* source(records: number, failAt?: number): AsyncGenerator<LinbitMessage> {
    try {
      yield { type: 'begin', info: { formatVersion: '1.1', checksum: 'sha256' } };
      for (let i = 0; i < records; i++) {
        if (i === failAt) throw new Error(`source failed at record ${i}`);
        pulledBytes += MiB;
        maxAheadBytes = Math.max(maxAheadBytes, pulledBytes - writtenBytes);
        yield { type: 'data', offsetBytes: i * MiB, data: buf, checksum: sum };
      }
      yield { type: 'end', records: 0, dataRecords: records, unmapRecords: 0 };
    } finally {
      closed = true;
    }
  }
  for await (const part of encodeStream(source(200))) if (part === buf) writtenBytes += MiB;
  assert.equal(writtenBytes, 200 * MiB);
  // What was read but not yet written: the group being filled or written, and the messages pulled ahead meanwhile.
  assert.ok(maxAheadBytes <= GROUP_ENCODER_DATA_BYTES + GROUP_PREFETCH_BYTES + 2 * MiB, `${maxAheadBytes / MiB} MiB ahead`);
  assert.ok(maxAheadBytes > GROUP_ENCODER_DATA_BYTES, 'the next group is pulled while one is written');

  closed = false;
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const part of encodeStream(source(100, 70))) if (part === buf) seen.push(1);
    })(),
    /source failed at record 70/,
  );
  assert.equal(seen.length, 64, 'the two complete groups before the error were written');
  assert.ok(closed);

  closed = false;
  for await (const part of encodeStream(source(100))) if (part === buf) break;
  assert.ok(closed, 'the source was closed when the consumer stopped');
});
