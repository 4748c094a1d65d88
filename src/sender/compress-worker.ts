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
    let frameBuf: ArrayBuffer | undefined;
    let frameLength: number | undefined;
    let spare = job.out;
    if (!zero && job.compress) {
      // Straight into the main thread's recycled frame buffer when it came with one, else a fresh frame.
      const n = spare ? compressor.compressInto(data, new Uint8Array(spare), job.level) : undefined;
      if (n === undefined) {
        const frame = compressor.compress(data, job.level);
        frameBuf = frame?.buffer as ArrayBuffer | undefined; // the frame owns its whole ArrayBuffer
        frameLength = frame?.length;
      } else if (n > 0) {
        frameBuf = spare;
        frameLength = n;
        spare = undefined;
      }
    }
    const reply: ChunkReply = {
      id: job.id,
      buf: job.buf,
      byteOffset: job.byteOffset,
      length: job.length,
      checksum: checksum.buffer,
      zero,
      frame: frameBuf,
      frameLength,
      spare,
      seconds: (performance.now() - t0) / 1000,
    };
    port.postMessage(reply, [job.buf, checksum.buffer, ...(frameBuf ? [frameBuf] : []), ...(spare ? [spare] : [])]);
  } catch (e) {
    port.postMessage(errorReply(job.id, e));
  }
});
