/**
 * The sending core's compression stage, transport-neutral (docs/architecture.md):
 * DATA messages from sendMessages() go through the worker pool (the begin's checksum,
 * zero detection, zstd at the pool's level; compress-pool.ts) and come out,
 * in stream order, with what the workers found; begin, unmap and end pass
 * through in their place. A transport maps what comes out to its own
 * records (rpc/client.ts: ApplyStream requests) and does not know there are
 * workers.
 *
 * At most `aheadItems` messages wait here at once (DATA in the workers, and
 * the UNMAPs queued behind them), so the workers keep busy while the
 * consumer writes; a message that has nothing ahead of it passes at once
 * (the begin goes out before the first chunk is read).
 *
 * With a CompressDecision, each chunk is compressed or not as it decides
 * (`--compress auto`), and the workers' time on compressed chunks feeds it.
 */
import type { BeginMessage, EndMessage, StreamMessage, UnmapMessage } from '../stream/messages.js';
import type { ChunkResult, CompressPool } from './compress-pool.js';
import { recordChecksumOf, type RecordChecksum } from '../stream/integrity.js';
import type { CompressDecision } from './compress-decision.js';

/** Chunks per worker in flight: one being worked on, one waiting, so a worker never waits for the main thread. */
export const COMPRESS_AHEAD_PER_WORKER = 2;

/** A DATA record after the workers: its bytes (result.raw), checksum, zero flag and, when it pays, a zstd frame. */
export interface PreparedData {
  type: 'data';
  offsetBytes: number;
  lengthBytes: number;
  result: ChunkResult;
}

export type PreparedMessage = BeginMessage | PreparedData | UnmapMessage | EndMessage;

type Waiting = { type: 'data'; offsetBytes: number; lengthBytes: number; result: Promise<ChunkResult> } | BeginMessage | UnmapMessage | EndMessage;

/**
 * Runs `messages` through `pool`. Each DATA message's buffer belongs to the
 * pool once it is read here (its memory moves to a worker); the consumer
 * gets it back as result.raw. Records in pieces are not supported (the
 * sending core never makes them).
 */
export async function* compressStage(
  messages: AsyncIterable<StreamMessage>,
  pool: CompressPool,
  decision?: CompressDecision,
  aheadItems = COMPRESS_AHEAD_PER_WORKER * pool.size,
): AsyncGenerator<PreparedMessage> {
  const fifo: Waiting[] = [];
  /** The begin's per-DATA checksum, computed by the workers (a stream whose begin does not say: sha256). */
  let algorithm: RecordChecksum | undefined = recordChecksumOf({});
  const out = async (w: Waiting): Promise<PreparedMessage> =>
    w.type === 'data' ? { type: 'data', offsetBytes: w.offsetBytes, lengthBytes: w.lengthBytes, result: await w.result } : w;
  try {
    for await (const m of messages) {
      if (m.type === 'begin') algorithm = recordChecksumOf(m.info);
      if (m.type === 'data') {
        if (m.piece !== undefined) throw new Error('compressStage: a DATA record in pieces cannot be compressed as one chunk');
        if (algorithm === undefined) throw new Error('compressStage: DATA in a stream whose begin has no checksums (the workers compute one)');
        const lengthBytes = m.data.length;
        const result = pool.process(m.data, algorithm, decision?.next()); // m.data now belongs to the pool
        result.then(
          (c) => c.compressed && decision?.noteCompressed(lengthBytes, c.workerSeconds),
          () => undefined, // awaited in order below
        );
        fifo.push({ type: 'data', offsetBytes: m.offsetBytes, lengthBytes, result });
      } else if (fifo.length === 0) {
        yield m;
        continue;
      } else {
        fifo.push(m);
      }
      while (fifo.length > aheadItems) yield await out(fifo.shift()!);
    }
    while (fifo.length > 0) yield await out(fifo.shift()!);
  } finally {
    // A consumer that stops early: the chunks still in the workers are dropped with the pool's replies.
    fifo.length = 0;
  }
}
