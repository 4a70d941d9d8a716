/**
 * The arithmetic of metric charts, pure and synchronous: downsampling a time series into
 * buckets (mean, min, max), binning numbers into a histogram (explicit or automatic bin
 * counts), counting categories, and percentiles of a bucketed latency histogram.
 */

/** One bucket of a downsampled series: points with `t <= at < t + step`. */
export interface SeriesBucket {
  /** Start of the bucket, epoch milliseconds. */
  readonly t: number;
  readonly count: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
}

/** One histogram bin: values with `lo <= v < hi` (the last bin also holds `v == hi`). */
export interface HistogramBin {
  readonly lo: number;
  readonly hi: number;
  readonly count: number;
}

/** How many values each distinct string had. */
export interface CategoryCount {
  readonly value: string;
  readonly count: number;
}

/** Most buckets one downsampled series may have. */
export const MAX_BUCKETS = 10_000;
/** Most bins a histogram may have (explicit `bins=` and automatic alike). */
export const MAX_BINS = 1_000;
/** Most bins the automatic rules choose. */
export const MAX_AUTO_BINS = 100;

/** 2^-64: a factor that keeps sums of huge values finite (exact, as a power of two). */
const SCALE_DOWN = 2 ** -64;

/** `a + (b - a) * f`, also when `b - a` overflows (`a` and `b` near opposite ends of the doubles). */
function lerp(a: number, b: number, f: number): number {
  const d = b - a;
  return Number.isFinite(d) ? a + d * f : a * (1 - f) + b * f;
}

/**
 * Downsamples `points` (sorted by time or not) into buckets of `step` milliseconds starting at
 * `from`, up to `to` (exclusive). Points outside the range are ignored; buckets without points
 * are left out, so a gap in the data stays a gap in the chart.
 */
export function downsample(points: readonly (readonly [number, number])[], from: number, to: number, step: number): SeriesBucket[] {
  if (!(step > 0)) throw new RangeError('step must be positive');
  const n = Math.max(0, Math.ceil((to - from) / step));
  const count = new Float64Array(n);
  const sum = new Float64Array(n);
  // The sum scaled down, for a mean whose sum overflows (values near ±Number.MAX_VALUE).
  const scaled = new Float64Array(n);
  const min = new Float64Array(n).fill(Infinity);
  const max = new Float64Array(n).fill(-Infinity);
  for (const [at, v] of points) {
    if (at < from || at >= to) continue;
    const i = Math.floor((at - from) / step);
    count[i]! += 1;
    sum[i]! += v;
    scaled[i]! += v * SCALE_DOWN;
    if (v < min[i]!) min[i] = v;
    if (v > max[i]!) max[i] = v;
  }
  const out: SeriesBucket[] = [];
  for (let i = 0; i < n; i++) {
    const c = count[i]!;
    if (c === 0) continue;
    const mean = Number.isFinite(sum[i]!) ? sum[i]! / c : Math.min(max[i]!, Math.max(min[i]!, (scaled[i]! / c) / SCALE_DOWN));
    out.push({ t: from + i * step, count: c, mean, min: min[i]!, max: max[i]! });
  }
  return out;
}

/** The `q` quantile (0..1) of sorted values, linearly interpolated between closest ranks. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return lerp(sorted[lo]!, sorted[hi]!, pos - lo);
}

/**
 * How many bins an automatic histogram of `values` over `[lo, hi]` gets: the Freedman–Diaconis
 * rule (bin width `2 IQR / n^(1/3)`), or Sturges' (`ceil(log2 n) + 1`) when the interquartile
 * range is 0; between 1 and `MAX_AUTO_BINS`.
 */
export function autoBinCount(values: readonly number[], lo: number, hi: number): number {
  const n = values.length;
  if (n <= 1 || !(hi > lo)) return 1;
  const sorted = [...values].sort((a, b) => a - b);
  // Halves, so that neither width overflows (their ratio is the same).
  const halfIqr = quantile(sorted, 0.75) / 2 - quantile(sorted, 0.25) / 2;
  const k = halfIqr > 0 ? Math.ceil(((hi / 2 - lo / 2) * Math.cbrt(n)) / (2 * halfIqr)) : Math.ceil(Math.log2(n)) + 1;
  return Math.min(MAX_AUTO_BINS, Math.max(1, k));
}

/**
 * Equal-width bins of `values` over `[lo, hi]` (default: the values' min and max); values
 * outside are left out. `bins` defaults to `autoBinCount`. No values and no bounds: no bins.
 * When `lo == hi` there is one bin holding every value equal to it.
 */
export function histogram(values: readonly number[], opts: { bins?: number; lo?: number; hi?: number } = {}): HistogramBin[] {
  let lo = opts.lo;
  let hi = opts.hi;
  if (lo === undefined || hi === undefined) {
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (opts.lo !== undefined && v < opts.lo) continue;
      if (opts.hi !== undefined && v > opts.hi) continue;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (min === Infinity) {
      if (lo === undefined && hi === undefined) return [];
      min = max = (lo ?? hi) as number;
    }
    lo ??= min;
    hi ??= max;
  }
  if (hi < lo) throw new RangeError('hi must not be less than lo');
  const inside = values.filter((v) => v >= (lo as number) && v <= (hi as number));
  if (hi === lo) return [{ lo, hi, count: inside.length }];
  const k = Math.min(MAX_BINS, opts.bins ?? autoBinCount(inside, lo, hi));
  const span = hi - lo;
  // A span that overflows (values near both ends of the doubles) is computed in halves.
  const wide = !Number.isFinite(span);
  const edges: number[] = [];
  for (let i = 0; i <= k; i++) edges.push(i === k ? hi : wide ? lerp(lo, hi, i / k) : lo + (span * i) / k);
  const counts = new Array<number>(k).fill(0);
  for (const v of inside) {
    const at = wide ? (v / 2 - lo / 2) / (hi / 2 - lo / 2) : (v - lo) / span;
    let i = Math.max(0, Math.min(k - 1, Math.floor(at * k)));
    // Floating point may put a value on an edge into the neighbour: settle it by the edges.
    while (i > 0 && v < edges[i]!) i--;
    while (i < k - 1 && v >= edges[i + 1]!) i++;
    counts[i]!++;
  }
  return counts.map((count, i) => ({ lo: edges[i]!, hi: edges[i + 1]!, count }));
}

/** Counts of each distinct value, most frequent first (ties by value). */
export function categories(values: Iterable<string>): CategoryCount[] {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return sortCategories(counts);
}

/** A value -> count map as `CategoryCount`s, most frequent first (ties by value). */
export function sortCategories(counts: ReadonlyMap<string, number>): CategoryCount[] {
  return [...counts]
    .map(([value, count]) => ({ value, count }))
    .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
}

/**
 * The `q` quantile (0..1) of observations counted in buckets with upper bounds `bounds` (the
 * last count is the +Inf bucket), interpolated linearly inside the bucket it falls in, as
 * Prometheus' `histogram_quantile` does; the lowest bucket starts at 0. A quantile in the +Inf
 * bucket is the highest finite bound. `null` without observations.
 */
export function bucketQuantile(bounds: readonly number[], counts: readonly number[], q: number): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (total === 0) return null;
  const rank = q * total;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0 && acc + c >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1] ?? null;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      return lower + (upper - lower) * ((rank - acc) / c);
    }
    acc += c;
  }
  return bounds[bounds.length - 1] ?? null;
}
