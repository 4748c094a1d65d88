/**
 * The LINBIT encoder (stream/linbit/encode.ts) in the corners StrykerJS found
 * untested: every refusal names the message, the field and the limit; the
 * format and begin-info an encoder writes by default and for checksum "none",
 * compared byte for byte with streams built by hand; where checksum groups
 * are cut (GROUP_ENCODER_DATA_BYTES of payload, 4096 held UNMAPs); how much it reads ahead;
 * records in pieces; sources without return(); and how output is cut into
 * Buffers (small payloads copied into ≈32 KiB batches, big ones passed through).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ThinshipError } from '../../src/errors.js';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import { encodeStream, type EncodeOptions } from '../../src/stream/linbit/encode.js';
import {
  BEGIN_INFO_MAX_BYTES,
  GROUP_ENCODER_DATA_BYTES,
  GROUP_PREFETCH_BYTES,
  type LinbitBeginInfo,
  type LinbitMessage,
} from '../../src/stream/linbit/format.js';
import { beginInfo, collect, encodeAll, header, hdr, M10, stats } from '../helpers/linbit-bytes.js';

const KiB = 1024;
const MiB = KiB * KiB;
const P8 = Buffer.from('0102030405060708', 'hex');
const BEGIN = hdr(0, 0, 2);
const END = hdr(0, 24, 3);
const CMD_GROUP = 0x8054_5304;

const begin = (info: LinbitBeginInfo = { formatVersion: '1.1' }): LinbitMessage => ({ type: 'begin', info });
const end = (dataRecords: number, unmapRecords: number): LinbitMessage => ({ type: 'end', dataRecords, unmapRecords });
const unmap = (offsetBytes: number, lengthBytes: number): LinbitMessage => ({ type: 'unmap', offsetBytes, lengthBytes });

/** `p` rejects with a ThinshipError of `code` whose message is exactly `message`, naming message `index` in its details. */
async function refused(p: Promise<unknown>, code: string, message: string, index: number): Promise<void> {
  const e = await p.then(
    () => assert.fail(`expected: ${message}`),
    (err: unknown) => err,
  );
  assert.ok(e instanceof ThinshipError, String(e));
  assert.equal(e.message, message);
  assert.equal(e.code, code);
  assert.deepEqual(e.details, { messageIndex: index });
}

test('encoder refusals name the message, the field and what is wrong (without extensions: the encoder alone checks)', async () => {
  const plain: EncodeOptions = { extensions: false };
  const MAX = Number.MAX_SAFE_INTEGER;
  const cases: [LinbitMessage, string][] = [
    [unmap(-1, 1), 'cannot encode message 2 (unmap): offsetBytes must be a non-negative safe integer, got -1'],
    [unmap(0, 1.5), 'cannot encode message 2 (unmap): lengthBytes must be a non-negative safe integer, got 1.5'],
    [unmap(2 ** 53, 1), 'cannot encode message 2 (unmap): offsetBytes must be a non-negative safe integer, got 9007199254740992'],
    [
      { type: 'data', offsetBytes: '4096' as unknown as number, data: P8 },
      'cannot encode message 2 (data): offsetBytes must be a non-negative safe integer, got 4096',
    ],
    [unmap(MAX, 8), `cannot encode message 2 (unmap): offsetBytes + lengthBytes ${MAX} + 8 exceeds 2^53`],
    [{ type: 'data', offsetBytes: MAX, data: P8 }, `cannot encode message 2 (data): offsetBytes + length ${MAX} + 8 exceeds 2^53`],
    [{ type: 'data', offsetBytes: 0, data: 'abc' as unknown as Buffer }, 'cannot encode message 2 (data): data must be a Buffer'],
    [{ type: 'zero' } as unknown as LinbitMessage, 'cannot encode message 2 (zero): unknown message type zero'],
  ];
  for (const [m, message] of cases) await refused(encodeAll([begin(), m, end(0, 0)], plain), 'BAD_STREAM', message, 2);
  await refused(encodeAll([begin({ formatVersion: '2.0' as '1.1' })]), 'BAD_STREAM', 'cannot encode message 1 (begin): unknown formatVersion 2.0', 1);
  await refused(encodeAll([begin({ checksum: 'md5' as 'sha256' })]), 'BAD_STREAM', 'cannot encode message 1 (begin): unknown checksum md5', 1);
  await refused(encodeAll([]), 'BAD_STREAM', 'cannot encode message 1 (none): the messages ended without an end message', 1);
  await refused(encodeAll([begin(), unmap(0, 4096)]), 'BAD_STREAM', 'cannot encode message 3 (none): the messages ended without an end message', 3);
  const wrong = Buffer.alloc(32, 1);
  const e = await encodeAll([begin({ checksum: 'sha256' }), { type: 'end', dataRecords: 0, unmapRecords: 0, digest: wrong }]).then(
    () => assert.fail('a wrong digest must be refused'),
    (err: ThinshipError) => err,
  );
  assert.equal(e.code, 'CHECKSUM_MISMATCH');
  assert.equal(e.message, `cannot encode message 2 (end): end.digest ${'01'.repeat(32)} differs from the computed stream digest ${'00'.repeat(32)}`);
  const usage = 'format 1.0 has only DATA and UNMAP records: it cannot carry extensions (begin-info, checksums, digest)';
  assert.throws(
    () => encodeStream([], { format: '1.0', extensions: true }),
    (x: unknown) => x instanceof ThinshipError && x.code === 'USAGE' && x.message === usage,
  );
  await assert.rejects(encodeAll([begin({ formatVersion: '1.0' }), end(0, 0)], { extensions: true }), (x: unknown) => {
    assert.ok(x instanceof ThinshipError && x.code === 'USAGE');
    assert.equal(x.message, usage);
    return true;
  });
});

