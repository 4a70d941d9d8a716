/**
 * Metric queries over a `MetricStore`, answered in the contract's shapes: the keys of an
 * endpoint, a series (raw points, or downsampled buckets), a histogram of a number key or the
 * categories of a string key, and the same for several versions of a deployment at once with
 * shared ranges and bins, so their charts overlay.
 */
import { PorticoError } from '../../common/errors.ts';
import { ControlErrors } from '../errors.ts';
import {
  autoBinCount,
  categories,
  downsample,
  histogram,
  MAX_BINS,
  MAX_BUCKETS,
  type CategoryCount,
  type HistogramBin,
  type SeriesBucket,
} from './analysis.ts';
import type { MetricKeyInfo, MetricKind, MetricPoint, MetricStore, MetricValue } from './metric-store.ts';

export type { CategoryCount, HistogramBin, MetricKeyInfo, MetricKind, MetricValue, SeriesBucket };

/** `GET .../endpoints/{e}/metrics` query: see `endpointMetrics`. */
export interface MetricQuery {
  readonly key?: string;
  /** Default `series` when `key` is given. */
  readonly mode?: 'series' | 'histogram';
  /** Only points with `from <= at < to` (epoch milliseconds). */
  readonly from?: number;
  readonly to?: number;
  /** Downsample into buckets of `step` milliseconds... */
  readonly step?: number;
  /** ...or into `points` buckets over the range. */
  readonly points?: number;
  /** Histogram bins (default: automatic, Freedman–Diaconis or Sturges). */
  readonly bins?: number;
  /** Histogram range (default: the values' min and max); values outside are left out. */
  readonly lo?: number;
  readonly hi?: number;
  /** Only points of this replica. */
  readonly replica?: string;
}

/** Without `key`: the endpoint's keys. */
export interface MetricKeysResult {
  readonly keys: MetricKeyInfo[];
}

/**
 * `mode=series`: `points` are `[epochMillis, value]`, oldest first. Downsampled (`step` or
 * `points` given), each point is a bucket's start and mean, and `buckets` adds count, min and max;
 * `from`, `to` and `step` say which buckets were asked for (empty ones are left out).
 */
export interface SeriesResult {
  readonly key: string;
  /** `null` when the key has no points (comparisons: a version without it). */
  readonly kind: MetricKind | null;
  readonly points: [number, MetricValue][];
  readonly from?: number;
  readonly to?: number;
  readonly step?: number;
  readonly buckets?: SeriesBucket[];
}

/** `mode=histogram` of a number key. */
export interface HistogramResult {
  readonly key: string;
  readonly kind: 'number';
  /** Values counted (inside `lo`..`hi` when given). */
  readonly count: number;
  readonly bins: HistogramBin[];
}

/** `mode=histogram` of a string key: how often each value was reported. */
export interface CategoriesResult {
  readonly key: string;
  readonly kind: 'string';
  readonly count: number;
  readonly categories: CategoryCount[];
}

/** `mode=histogram` in a comparison, for a version without the key (of unknown kind). */
export interface EmptyHistogramResult {
  readonly key: string;
  readonly kind: null;
  readonly count: 0;
  readonly bins: [];
  readonly categories: [];
}

/** What a version/endpoint metrics query answers. */
export type MetricsResult = MetricKeysResult | SeriesResult | HistogramResult | CategoriesResult;

/** A comparison: the same query for several versions of one endpoint. */
export interface MetricCompareQuery extends MetricQuery {
  readonly endpoint: string;
  readonly versions: readonly string[];
}

/**
 * `GET .../deployments/{d}/metrics?endpoint=E&versions=a,b[&key=K&mode=...]`: one result per
 * version, in the order asked. Histograms share one range and one set of bins (from all
 * versions' values); downsampled series share one `from`/`to`/`step`. A version without the key
 * answers an empty result: a series without points (`kind: null`), zero-count bins of the shared
 * histogram, or (strings, or no version has the key) `kind: null` with no bins nor categories.
 */
export interface MetricCompareResult {
  readonly endpoint: string;
  readonly key?: string;
  readonly mode?: 'series' | 'histogram';
  readonly versions: ({ readonly version: string } & (MetricsResult | EmptyHistogramResult))[];
}

