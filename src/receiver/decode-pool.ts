/**
 * Decompression and checksums of DATA records on worker threads, so the
 * receiver's main thread is left with gRPC, TLS and the device writes (on the
 * main thread alone, zstd + sha256 capped a receiver near 400 MiB/s of data
 * here). One pool serves every transfer of a receiver.
 */
import { WorkerPool, defaultWorkerCount } from '../stream/worker-pool.js';
import type { DataCheck, DataChecked } from './decode-data.js';
import type { RecordChecksum } from '../stream/integrity.js';

export interface DecodeJob {
  buf: ArrayBuffer;
  /** zstd: a recycled buffer of at least lengthBytes to decompress into (transferred too). */
  into?: ArrayBuffer;
  byteOffset: number;
  length: number;
  offsetBytes: number;
  lengthBytes: number;
  encoding: 'raw' | 'zstd';
  checksum?: { algorithm: RecordChecksum; expected: ArrayBuffer };
}

export interface DecodeReply {
  id: number;
  buf: ArrayBuffer;
  byteOffset: number;
  length: number;
  sum?: ArrayBuffer;
}

/** Records smaller than this decompress into new buffers (no recycling). */
const RECYCLE_MIN_BYTES = 64 * 1024;
/** Spare buffers kept for reuse, all transfers together (the buffer budget does not count them). */
const SPARE_MAX_BUFFERS = 8;
const SPARE_MAX_BYTES = 16 * 1024 * 1024;

export class DecodePool {
  private readonly pool: WorkerPool<DecodeJob, DecodeReply>;
  /**
   * Buffers the workers sent back whose records have been written (recycle):
   * zstd records decompress into them instead of a new buffer each. A 1 MiB
   * output per record was the receiver main thread's largest source of
   * external memory, which V8 answers with full garbage collections.
   */
  private readonly spare: ArrayBuffer[] = [];
  private spareBytes = 0;
  /** Buffers that came back from a worker and are not yet recycled: the only ones recycle takes. */
  private readonly fromWorkers = new WeakSet<ArrayBuffer>();

  constructor(workers = defaultWorkerCount()) {
    this.pool = new WorkerPool(new URL('./decode-worker.js', import.meta.url), workers, 'decode');
  }

  /** Records in the workers now. */
  get pendingJobs(): number {
    return this.pool.pendingJobs;
  }

  /**
   * Like checkData, on a worker. A detachable payload's buffer (gRPC's buffer
   * of that one message) is handed over as it is; otherwise the payload is
   * copied. Each copy of a 4 MiB record is 4 MiB more for the garbage
   * collector: with 16 transfers that garbage was the largest part of the
   * receiver's peak memory.
   */
  async check(c: DataCheck): Promise<DataChecked> {
    const p = c.payload;
    // Copied first: the checksum may be a view into the buffer handed over below.
    const checksum = c.checksum ? { algorithm: c.checksum.algorithm, expected: new Uint8Array(c.checksum.expected).buffer } : undefined;
    let job: DecodeJob;
    if (c.detachable && p.buffer instanceof ArrayBuffer) {
      job = {
        buf: p.buffer,
        byteOffset: p.byteOffset,
        length: p.byteLength,
        offsetBytes: c.offsetBytes,
        lengthBytes: c.lengthBytes,
        encoding: c.encoding,
        checksum,
      };
    } else {
      // allocUnsafeSlow: memory of its own (transferable), not zero-filled before the copy.
      const copy = Buffer.allocUnsafeSlow(p.byteLength);
      copy.set(p);
      job = { buf: copy.buffer, byteOffset: 0, length: p.byteLength, offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes, encoding: c.encoding, checksum };
    }
    if (c.encoding === 'zstd' && c.lengthBytes >= RECYCLE_MIN_BYTES) job.into = this.takeSpare(c.lengthBytes);
    const r = await this.pool.run(job, job.into ? [job.buf, job.into] : [job.buf]);
    this.fromWorkers.add(r.buf);
    return { data: Buffer.from(r.buf, r.byteOffset, r.length), sum: r.sum ? Buffer.from(r.sum) : undefined };
  }

  /**
   * Gives back the memory of `data` (what check returned) once nothing reads
   * it any more (it has been written): a later zstd record decompresses into
   * it. Only buffers a worker sent back are taken, each once.
   */
  recycle(data: Uint8Array): void {
    const buf = data.buffer;
    if (!(buf instanceof ArrayBuffer) || !this.fromWorkers.has(buf)) return;
    this.fromWorkers.delete(buf);
    if (buf.byteLength < RECYCLE_MIN_BYTES || this.spare.length >= SPARE_MAX_BUFFERS || this.spareBytes + buf.byteLength > SPARE_MAX_BYTES) return;
    this.spare.push(buf);
    this.spareBytes += buf.byteLength;
  }

  /** A spare buffer of at least `bytes` and at most twice that (a larger one would hold memory for nothing), if any. */
  private takeSpare(bytes: number): ArrayBuffer | undefined {
    const i = this.spare.findIndex((b) => b.byteLength >= bytes && b.byteLength <= 2 * bytes);
    if (i < 0) return undefined;
    const [b] = this.spare.splice(i, 1);
    this.spareBytes -= b!.byteLength;
    return b;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