test('format: the begin says it, else the option, else 1.1; an option that agrees with the begin is fine, with or without extensions', async () => {
  const body = [unmap(0x10000, 0x10000), end(0, 1)];
  const v11 = Buffer.concat([BEGIN, hdr(0x10000, 0x10000, 1), END, stats(3, 0, 1)]);
  assert.ok((await encodeAll([begin({}), ...body], { extensions: false })).equals(v11), 'no format anywhere: 1.1');
  assert.ok((await encodeAll([begin({}), ...body], { format: '1.0' })).equals(header(M10, 0x10000, 0x10000, 1)), 'the option: 1.0');
  assert.ok((await encodeAll([begin({ formatVersion: '1.1' }), ...body], { format: '1.1', extensions: false })).equals(v11));
  // Extensions asked for explicitly with 1.1 (the USAGE refusal is for 1.0 only): begin-info v2, digest.
  const withExt = await encodeAll([begin({ formatVersion: '1.1' }), ...body], { format: '1.1', extensions: true });
  assert.ok(withExt.subarray(0, 28 + 55).equals(Buffer.concat([BEGIN, beginInfo('{"v":2,"checksum":"sha256"}')])));
  assert.equal(withExt.length, 28 + 55 + 28 + 28 + 33 + 28 + 24);
});

test('checksum "none" with extensions: begin-info v1 and nothing else of thinship (no groups, no digest), byte for byte', async () => {
  const info = { formatVersion: '1.1', volumeSizeBytes: 0x40000, sourceId: 's1', checksum: 'none' } as const;
  const got = await encodeAll([begin(info), { type: 'data', offsetBytes: 0x10000, data: P8 }, unmap(0x20000, 0x10000), end(1, 1)]);
  const want = Buffer.concat([
    BEGIN,
    beginInfo('{"v":1,"volumeSizeBytes":262144,"sourceId":"s1","checksum":"none"}'),
    hdr(0x10000, 8, 0),
    P8,
    hdr(0x20000, 0x10000, 1),
    END,
    stats(5, 1, 1),
  ]);
  assert.ok(got.equals(want), got.toString('hex'));
  const back = await collect(decodeStream([got]));
  assert.deepEqual(back[0], { type: 'begin', info });
});

test('begin-info: exactly 64 KiB is written; one byte more is refused', async () => {
  const base = JSON.stringify({ v: 1, sourceName: '', checksum: 'none' }).length;
  const info = (n: number) => ({ formatVersion: '1.1', sourceName: 'n'.repeat(n), checksum: 'none' }) as const;
  const got = await encodeAll([begin(info(BEGIN_INFO_MAX_BYTES - base)), end(0, 0)]);
  const json = JSON.stringify({ v: 1, sourceName: 'n'.repeat(BEGIN_INFO_MAX_BYTES - base), checksum: 'none' });
  assert.equal(json.length, BEGIN_INFO_MAX_BYTES);
  assert.ok(got.equals(Buffer.concat([BEGIN, beginInfo(json), END, stats(3, 0, 0)])));
  await assert.rejects(encodeAll([begin(info(BEGIN_INFO_MAX_BYTES - base + 1)), end(0, 0)]), (e: unknown) => {
    assert.ok(e instanceof ThinshipError && e.code === 'BAD_STREAM');
    assert.equal(e.message, `begin-info is ${BEGIN_INFO_MAX_BYTES + 1} bytes, more than the ${BEGIN_INFO_MAX_BYTES} allowed`);
    return true;
  });
});