function invalid(message: string): PorticoError {
  return new PorticoError(ControlErrors.VALIDATION_FAILED, message);
}

/** Checks what the schema cannot: parameters that need or exclude each other. */
export function checkMetricQuery(q: MetricQuery): void {
  const histogramOnly = (['bins', 'lo', 'hi'] as const).filter((k) => q[k] !== undefined);
  const seriesOnly = (['step', 'points'] as const).filter((k) => q[k] !== undefined);
  if (q.key === undefined) {
    const given = (['mode', 'from', 'to', 'replica', ...seriesOnly, ...histogramOnly] as const).filter((k) => q[k] !== undefined);
    if (given.length > 0) throw invalid(`query.${given[0]}: needs query.key (without a key the answer lists the keys)`);
    return;
  }
  const mode = q.mode ?? 'series';
  if (mode === 'series' && histogramOnly.length > 0) throw invalid(`query.${histogramOnly[0]}: applies to mode=histogram`);
  if (mode === 'histogram' && seriesOnly.length > 0) throw invalid(`query.${seriesOnly[0]}: applies to mode=series`);
  if (q.step !== undefined && q.points !== undefined) throw invalid('query.points: give either step or points, not both');
  if (q.from !== undefined && q.to !== undefined && q.from >= q.to) throw invalid('query.from: must be less than query.to');
  if (q.lo !== undefined && q.hi !== undefined && q.lo > q.hi) throw invalid('query.lo: must not be greater than query.hi');
  if (q.bins !== undefined && (q.bins < 1 || q.bins > MAX_BINS)) throw invalid(`query.bins: must be an integer from 1 to ${MAX_BINS}`);
}

async function load(store: MetricStore, endpoint: string, q: MetricQuery): Promise<{ kind: MetricKind; points: MetricPoint[] } | null> {
  return store.points(endpoint, q.key as string, {
    ...(q.from !== undefined ? { from: q.from } : {}),
    ...(q.to !== undefined ? { to: q.to } : {}),
    ...(q.replica !== undefined ? { replica: q.replica } : {}),
  });
}

function numbers(points: readonly MetricPoint[]): number[] {
  return points.map((p) => p.value as number);
}

/** The buckets a downsampled query asks for over the points' range (or `from`/`to`). */
function bucketing(q: MetricQuery, first: number, last: number): { from: number; to: number; step: number } {
  const from = q.from ?? first;
  const to = q.to ?? last + 1;
  const step = q.step ?? Math.max(1, Math.ceil((to - from) / (q.points as number)));
  if (Math.ceil((to - from) / step) > MAX_BUCKETS) {
    throw invalid(`query.step: ${step} ms makes more than ${MAX_BUCKETS} buckets over ${to - from} ms; use a larger step or points`);
  }
  return { from, to, step };
}

function seriesOf(key: string, kind: MetricKind | null, points: readonly MetricPoint[], q: MetricQuery, range?: { from: number; to: number; step: number }): SeriesResult {
  if (q.step === undefined && q.points === undefined) return { key, kind, points: points.map((p) => [p.at, p.value]) };
  if (kind === 'string') throw invalid(`query.${q.step !== undefined ? 'step' : 'points'}: key ${JSON.stringify(key)} holds strings, which are not downsampled (mode=histogram counts them)`);
  if (points.length === 0 && !range && (q.from === undefined || q.to === undefined)) return { key, kind, points: [], buckets: [] };
  const r = range ?? bucketing(q, points[0]?.at ?? (q.from as number), points[points.length - 1]?.at ?? (q.to as number) - 1);
  const buckets = downsample(points.map((p) => [p.at, p.value as number]), r.from, r.to, r.step);
  return { key, kind, from: r.from, to: r.to, step: r.step, points: buckets.map((b) => [b.t, b.mean]), buckets };
}

function histogramOf(key: string, kind: MetricKind | null, points: readonly MetricPoint[], q: MetricQuery, shared?: { lo: number; hi: number; bins: number }): HistogramResult | CategoriesResult {
  if (kind === 'string') {
    const extra = (['bins', 'lo', 'hi'] as const).find((k) => q[k] !== undefined);
    if (extra) throw invalid(`query.${extra}: key ${JSON.stringify(key)} holds strings: its histogram is category counts, without bins`);
    const values = points.map((p) => p.value as string);
    return { key, kind, count: values.length, categories: categories(values) };
  }
  const values = numbers(points);
  const bins = shared ? histogram(values, shared) : histogram(values, { ...(q.bins !== undefined ? { bins: q.bins } : {}), ...(q.lo !== undefined ? { lo: q.lo } : {}), ...(q.hi !== undefined ? { hi: q.hi } : {}) });
  let count = 0;
  for (const b of bins) count += b.count;
  return { key, kind: 'number', count, bins };
}

