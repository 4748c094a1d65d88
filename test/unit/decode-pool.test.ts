/**
 * The receiver's decode pool (receiver/decode-pool.ts) with real worker
 * threads: zstd records decompress into buffers recycled from written
 * records (the recycled buffer really moves back to a worker: the old view
 * is detached), the bytes and checksums stay right, a checksum mismatch is
 * still refused after recycling, and buffers the pool did not hand out are
 * never taken.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { DecodePool } from '../../src/receiver/decode-pool.js';
import { ChunkCompressor } from '../../src/stream/zstd.js';
import { dataChecksum } from '../../src/stream/integrity.js';
import { expectThinship } from '../helpers/errors.js';

const MiB = 1024 * 1024;
const cc = new ChunkCompressor();

/** A 1 MiB record, half random (compressible 2:1), as the pool gets it. */
function record(offsetBytes: number, seed = offsetBytes) {
  const raw = Buffer.concat([randomBytes(MiB / 2), Buffer.alloc(MiB / 2, seed & 0xff)]);
  const frame = cc.compress(raw)!;
  return {
    raw,
    job: {
      offsetBytes,
      lengthBytes: raw.length,
      payload: frame,
      encoding: 'zstd' as const,
      checksum: { algorithm: 'blake3' as const, expected: dataChecksum(raw, 'blake3') },
    },
  };
}

test('zstd records decompress into recycled buffers: right bytes, the old view handed back', async () => {
  const pool = new DecodePool(2);
  try {
    let prev: Buffer | undefined;
    for (let i = 0; i < 6; i++) {
      const { raw, job } = record(i * MiB);
      const r = await pool.check(job);
      assert.ok(r.data.equals(raw), `record ${i}: the bytes`);
      assert.ok(r.sum?.equals(job.checksum.expected), `record ${i}: the checksum`);
      if (prev) assert.equal(prev.byteLength, 0, `record ${i}: the previous record's buffer went back to a worker`);
      pool.recycle(r.data);
      prev = r.data;
    }
  } finally {
    await pool.close();
  }
});

test('after recycling, a bad checksum is still refused and the next record is right', async () => {
  const pool = new DecodePool(1);
  try {
    const a = record(0);
    pool.recycle((await pool.check(a.job)).data);
    const b = record(MiB);
    await expectThinship(pool.check({ ...b.job, checksum: { algorithm: 'blake3', expected: Buffer.alloc(32, 1) } }), 'CHECKSUM_MISMATCH', [
      'volume offset 1048576',
    ]);
    const c = record(2 * MiB);
    assert.ok((await pool.check(c.job)).data.equals(c.raw));
  } finally {
    await pool.close();
  }
});

test('recycle ignores buffers the pool did not hand out, and each buffer is taken once', async () => {
  const pool = new DecodePool(1);
  try {
    const mine = Buffer.allocUnsafeSlow(MiB);
    pool.recycle(mine); // not from a worker: left alone
    const { raw, job } = record(0);
    const r = await pool.check(job);
    assert.equal(mine.byteLength, MiB, 'a foreign buffer is never handed to a worker');
    pool.recycle(r.data);
    pool.recycle(r.data); // twice: kept once
    const x = record(MiB);
    const y = record(2 * MiB);
    const [rx, ry] = await Promise.all([pool.check(x.job), pool.check(y.job)]);
    assert.ok(rx.data.equals(x.raw) && ry.data.equals(y.raw), 'two records in flight never share one buffer');
    assert.ok(raw.length === MiB);
  } finally {
    await pool.close();
  }
});
