/**
 * A receiver-wide budget of bytes held in memory by running transfers
 * (records received and being decoded or written). A transfer reserves its
 * worst case before it asks gRPC for the next message, and gives back the
 * difference once it sees the message; the rest is given back when the
 * record has been written. Waiters are served first come, first served, so a
 * fast transfer cannot starve the others.
 *
 * No deadlock: a transfer reserves for its records in stream order, so any
 * transfer holding budget holds it for its oldest unwritten record, which
 * needs nothing more to be written and given back. One request is never
 * more than the whole budget (it is clamped).
 */
import { ThinshipError } from '../errors.js';

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class BufferBudget {
  private availableBytes: number;
  private readonly waiters: Waiter[] = [];

  constructor(readonly totalBytes: number) {
    this.availableBytes = totalBytes;
  }

  get heldBytes(): number {
    return this.totalBytes - this.availableBytes;
  }

  /** For a debug dump: what is held, and the queue of waiters (bytes each, head first). */
  snapshot(): { totalBytes: number; heldBytes: number; waiting: number[] } {
    return { totalBytes: this.totalBytes, heldBytes: this.heldBytes, waiting: this.waiters.map((w) => w.bytes) };
  }

  /** Reserves bytes (clamped to the total); waits in line while they are not free. Rejects when signal fires. */
  async acquire(bytes: number, signal: AbortSignal): Promise<number> {
    const n = Math.min(Math.max(0, Math.ceil(bytes)), this.totalBytes);
    if (this.waiters.length === 0 && n <= this.availableBytes) {
      this.availableBytes -= n;
      return n;
    }
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new ThinshipError('ABORTED', 'stopped while waiting for buffer budget');
    await new Promise<void>((resolve, reject) => {
      const w: Waiter = { bytes: n, resolve, reject };
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal.reason instanceof Error ? signal.reason : new ThinshipError('ABORTED', 'stopped while waiting for buffer budget'));
        this.wake(); // the head may have left: the next one may fit
      };
      w.resolve = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
    });
    return n;
  }

  release(bytes: number): void {
    if (bytes <= 0) return;
    this.availableBytes = Math.min(this.totalBytes, this.availableBytes + bytes);
    this.wake();
  }

  private wake(): void {
    while (this.waiters.length > 0 && this.waiters[0]!.bytes <= this.availableBytes) {
      const w = this.waiters.shift()!;
      this.availableBytes -= w.bytes;
      w.resolve();
    }
  }
}
