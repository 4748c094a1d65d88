/**
 * stream/integrity.ts directly (the codec and receiver tests reach it only
 * through their own checks): the ledger's counts and digest chain against an
 * independent sha256 chain, the End comparison, payload checksums, the bounds
 * of a record at and one past each limit, and the order rule. Written for the
 * StrykerJS run of the module (docs/testing.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { StreamLedger, withDataChecksum, checkDataChecksum, zeroChecksumMatches, rangeFault, AscendingRecords } from '../../src/stream/integrity.js';
import type { StreamMessage } from '../../src/stream/messages.js';

const sha = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
/** The chain written out from docs/architecture.md: d_i = sha256(d_{i-1} || kind || offset || length || sha256 or zeros). */
const link = (d: Buffer, kind: 0 | 1, off: number, len: number, sum?: Buffer) => sha(d, Buffer.from([kind]), u64(off), u64(len), sum ?? Buffer.alloc(32));
const ZERO = Buffer.alloc(32);

test('the ledger counts DATA and UNMAP records and bytes and chains the digest in stream order', () => {
  const l = new StreamLedger(true);
  assert.deepEqual(l.digest, ZERO, 'd_0 is 32 zero bytes');
  assert.deepEqual(l.counts, { dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0 });
  const a = sha(Buffer.from('a')),
    b = sha(Buffer.from('b'));
  l.addData(0, 4096, a);
  l.addUnmap(4096, 8192);
  l.addData(12288, 512, b);
  let d = link(ZERO, 0, 0, 4096, a);
  d = link(d, 1, 4096, 8192);
  d = link(d, 0, 12288, 512, b);
  assert.deepEqual(l.digest, d);
  assert.deepEqual(l.counts, { dataRecords: 2, unmapRecords: 1, dataBytes: 4608, unmapBytes: 8192 });
  assert.equal(l.digestMatches(d), true);
  assert.equal(l.digestMatches(link(ZERO, 0, 0, 4096, a)), false);
  assert.equal(l.digestMatches(d.subarray(0, 31)), false);
  assert.deepEqual(l.seal(), { type: 'end', dataRecords: 2, unmapRecords: 1, dataBytes: 4608, unmapBytes: 8192, digest: d });
  // snapshot and digest are copies: changing them changes nothing in the ledger.
  const snap = l.snapshot();
  assert.deepEqual(snap, { dataRecords: 2, unmapRecords: 1, dataBytes: 4608, unmapBytes: 8192, digest: d });
  snap.digest.fill(1);
  snap.dataRecords = 99;
  l.digest.fill(2);
  assert.deepEqual(l.snapshot(), { dataRecords: 2, unmapRecords: 1, dataBytes: 4608, unmapBytes: 8192, digest: d });
});

test('without checksums the ledger counts but never chains, and no digest matches or is sealed', () => {
  const l = new StreamLedger(false);
  l.addData(0, 10); // no checksum: fine without checksums
  l.addUnmap(10, 20);
  assert.deepEqual(l.digest, ZERO);
  assert.equal(l.digestMatches(ZERO), false, 'not even the starting value');
  assert.deepEqual(l.seal(), { type: 'end', dataRecords: 1, unmapRecords: 1, dataBytes: 10, unmapBytes: 20 });
  assert.equal('digest' in l.seal(), false);
});

test('a resumed ledger continues from the stored counts and chain value; a digest that is not 32 bytes starts the chain over', () => {
  const stored = link(ZERO, 1, 0, 100);
  const l = new StreamLedger(true, { digest: stored, dataRecords: 3, unmapRecords: 4, dataBytes: 5, unmapBytes: 6 });
  assert.deepEqual(l.snapshot(), { digest: stored, dataRecords: 3, unmapRecords: 4, dataBytes: 5, unmapBytes: 6 });
  l.addUnmap(100, 50);
  assert.deepEqual(l.digest, link(stored, 1, 100, 50));
  assert.deepEqual(l.counts, { dataRecords: 3, unmapRecords: 5, dataBytes: 5, unmapBytes: 56 });
  assert.deepEqual(new StreamLedger(true, { digest: stored.subarray(0, 31), dataRecords: 1 }).snapshot(), {
    digest: ZERO,
    dataRecords: 1,
    unmapRecords: 0,
    dataBytes: 0,
    unmapBytes: 0,
  });
  assert.deepEqual(new StreamLedger(true, {}).snapshot(), { digest: ZERO, dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0 });
});