test('output Buffers: payloads under 4 KiB are copied into batches, from 4 KiB on passed through; a batch is yielded once it reaches 32 KiB', async () => {
  const small = Buffer.alloc(4095, 0x11);
  const big = Buffer.alloc(4096, 0x22);
  const parts = await collect(
    encodeStream([begin(), { type: 'data', offsetBytes: 0, data: small }, { type: 'data', offsetBytes: 8192, data: big }, end(2, 0)], { extensions: false }),
  );
  assert.ok(!parts.includes(small), 'a small payload is copied');
  assert.ok(parts.includes(big), 'a 4 KiB payload is passed through as it is');
  assert.ok(Buffer.concat(parts).equals(Buffer.concat([BEGIN, hdr(0, 4095, 0), small, hdr(8192, 4096, 0), big, END, stats(4, 2, 0)])));

  // BEGIN (28) + 20 records of 28 + 1609 bytes = exactly 32 KiB: yielded there, before the next record.
  const msgs: LinbitMessage[] = [begin()];
  for (let i = 0; i < 21; i++) msgs.push({ type: 'data', offsetBytes: i * 4096, data: Buffer.alloc(1609, i) });
  msgs.push(end(21, 0));
  const batches = await collect(encodeStream(msgs, { extensions: false }));
  assert.deepEqual(
    batches.map((b) => b.length),
    [32 * KiB, 28 + 1609 + 28 + 24],
  );

  // 10 000 UNMAPs (280 KiB of headers): batches of 32 KiB to 32 KiB + one header, never one Buffer per record, never all in one.
  const many: LinbitMessage[] = [begin()];
  for (let i = 0; i < 10_000; i++) many.push(unmap(i * 65536, 65536));
  many.push(end(0, 10_000));
  const out = await collect(encodeStream(many, { extensions: false }));
  const total = out.reduce((n, b) => n + b.length, 0);
  assert.equal(total, 28 * 10_002 + 24);
  for (const b of out.slice(0, -1)) assert.ok(b.length >= 32 * KiB && b.length < 32 * KiB + 28, `batch of ${b.length} bytes`);
  assert.ok(out.length <= Math.ceil(total / (32 * KiB)));

  // With checksums: a group's small records are batched the same way (not held in one Buffer with the group).
  const grouped: LinbitMessage[] = [begin({ formatVersion: '1.1', checksum: 'sha256' })];
  for (let i = 0; i < 1024; i++) grouped.push({ type: 'data', offsetBytes: i * 8192, data: Buffer.alloc(4095, i) });
  grouped.push(end(1024, 0));
  const groupRecordBytes = 28 + 1 + 48 * 1024;
  for (const b of await collect(encodeStream(grouped))) assert.ok(b.length < 32 * KiB + groupRecordBytes + 28 + 4095, `batch of ${b.length} bytes`);
});

/** The records of an encoded 1.1 stream: command, offset, length, and a group's entries (offset, length). */
function walk(bytes: Buffer): Array<{ cmd: number; offset: number; length: number; entries?: Array<[number, number]> }> {
  const out: Array<{ cmd: number; offset: number; length: number; entries?: Array<[number, number]> }> = [];
  for (let at = 0; at < bytes.length;) {
    const offset = Number(bytes.readBigUInt64BE(at + 8));
    const length = Number(bytes.readBigUInt64BE(at + 16));
    const cmd = bytes.readUInt32BE(at + 24);
    at += 28;
    const r: (typeof out)[number] = { cmd, offset, length };
    if (cmd === CMD_GROUP) {
      r.entries = [];
      for (let e = 1; e < length; e += 48) r.entries.push([Number(bytes.readBigUInt64BE(at + e)), Number(bytes.readBigUInt64BE(at + e + 8))]);
    }
    out.push(r);
    if (cmd === 0 || cmd >= 0x8000_0000) at += length;
    else if (cmd === 3) at += 24;
  }
  return out;
}

