/**
 * A delay-line TCP relay: a test tool that makes a loopback connection behave
 * like a long link (issue 6). Each accepted connection is joined to a new
 * connection to the target; each direction is a "line" that
 *
 *  - serializes chunks at the link rate: a chunk of n bytes occupies the
 *    line for n·8/rate seconds after the previous one (a virtual clock,
 *    which is a token bucket with a burst of one chunk);
 *  - delivers it `delayMs` after its last byte was serialized (propagation);
 *  - holds at most `capacityBytes` (default rate × delay, the link's
 *    bandwidth-delay product, plus a bottleneck queue of `queueBytes`); when
 *    full it stops reading the source socket (backpressure, never drops),
 *    and reads again once the destination has taken a quarter of it (at
 *    most 256 KiB);
 *  - carries a half-close (FIN) through the line like data, so the far side
 *    sees the end of the stream after the same delay.
 *
 * Delivery times only grow within a line (fixed delay, FIFO serialization),
 * so a plain FIFO with one timer per line suffices: the timer fires for the
 * head, every chunk that is due is written in one corked batch, and the timer
 * is set for the next head. No per-chunk timers. Node's timers have 1 ms
 * granularity, so a chunk arrives 0–~1.5 ms late on an idle machine; stats()
 * reports the measured lateness.
 *
 * What this is not: TCP runs separately on each side of the relay (loopback,
 * ~0 RTT), as with a split-TCP proxy. Application-level flow control (HTTP/2
 * windows, which is what the relay is for) sees the full round trip, but the
 * kernel's TCP windows do not: on a real long link they must be tuned too
 * (see docs/wan.md).
 *
 * Its command line is src/cli/delay-relay.ts (this module installs no
 * process handlers and writes nothing to stderr).
 */
import * as net from 'node:net';

export interface DelayRelayOptions {
  /** Where to listen: host and port (0 picks a free one). */
  listenHost?: string;
  listenPort?: number;
  /** The target every connection is relayed to. */
  toHost: string;
  toPort: number;
  /** One-way delay in each direction (the RTT is twice this). */
  delayMs: number;
  /** Link rate in bits per second, each direction; Infinity or 0 = unlimited. */
  rateBitsPerSecond?: number;
  /** Bottleneck queue on top of the bandwidth-delay product (default 1 MiB). */
  queueBytes?: number;
  /** Overrides rate × delay + queue (required for an unlimited rate with a delay). */
  capacityBytes?: number;
}

export interface LineStats {
  /** Bytes delivered to the destination socket. */
  bytes: number;
  chunks: number;
  /** Delivery lateness against the scheduled time, in ms. */
  lateMsMax: number;
  lateMsMean: number;
  /** Most bytes held at once (read, not yet taken by the destination). */
  heldBytesMax: number;
  /** Times the source was paused because the line was full. */
  pauses: number;
}

export interface RelayStats {
  connections: number;
  /** Client → target. */
  up: LineStats;
  /** Target → client. */
  down: LineStats;
}

export interface DelayRelay {
  port: number;
  host: string;
  capacityBytes: number;
  stats(): RelayStats;
  /** Each open line's queue and pause state (diagnosis). */
  debug(): Record<string, unknown>[];
  /** Stops listening and destroys open connections. */
  close(): Promise<void>;
}

const DEFAULT_QUEUE_BYTES = 1024 * 1024;

/** Rates as tc writes them: 1gbit, 100mbit, 500kbit, 64000bit, or bits/s; "unlimited" or 0 for none. */
export function parseRate(s: string): number {
  const t = s.trim().toLowerCase();
  if (t === 'unlimited' || t === 'inf' || t === '0') return Infinity;
  const m = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|tbit)?(?:\/s|ps)?$/.exec(t);
  if (!m) throw new Error(`rate "${s}": expected e.g. 1gbit, 100mbit, 500kbit or bits per second`);
  const mult = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12 }[(m[2] ?? 'bit') as 'bit'];
  const v = Number(m[1]) * mult;
  if (!(v > 0)) throw new Error(`rate "${s}" must be positive`);
  return v;
}

/** rate × delay + queue, or the explicit capacity. */
export function lineCapacityBytes(o: Pick<DelayRelayOptions, 'delayMs' | 'rateBitsPerSecond' | 'queueBytes' | 'capacityBytes'>): number {
  if (o.capacityBytes !== undefined) return o.capacityBytes;
  const rate = o.rateBitsPerSecond || Infinity;
  const queue = o.queueBytes ?? DEFAULT_QUEUE_BYTES;
  if (!Number.isFinite(rate)) {
    if (o.delayMs > 0) throw new Error('an unlimited rate with a delay needs an explicit capacity (capacityBytes / --capacity): rate × delay is unbounded');
    return queue;
  }
  return Math.ceil((rate / 8) * (o.delayMs / 1000)) + queue;
}

interface Entry {
  buf: Buffer | null;
  dueMs: number;
}

