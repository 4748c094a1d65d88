/**
 * `--compress auto` (the default of `send --to`): zstd only while it pays, as
 * `zstd --adapt` does. Compressing a chunk pays when the link (everything
 * downstream of the sender: network, receiver) moves fewer bytes per second
 * than the compression workers can eat: then the data rate is bounded by the
 * link and shrinking the bytes raises it. When the link is faster than the
 * compressor, compression is the bottleneck and raw chunks go faster (and the
 * receiver saves the decompression too).
 *
 * Both sides are measured as capacities, not as the rate the transfer happens
 * to run at (which is the smaller of the two):
 * - the compressor: input bytes per second of a worker's time spent on a
 *   compressed chunk (checksum, zero check and zstd), times the workers;
 * - the link: wire bytes per second of the time at least one write was
 *   pending at the transport (LinkMeter), so a link that waits for data is
 *   not mistaken for a slow one.
 * Each is a moving average over windows of at least RATE_WINDOW_BYTES. While
 * the chunks go raw, one in PROBE_EVERY_CHUNKS is still compressed, so the
 * compressor's rate stays current (the machine's load changes). Switching
 * needs a HYSTERESIS margin, so two close rates do not flip every chunk.
 *
 * No timers here: callers give measured bytes and seconds, and LinkMeter
 * takes its clock as a parameter (tests drive both by hand).
 */

export type CompressMode = 'auto' | 'zstd' | 'none';

/** Bytes a rate sample covers at least, so one chunk's scheduling noise does not decide. */
export const RATE_WINDOW_BYTES = 4 * 1024 * 1024;
/** Weight of a new window in the moving average. */
const RATE_SMOOTHING = 0.25;
/** While sending raw: compress one chunk in this many to keep the compressor's rate current. */
export const PROBE_EVERY_CHUNKS = 16;
/** A switch needs the other side to be ahead by this factor. */
export const HYSTERESIS = 1.15;

/** A moving average of bytes per second, fed in windows of at least RATE_WINDOW_BYTES. */
class RateAverage {
  private windowBytes = 0;
  private windowSeconds = 0;
  /** Bytes per second; undefined until a first window is complete. */
  bytesPerSecond: number | undefined;

  add(bytes: number, seconds: number): void {
    if (!(bytes >= 0) || !(seconds >= 0)) return;
    this.windowBytes += bytes;
    this.windowSeconds += seconds;
    if (this.windowBytes < RATE_WINDOW_BYTES || this.windowSeconds <= 0) return;
    const rate = this.windowBytes / this.windowSeconds;
    this.bytesPerSecond = this.bytesPerSecond === undefined ? rate : this.bytesPerSecond + RATE_SMOOTHING * (rate - this.bytesPerSecond);
    this.windowBytes = 0;
    this.windowSeconds = 0;
  }
}

/** The per-chunk decision of a send's compression mode. */
export class CompressDecision {
  private readonly compressor = new RateAverage();
  private readonly link = new RateAverage();
  /** auto: the current choice (compress until measured otherwise: zstd is the safe default on a slow link). */
  private compressing = true;
  private rawSinceProbe = 0;
  /** Chunks decided each way (for the summary and tests). */
  readonly decided = { compress: 0, raw: 0 };

  /** @param workers the compression workers that run side by side (the pool's size). */
  constructor(
    readonly mode: CompressMode,
    private readonly workers: number,
  ) {}

  /** A worker spent `seconds` on a compressed chunk of `rawBytes`. */
  noteCompressed(rawBytes: number, seconds: number): void {
    this.compressor.add(rawBytes, seconds);
  }

  /** The transport moved `wireBytes` in `busySeconds` of having writes pending (LinkMeter). */
  noteLink(wireBytes: number, busySeconds: number): void {
    this.link.add(wireBytes, busySeconds);
  }

  /** Input bytes per second the workers can compress together; undefined until measured. */
  get compressorBytesPerSecond(): number | undefined {
    const r = this.compressor.bytesPerSecond;
    return r === undefined ? undefined : r * this.workers;
  }

  /** Wire bytes per second the link can take; undefined until measured. */
  get linkBytesPerSecond(): number | undefined {
    return this.link.bytesPerSecond;
  }

  /** Whether the next chunk is compressed. */
  next(): boolean {
    const yes = this.decide();
    this.decided[yes ? 'compress' : 'raw']++;
    return yes;
  }

  private decide(): boolean {
    if (this.mode !== 'auto') return this.mode === 'zstd';
    const c = this.compressorBytesPerSecond;
    const l = this.linkBytesPerSecond;
    if (c !== undefined && l !== undefined) {
      if (this.compressing && l > c * HYSTERESIS) this.compressing = false;
      else if (!this.compressing && l * HYSTERESIS < c) this.compressing = true;
    }
    if (this.compressing) return true;
    if (++this.rawSinceProbe >= PROBE_EVERY_CHUNKS) {
      this.rawSinceProbe = 0;
      return true;
    }
    return false;
  }
}

/**
 * Time the transport had writes pending, and the bytes those writes carried:
 * start() when a write is handed over, done() when its callback says it left.
 * The clock is a parameter (performance.now by default) so tests need no timers.
 */
export class LinkMeter {
  private pending = 0;
  /** Start of the busy time not yet reported. */
  private markMs = 0;

  constructor(
    private readonly report: (wireBytes: number, busySeconds: number) => void,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  start(): void {
    if (this.pending++ === 0) this.markMs = this.nowMs();
  }

  /** A write of `wireBytes` has left: reports it with the busy time since the last report (idle gaps excluded). */
  done(wireBytes: number): void {
    if (this.pending === 0) return;
    this.pending--;
    const now = this.nowMs();
    this.report(wireBytes, (now - this.markMs) / 1000);
    this.markMs = now;
  }
}