test('endCountMismatch: the first claimed count that differs, with both values; counts the End does not carry are not compared', () => {
  const l = new StreamLedger(false);
  l.addData(0, 10);
  l.addData(10, 10);
  l.addUnmap(20, 30);
  assert.equal(l.endCountMismatch({ dataRecords: 2, unmapRecords: 1, dataBytes: 20, unmapBytes: 30 }), undefined);
  assert.equal(l.endCountMismatch({}), undefined);
  assert.equal(l.endCountMismatch({ dataRecords: 2 }), undefined);
  assert.deepEqual(l.endCountMismatch({ dataRecords: 3 }), { field: 'dataRecords', claimed: 3, counted: 2 });
  assert.deepEqual(l.endCountMismatch({ unmapRecords: 0 }), { field: 'unmapRecords', claimed: 0, counted: 1 });
  assert.deepEqual(l.endCountMismatch({ dataBytes: 21 }), { field: 'dataBytes', claimed: 21, counted: 20 });
  assert.deepEqual(l.endCountMismatch({ unmapBytes: 29 }), { field: 'unmapBytes', claimed: 29, counted: 30 });
  assert.deepEqual(l.endCountMismatch({ dataRecords: 9, unmapBytes: 9 }), { field: 'dataRecords', claimed: 9, counted: 2 }, 'the first in End order');
  assert.deepEqual(l.endCountMismatch({ dataRecords: 2, unmapRecords: 7, dataBytes: 7 }), { field: 'unmapRecords', claimed: 7, counted: 1 });
});

test('withDataChecksum: a whole DATA record gets the sha256 of its bytes; a given checksum, a piece, UNMAP and END pass unchanged', () => {
  const data = Buffer.from('payload');
  const m = { type: 'data', offsetBytes: 0, data } as StreamMessage;
  assert.deepEqual(withDataChecksum(m, 'sha256'), { ...m, checksum: sha(data) });
  assert.equal((m as { checksum?: Buffer }).checksum, undefined, 'a new message, the input unchanged');
  const given = { type: 'data', offsetBytes: 0, data, checksum: Buffer.alloc(32, 7) } as StreamMessage;
  assert.equal(withDataChecksum(given, 'sha256'), given);
  const piece = { type: 'data', offsetBytes: 0, data, piece: { index: 0, last: false } } as unknown as StreamMessage;
  assert.equal(withDataChecksum(piece, 'sha256'), piece);
  const noBytes = { type: 'data', offsetBytes: 0, data: undefined } as unknown as StreamMessage;
  assert.equal(withDataChecksum(noBytes, 'sha256'), noBytes);
  const unmap = { type: 'unmap', offsetBytes: 0, lengthBytes: 10 } as StreamMessage;
  assert.equal(withDataChecksum(unmap, 'sha256'), unmap);
});

test('checkDataChecksum over bytes or a running hash; zeroChecksumMatches for many lengths', () => {
  const data = Buffer.from('some bytes');
  assert.deepEqual(checkDataChecksum(data, sha(data), 'sha256'), { actual: sha(data), ok: true });
  assert.deepEqual(checkDataChecksum(data, sha(Buffer.from('other')), 'sha256'), { actual: sha(data), ok: false });
  const h = createHash('sha256').update('some ').update('bytes');
  assert.deepEqual(checkDataChecksum(h, sha(data), 'sha256'), { actual: sha(data), ok: true });
  // More lengths than the cache keeps: each still right.
  for (let i = 1; i <= 40; i++) {
    const len = i * 512;
    assert.equal(zeroChecksumMatches(len, sha(Buffer.alloc(len)), 'sha256'), true, `${len}`);
    assert.equal(zeroChecksumMatches(len, sha(Buffer.alloc(len + 1)), 'sha256'), false, `${len} + 1`);
  }
  assert.equal(zeroChecksumMatches(512, sha(Buffer.alloc(512)), 'sha256'), true, 'again after the cache was cleared');
});

test('rangeFault: offset, length and end each at and one past their limits', () => {
  const max = Number.MAX_SAFE_INTEGER;
  assert.equal(rangeFault(0, 1, 1), undefined);
  assert.equal(rangeFault(0, 8, 8), undefined, 'ends exactly at the end');
  assert.equal(rangeFault(7, 1, 8), undefined);
  assert.equal(rangeFault(7, 2, 8), 'beyond', 'straddles the end');
  assert.equal(rangeFault(8, 1, 8), 'beyond', 'starts at the end');
  assert.equal(rangeFault(-1, 1, 8), 'offset');
  assert.equal(rangeFault(0.5, 1, 8), 'offset');
  assert.equal(rangeFault(max + 1, 1, Infinity), 'offset');
  assert.equal(rangeFault(NaN, 1, 8), 'offset');
  assert.equal(rangeFault(0, 0, 8), 'length');
  assert.equal(rangeFault(0, -1, 8), 'length');
  assert.equal(rangeFault(0, 1.5, 8), 'length');
  assert.equal(rangeFault(0, max + 1, Infinity), 'length');
  assert.equal(rangeFault(max - 1, 1, Infinity), undefined, 'ends at 2^53 - 1');
  assert.equal(rangeFault(max - 1, 2, Infinity), 'beyond', 'ends past 2^53 - 1');
  assert.equal(rangeFault(-1, 0, 8), 'offset', 'the offset is checked first');
  assert.equal(rangeFault(9, 0, 8), 'length', 'then the length');
});

test('AscendingRecords: a record may start at or after where the previous one ended, never before', () => {
  const o = new AscendingRecords(100);
  assert.equal(o.accepts(99), false);
  assert.equal(o.accepts(100), true);
  assert.equal(o.accepts(101), true);
  o.advance(150, 10);
  assert.equal(o.endBytes, 160);
  assert.equal(o.accepts(159), false);
  assert.equal(o.accepts(160), true);
});
