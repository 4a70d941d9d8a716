// Small helpers the benchmark sections share: medians, number formats, markdown tables, and
// the shape of a section's result.

/** Median of numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
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
