/**
 * Bandwidth limit (`--bwlimit RATE`): a token bucket in its virtual-time form
 * (GCRA). The bucket keeps the time at which everything taken so far has
 * drained at the rate; n bytes may go once that time, n included, is at most
 * one burst ahead of now. So over any interval the bytes let through are at
 * most rate × time + one burst, and an idle sender cannot save up more. The burst is one chunk: the
 * limit shapes the wire, it does not split records.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  /** When, in ms on `now`'s clock, the bytes taken so far have all "drained" at the rate. */
  private tatMs: number;
  private readonly burstMs: number;

  constructor(
    readonly bytesPerSecond: number,
    readonly burstBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`bandwidth limit must be a positive rate, not ${bytesPerSecond}`);
    if (!(burstBytes > 0)) throw new RangeError(`burst must be positive, not ${burstBytes}`);
    this.burstMs = (burstBytes * 1000) / bytesPerSecond;
    this.tatMs = now();
  }

  /** Reserves n bytes; returns how many ms to wait before sending them (0: now). Synchronous, so concurrent takers queue fairly. */
  reserve(bytes: number): number {
    const now = this.now();
    this.tatMs = Math.max(this.tatMs, now) + (bytes * 1000) / this.bytesPerSecond;
    return Math.max(0, this.tatMs - this.burstMs - now);
  }

  /** Waits until n bytes may go. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const waitMs = this.reserve(bytes);
    if (waitMs > 0) await sleep(waitMs, undefined, { signal });
  }
}

/** Passes byte chunks through at most at the bucket's rate. */
export async function* throttled(source: AsyncIterable<Uint8Array>, bucket: TokenBucket | undefined, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    if (bucket) await bucket.take(chunk.length, signal);
    yield chunk;
  }
}
