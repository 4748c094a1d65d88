import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkBuffers } from '../../src/sender/chunk-buffers.js';
import { ownArrayBuffer } from '../../src/stream/worker-pool.js';

const MiB = 1024 * 1024;

test('a buffer given back is handed out again for the same length, and owns its whole ArrayBuffer (so it moves to a worker uncopied)', () => {
  const b = new ChunkBuffers(8 * MiB);
  const x = b.take(MiB);
  assert.equal(x.byteOffset, 0);
  assert.equal(x.buffer.byteLength, MiB);
  assert.equal(ownArrayBuffer(x).buf, x.buffer, 'transferable as is, not copied');
  const small = b.take(512);
  assert.equal(small.buffer.byteLength, 512, "even a small buffer is not a slice of Node's shared pool");
  b.give(x);
  assert.equal(b.keptBytes, MiB);
  const y = b.take(MiB);
  assert.equal(y.buffer, x.buffer, 'same memory');
  assert.equal(b.keptBytes, 0);
  const z = b.take(64 * 1024);
  assert.notEqual(z.buffer, x.buffer, 'lengths are not mixed');
});

test('foreign buffers are not kept, and nothing is kept beyond the limit', () => {
  const b = new ChunkBuffers(2 * MiB);
  b.give(Buffer.alloc(MiB).subarray(0, 1000)); // a view of a larger buffer
  b.give(Buffer.from('abc')); // Node's shared pool
  assert.equal(b.keptBytes, 0);
  b.give(b.take(MiB));
  b.give(Buffer.allocUnsafeSlow(MiB));
  b.give(Buffer.allocUnsafeSlow(MiB));
  assert.equal(b.keptBytes, 2 * MiB);
});
