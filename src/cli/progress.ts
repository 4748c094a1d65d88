/**
 * Progress of `send` and `recv` on stderr (stdout carries pipe-mode streams and
 * `--json` summaries). `--progress`:
 *   auto (default)  a line redrawn at most 4 times a second when stderr is a
 *                   terminal, nothing otherwise
 *   tty             that line even when stderr is not a terminal
 *   json            one JSON object per line, once a second and once at the end,
 *                   for scripts: {"progress":"send","doneBytes":…,"totalBytes":…,
 *                   "bytesPerSecond":…,"elapsedSeconds":…,"etaSeconds":…}
 *   none            nothing
 * The rate is taken over the last 5 s (so a resumed transfer's head start and
 * a stall long ago do not skew it); the ETA is what is left at that rate.
 */
import { ThinshipError } from '../errors.js';
import { formatBytes } from './format.js';
import { RateWindow } from '../stream/rate-window.js';

export type ProgressMode = 'auto' | 'tty' | 'json' | 'none';
const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'tty', 'json', 'none'];

const TTY_INTERVAL_MS = 250;
const JSON_INTERVAL_MS = 1000;

export function parseProgressMode(s: string | undefined): ProgressMode {
  if (s === undefined) return 'auto';
  if (!(PROGRESS_MODES as readonly string[]).includes(s))
    throw new ThinshipError('USAGE', `--progress must be one of ${PROGRESS_MODES.join(', ')}, not "${s}"`);
  return s as ProgressMode;
}

/** The figures of one progress report. */
export interface ProgressFigures {
  doneBytes: number;
  totalBytes: number | undefined;
  /** Over the last few seconds; undefined until two samples are apart in time. */
  bytesPerSecond: number | undefined;
  elapsedSeconds: number;
  etaSeconds: number | undefined;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export class ProgressLine {
  private readonly mode: 'tty' | 'json' | 'none';
  private readonly t0: number;
  private lastDrawMs = -Infinity;
  private drawn = false;
  private readonly rate = new RateWindow();
  private done = 0;

  constructor(
    private readonly label: string,
    private totalBytes: number | undefined,
    mode: ProgressMode | boolean = 'auto',
    private readonly out: { write(s: string): unknown; isTTY?: boolean } = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {
    // A boolean is the older "enabled" form: true draws the line, false nothing.
    const m = typeof mode === 'boolean' ? (mode ? 'tty' : 'none') : mode;
    this.mode = m === 'auto' ? (out.isTTY === true ? 'tty' : 'none') : m;
    this.t0 = now();
  }

  /** The total, once known (recv learns it from the stream's begin-info). */
  setTotal(totalBytes: number | undefined): void {
    this.totalBytes = totalBytes;
  }

  figures(): ProgressFigures {
    const now = this.now();
    const rate = this.rate.bytesPerSecond();
    const left = this.totalBytes === undefined ? undefined : Math.max(0, this.totalBytes - this.done);
    return {
      doneBytes: this.done,
      totalBytes: this.totalBytes,
      bytesPerSecond: rate,
      elapsedSeconds: (now - this.t0) / 1000,
      etaSeconds: left === undefined ? undefined : left === 0 ? 0 : rate !== undefined && rate > 0 ? left / rate : undefined,
    };
  }

  update(doneBytes: number): void {
    if (this.mode === 'none') return;
    this.done = doneBytes;
    const now = this.now();
    this.rate.add(now, doneBytes);
    const interval = this.mode === 'json' ? JSON_INTERVAL_MS : TTY_INTERVAL_MS;
    if (now - this.lastDrawMs < interval) return;
    this.lastDrawMs = now;
    this.draw(false);
  }

  /** Clears the tty line so a message can be printed; the next update redraws it. */
  clear(): void {
    if (this.mode === 'tty' && this.drawn) {
      this.out.write('\r\x1b[K');
      this.drawn = false;
    }
  }

  /** Ends the line (tty) or writes the final figures (json). */
  finish(): void {
    this.clear();
    if (this.mode === 'json') this.draw(true);
  }

  private draw(final: boolean): void {
    const f = this.figures();
    if (this.mode === 'json') {
      const round = (x: number | undefined, d = 1) => (x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);
      this.out.write(
        `${JSON.stringify({ progress: this.label, doneBytes: f.doneBytes, totalBytes: f.totalBytes ?? null, bytesPerSecond: round(f.bytesPerSecond, 0), elapsedSeconds: round(f.elapsedSeconds), etaSeconds: round(f.etaSeconds), ...(final ? { final: true } : {}) })}\n`,
      );
      return;
    }
    const of = f.totalBytes ? ` of ${formatBytes(f.totalBytes)} ${((100 * f.doneBytes) / f.totalBytes).toFixed(1)}%` : '';
    const rate = f.bytesPerSecond === undefined ? '' : ` ${formatBytes(f.bytesPerSecond)}/s`;
    const eta = f.etaSeconds === undefined ? '' : ` ETA ${formatDuration(f.etaSeconds)}`;
    this.out.write(`\r\x1b[K${this.label}: ${formatBytes(f.doneBytes)}${of}${rate} ${formatDuration(f.elapsedSeconds)} elapsed${eta}`);
    this.drawn = true;
  }
}
