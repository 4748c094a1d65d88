/**
 * Worker thread of the receiver's decode pool (decode-pool.ts): decompress
 * and checksum one DATA record (decode-data.ts). The payload arrives
 * transferred (gRPC's message buffer, or a copy), a zstd record with a
 * recycled buffer to decompress into; the bytes go back transferred.
 */
import { parentPort } from 'node:worker_threads';
import { ChunkDecompressor } from '../stream/zstd.js';
import { errorReply, ownArrayBuffer } from '../stream/worker-pool.js';
import { checkData } from './decode-data.js';
import type { DecodeJob, DecodeReply } from './decode-pool.js';

const port = parentPort;
if (!port) throw new Error('decode-worker.js must run as a worker thread');
const dz = new ChunkDecompressor();

port.on('message', (job: DecodeJob & { id: number }) => {
  try {
    const r = checkData(
      {
        offsetBytes: job.offsetBytes,
        lengthBytes: job.lengthBytes,
        encoding: job.encoding,
        payload: new Uint8Array(job.buf, job.byteOffset, job.length),
        checksum: job.checksum ? { algorithm: job.checksum.algorithm, expected: new Uint8Array(job.checksum.expected) } : undefined,
        into: job.into,
      },
      dz,
    );
    const sum = r.sum ? new Uint8Array(r.sum).buffer : undefined;
    // Raw data is the payload itself: send the job's buffer back as it came (a view into it,
    // no copy); decompressed data is in the recycled buffer, or owns its buffer (allocUnsafeSlow).
    const whole = r.data.buffer === job.buf || (job.into !== undefined && r.data.buffer === job.into);
    const own = whole ? { buf: r.data.buffer as ArrayBuffer, byteOffset: r.data.byteOffset, length: r.data.byteLength } : ownArrayBuffer(r.data);
    const reply: DecodeReply = { id: job.id, buf: own.buf, byteOffset: own.byteOffset, length: own.length, sum };
    port.postMessage(reply, [own.buf]);
  } catch (e) {
    port.postMessage(errorReply(job.id, e));
  }
});
