/**
 * Request stats of a deployment as the stats API shows them: the gateways' time buckets (routing
 * contract: `EndpointStatsBucket`) summed over a window, per version and endpoint.
 */
import { LATENCY_BOUNDS_SECONDS, STATS_BUCKET_MS, type EndpointStatsBucket } from '../../gateway/routing/contract.ts';
import { bucketQuantile } from './analysis.ts';

/** One version's endpoint over the window. Latencies in milliseconds, `null` without requests. */
export interface EndpointStatsView {
  readonly version: string;
  readonly endpoint: string;
  /** Requests answered in the window (every status). */
  readonly requests: number;
  /** `requests` divided by the seconds the window's buckets cover. */
  readonly requestsPerSecond: number;
  /** Answers by status class. */
  readonly statuses: { readonly '1xx': number; readonly '2xx': number; readonly '3xx': number; readonly '4xx': number; readonly '5xx': number };
  /** 5xx answers (the gateway's own 502/503/504 included) divided by `requests` (0 without requests). */
  readonly errorRate: number;
  /** 4xx answers divided by `requests`. */
  readonly clientErrorRate: number;
  readonly meanMs: number | null;
  /** Percentiles interpolated inside the gateways' latency buckets (as Prometheus does). */
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
  /** Per time bucket with requests, oldest first: `[start epochMillis, requests, 5xx]`. */
  readonly series: [number, number, number][];
}

/** `GET .../deployments/{d}/stats?window=S`. */
export interface DeploymentStatsView {
  /** The window asked for, in seconds. */
  readonly window: number;
  /** What the buckets summed cover: `from` (the first bucket's start) to `to` (now), epoch ms. */
  readonly from: number;
  readonly to: number;
  /** Width of one bucket, in seconds. */
  readonly bucketSeconds: number;
  /** Per version and endpoint, sorted by version then endpoint. */
  readonly items: EndpointStatsView[];
}

interface Acc {
  version: string;
  endpoint: string;
  requests: number[];
  latency: number[];
  latencySum: number;
  series: Map<number, [number, number, number]>;
}

const round = (v: number, digits = 3) => Math.round(v * 10 ** digits) / 10 ** digits;

/**
 * Sums `buckets` (those starting from `floor((now - window) / bucket) * bucket` on) per version
 * and endpoint. `include` lists version/endpoint pairs to show even without requests (every
 * endpoint of the deployment's versions); others appear only when they had requests.
 */
export function summarizeStats(
  buckets: readonly EndpointStatsBucket[],
  opts: { readonly now: number; readonly windowSeconds: number; readonly include?: readonly { version: string; endpoint: string }[] },
): DeploymentStatsView {
  const from = Math.floor((opts.now - opts.windowSeconds * 1000) / STATS_BUCKET_MS) * STATS_BUCKET_MS;
  const seconds = Math.max(1, (opts.now - from) / 1000);
  const accs = new Map<string, Acc>();
  const acc = (version: string, endpoint: string): Acc => {
    const id = `${version}\u0000${endpoint}`;
    let a = accs.get(id);
    if (!a) accs.set(id, (a = { version, endpoint, requests: [0, 0, 0, 0, 0], latency: new Array<number>(LATENCY_BOUNDS_SECONDS.length + 1).fill(0), latencySum: 0, series: new Map() }));
    return a;
  };
  for (const e of opts.include ?? []) acc(e.version, e.endpoint);
  for (const b of buckets) {
    if (b.start < from || b.start > opts.now) continue;
    const a = acc(b.version, b.endpoint);
    let n = 0;
    b.requests.forEach((v, i) => {
      if (i < 5) a.requests[i]! += v;
      n += v;
    });
    b.latency.forEach((v, i) => {
      if (i < a.latency.length) a.latency[i]! += v ?? 0;
    });
    a.latencySum += b.latencySum;
    const point = a.series.get(b.start) ?? [b.start, 0, 0];
    point[1] += n;
    point[2] += b.requests[4] ?? 0;
    a.series.set(b.start, point);
  }
  const items = [...accs.values()].map((a): EndpointStatsView => {
    const requests = a.requests.reduce((s, v) => s + v, 0);
    const q = (p: number) => {
      const v = bucketQuantile(LATENCY_BOUNDS_SECONDS, a.latency, p);
      return v === null ? null : round(v * 1000);
    };
    return {
      version: a.version,
      endpoint: a.endpoint,
      requests,
      requestsPerSecond: round(requests / seconds),
      statuses: { '1xx': a.requests[0]!, '2xx': a.requests[1]!, '3xx': a.requests[2]!, '4xx': a.requests[3]!, '5xx': a.requests[4]! },
      errorRate: requests === 0 ? 0 : round(a.requests[4]! / requests, 6),
      clientErrorRate: requests === 0 ? 0 : round(a.requests[3]! / requests, 6),
      meanMs: requests === 0 ? null : round((a.latencySum / requests) * 1000),
      p50: q(0.5),
      p95: q(0.95),
      p99: q(0.99),
      series: [...a.series.values()].filter((p) => p[1] > 0).sort((x, y) => x[0] - y[0]),
    };
  });
  items.sort((x, y) => (x.version < y.version ? -1 : x.version > y.version ? 1 : x.endpoint < y.endpoint ? -1 : x.endpoint > y.endpoint ? 1 : 0));
  return { window: opts.windowSeconds, from, to: opts.now, bucketSeconds: STATS_BUCKET_MS / 1000, items };
}