/** The groups of `msgs` encoded with sha256, as their entries' [offset, length]; the stream also decodes back to msgs' records. */
async function groupsOf(msgs: LinbitMessage[]): Promise<Array<Array<[number, number]>>> {
  const bytes = await encodeAll([begin({ formatVersion: '1.1', checksum: 'sha256' }), ...msgs]);
  // it decodes (records over 4 MiB arrive in pieces: counted once, at their last)
  const back = (await collect(decodeStream([bytes]))).filter((m) => m.type !== 'data' || m.piece === undefined || m.piece.last);
  assert.equal(back.length, msgs.length + 1, 'decodes to the same records');
  return walk(bytes)
    .filter((r) => r.cmd === CMD_GROUP)
    .map((r) => r.entries!);
}

test('checksum groups are cut at GROUP_ENCODER_DATA_BYTES (8 MiB) of payload and at 4096 held UNMAPs; UNMAPs between DATA records stay inside a group', async () => {
  const data = (offsetBytes: number, bytes: number): LinbitMessage => ({ type: 'data', offsetBytes, data: Buffer.alloc(bytes, 0x5a) });
  const unmaps = (from: number, n: number) => Array.from({ length: n }, (_, i) => unmap(from + i * 4096, 4096));
  // data, unmap, data: one group of two, written before the first DATA
  const bytes = await encodeAll([begin({ formatVersion: '1.1', checksum: 'sha256' }), data(0, 8), unmap(4096, 4096), data(8192, 8), end(2, 1)]);
  assert.deepEqual(
    walk(bytes).map((r) => [r.cmd, r.offset, r.length]),
    [
      [2, 0, 0],
      [0x8054_5301, 0, 27],
      [CMD_GROUP, 0, 97],
      [0, 0, 8],
      [1, 4096, 4096],
      [0, 8192, 8],
      [0x8054_5303, 0, 33],
      [3, 0, 24],
    ],
  );
  const HOLD = 4096;
  assert.deepEqual(await groupsOf([data(0, 8), ...unmaps(4096, HOLD - 1), data(HOLD * 4096, 8), end(2, HOLD - 1)]), [
    [
      [0, 8],
      [HOLD * 4096, 8],
    ],
  ]);
  assert.deepEqual(await groupsOf([data(0, 8), ...unmaps(4096, HOLD), data((HOLD + 1) * 4096, 8), end(2, HOLD)]), [[[0, 8]], [[(HOLD + 1) * 4096, 8]]]);
  // 5/8 + 5/8 of a group's bytes do not fit one: two groups
  const most = (GROUP_ENCODER_DATA_BYTES * 5) / 8;
  assert.deepEqual(await groupsOf([data(0, most), data(most, most), end(2, 0)]), [[[0, most]], [[most, most]]]);
  // a group is closed as soon as it reaches GROUP_ENCODER_DATA_BYTES: even a 0-byte DATA after it opens the next one
  const half = GROUP_ENCODER_DATA_BYTES / 2;
  assert.deepEqual(await groupsOf([data(0, half), data(half, half), data(2 * half, 0), data(2 * half + 4096, 8), end(4, 0)]), [
    [
      [0, half],
      [half, half],
    ],
    [
      [2 * half, 0],
      [2 * half + 4096, 8],
    ],
  ]);
});

