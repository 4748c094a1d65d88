/**
 * Progress on stderr, only when stderr is a terminal (scripts and pipes get
 * just the final summary). One line, redrawn at most 4 times a second.
 */
import { formatBytes, formatRate } from './format.js';

export class ProgressLine {
  private last = 0;
  private readonly t0 = performance.now();
  private readonly enabled: boolean;
  constructor(private label: string, private totalBytes: number | undefined, enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }
  update(doneBytes: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 250) return;
    this.last = now;
    const secs = (now - this.t0) / 1000;
    const pct = this.totalBytes ? ` ${((100 * doneBytes) / this.totalBytes).toFixed(1)}%` : '';
    const of = this.totalBytes ? ` of ${formatBytes(this.totalBytes)}` : '';
    process.stderr.write(`\r\x1b[K${this.label}: ${formatBytes(doneBytes)}${of}${pct} ${formatRate(doneBytes, secs)}`);
  }
  finish(): void {
    if (this.enabled) process.stderr.write('\r\x1b[K');
  }
}
