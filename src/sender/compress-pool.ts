/**
 * Checksum + zero detection + zstd level 1 for DATA chunks on worker threads
 * (zstd-napi has no asynchronous API: every call runs on the calling thread,
 * so using both cores means workers; 2 workers scaled 1.86x here).
 *
 * A chunk's memory moves to the worker and back (transferred, not copied)
 * when the Buffer owns its whole ArrayBuffer, as the sender's read buffers
 * do; otherwise it is copied once. Results come back as promises; callers
 * keep their own FIFO to preserve stream order.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { ThinshipError } from '../errors.js';

/** Main -> worker. */
export interface ChunkJob {
  id: number;
  buf: ArrayBuffer;
  byteOffset: number;
  length: number;
  compress: boolean;
}

/** Worker -> main. */
export type ChunkReply =
  | { id: number; buf: ArrayBuffer; byteOffset: number; length: number; checksum: ArrayBuffer; zero: boolean; frame?: ArrayBuffer }
  | { id: number; error: string };

export interface ChunkResult {
  /** The chunk's bytes (the same memory the caller handed in, returned by the worker). */
  raw: Buffer;
  /** sha256 of raw. */
  checksum: Buffer;
  /** raw is all zeros: send it without payload. */
  zero: boolean;
  /** One zstd frame of raw, present only when compressing shrank it enough. */
  frame?: Buffer;
}

interface Pending { resolve: (r: ChunkResult) => void; reject: (e: Error) => void }

class PoolWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  dead: Error | undefined;
  constructor(url: URL) {
    this.worker = new Worker(url);
    this.worker.on('message', (m: ChunkReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if ('error' in m) { p.reject(new ThinshipError('INTERNAL', `compression worker failed: ${m.error}`)); return; }
      p.resolve({
        raw: Buffer.from(m.buf, m.byteOffset, m.length),
        checksum: Buffer.from(m.checksum),
        zero: m.zero,
        frame: m.frame ? Buffer.from(m.frame) : undefined,
      });
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(new ThinshipError('INTERNAL', `compression worker died: ${e.message}`, { cause: e }));
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => { if (code !== 0) fail(new Error(`exit code ${code}`)); else fail(new Error('worker exited')); });
  }
}

export interface CompressPoolOptions {
  /** Worker threads (default: 2, or 1 on a single core). */
  workers?: number;
  /** false: checksum and zero detection only (frames never produced). */
  compress?: boolean;
}

export class CompressPool {
  private readonly workers: PoolWorker[];
  private readonly compress: boolean;
  private nextId = 1;
  private closed = false;

  constructor(o: CompressPoolOptions = {}) {
    const n = Math.max(1, o.workers ?? Math.min(2, availableParallelism()));
    const url = new URL('./compress-worker.js', import.meta.url);
    this.workers = Array.from({ length: n }, () => new PoolWorker(url));
    this.compress = o.compress ?? true;
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Processes one chunk. Takes ownership of `data`: if it owns its whole
   * ArrayBuffer that memory is transferred to the worker (data becomes empty
   * here) and comes back as result.raw; use only result.raw afterwards.
   */
  process(data: Buffer): Promise<ChunkResult> {
    if (this.closed) return Promise.reject(new ThinshipError('INTERNAL', 'compression pool used after close'));
    const w = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    if (w.dead) return Promise.reject(new ThinshipError('INTERNAL', `compression worker died: ${w.dead.message}`));
    const owns = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    const ab = owns ? (data.buffer as ArrayBuffer) : new Uint8Array(data).buffer;
    const id = this.nextId++;
    return new Promise<ChunkResult>((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      const job: ChunkJob = { id, buf: ab, byteOffset: 0, length: data.byteLength, compress: this.compress };
      try {
        w.worker.postMessage(job, [ab]);
      } catch (e) {
        w.pending.delete(id);
        reject(new ThinshipError('INTERNAL', `could not hand a chunk to the compression worker: ${(e as Error).message}`, { cause: e }));
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
