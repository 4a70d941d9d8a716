/**
 * Where `vh_metadata` values are kept: the `MetricStore` interface, its bounds and types. Two
 * implementations honour it identically (test/builder/telemetry/metric-store-contract.ts):
 * `EmbeddedMetricStore` (in memory, appended to files under the data directory and replayed on
 * start) and `RedisMetricStore` (one sorted set per series, trimmed on every write).
 *
 * A series is one key of one endpoint of one version; endpoints are named by their runtime key
 * `owner/project/deployment/version/endpoint`. Every point keeps its time (the log line's `at`)
 * and the replica that printed it.
 */
import type { MetricValue } from './vh-metadata.ts';

export type { MetricValue };

/** What a series holds: numbers (time series, histograms) or strings (categories). */
export type MetricKind = 'number' | 'string';

/** The values one metadata line reported, with its time and replica. */
export interface MetricRow {
  readonly at: number;
  readonly replica: string;
  readonly values: readonly (readonly [string, MetricValue])[];
}

/** One stored value. */
export interface MetricPoint {
  readonly at: number;
  readonly value: MetricValue;
  readonly replica: string;
}

/** A series as listed: key name, kind, points kept. */
export interface MetricKeyInfo {
  readonly name: string;
  readonly kind: MetricKind;
  readonly count: number;
}

/** Which points of a series to read: `from <= at < to`, optionally of one replica. */
export interface MetricRange {
  readonly from?: number;
  readonly to?: number;
  readonly replica?: string;
}

/**
 * How much is kept. A series keeps its newest `pointsPerSeries` points; an endpoint has at most
 * `seriesPerEndpoint` keys and the store `totalSeries` series (values of further keys are
 * dropped); beyond `totalPoints` points in all, the largest series lose their oldest tenth.
 */
export interface MetricLimits {
  readonly pointsPerSeries: number;
  readonly seriesPerEndpoint: number;
  readonly totalSeries: number;
  readonly totalPoints: number;
}

/** The default bounds: at most 2 million points (tens of MiB in the embedded store). */
export const METRIC_LIMITS: MetricLimits = Object.freeze({
  pointsPerSeries: 10_000,
  seriesPerEndpoint: 1_000,
  totalSeries: 20_000,
  totalPoints: 2_000_000,
});

/**
 * The metric store. A series' kind is that of its first value; later values of the other kind
 * are dropped. Reads see every `add` made before them (the Redis store sends its batches
 * first).
 */
export interface MetricStore {
  /** Records one metadata line of an endpoint. Synchronous and never throws: bounded, batched. */
  add(endpoint: string, row: MetricRow): void;
  /** The endpoint's series, sorted by name (`[]` when it has none). */
  keys(endpoint: string): Promise<MetricKeyInfo[]>;
  /** Points of one series in time order (ties in arrival order), or `null` if there is no such series. */
  points(endpoint: string, key: string, range?: MetricRange): Promise<{ kind: MetricKind; points: MetricPoint[] } | null>;
  /** Forgets every endpoint whose key starts with `prefix` (a deleted version: `o/p/d/v/`). */
  remove(prefix: string): Promise<void>;
  /** Resolves once everything added so far is stored (on disk, or in Redis). */
  flush(): Promise<void>;
  /** Flushes and releases files and connections. */
  close(): Promise<void>;
  /** Values stored, and values dropped (bounds, kind mismatch, store unreachable). */
  readonly counters: { readonly added: number; readonly dropped: number };
}

/** The order of `points`: by time, ties kept in arrival order (`Array.prototype.sort` is stable). */
export function byTime(a: MetricPoint, b: MetricPoint): number {
  return a.at - b.at;
}

/** The kind of a value. */
export function kindOf(value: MetricValue): MetricKind {
  return typeof value === 'number' ? 'number' : 'string';
}
