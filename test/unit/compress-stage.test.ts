/**
 * The sending core's compression stage (src/sender/compress-stage.ts) with a
 * real worker pool: stream order kept, the begin out before any chunk is
 * worked on, what the workers found is right for each chunk (sha256, zero,
 * a frame that decompresses to the chunk), the zstd level and worker count
 * honoured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { CompressPool } from '../../src/sender/compress-pool.js';
import { compressStage, type PreparedMessage } from '../../src/sender/compress-stage.js';
import { ChunkDecompressor, checkZstdLevel } from '../../src/stream/zstd.js';
import { defaultWorkerCount, MAX_DEFAULT_WORKERS } from '../../src/stream/worker-pool.js';
import { compressModeOf, workerCountOf } from '../../src/cli/commands/send-grpc.js';
import type { StreamMessage } from '../../src/stream/messages.js';
import { availableParallelism } from 'node:os';

const CHUNK = 256 * 1024;

/** Text-like bytes (compressible), different for every seed. */
function textChunk(seed: number): Buffer {
  const words = ['thin', 'pool', 'block', 'volume', 'stream', String(seed)];
  let s = '';
  for (let i = 0; s.length < CHUNK; i++) s += words[(i * 7 + seed) % words.length] + (i % 13 === 0 ? '\n' : ' ');
  return Buffer.from(s.slice(0, CHUNK));
}

