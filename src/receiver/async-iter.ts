/**
 * Async-iteration helpers of the receiver's transfers: iterate a sender's
 * records until a signal fires or the sender stalls (abortable), and keep a
 * few next() calls outstanding so decoding overlaps writing (readAhead).
 * Nothing here knows a record.
 */
import { ThinshipError } from '../errors.js';

function abortError(signal: AbortSignal): ThinshipError {
  const r: unknown = signal.reason;
  return r instanceof ThinshipError
    ? r
    : new ThinshipError('ABORTED', `transfer stopped: ${r instanceof Error ? r.message : typeof r === 'string' ? r : 'aborted'}`);
}

/** What a sender must keep up (see TransferRegistryOptions). */
export interface ProgressRules {
  idleTimeoutMs: number;
  minBytesPerSecond: number;
  progressWindowMs: number;
}

/**
 * Iterates src until the signal fires, then throws (even while a next() is
 * pending on a silent peer). With `rules`: throws UNAVAILABLE (retryable)
 * when no item arrives within idleTimeoutMs, or when the bytes received
 * (sizeOf) over progressWindowMs spent waiting on src fall below
 * minBytesPerSecond. Only time spent waiting on the sender counts: a slow
 * target (the receiver not asking for more) never ends a call.
 */
export async function* abortable<T>(
  src: AsyncIterable<T>,
  signal: AbortSignal,
  rules?: ProgressRules,
  sizeOf: (v: T) => number = () => 0,
  beforeNext?: () => Promise<void>,
): AsyncGenerator<T> {
  const it = src[Symbol.asyncIterator]();
  let windowWaitMs = 0;
  let windowBytes = 0;
  try {
    for (;;) {
      // Waiting for the receiver's own resources (buffer budget) is not the sender's idleness.
      if (beforeNext) await beforeNext();
      // A fresh abort promise per record: racing every next() against one long-lived
      // promise would attach a reaction to it per record, and each reaction keeps its
      // record (payload included) alive until the transfer ends — measured as ~45% of
      // the volume in RSS on a full send.
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(abortError(signal));
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      });
      aborted.catch(() => undefined);
      let idle: NodeJS.Timeout | undefined;
      const racers: Promise<IteratorResult<T>>[] = [it.next(), aborted];
      if (rules) {
        racers.push(
          new Promise<never>((_, reject) => {
            idle = setTimeout(
              () =>
                reject(
                  new ThinshipError(
                    'UNAVAILABLE',
                    `no message from the sender for ${rules.idleTimeoutMs / 1000} s (idleTimeoutSeconds): the call is ended and the transfer checkpointed; resume it`,
                    { retryable: true },
                  ),
                ),
              rules.idleTimeoutMs,
            );
          }),
        );
      }
      const t0 = performance.now();
      let r: IteratorResult<T>;
      try {
        r = await Promise.race(racers);
      } finally {
        signal.removeEventListener('abort', onAbort!);
        clearTimeout(idle);
      }
      if (r.done) return;
      if (rules && rules.minBytesPerSecond > 0) {
        windowWaitMs += performance.now() - t0;
        windowBytes += sizeOf(r.value);
        if (windowWaitMs >= rules.progressWindowMs) {
          const rate = windowBytes / (windowWaitMs / 1000);
          if (rate < rules.minBytesPerSecond) {
            throw new ThinshipError(
              'UNAVAILABLE',
              `the sender sent ${windowBytes} bytes in ${(windowWaitMs / 1000).toFixed(1)} s of waiting (${Math.round(rate)} B/s), below this receiver's minBytesPerSecond ${rules.minBytesPerSecond}: the call is ended and the transfer checkpointed; resume it`,
              { retryable: true },
            );
          }
          windowWaitMs = 0;
          windowBytes = 0;
        }
      }
      yield r.value;
    }
  } finally {
    void Promise.resolve(it.return?.()).catch(() => undefined); // not awaited: it may sit behind a pending next()
  }
}

/** Keeps up to n next() calls of src outstanding, so its work overlaps the consumer's. */
export async function* readAhead<T>(src: AsyncIterator<T>, n: number): AsyncGenerator<T> {
  const q: Promise<IteratorResult<T>>[] = [];
  const pull = () => {
    const p = src.next();
    p.catch(() => undefined);
    q.push(p);
  };
  try {
    for (let i = 0; i < n; i++) pull();
    for (;;) {
      const r = await q.shift()!;
      if (r.done) return;
      pull();
      yield r.value;
    }
  } finally {
    void Promise.resolve(src.return?.(undefined)).catch(() => undefined);
  }
}
