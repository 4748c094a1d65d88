/**
 * Worker thread of the compression pool (compress-pool.ts): for each chunk,
 * the checksum of the bytes (the job's algorithm), an all-zero check, and a zstd frame (the job's level) when that
 * is worth sending. Runs off the main thread because zstd-napi has no
 * asynchronous API; the chunk's memory is transferred here and back, not copied.
 */
import { parentPort } from 'node:worker_threads';
import { dataChecksum } from '../stream/integrity.js';
import { ChunkCompressor, isAllZero } from '../stream/zstd.js';
import { errorReply } from '../stream/worker-pool.js';
import type { ChunkJob, ChunkReply } from './compress-pool.js';

const port = parentPort;
if (!port) throw new Error('compress-worker.js must run as a worker thread');
const compressor = new ChunkCompressor();

port.on('message', (job: ChunkJob & { id: number }) => {
  try {
    const t0 = performance.now();
    const data = new Uint8Array(job.buf, job.byteOffset, job.length);
    const checksum = new Uint8Array(dataChecksum(data, job.checksum)); // its own ArrayBuffer, transferred back
    const zero = isAllZero(data);
    const frame = !zero && job.compress ? compressor.compress(data, job.level) : undefined;
    const frameBuf = frame?.buffer as ArrayBuffer | undefined; // the frame owns its whole ArrayBuffer
    const reply: ChunkReply = {
      id: job.id,
      buf: job.buf,
      byteOffset: job.byteOffset,
      length: job.length,
      checksum: checksum.buffer,
      zero,
      frame: frameBuf,
      seconds: (performance.now() - t0) / 1000,
    };
    port.postMessage(reply, [job.buf, checksum.buffer, ...(frameBuf ? [frameBuf] : [])]);
  } catch (e) {
    port.postMessage(errorReply(job.id, e));
  }
});