function noise(seed: number): Buffer {
  const out = Buffer.alloc(CHUNK);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < CHUNK; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

async function* source(log: string[], chunks: Buffer[]): AsyncGenerator<StreamMessage> {
  log.push('pull begin');
  yield { type: 'begin', info: { volumeSizeBytes: 64 * CHUNK } };
  for (let i = 0; i < chunks.length; i++) {
    log.push(`pull data ${i}`);
    yield { type: 'data', offsetBytes: i * 2 * CHUNK, data: Buffer.from(chunks[i]!) };
    if (i % 3 === 1) yield { type: 'unmap', offsetBytes: i * 2 * CHUNK + CHUNK, lengthBytes: CHUNK };
  }
  yield { type: 'end', dataRecords: chunks.length, unmapRecords: 0 };
}

test('compressStage keeps stream order, passes the begin at once, and returns each chunk with its sha256, zero flag and a frame that decompresses to it', async () => {
  const kindOf = (i: number) => (i % 4 === 0 ? 'zero' : i % 4 === 1 ? 'noise' : 'text');
  const chunks = Array.from({ length: 12 }, (_, i) => (kindOf(i) === 'zero' ? Buffer.alloc(CHUNK) : kindOf(i) === 'noise' ? noise(i) : textChunk(i)));
  const pool = new CompressPool({ workers: 2 });
  try {
    const log: string[] = [];
    const out: PreparedMessage[] = [];
    for await (const m of compressStage(source(log, chunks), pool)) {
      if (m.type === 'begin') assert.deepEqual(log, ['pull begin'], 'the begin comes out before any chunk is pulled');
      out.push(m);
    }
    const expected = ['begin'];
    for (let i = 0; i < chunks.length; i++) {
      expected.push(`data ${i * 2 * CHUNK}`);
      if (i % 3 === 1) expected.push(`unmap ${i * 2 * CHUNK + CHUNK}`);
    }
    expected.push('end');
    assert.deepEqual(
      out.map((m) => (m.type === 'data' || m.type === 'unmap' ? `${m.type} ${m.offsetBytes}` : m.type)),
      expected,
    );
    const dec = new ChunkDecompressor();
    let frames = 0;
    for (const m of out) {
      if (m.type !== 'data') continue;
      const i = m.offsetBytes / (2 * CHUNK);
      const want = chunks[i]!;
      assert.equal(m.lengthBytes, CHUNK);
      assert.ok(m.result.raw.equals(want), `chunk at ${m.offsetBytes} comes back unchanged`);
      assert.ok(m.result.checksum.equals(sha(want)), `sha256 of the chunk at ${m.offsetBytes}`);
      assert.equal(m.result.zero, kindOf(i) === 'zero');
      if (kindOf(i) !== 'text') assert.equal(m.result.frame, undefined, `no frame for the ${kindOf(i)} chunk at ${m.offsetBytes}`);
      else {
        assert.ok(m.result.frame, `a frame for the text chunk at ${m.offsetBytes}`);
        assert.ok(dec.decompress(m.result.frame, { offsetBytes: m.offsetBytes, lengthBytes: CHUNK }).equals(want));
        frames++;
      }
    }
    assert.equal(frames, 6);
  } finally {
    await pool.close();
  }
});

test('compressStage: a consumer that stops early stops the source, and the pool stays usable', async () => {
  const pool = new CompressPool({ workers: 1 });
  try {
    let finished = false;
    async function* many(): AsyncGenerator<StreamMessage> {
      try {
        for (let i = 0; i < 1000; i++) yield { type: 'data', offsetBytes: i * CHUNK, data: textChunk(i) };
      } finally {
        finished = true;
      }
    }
    let n = 0;
    for await (const m of compressStage(many(), pool)) {
      if (m.type === 'data' && ++n === 3) break;
    }
    assert.equal(finished, true, 'the source generator was closed');
    const r = await pool.process(textChunk(5), 'sha256');
    assert.ok(r.checksum.equals(sha(textChunk(5))));
  } finally {
    await pool.close();
  }
});

test('the zstd level reaches the workers: level 19 makes smaller frames than level 1; out-of-range levels are usage errors', async () => {
  const data = Buffer.concat(Array.from({ length: 4 }, (_, i) => textChunk(i)));
  const sizes: number[] = [];
  for (const zstdLevel of [1, 19]) {
    const pool = new CompressPool({ workers: 1, zstdLevel });
    try {
      const r = await pool.process(Buffer.from(data), 'sha256');
      assert.ok(r.frame);
      assert.ok(new ChunkDecompressor().decompress(r.frame, { offsetBytes: 0, lengthBytes: data.length }).equals(data));
      sizes.push(r.frame.length);
    } finally {
      await pool.close();
    }
  }
  assert.ok(sizes[1]! < sizes[0]!, `level 19 frame ${sizes[1]} bytes < level 1 frame ${sizes[0]} bytes`);
  for (const bad of [0, 20, 1.5, NaN])
    assert.throws(
      () => checkZstdLevel(bad),
      (e: Error & { code?: string }) => e.code === 'USAGE' && /--zstd-level must be a whole number from 1 to 19/.test(e.message),
    );
  assert.throws(() => new CompressPool({ zstdLevel: 0 }), /--zstd-level/);
});

test('worker count: one per core by default (at most MAX_DEFAULT_WORKERS); --workers and --compress are checked', () => {
  assert.equal(defaultWorkerCount(), Math.min(MAX_DEFAULT_WORKERS, availableParallelism()));
  const three = new CompressPool({ workers: 3 });
  assert.equal(three.size, 3);
  void three.close();
  assert.equal(workerCountOf(undefined), undefined);
  assert.equal(workerCountOf('4'), 4);
  for (const bad of ['0', '-1', '1.5', 'two', '', '257']) assert.throws(() => workerCountOf(bad), /--workers must be a whole number from 1 to 256/);
  assert.equal(compressModeOf(undefined), 'zstd');
  assert.equal(compressModeOf(true), 'zstd');
  assert.equal(compressModeOf('auto'), 'auto');
  assert.equal(compressModeOf(false), 'none');
  assert.equal(compressModeOf('none'), 'none');
  assert.equal(compressModeOf('zstd'), 'zstd');
  assert.throws(() => compressModeOf('lz4'), /--compress must be auto, zstd or none, not "lz4"/);
});

test('zstd frames are written into recycled buffers: a frame given back is written into again, one that did not pay comes back unused', async () => {
  const pool = new CompressPool({ workers: 1 });
  try {
    const d = new ChunkDecompressor();
    const a = await pool.process(textChunk(1), 'sha256');
    assert.ok(a.frame, 'text compresses');
    assert.equal(pool.keptFrames, 0);
    assert.deepEqual(d.decompress(a.frame, { offsetBytes: 0, lengthBytes: CHUNK }), textChunk(1));
    const frameBytes = a.frame.buffer.byteLength;
    assert.ok(frameBytes > CHUNK, 'room for any frame of a chunk up to the default op size');
    pool.giveFrame(a.frame);
    pool.giveFrame(a.frame); // twice: kept once
    pool.giveFrame(Buffer.allocUnsafeSlow(100)); // not a frame buffer: not kept
    assert.equal(pool.keptFrames, 1);
    const b = await pool.process(textChunk(2), 'sha256');
    assert.ok(b.frame);
    assert.equal(pool.keptFrames, 0, 'the kept buffer went to the worker and came back holding the frame');
    assert.equal(a.frame.length, 0, 'the first frame moved to the worker');
    assert.equal(b.frame.buffer.byteLength, frameBytes);
    assert.deepEqual(d.decompress(b.frame, { offsetBytes: 0, lengthBytes: CHUNK }), textChunk(2));
    pool.giveFrame(b.frame);
    const c = await pool.process(noise(3), 'sha256');
    assert.equal(c.frame, undefined, 'noise does not compress');
    assert.equal(pool.keptFrames, 1, 'the unused frame buffer came back');
    const z = await pool.process(Buffer.alloc(CHUNK), 'sha256');
    assert.ok(z.zero && !z.frame);
    assert.equal(pool.keptFrames, 1);
    // A chunk larger than a frame buffer is for: a fresh frame of its own, still right.
    const big = Buffer.concat([textChunk(4), textChunk(5), textChunk(6), textChunk(7), textChunk(8)]);
    const e = await pool.process(Buffer.from(big), 'sha256');
    assert.ok(e.frame);
    assert.deepEqual(d.decompress(e.frame, { offsetBytes: 0, lengthBytes: big.length }), big);
    assert.equal(pool.keptFrames, 1);
  } finally {
    await pool.close();
  }
});
