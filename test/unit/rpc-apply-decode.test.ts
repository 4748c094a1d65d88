/**
 * The server's hand-written ApplyStreamRequest decoder (rpc/apply-request-decode.ts)
 * against the generated one (protobufjs through proto-loader, LOADER_OPTIONS):
 * the same objects for random Data messages (with unknown fields, defaults,
 * unknown enum values) and for every other record; for any bytes at all
 * (random mutations of valid messages), either the same result or a refusal;
 * and hostile Data messages refused naming the field and the byte offset.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { receiverProto } from '../../src/rpc/proto.js';
import { applyRequestDeserializer, isMalformed, type DecodedApplyRequest } from '../../src/rpc/apply-request-decode.js';
import { recordFromProto } from '../../src/rpc/server.js';

const method = receiverProto().service.ApplyStream;
const generated = (b: Buffer) => method.requestDeserialize(b);
const fast = applyRequestDeserializer(generated);
const serialize = (m: Record<string, unknown>) => method.requestSerialize(m);

function varint(v: bigint): Buffer {
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const tag = (field: number, wt: number) => varint(BigInt(field * 8 + wt));
const len = (field: number, body: Buffer) => Buffer.concat([tag(field, 2), varint(BigInt(body.length)), body]);
const vint = (field: number, v: bigint) => Buffer.concat([tag(field, 0), varint(v)]);
const dataOf = (body: Buffer) => len(2, body);

/** An unknown field (number 6..40 in Data, 5..40 at the top) of any wire type, groups included. */
const unknownArb = (minField: number) =>
  fc.oneof(
    fc.record({ f: fc.integer({ min: minField, max: 40 }), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }).map(({ f, v }) => vint(f, v)),
    fc.record({ f: fc.integer({ min: minField, max: 40 }), b: fc.uint8Array({ maxLength: 20 }) }).map(({ f, b }) => len(f, Buffer.from(b))),
    fc.integer({ min: minField, max: 40 }).map((f) => Buffer.concat([tag(f, 1), Buffer.alloc(8, 7)])),
    fc.integer({ min: minField, max: 40 }).map((f) => Buffer.concat([tag(f, 5), Buffer.alloc(4, 9)])),
    fc.integer({ min: minField, max: 40 }).map((f) => Buffer.concat([tag(f, 3), vint(1, 5n), len(2, Buffer.from('in a group')), tag(f, 4)])),
  );

const u64Arb = fc.oneof(fc.constantFrom(0, 1, 127, 128, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1), fc.integer({ min: 0, max: 2 ** 40 }), fc.maxSafeNat());
const encodingArb = fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: -5, max: 100 }), fc.integer());

/** A Data message as fields in any order, each maybe left out, plus unknown fields; and what it holds. */
const dataBodyArb = fc
  .record({
    offset: fc.option(u64Arb),
    length: fc.option(u64Arb),
    payload: fc.option(fc.uint8Array({ maxLength: 300 })),
    encoding: fc.option(encodingArb),
    checksum: fc.option(fc.uint8Array({ maxLength: 40 })),
    unknown: fc.array(unknownArb(6), { maxLength: 3 }),
    seed: fc.nat(),
  })
  .map((d) => {
    const parts: Buffer[] = [];
    if (d.offset !== null) parts.push(vint(1, BigInt(d.offset)));
    if (d.length !== null) parts.push(vint(2, BigInt(d.length)));
    if (d.payload !== null) parts.push(len(3, Buffer.from(d.payload)));
    if (d.encoding !== null) parts.push(vint(4, BigInt.asUintN(64, BigInt(d.encoding))));
    if (d.checksum !== null) parts.push(len(5, Buffer.from(d.checksum)));
    parts.push(...d.unknown);
    // A deterministic shuffle: protobuf fields may come in any order.
    for (let i = parts.length - 1, s = d.seed; i > 0; i--, s = Math.floor(s / 7) + i) {
      const j = s % (i + 1);
      [parts[i], parts[j]] = [parts[j]!, parts[i]!];
    }
    return Buffer.concat(parts);
  });

const messageArb = fc
  .record({ body: dataBodyArb, before: fc.array(unknownArb(5), { maxLength: 2 }), after: fc.array(unknownArb(5), { maxLength: 2 }) })
  .map(({ body, before, after }) => Buffer.concat([...before, dataOf(body), ...after]));

