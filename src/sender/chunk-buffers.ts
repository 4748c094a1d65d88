/**
 * Recycled read buffers for the gRPC sender. A fresh 1 MiB Buffer per read
 * cost the sender's main thread a quarter of its time in garbage collection
 * (external memory churn; profile in docs/benchmarks.md). Buffers are kept
 * by exact length, because a chunk moves to a compression worker and back
 * as its whole ArrayBuffer (stream/worker-pool.ts ownArrayBuffer): a shorter
 * view of a larger buffer would be copied instead.
 *
 * Ownership: take() hands out a buffer nobody else holds; give() must only be
 * called once nothing will read it again (for gRPC: after the write callback
 * of the message that carried it, by which time grpc-js has serialized it).
 */
export class ChunkBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;

  /** @param maxFreeBytes memory kept for reuse; buffers given back beyond it are left to the GC. */
  constructor(private readonly maxFreeBytes: number) {}

  take(lengthBytes: number): Buffer {
    const ab = this.free.get(lengthBytes)?.pop();
    if (ab) {
      this.freeBytes -= lengthBytes;
      return Buffer.from(ab, 0, lengthBytes);
    }
    return Buffer.allocUnsafeSlow(lengthBytes); // its own ArrayBuffer, never Node's shared pool
  }

  /** Gives back a buffer from take() (or the same memory returned by a worker). */
  give(buf: Buffer): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || buf.byteOffset !== 0 || buf.byteLength !== ab.byteLength || ab.byteLength === 0) return; // not one of ours
    if (this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    let list = this.free.get(ab.byteLength);
    if (!list) {
      list = [];
      this.free.set(ab.byteLength, list);
    }
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }

  /** Bytes kept for reuse (tests). */
  get keptBytes(): number {
    return this.freeBytes;
  }
}