/**
 * One endpoint's metrics: without `q.key` its keys; with it the series (default) or histogram
 * of that key. Throws `NOT_FOUND` for a key the endpoint never reported (or no longer keeps),
 * `VALIDATION_FAILED` for parameters that do not fit together or the key's kind.
 */
export async function endpointMetrics(store: MetricStore, endpoint: string, q: MetricQuery): Promise<MetricsResult> {
  checkMetricQuery(q);
  if (q.key === undefined) return { keys: await store.keys(endpoint) };
  const found = await load(store, endpoint, q);
  if (!found) throw new PorticoError(ControlErrors.NOT_FOUND, `metric ${JSON.stringify(q.key)} was not reported by this endpoint (GET without key lists the keys)`);
  return (q.mode ?? 'series') === 'series' ? seriesOf(q.key, found.kind, found.points, q) : histogramOf(q.key, found.kind, found.points, q);
}

/** The same query over several endpoints (versions), with shared ranges: see `MetricCompareResult`. */
export async function compareMetrics(
  store: MetricStore,
  endpoints: readonly { readonly version: string; readonly endpoint: string }[],
  q: MetricQuery & { readonly endpoint: string },
): Promise<MetricCompareResult> {
  checkMetricQuery(q);
  const { endpoint } = q;
  if (q.key === undefined) {
    return { endpoint, versions: await Promise.all(endpoints.map(async (e) => ({ version: e.version, keys: await store.keys(e.endpoint) }))) };
  }
  const key = q.key;
  const mode = q.mode ?? 'series';
  const loaded = await Promise.all(endpoints.map(async (e) => ({ version: e.version, found: await load(store, e.endpoint, q) })));
  const kinds = new Set(loaded.map((l) => l.found?.kind).filter((k) => k !== undefined));
  if (kinds.size > 1) throw invalid(`query.key: ${JSON.stringify(key)} holds numbers in some versions and strings in others; they cannot be compared`);
  const kind = [...kinds][0] ?? null;
  const all = loaded.flatMap((l) => l.found?.points ?? []);
  let versions: MetricCompareResult['versions'];
  if (mode === 'series') {
    let range: { from: number; to: number; step: number } | undefined;
    if ((q.step !== undefined || q.points !== undefined) && kind === 'number' && all.length > 0) {
      let first = Infinity;
      let last = -Infinity;
      for (const p of all) {
        if (p.at < first) first = p.at;
        if (p.at > last) last = p.at;
      }
      range = bucketing(q, first, last);
    }
    versions = loaded.map((l) => ({ version: l.version, ...seriesOf(key, l.found?.kind ?? kind, l.found?.points ?? [], q, range) }));
  } else if (kind !== 'number') {
    const empty: EmptyHistogramResult = { key, kind: null, count: 0, bins: [], categories: [] };
    versions = loaded.map((l) => ({ version: l.version, ...(l.found ? histogramOf(key, 'string', l.found.points, q) : empty) }));
  } else {
    let lo = q.lo;
    let hi = q.hi;
    const inside = numbers(all).filter((v) => (lo === undefined || v >= lo) && (hi === undefined || v <= hi));
    if (lo === undefined || hi === undefined) {
      let min = Infinity;
      let max = -Infinity;
      for (const v of inside) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      if (min === Infinity) min = max = (lo ?? hi) as number;
      lo ??= min;
      hi ??= max;
    }
    const shared = lo === undefined || hi === undefined ? undefined : { lo, hi, bins: q.bins ?? autoBinCount(inside, lo, hi) };
    versions = loaded.map((l) => ({
      version: l.version,
      ...(shared ? histogramOf(key, 'number', l.found?.points ?? [], q, shared) : { key, kind: 'number' as const, count: 0, bins: [] }),
    }));
  }
  return { endpoint, key, mode, versions };
}
