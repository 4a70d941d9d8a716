// Small helpers the benchmark sections share: medians, number formats, markdown tables, and
// the shape of a section's result.

/** Median of numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

// Two-sided 95% quantiles of Student's t by degrees of freedom (1-12; 2 beyond).
const T95 = [NaN, 12.71, 4.3, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.2, 2.18];

/**
 * Geometric mean of positive ratios and a 95% interval for it (Student's t on the logarithms):
 * how far a ratio measured over a few paired rounds can be trusted. NaN bounds for one ratio.
 */
export function ratioInterval(ratios: readonly number[]): { mean: number; lo: number; hi: number } {
  const logs = ratios.filter((r) => r > 0 && Number.isFinite(r)).map(Math.log);
  if (logs.length === 0) return { mean: NaN, lo: NaN, hi: NaN };
  const m = logs.reduce((a, b) => a + b, 0) / logs.length;
  if (logs.length < 2) return { mean: Math.exp(m), lo: NaN, hi: NaN };
  const sd = Math.sqrt(logs.reduce((a, b) => a + (b - m) ** 2, 0) / (logs.length - 1));
  const half = (T95[logs.length - 1] ?? 2) * (sd / Math.sqrt(logs.length));
  return { mean: Math.exp(m), lo: Math.exp(m - half), hi: Math.exp(m + half) };
}

/** `0.95x (0.91-0.99)`: a ratio interval as the report prints it. */
export function intervalText(i: { mean: number; lo: number; hi: number }): string {
  return Number.isFinite(i.lo) ? `${i.mean.toFixed(2)}x (95% interval ${i.lo.toFixed(2)}-${i.hi.toFixed(2)})` : ratio(i.mean);
}

/** `12,345` */
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
/** `1.23` (fixed decimals) */
export const fix = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
/** `0.93x` */
export const ratio = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a');

/** A markdown table. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** One target of the issue and whether this run met it. */
export interface Target {
  readonly name: string;
  /** `null`: not measured in this run. */
  readonly met: boolean | null;
  readonly measured: string;
}

/** What a benchmark section hands to the report. */
export interface Section {
  readonly title: string;
  readonly markdown: string;
  readonly targets: readonly Target[];
}

/** Writes progress to stderr (stdout stays free for the final summary). */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