/** A copy at a random offset of a larger buffer: decoding must not assume the message starts its ArrayBuffer. */
function inLargerBuffer(b: Buffer, pad: number): Buffer {
  const big = Buffer.alloc(b.length + pad * 2, 0xee);
  b.copy(big, pad);
  return big.subarray(pad, pad + b.length);
}

test('Data messages decode exactly as the generated decoder decodes them, payload a view into the message', () => {
  fc.assert(
    fc.property(messageArb, fc.nat(16), (msg, pad) => {
      const b = inLargerBuffer(msg, pad);
      const want = generated(b);
      const got = fast(b);
      assert.deepStrictEqual(got, want);
      assert.deepStrictEqual(Object.keys(got), Object.keys(want));
      if (!isMalformed(got) && got.data) {
        assert.deepStrictEqual(Object.keys(got.data), Object.keys(want.data!));
        if (got.data.payload.length > 0) assert.equal(got.data.payload.buffer, b.buffer, 'the payload is a view, not a copy');
      }
    }),
    { numRuns: 3000 },
  );
});

test('our own sender’s Data messages and every other record decode as before', () => {
  const payload = Buffer.alloc(70_000, 3);
  const msgs: Record<string, unknown>[] = [
    { kind: 'data', data: { offsetBytes: 2 ** 40, lengthBytes: 1 << 20, payload, encoding: 'ENCODING_ZSTD', checksum: Buffer.alloc(32, 1) } },
    { kind: 'data', data: { offsetBytes: 0, lengthBytes: 4096, payload: Buffer.alloc(0), encoding: 'ENCODING_ZERO', checksum: Buffer.alloc(0) } },
    { kind: 'data', data: {} },
    {
      kind: 'begin',
      begin: { protocolVersion: 1, transferId: 't', target: '/x', mode: 'TRANSFER_MODE_FULL', volumeSizeBytes: 1 << 30, checksum: 'CHECKSUM_ALGORITHM_BLAKE3' },
    },
    { kind: 'unmap', unmap: { offsetBytes: 4096, lengthBytes: 8192 } },
    { kind: 'end', end: { records: 3, dataRecords: 1, unmapRecords: 1, dataBytes: 5, unmapBytes: 6, digest: Buffer.alloc(32, 2) } },
    {},
  ];
  for (const m of msgs) {
    const b = serialize(m);
    assert.deepStrictEqual(fast(b), generated(b), JSON.stringify(Object.keys(m)));
  }
  // The record the handler makes: detachable payload and all.
  const big = serialize(msgs[0]!);
  const r = recordFromProto(fast(big));
  assert.equal(r.type, 'data');
  assert.ok(r.type === 'data' && r.detachable === true && r.payload.equals(payload));
});

test('any bytes: the same result as the generated decoder, its own error, or a refusal', () => {
  const mutated = fc
    .record({
      msg: messageArb,
      edits: fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 4 }),
      cut: fc.option(fc.nat()),
    })
    .map(({ msg, edits, cut }) => {
      const b = Buffer.from(msg);
      for (const e of edits) if (b.length > 0) b[e.at % b.length] = e.byte;
      return cut === null || b.length === 0 ? b : b.subarray(0, cut % b.length);
    });
  fc.assert(
    fc.property(
      fc.oneof(
        mutated,
        fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
      ),
      (b) => {
        let got: DecodedApplyRequest | Error;
        try {
          got = fast(b);
        } catch (e) {
          got = e as Error;
        }
        if (got instanceof Error) {
          // Only the generated decoder throws (a message without Data): the same error as before.
          assert.throws(() => generated(b), { message: got.message });
          return;
        }
        if (isMalformed(got)) {
          assert.match(got.malformed, /^ApplyStreamRequest: .* at byte \d+|comes with another record/);
          return;
        }
        assert.deepStrictEqual(got, generated(b));
      },
    ),
    { numRuns: 5000 },
  );
});

