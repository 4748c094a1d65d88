/**
 * A byte rate over the last few seconds (progress lines, the sender daemon's
 * watch states): a resumed transfer's head start and a stall long ago do not
 * skew it. Samples older than the window are dropped, keeping one just before
 * it as the baseline; many samples a second are thinned to 64.
 */
export class RateWindow {
  private samples: [number, number][] = [];

  constructor(
    private readonly windowMs = 5000,
    private readonly minSpanMs = 500,
  ) {}

  /** Records that `doneBytes` were done at `nowMs`. */
  add(nowMs: number, doneBytes: number): void {
    const s = this.samples;
    s.push([nowMs, doneBytes]);
    while (s.length > 2 && nowMs - s[1]![0] >= this.windowMs) s.shift();
    if (s.length > 64) s.splice(1, s.length - 64); // many updates per second: keep the window's ends
  }

  /** Bytes per second over the window; undefined until the samples span minSpanMs. */
  bytesPerSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    return first && last && last[0] - first[0] >= this.minSpanMs ? ((last[1] - first[1]) * 1000) / (last[0] - first[0]) : undefined;
  }
}
