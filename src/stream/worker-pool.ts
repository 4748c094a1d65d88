/**
 * A small pool of worker threads for CPU work on chunks (zstd, sha256):
 * zstd-napi has no asynchronous API, so using more than one core means
 * workers. Jobs go to the worker with the fewest pending; each job's reply
 * settles its promise (callers keep their own FIFO for order). Memory is
 * moved with transfer lists, not copied. A worker that dies fails its
 * pending jobs and makes the pool refuse new ones.
 *
 * Protocol: the worker gets `{ id, ...job }` and answers `{ id, ...reply }`,
 * or `{ id, error: { code, message, details } }` for a ThinshipError.
 */
import { Worker, type Transferable } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { ThinshipError, type ErrorCode } from '../errors.js';

export interface WorkerErrorReply {
  id: number;
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

interface Pending<R> {
  resolve: (r: R) => void;
  reject: (e: Error) => void;
}

class PoolWorker<R> {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending<R>>();
  dead: Error | undefined;
  constructor(url: URL, what: string) {
    this.worker = new Worker(url);
    this.worker.on('message', (m: (R & { id: number }) | WorkerErrorReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if ('error' in m && m.error) p.reject(new ThinshipError(m.error.code, m.error.message, { details: m.error.details }));
      else p.resolve(m as R);
    });
    const fail = (e: Error) => {
      this.dead ??= e;
      for (const p of this.pending.values()) p.reject(new ThinshipError('INTERNAL', `${what} worker died: ${e.message}`, { cause: e }));
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(code === 0 ? 'worker exited' : `exit code ${code}`)));
  }
}

/**
 * More workers than this are not made by default: one stream's main thread
 * feeds about this many cores of zstd -1 (~0.5 GB/s each) before it is the limit.
 */
export const MAX_DEFAULT_WORKERS = 8;

/** Default: one worker per core (os.availableParallelism(), which honours CPU affinity), at most MAX_DEFAULT_WORKERS. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(MAX_DEFAULT_WORKERS, availableParallelism()));
}

/** The largest worker count accepted from a user (`--workers`, decodeWorkers). */
export const MAX_WORKERS = 256;

export class WorkerPool<J extends object, R> {
  private readonly workers: PoolWorker<R>[];
  private nextId = 1;
  private closed = false;

  constructor(
    url: URL,
    workers: number,
    private readonly what: string,
  ) {
    this.workers = Array.from({ length: Math.max(1, workers) }, () => new PoolWorker<R>(url, what));
  }

  get size(): number {
    return this.workers.length;
  }

  /** Jobs handed to the workers and not yet answered (the queue depth a metric shows). */
  get pendingJobs(): number {
    return this.workers.reduce((n, w) => n + w.pending.size, 0);
  }

  /** Runs one job; `transfer` lists the ArrayBuffers that move to the worker (unusable here afterwards). */
  run(job: J, transfer: Transferable[] = []): Promise<R> {
    if (this.closed) return Promise.reject(new ThinshipError('INTERNAL', `${this.what} pool used after close`));
    const w = this.workers.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    if (w.dead) return Promise.reject(new ThinshipError('INTERNAL', `${this.what} worker died: ${w.dead.message}`));
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      try {
        w.worker.postMessage({ ...job, id }, transfer);
      } catch (e) {
        w.pending.delete(id);
        reject(new ThinshipError('INTERNAL', `could not hand a job to the ${this.what} worker: ${(e as Error).message}`, { cause: e }));
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

/**
 * ArrayBuffers whose every byte belongs to whoever holds a view of them
 * (sender/chunk-buffers.ts: an aligned view inside a slightly larger buffer),
 * so ownArrayBuffer may transfer all of it with the view's offset and length.
 */
const wholeTransferable = new WeakSet<ArrayBuffer>();

/** Says that `ab` may move to a worker as a whole with any view of it (once: the mark ends at the next ownArrayBuffer). */
export function markWholeTransferable(ab: ArrayBuffer): void {
  wholeTransferable.add(ab);
}

/**
 * The memory of `b` as a transferable ArrayBuffer: its own if it owns all of
 * it or the whole buffer was marked (markWholeTransferable), else a copy.
 */
export function ownArrayBuffer(b: Uint8Array): { buf: ArrayBuffer; byteOffset: number; length: number } {
  if (b.buffer instanceof ArrayBuffer && wholeTransferable.delete(b.buffer)) return { buf: b.buffer, byteOffset: b.byteOffset, length: b.byteLength };
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer)
    return { buf: b.buffer, byteOffset: 0, length: b.byteLength };
  const copy = Buffer.allocUnsafeSlow(b.byteLength); // its own memory, not zero-filled first
  copy.set(b);
  return { buf: copy.buffer, byteOffset: 0, length: b.byteLength };
}

/** Serialises an error for a worker's reply. */
export function errorReply(id: number, e: unknown): WorkerErrorReply {
  if (e instanceof ThinshipError) return { id, error: { code: e.code, message: e.message, details: e.details } };
  return { id, error: { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) } };
}