test('with checksums the encoder reads up to a group plus GROUP_PREFETCH_BYTES of messages ahead of what its consumer has taken, and no further', async () => {
  const buf = Buffer.alloc(MiB, 3);
  let pulled = 0;
  let written = 0;
  let maxAhead = 0;
  async function* source(): AsyncGenerator<LinbitMessage> {
    yield begin({ formatVersion: '1.1', checksum: 'sha256' });
    for (let i = 0; i < 96; i++) {
      pulled++;
      maxAhead = Math.max(maxAhead, pulled - written);
      yield { type: 'data', offsetBytes: i * MiB, data: buf };
    }
    yield end(96, 0);
  }
  for await (const part of encodeStream(source())) {
    if (part === buf) written++;
    // A busy consumer: the encoder's pump runs meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(written, 96);
  // A group's records held (nothing written yet), then GROUP_PREFETCH_BYTES more pulled ahead while the group is written
  const groupRecords = GROUP_ENCODER_DATA_BYTES / MiB;
  const aheadRecords = GROUP_PREFETCH_BYTES / MiB;
  assert.ok(maxAhead >= groupRecords + aheadRecords - 1, `${maxAhead} records ahead`);
  assert.ok(maxAhead <= groupRecords + aheadRecords + 1, `${maxAhead} records ahead`);
});

test('records in pieces: each piece field checked and named, the rest of a record required, zero-length pieces write nothing', async () => {
  const plain: EncodeOptions = { extensions: false };
  const piece = (offsetBytes: number, bytes: number, recordOffsetBytes: number, recordLengthBytes: number, last: boolean): LinbitMessage => ({
    type: 'data',
    offsetBytes,
    data: Buffer.alloc(bytes, 0x33),
    piece: { recordOffsetBytes, recordLengthBytes, last },
  });
  const MAX = Number.MAX_SAFE_INTEGER;
  const cases: [LinbitMessage[], number, string][] = [
    [[piece(0, 4096, -1, 8192, false)], 2, 'piece.recordOffsetBytes must be a non-negative safe integer, got -1'],
    [[piece(0, 4096, 0, 8192.5, false)], 2, 'piece.recordLengthBytes must be a non-negative safe integer, got 8192.5'],
    [[piece(4096, 4096, 0, 8192, false)], 2, "the first piece must start at the record's offset 0, got 4096"],
    [[piece(MAX, 0, MAX, 8, false)], 2, `the first piece must start at the record's offset ${MAX}, got ${MAX}`],
    [[piece(0, 4096, 0, 8192, true)], 2, 'piece marked last with 4096 bytes of the record left'],
    [[piece(0, 4096, 0, 8192, false), piece(4096, 4096, 0, 8192, false)], 3, 'piece marked not last with 0 bytes of the record left'],
    [
      [piece(0, 4096, 0, 8192, false), { type: 'data', offsetBytes: 4096, data: Buffer.alloc(4096) }],
      3,
      'the DATA record being written in pieces still needs 4096 bytes at 4096',
    ],
  ];
  for (const [msgs, index, what] of cases) {
    await refused(encodeAll([begin(), ...msgs, end(1, 0)], plain), 'BAD_STREAM', `cannot encode message ${index} (data): ${what}`, index);
  }
  const a = Buffer.alloc(4096, 1);
  const b = Buffer.alloc(4096, 2);
  const rec = { recordOffsetBytes: 0x10000, recordLengthBytes: 8192 };
  const parts = await collect(
    encodeStream(
      [
        begin(),
        { type: 'data', offsetBytes: 0x10000, data: a, piece: { ...rec, last: false } },
        { type: 'data', offsetBytes: 0x11000, data: Buffer.alloc(0), piece: { ...rec, last: false } },
        { type: 'data', offsetBytes: 0x11000, data: b, piece: { ...rec, last: true } },
        end(1, 0),
      ],
      plain,
    ),
  );
  for (const p of parts) assert.ok(p.length > 0, 'no empty Buffer is yielded');
  assert.ok(Buffer.concat(parts).equals(Buffer.concat([BEGIN, hdr(0x10000, 8192, 0), a, b, END, stats(3, 1, 0)])));
});

test('a source whose iterator has no return() is encoded with and without checksums; stopping early closes a generator source', async () => {
  const msgs: LinbitMessage[] = [begin(), { type: 'data', offsetBytes: 0, data: P8 }, end(1, 0)];
  const bare = (): AsyncIterable<LinbitMessage> => ({
    [Symbol.asyncIterator]: () => {
      let i = 0;
      return { next: async () => (i < msgs.length ? { done: false, value: msgs[i++]! } : { done: true, value: undefined }) };
    },
  });
  for (const opts of [{ extensions: false }, {}]) {
    const got = Buffer.concat(await collect(encodeStream(bare(), opts)));
    assert.ok(got.equals(await encodeAll(msgs, opts)));
  }
  for (const opts of [{ extensions: false }, {}]) {
    let closed = false;
    async function* source(): AsyncGenerator<LinbitMessage> {
      try {
        yield begin();
        for (let i = 0; ; i++) yield { type: 'data', offsetBytes: i * 8192, data: Buffer.alloc(8192, i) };
      } finally {
        closed = true;
      }
    }
    let n = 0;
    for await (const part of encodeStream(source(), opts)) {
      assert.ok(part.length > 0);
      if (++n === 3) break;
    }
    assert.ok(closed, `the source was closed (${JSON.stringify(opts)})`);
  }
  // refused at the first message: the source is closed too
  let closedAfterRefusal = false;
  async function* wrongFirst(): AsyncGenerator<LinbitMessage> {
    try {
      yield unmap(0, 4096);
      yield end(0, 1);
    } finally {
      closedAfterRefusal = true;
    }
  }
  await assert.rejects(collect(encodeStream(wrongFirst())), /message 1 \(unmap\): the first message must be begin/);
  assert.ok(closedAfterRefusal, 'the source was closed after the refusal');
});