test('hostile Data messages are refused naming the field and the byte offset', () => {
  const ok = Buffer.concat([vint(1, 4096n), vint(2, 3n), len(3, Buffer.from('abc')), vint(4, 1n)]);
  const cases: [string, Buffer, RegExp][] = [
    ['truncated varint in a field', dataOf(Buffer.from([0x08, 0x80, 0x80])), /data\.offset_bytes \(field 1\) at byte 3: the varint is cut off at byte 5/],
    [
      'varint of 11 bytes',
      dataOf(Buffer.concat([Buffer.from([0x10]), Buffer.alloc(10, 0x80), Buffer.from([0])])),
      /data\.length_bytes \(field 2\) at byte 3: the varint is longer than 10 bytes/,
    ],
    [
      'varint past 64 bits',
      dataOf(Buffer.concat([Buffer.from([0x08]), Buffer.alloc(9, 0xff), Buffer.from([0x02])])),
      /data\.offset_bytes \(field 1\) at byte 3: the varint does not fit in 64 bits/,
    ],
    ['offset above 2^53', dataOf(vint(1, 2n ** 53n)), /data\.offset_bytes \(field 1\) at byte 3: 9007199254740992 is above 2\^53 - 1/],
    ['length of 2^64 - 1', dataOf(vint(2, 2n ** 64n - 1n)), /data\.length_bytes \(field 2\) at byte 3: 18446744073709551615 is above 2\^53 - 1/],
    [
      'payload past the end',
      dataOf(Buffer.from([0x1a, 0x05, 1, 2])),
      /data\.payload \(field 3\) at byte 3: length 5 runs past the end of its message \(2 bytes left\)/,
    ],
    ['data past the end', Buffer.from([0x12, 0x09, 0x08, 0x01]), /data \(field 2\) at byte 1: length 9 runs past the end of the message \(2 bytes left\)/],
    ['payload as a varint', dataOf(vint(3, 5n)), /data\.payload \(field 3\) at byte 2: varint, expected length-delimited/],
    ['offset as a string', dataOf(len(1, Buffer.from('12'))), /data\.offset_bytes \(field 1\) at byte 2: length-delimited, expected varint/],
    ['data as a varint', vint(2, 5n), /data \(field 2\) at byte 0: varint, expected length-delimited/],
    ['offset twice', dataOf(Buffer.concat([ok, vint(1, 8192n)])), /data\.offset_bytes \(field 1\) at byte 14: given more than once/],
    ['payload twice', dataOf(Buffer.concat([ok, len(3, Buffer.from('x'))])), /data\.payload \(field 3\) at byte 14: given more than once/],
    ['data twice', Buffer.concat([dataOf(ok), dataOf(ok)]), /data \(field 2\) at byte 14: given more than once/],
    ['data beside an end', Buffer.concat([len(4, Buffer.alloc(0)), dataOf(ok)]), /data \(field 2\) at byte 2 comes with another record/],
    [
      'a tag above 32 bits',
      dataOf(Buffer.concat([ok, varint(2n ** 32n + 8n * 3n + 2n), Buffer.from([0])])),
      /data: a field tag at byte 14: the tag does not fit in 32 bits/,
    ],
    ['field number 0', dataOf(Buffer.from([0x00, 0x01])), /data: field number 0 at byte 2/],
    ['wire type 7', dataOf(Buffer.concat([ok, Buffer.from([0x3f])])), /data: unknown field 7 \(wire type 7\) at byte 15: not a valid wire type/],
    ['unknown fixed64 cut off', dataOf(Buffer.concat([ok, Buffer.from([0x31, 1, 2])])), /data: unknown field 6 \(64-bit\) at byte 15: 8 bytes needed, 2 left/],
    [
      'unterminated group',
      dataOf(Buffer.concat([ok, tag(9, 3), vint(1, 1n)])),
      /data: unknown field 9 \(start group\) \(inside the group\) at byte 17: the varint is cut off/,
    ],
    [
      'group ended by another field',
      dataOf(Buffer.concat([ok, tag(9, 3), tag(10, 4)])),
      /data: unknown field 9 \(start group\) at byte 15: the group ends with field 10/,
    ],
    [
      'unknown field after data cut off',
      Buffer.concat([dataOf(ok), Buffer.from([0x2a, 0x09])]),
      /the message: unknown field 5 \(length-delimited\) at byte 15: length 9 runs past/,
    ],
  ];
  for (const [what, b, re] of cases) {
    const got = fast(b);
    assert.ok(isMalformed(got), `${what}: refused (got ${JSON.stringify(got)})`);
    assert.match(got.malformed, re, what);
    // The handler refuses it as a record it cannot read, with that text.
    assert.deepStrictEqual(recordFromProto(got), { type: 'invalid', what: got.malformed });
  }
  // Messages without Data are the generated decoder's to judge, errors included.
  const cut = Buffer.from([0x0a, 0x09, 0x08]);
  assert.throws(() => generated(cut), /index out of range/);
  assert.throws(() => fast(cut), /index out of range/);
});