/** One direction of one connection. */
class Line {
  private readonly q: Entry[] = [];
  private head = 0;
  private held = 0;
  private linkFreeMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private pausedByUs = false;
  private ended = false;
  private lateSum = 0;
  private readonly resumeBelow: number;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly delayMs: number,
    private readonly bytesPerMs: number,
    private readonly capacity: number,
    private readonly st: LineStats,
  ) {
    this.resumeBelow = capacity - Math.min(capacity / 4, 256 * 1024);
    src.on('data', (b: Buffer) => this.push(b));
    src.on('end', () => this.push(null));
  }

  /** Schedules a chunk (null: the FIN) at the end of the line. */
  private push(buf: Buffer | null): void {
    const now = performance.now();
    const start = Math.max(now, this.linkFreeMs);
    const txMs = buf && Number.isFinite(this.bytesPerMs) ? buf.length / this.bytesPerMs : 0;
    this.linkFreeMs = start + txMs;
    this.q.push({ buf, dueMs: start + txMs + this.delayMs });
    if (buf) {
      this.held += buf.length;
      if (this.held > this.st.heldBytesMax) this.st.heldBytesMax = this.held;
      if (this.held >= this.capacity && !this.pausedByUs) {
        this.pausedByUs = true;
        this.st.pauses++;
        this.src.pause();
      }
    }
    this.arm(now);
  }

  private arm(now: number): void {
    if (this.timer || this.immediate || this.head >= this.q.length) return;
    const wait = this.q[this.head]!.dueMs - now;
    // setTimeout(0) is really 1 ms: a chunk already due goes out on this turn's immediate instead.
    if (wait <= 0) this.immediate = setImmediate(() => this.flush());
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    this.immediate = undefined;
    const now = performance.now();
    if (this.dst.destroyed) return;
    this.dst.cork();
    while (this.head < this.q.length && this.q[this.head]!.dueMs <= now) {
      const e = this.q[this.head++]!;
      const late = now - e.dueMs;
      if (late > this.st.lateMsMax) this.st.lateMsMax = late;
      if (!e.buf) {
        this.ended = true;
        this.dst.end();
        continue;
      }
      const n = e.buf.length;
      this.st.bytes += n;
      this.st.chunks++;
      this.lateSum += late;
      this.st.lateMsMean = this.lateSum / this.st.chunks;
      // Held until the destination has taken it (callback): a stalled reader fills the line.
      this.dst.write(e.buf, () => this.taken(n));
    }
    this.dst.uncork();
    if (this.head > 1024 && this.head * 2 > this.q.length) {
      this.q.splice(0, this.head);
      this.head = 0;
    }
    if (!this.ended) this.arm(now);
  }

  private taken(n: number): void {
    this.held -= n;
    // Resume only once a good part of the line is free: resuming at every freed chunk
    // made many small reads and pause/resume calls (CPU) for the same throughput.
    if (this.pausedByUs && this.held <= this.resumeBelow) {
      this.pausedByUs = false;
      this.src.resume();
    }
  }

  /** The line's state, for a stuck-connection diagnosis (SIGUSR2 in the CLI). */
  debug(): Record<string, unknown> {
    return {
      queued: this.q.length - this.head,
      held: this.held,
      pausedByUs: this.pausedByUs,
      srcPaused: this.src.isPaused(),
      timer: !!this.timer,
      immediate: !!this.immediate,
      ended: this.ended,
      dstWritable: this.dst.writableLength,
      dstPending: this.dst.pending,
      srcReadable: this.src.readableLength,
    };
  }

  stop(): void {
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }
}

function emptyLineStats(): LineStats {
  return { bytes: 0, chunks: 0, lateMsMax: 0, lateMsMean: 0, heldBytesMax: 0, pauses: 0 };
}

export async function startDelayRelay(o: DelayRelayOptions): Promise<DelayRelay> {
  if (!(o.delayMs >= 0) || !Number.isFinite(o.delayMs)) throw new Error(`delay ${o.delayMs} ms must be a finite number >= 0`);
  const capacity = lineCapacityBytes(o);
  if (!(capacity >= 1)) throw new Error(`line capacity ${capacity} bytes must be at least 1`);
  const rate = o.rateBitsPerSecond || Infinity;
  const bytesPerMs = rate / 8 / 1000;
  const stats: RelayStats = { connections: 0, up: emptyLineStats(), down: emptyLineStats() };
  const open = new Set<net.Socket>();
  const lines = new Set<Line>();

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    stats.connections++;
    const target = net.connect({ host: o.toHost, port: o.toPort, allowHalfOpen: true, noDelay: true });
    const pair = [client, target];
    const up = new Line(client, target, o.delayMs, bytesPerMs, capacity, stats.up);
    const down = new Line(target, client, o.delayMs, bytesPerMs, capacity, stats.down);
    lines.add(up);
    lines.add(down);
    let closed = 0;
    for (const s of pair) {
      open.add(s);
      // An error on one side (reset, refused, write after close) resets the other, as a link carries an RST.
      // A clean close is a FIN, which the line carries in its turn.
      // (destroy() would send a FIN: the peer must see the reset, so resetAndDestroy().)
      s.on('error', () => {
        for (const x of pair)
          if (x === s) x.destroy();
          else if (!x.destroyed) x.resetAndDestroy();
      });
      s.on('close', (hadError) => {
        open.delete(s);
        if (hadError) for (const x of pair) x.destroy();
        if (++closed === 2) {
          up.stop();
          down.stop();
          lines.delete(up);
          lines.delete(down);
        }
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listenPort ?? 0, o.listenHost ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    host: addr.address,
    capacityBytes: capacity,
    stats: () => structuredClone(stats),
    debug: () => [...lines].map((l) => l.debug()),
    close: () =>
      new Promise<void>((resolve) => {
        for (const l of lines) l.stop();
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
