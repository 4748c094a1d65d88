import { nativeDevice } from '../device/native.js';
import { DIRECT_ALIGN_BYTES } from './volume-reader.js';
import { markWholeTransferable } from '../stream/worker-pool.js';

/**
 * Recycled read buffers for the gRPC sender. A fresh 1 MiB Buffer per read
 * cost the sender's main thread a quarter of its time in garbage collection
 * (external memory churn; profile in docs/benchmarks.md). Each buffer is a
 * view starting at a DIRECT_ALIGN_BYTES-aligned address inside an
 * ArrayBuffer of its length + DIRECT_ALIGN_BYTES, so the reader can use
 * O_DIRECT (volume-reader.ts DirectReads) and no page cache is filled or
 * dropped. A chunk moves to a compression worker and back as that whole
 * ArrayBuffer with its offset and length (take() marks it with
 * stream/worker-pool.ts markWholeTransferable, so nothing is copied); a
 * transferred ArrayBuffer comes back as a new object over the same memory,
 * so give() knows its buffers by shape (length + DIRECT_ALIGN_BYTES, aligned
 * start), not by identity. Free lists are kept by exact length.
 *
 * Ownership: take() hands out a buffer nobody else holds; give() must only be
 * called once nothing will read it again (for gRPC: after the write callback
 * of the message that carried it, by which time grpc-js has serialized it).
 */
export class ChunkBuffers implements ReadBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;

  /** @param maxFreeBytes memory kept for reuse; buffers given back beyond it are left to the GC. */
  constructor(private readonly maxFreeBytes: number) {}

  take(lengthBytes: number): Buffer {
    let ab = this.free.get(lengthBytes)?.pop();
    if (ab) this.freeBytes -= ab.byteLength;
    else ab = new ArrayBuffer(lengthBytes + DIRECT_ALIGN_BYTES);
    markWholeTransferable(ab);
    return Buffer.from(ab, alignedStart(ab), lengthBytes);
  }

  /** Gives back a buffer from take() (or the same memory returned by a worker); anything else is ignored. */
  give(buf: Uint8Array): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || buf.byteLength === 0 || ab.byteLength !== buf.byteLength + DIRECT_ALIGN_BYTES || buf.byteOffset !== alignedStart(ab))
      return; // not one of ours
    if (this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    let list = this.free.get(buf.byteLength);
    if (!list) {
      list = [];
      this.free.set(buf.byteLength, list);
    }
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }

  /** Bytes kept for reuse (tests). */
  get keptBytes(): number {
    return this.freeBytes;
  }
}

/** Where the first DIRECT_ALIGN_BYTES-aligned byte of `ab` is (the addon knows its address). */
function alignedStart(ab: ArrayBuffer): number {
  return (DIRECT_ALIGN_BYTES - nativeDevice().addressMod(ab, DIRECT_ALIGN_BYTES)) % DIRECT_ALIGN_BYTES;
}

/** What the sending core reads into (sender.ts): a fresh or recycled buffer of exactly the asked length. */
export interface ReadBuffers {
  take(lengthBytes: number): Buffer;
}

/**
 * Recycled read buffers for pipe mode (cli/commands/send.ts). Every read is
 * a view of the first `lengthBytes` of a slab of `slabBytes` (the largest op),
 * so ops of any length share one free list. Nothing here leaves the thread,
 * so a slab is known by its ArrayBuffer: give() ignores anything else (the
 * encoder's header buffers, a buffer given twice). Fresh 1 MiB buffers per
 * read were a send's largest source of garbage: its peak RSS held ~60 MiB of
 * dead read buffers waiting for the GC (docs/benchmarks.md). Each view starts
 * at a DIRECT_ALIGN_BYTES-aligned address, so the reader can use O_DIRECT
 * (volume-reader.ts DirectReads).
 */
export class ReadSlabs implements ReadBuffers {
  private readonly free: ArrayBuffer[] = [];
  private readonly lent = new WeakSet<ArrayBuffer>();
  /** Where each slab's aligned view starts. */
  private readonly alignAt = new WeakMap<ArrayBuffer, number>();

  /** @param maxFreeSlabs slabs kept for reuse; more given back are left to the GC. */
  constructor(
    private readonly slabBytes: number,
    private readonly maxFreeSlabs: number,
  ) {}

  take(lengthBytes: number): Buffer {
    if (lengthBytes > this.slabBytes) return Buffer.allocUnsafeSlow(lengthBytes); // larger than any planned op: not recycled
    let ab = this.free.pop();
    if (!ab) {
      ab = new ArrayBuffer(this.slabBytes + DIRECT_ALIGN_BYTES);
      this.alignAt.set(ab, alignedStart(ab));
    }
    const at = this.alignAt.get(ab)!;
    this.lent.add(ab);
    return Buffer.from(ab, at, lengthBytes);
  }

  /** Gives back a buffer from take() once nothing will read it again; anything else is ignored. */
  give(buf: Uint8Array): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.lent.has(ab)) return;
    this.lent.delete(ab);
    if (this.free.length < this.maxFreeSlabs) this.free.push(ab);
  }

  /** Slabs kept for reuse (tests). */
  get keptSlabs(): number {
    return this.free.length;
  }
}
