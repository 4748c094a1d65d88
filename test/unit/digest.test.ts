/**
 * stream/digest.ts against an independent computation of the documented
 * chain (docs/stream-format.md): d_0 = 32 zero bytes, d_i = sha256(d_{i-1} ||
 * kind u8 | offset u64 BE | length u64 BE | sha256(payload) or 32 zeros), and
 * every guard on its inputs (written for the StrykerJS survivors).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { StreamDigest, canonicalRecord, dataChecksum } from '../../src/stream/digest.js';
import { ThinshipError } from '../../src/errors.js';

const sha = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
function canonical(kind: 0 | 1, offset: bigint, length: bigint, sum: Buffer): Buffer {
  const b = Buffer.alloc(49);
  b[0] = kind;
  b.writeBigUInt64BE(offset, 1);
  b.writeBigUInt64BE(length, 9);
  sum.copy(b, 17);
  return b;
}

test('the chain equals an independent computation, including offsets above 2^32 and the largest safe integer', () => {
  const payload = Buffer.from('thinship');
  const records: [0 | 1, bigint, bigint, Buffer][] = [
    [0, 0n, 8n, sha(payload)],
    [1, 5n * 2n ** 32n + 7n, 65536n, Buffer.alloc(32)],
    [0, BigInt(Number.MAX_SAFE_INTEGER), 1n, sha(payload)],
  ];
  let d = Buffer.alloc(32);
  for (const [k, o, l, s] of records) d = sha(d, canonical(k, o, l, s));
  const sd = new StreamDigest();
  assert.deepEqual(sd.state, Buffer.alloc(32), 'd_0');
  sd.addData(0, 8, dataChecksum(payload, 'sha256'));
  sd.addUnmap(5 * 2 ** 32 + 7, 65536);
  sd.addData(Number.MAX_SAFE_INTEGER, 1, dataChecksum(payload, 'sha256'));
  assert.deepEqual(sd.state, d);
  assert.equal(sd.recordsAdded, 3);
  assert.equal(sd.matches(d), true);
  assert.equal(sd.matches(Buffer.from(d).fill(0, 31)), false);
  assert.equal(sd.matches(d.subarray(0, 31)), false, 'a prefix does not match');
  assert.equal(sd.matches(Buffer.concat([d, Buffer.alloc(1)])), false, 'a longer value does not match');
  assert.deepEqual(canonicalRecord('unmap', 1, 2), canonical(1, 1n, 2n, Buffer.alloc(32)));
  assert.deepEqual(canonicalRecord('data', 1, 2, sha(payload)), canonical(0, 1n, 2n, sha(payload)));
  // the state is a copy: changing it does not change the chain
  const s = sd.state;
  s.fill(7);
  assert.deepEqual(sd.state, d);
});

test('a resumed chain continues from a stored state and counts only its own records', () => {
  const full = new StreamDigest();
  full.addData(0, 4, dataChecksum(Buffer.from('abcd'), 'sha256'));
  const mid = full.state;
  full.addUnmap(4, 4);
  const resumed = new StreamDigest(mid);
  assert.equal(resumed.recordsAdded, 0);
  resumed.addUnmap(4, 4);
  assert.deepEqual(resumed.state, full.state);
  assert.equal(resumed.recordsAdded, 1);
  assert.throws(
    () => new StreamDigest(Buffer.alloc(31)),
    (e: ThinshipError) => e.code === 'INTERNAL' && e.message === 'stream digest state must be 32 bytes, got 31',
  );
});

test('inputs the chain cannot encode are refused, naming the field', () => {
  for (const [o, l, field, v] of [
    [-1, 1, 'offsetBytes', -1],
    [1.5, 1, 'offsetBytes', 1.5],
    [2 ** 53, 1, 'offsetBytes', 2 ** 53],
    [0, -2, 'lengthBytes', -2],
    [0, NaN, 'lengthBytes', NaN],
  ] as const) {
    assert.throws(
      () => canonicalRecord('unmap', o, l),
      (e: ThinshipError) => e.code === 'INTERNAL' && e.message === `stream digest: ${field} must be a non-negative safe integer, got ${v}`,
      `${o} ${l}`,
    );
  }
  assert.throws(
    () => canonicalRecord('data', 0, 1),
    (e: ThinshipError) => e.code === 'INTERNAL' && e.message === 'stream digest: a DATA record needs a 32-byte checksum, got none',
  );
  assert.throws(
    () => canonicalRecord('data', 0, 1, Buffer.alloc(31)),
    (e: ThinshipError) => e.message === 'stream digest: a DATA record needs a 32-byte checksum, got 31',
  );
  assert.throws(() => new StreamDigest().addData(0, 1, Buffer.alloc(33)), /got 33/);
});
