/**
 * Checksum + zero detection + zstd (level 1 unless told) for DATA chunks on
 * worker threads (stream/worker-pool.ts; one per core by default, 2 workers
 * scaled 1.86x on 2 cores). A chunk's memory
 * moves to the worker and back (transferred, not copied) when the Buffer owns
 * its whole ArrayBuffer or the ArrayBuffer is marked as the view's
 * (sender/chunk-buffers.ts: the gRPC sender's aligned read buffers); otherwise
 * it is copied once. Results come back as promises; callers keep their own FIFO
 * to preserve stream order.
 */
import { WorkerPool, defaultWorkerCount, ownArrayBuffer } from '../stream/worker-pool.js';
import { DEFAULT_ZSTD_LEVEL, checkZstdLevel, compressBound } from '../stream/zstd.js';
import { DEFAULT_MAX_OP_BYTES } from '../thin/plan.js';
import { COMPRESS_AHEAD_PER_WORKER } from './compress-stage.js';
import type { RecordChecksum } from '../stream/integrity.js';

/** Main -> worker. */
export interface ChunkJob {
  buf: ArrayBuffer;
  byteOffset: number;
  length: number;
  compress: boolean;
  /** zstd level (1-19, stream/zstd.ts checkZstdLevel). */
  level: number;
  /** The per-DATA checksum to compute (per job: one daemon's pool serves transfers of either). */
  checksum: RecordChecksum;
  /** FRAME_BYTES of memory to write the zstd frame into (recycled, see CompressPool.giveFrame); absent: the worker allocates. */
  out?: ArrayBuffer;
}

/** Worker -> main. */
export interface ChunkReply {
  id: number;
  buf: ArrayBuffer;
  byteOffset: number;
  length: number;
  checksum: ArrayBuffer;
  zero: boolean;
  /** The zstd frame: its first frameLength bytes (job.out when it had one). */
  frame?: ArrayBuffer;
  frameLength?: number;
  /** job.out back unused (no frame, or the frame went elsewhere). */
  spare?: ArrayBuffer;
  /** The worker's time on this chunk (checksum, zero check, zstd), seconds. */
  seconds: number;
}

export interface ChunkResult {
  /** The chunk's bytes (the same memory the caller handed in, returned by the worker). */
  raw: Buffer;
  /** The checksum of raw (the job's algorithm). */
  checksum: Buffer;
  /** raw is all zeros: send it without payload. */
  zero: boolean;
  /** One zstd frame of raw, present only when compressing shrank it enough; give it to giveFrame once nothing reads it. */
  frame?: Buffer;
  /** The chunk was compressed (a frame may still be absent: zeros, or it did not shrink enough). */
  compressed: boolean;
  /** The worker's time on this chunk, seconds (compress-decision.ts measures the compressor with it). */
  workerSeconds: number;
}

export interface CompressPoolOptions {
  /** Worker threads (default: one per core, stream/worker-pool.ts defaultWorkerCount). */
  workers?: number;
  /** false: checksum and zero detection only (frames never produced); process() may say otherwise per chunk. */
  compress?: boolean;
  /** zstd level (default 1; 1-19, stream/zstd.ts checkZstdLevel). */
  zstdLevel?: number;
}

/**
 * The frame memory handed to a worker with each chunk of up to
 * DEFAULT_MAX_OP_BYTES: room for its largest frame, so zstd writes straight
 * into it. Recycled: a fresh ArrayBuffer per frame was garbage the main
 * thread's GC had to find (docs/benchmarks.md, branch send14).
 */
const FRAME_BYTES = compressBound(DEFAULT_MAX_OP_BYTES);
/** Frames a transport holds after the workers (rpc/client.ts: 4 writes in flight, 2 waiting). */
const FRAMES_HELD_BY_TRANSPORT = 6;

export class CompressPool {
  private readonly pool: WorkerPool<ChunkJob, ChunkReply>;
  private readonly compress: boolean;
  private readonly level: number;
  private readonly freeFrames: ArrayBuffer[] = [];
  /** Frame buffers kept for reuse: every frame in flight (COMPRESS_AHEAD_PER_WORKER per worker, and the writes a transport holds). */
  private readonly maxFreeFrames: number;

  constructor(o: CompressPoolOptions = {}) {
    this.level = checkZstdLevel(o.zstdLevel ?? DEFAULT_ZSTD_LEVEL);
    this.pool = new WorkerPool(new URL('./compress-worker.js', import.meta.url), o.workers ?? defaultWorkerCount(), 'compression');
    this.compress = o.compress ?? true;
    this.maxFreeFrames = COMPRESS_AHEAD_PER_WORKER * this.pool.size + FRAMES_HELD_BY_TRANSPORT;
  }

  get size(): number {
    return this.pool.size;
  }

  /** Chunks in the workers now. */
  get pendingJobs(): number {
    return this.pool.pendingJobs;
  }

  /**
   * Processes one chunk. Takes ownership of `data`: if it owns its whole
   * ArrayBuffer (or that is marked as its: stream/worker-pool.ts
   * markWholeTransferable) that memory is transferred to the worker (data
   * becomes empty here) and comes back as result.raw, the same view of the same
   * memory; use only result.raw afterwards.
   * `compress` decides for this chunk (compress-decision.ts); default: the pool's.
   */
  async process(data: Buffer, checksum: RecordChecksum, compress = this.compress): Promise<ChunkResult> {
    const own = ownArrayBuffer(data);
    const out = compress && data.length <= DEFAULT_MAX_OP_BYTES ? this.takeFrame() : undefined;
    const m = await this.pool.run({ ...own, compress, level: this.level, checksum, out }, out ? [own.buf, out] : [own.buf]);
    if (m.spare) this.keepFrame(m.spare);
    return {
      raw: Buffer.from(m.buf, m.byteOffset, m.length),
      checksum: Buffer.from(m.checksum),
      zero: m.zero,
      frame: m.frame ? Buffer.from(m.frame, 0, m.frameLength ?? m.frame.byteLength) : undefined,
      compressed: compress && !m.zero,
      workerSeconds: m.seconds,
    };
  }

  /**
   * Gives a result's frame back for reuse once nothing will read it again
   * (for gRPC: after the write callback of its message, by which time it was
   * serialized). Frames of other sizes are left to the GC.
   */
  giveFrame(frame: Uint8Array): void {
    if (frame.buffer instanceof ArrayBuffer && frame.byteOffset === 0) this.keepFrame(frame.buffer);
  }

  /** Frame buffers kept for reuse (tests). */
  get keptFrames(): number {
    return this.freeFrames.length;
  }

  private takeFrame(): ArrayBuffer {
    for (let ab = this.freeFrames.pop(); ab; ab = this.freeFrames.pop()) if (ab.byteLength === FRAME_BYTES) return ab; // not one given twice (moved: detached)
    return new ArrayBuffer(FRAME_BYTES);
  }

  private keepFrame(ab: ArrayBuffer): void {
    if (ab.byteLength === FRAME_BYTES && this.freeFrames.length < this.maxFreeFrames && !this.freeFrames.includes(ab)) this.freeFrames.push(ab);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
