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

export class DecodePool {
  private readonly pool: WorkerPool<DecodeJob, DecodeReply>;

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
    const r = await this.pool.run(job, [job.buf]);
    return { data: Buffer.from(r.buf, r.byteOffset, r.length), sum: r.sum ? Buffer.from(r.sum) : undefined };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
