/** Small statistics for benchmark repetitions: median and range, never a mean (noisy shared machines). */

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function spread(xs: readonly number[]): Spread {
  const f = xs.filter((x) => Number.isFinite(x));
  return { median: median(f), min: f.length ? Math.min(...f) : NaN, max: f.length ? Math.max(...f) : NaN, n: f.length };
}

/** "123 (110–130)" with `digits` decimals; "-" when there is nothing. */
export function fmtSpread(s: Spread | undefined, digits = 0): string {
  if (!s || s.n === 0) return '-';
  const f = (x: number) => x.toFixed(digits);
  return s.n === 1 || f(s.min) === f(s.max) ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** A plain text table, columns right-aligned except the first `leftCols`. */
export function textTable(head: string[], rows: string[][], leftCols = 2): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i < leftCols ? c.padEnd(w[i]!) : c.padStart(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}
