import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkBuffers } from '../../src/sender/chunk-buffers.js';
import { MessageChannel } from 'node:worker_threads';
import { ownArrayBuffer } from '../../src/stream/worker-pool.js';
import { nativeDevice } from '../../src/device/native.js';
import { DIRECT_ALIGN_BYTES } from '../../src/sender/volume-reader.js';

const MiB = 1024 * 1024;

const aligned = (b: Buffer) => (nativeDevice().addressMod(b.buffer as ArrayBuffer, DIRECT_ALIGN_BYTES) + b.byteOffset) % DIRECT_ALIGN_BYTES === 0;

/** What a round trip through a compression worker does: the same memory comes back under a new ArrayBuffer object. */
async function roundTrip(b: Buffer): Promise<Buffer> {
  const own = ownArrayBuffer(b);
  const { port1, port2 } = new MessageChannel();
  const back = new Promise<{ buf: ArrayBuffer; byteOffset: number; length: number }>((resolve) => port2.once('message', resolve));
  port1.postMessage(own, [own.buf]);
  const m = await back;
  port1.close();
  port2.close();
  return Buffer.from(m.buf, m.byteOffset, m.length);
}

test('a buffer starts at an aligned address (O_DIRECT) and moves to a worker as its whole ArrayBuffer, uncopied', async () => {
  const b = new ChunkBuffers(8 * MiB);
  const x = b.take(MiB);
  assert.equal(x.length, MiB);
  assert.ok(aligned(x), 'aligned start');
  assert.equal(x.buffer.byteLength, MiB + DIRECT_ALIGN_BYTES);
  const own = ownArrayBuffer(x);
  assert.equal(own.buf, x.buffer, 'transferred as is, not copied');
  assert.deepEqual([own.byteOffset, own.length], [x.byteOffset, MiB]);
  const small = b.take(512);
  assert.ok(aligned(small));
  assert.equal(small.buffer.byteLength, 512 + DIRECT_ALIGN_BYTES, "even a small buffer is not a slice of Node's shared pool");
});

test('a buffer that went to a worker and back is recognised by give() and handed out again for the same length', async () => {
  const b = new ChunkBuffers(8 * MiB);
  const x = b.take(MiB);
  x.fill(7);
  const at = x.byteOffset;
  const y = await roundTrip(x);
  assert.equal(x.length, 0, 'the original view is detached: the memory moved');
  assert.equal(y.byteOffset, at);
  assert.equal(y[0], 7);
  b.give(y);
  assert.equal(b.keptBytes, MiB + DIRECT_ALIGN_BYTES);
  const z = b.take(MiB);
  assert.equal(z.buffer, y.buffer, 'same memory');
  assert.ok(aligned(z));
  assert.equal(b.keptBytes, 0);
  const w = b.take(64 * 1024);
  assert.notEqual(w.buffer, y.buffer, 'lengths are not mixed');
  // Taken again: transferable again, and it comes back recognised again.
  b.give(await roundTrip(z));
  assert.equal(b.keptBytes, MiB + DIRECT_ALIGN_BYTES);
});

test('foreign buffers are not kept, nor moved whole to a worker, and nothing is kept beyond the limit', () => {
  const b = new ChunkBuffers(2 * (MiB + DIRECT_ALIGN_BYTES));
  const big = Buffer.alloc(MiB);
  const part = big.subarray(0, 1000);
  b.give(part); // a view of a larger buffer
  b.give(Buffer.from('abc')); // Node's shared pool
  b.give(Buffer.allocUnsafeSlow(MiB)); // whole, but not aligned inside a larger one
  const sameShape = Buffer.from(new ArrayBuffer(MiB + DIRECT_ALIGN_BYTES), 0, MiB); // the right size, but not at its aligned start unless by chance
  if (!aligned(sameShape)) b.give(sameShape);
  assert.equal(b.keptBytes, 0);
  const copied = ownArrayBuffer(part);
  assert.notEqual(copied.buf, big.buffer, 'a view of memory nobody marked is copied, not transferred');
  assert.equal(copied.length, 1000);
  const three = [b.take(MiB), b.take(MiB), b.take(MiB)];
  for (const x of three) b.give(x);
  assert.equal(b.keptBytes, 2 * (MiB + DIRECT_ALIGN_BYTES));
});
