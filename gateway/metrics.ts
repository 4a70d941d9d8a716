import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BOUNDS_SECONDS } from './routing/contract.ts';

/**
 * Every gateway metric, defined here and nowhere else, in the gateway's own registry (served on
 * `PORTICO_METRICS_PORT` at `/metrics`, never on the public port).
 *
 * Per-route series (requests by status class, latency) are pre-bound: a route's `RouteMetrics`
 * holds plain counters the hot path increments, turned into Prometheus series only when
 * scraped, so a request never hashes label sets (prom-client's bound children still do).
 */

/** Latency histogram upper bounds, in seconds (the routing contract's, which the stats share). */
export const LATENCY_BUCKETS: readonly number[] = [...LATENCY_BOUNDS_SECONDS]; // a plain array: read per request

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Routes with their own series, by default (`PORTICO_METRICS_MAX_ROUTES`). */
export const DEFAULT_MAX_ROUTES = 2000;

/** The labels of one route's series. Unrouted requests (bad path, unknown route) share empty ones. */
export interface RouteLabels {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly version: string;
  readonly endpoint: string;
}

type Labels = Record<string, string | number>;

/** Bumped by every observation: the most recently served routes have the highest `lastSeen`. */
let tick = 0;

/** One route's counters: what the hot path touches. */
export class RouteMetrics {
  readonly labels: Labels;
  /** Requests by status class (index 0 = 1xx ... 4 = 5xx). */
  readonly requests = new Float64Array(5);
  /** Latency observations per bucket (not cumulative); the last slot is +Inf. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  /** When the route last served a request (a counter, not a time): for evicting idle routes. */
  lastSeen = 0;
  /**
   * What the stats reporter has reported so far: requests, then buckets, then sum (stats.ts);
   * `null` before the first report.
   */
  reported: Float64Array | null = null;
  /** `count` as of the last report. */
  reportedCount = 0;

  constructor(route: RouteLabels) {
    // Only the route's own labels are kept: the label sets of its series (one per status class
    // and bucket) are built when scraped, so a route costs a few hundred bytes, not a few KB.
    this.labels = { owner: route.owner, project: route.project, deployment: route.deployment, version: route.version, endpoint: route.endpoint };
  }

  /** Records one finished request. */
  observe(status: number, seconds: number): void {
    let cls = ((status / 100) | 0) - 1;
    if (cls < 0 || cls > 4) cls = 4;
    (this.requests[cls] as number)++;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] as number)) i++;
    (this.buckets[i] as number)++;
    this.sum += seconds;
    this.count++;
    this.lastSeen = ++tick;
  }

  requestValues(name: string, out: MetricValue[]): void {
    for (let c = 0; c < 5; c++) {
      const v = this.requests[c] as number;
      if (v > 0) out.push({ labels: { ...this.labels, status_class: STATUS_CLASSES[c] as string }, value: v, metricName: name });
    }
  }

  latencyValues(name: string, out: MetricValue[]): void {
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      acc += this.buckets[i] as number;
      out.push({ labels: { ...this.labels, le: i < LATENCY_BUCKETS.length ? (LATENCY_BUCKETS[i] as number) : '+Inf' }, value: acc, metricName: `${name}_bucket` });
    }
    out.push({ labels: this.labels, value: this.sum, metricName: `${name}_sum` });
    out.push({ labels: this.labels, value: this.count, metricName: `${name}_count` });
  }
}

interface MetricValue {
  labels: Labels;
  value: number;
  metricName: string;
}

// A metric as prom-client's Registry consumes it: `get()` returns the series (the same shape
// prom-client's own metrics produce, so the cluster AggregatorRegistry can sum workers).
class RouteSeries {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  readonly #routes: () => Iterable<RouteMetrics>;

  constructor(name: string, help: string, type: 'counter' | 'histogram', routes: () => Iterable<RouteMetrics>) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.#routes = routes;
  }

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    for (const r of this.#routes()) {
      if (this.type === 'counter') r.requestValues(this.name, values);
      else if (r.count > 0) r.latencyValues(this.name, values);
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {}
}

/** Read at scrape time: the routing cache's counters. */
export interface CacheStatsSource {
  readonly stats: { hits: number; misses: number; negativeHits: number; invalidations: number; size: number };
}

/** Read at scrape time: the authenticator's counters. */
export interface AuthStatsSource {
  readonly stats: { hashes: number; cacheHits: number; failureCacheHits: number };
}

const UNROUTED: RouteLabels = { owner: '', project: '', deployment: '', version: '', endpoint: '' };

function counterFrom(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect(this: Counter) {
      this.reset();
      this.inc(read());
    },
  });
}

/** The gateway's metrics and registry. */
export class GatewayMetrics {
  readonly registry = new Registry();
  /** Requests that never resolved to an endpoint (bad path, unknown route, table down...). */
  readonly unrouted = new RouteMetrics(UNROUTED);
  readonly #routes = new Map<string, RouteMetrics>();
  readonly #maxRoutes: number;
  /** Routes evicted with counts the stats reporter has not reported yet. */
  #retired: RouteMetrics[] = [];
  readonly #upstreamErrors: Counter<'code'>;
  readonly #retries: Counter;
  readonly #clientErrors: Counter<'code'>;

  constructor(sources: {
    cache: CacheStatsSource;
    auth: AuthStatsSource;
    inFlight: () => number;
    accessLogDropped: () => number;
    /** Also export Node's process metrics (CPU, memory, event loop, GC). */
    processMetrics?: boolean;
    /** Routes with their own series at most (default 2000); the longest idle go first. */
    maxRoutes?: number;
  }) {
    this.#maxRoutes = sources.maxRoutes ?? DEFAULT_MAX_ROUTES;
    const registry = this.registry;
    const routes = () => [this.unrouted, ...this.#routes.values()];
    registry.registerMetric(
      new RouteSeries('portico_gateway_requests_total', 'Requests answered, by route and status class.', 'counter', routes) as never,
    );
    registry.registerMetric(
      new RouteSeries('portico_gateway_request_duration_seconds', 'Time from request to the end of the response, by route.', 'histogram', routes) as never,
    );
    new Gauge({
      name: 'portico_gateway_requests_in_flight',
      help: 'Requests (and WebSocket tunnels) being served now.',
      registers: [registry],
      collect(this: Gauge) {
        this.set(sources.inFlight());
      },
    });
    this.#upstreamErrors = new Counter({
      name: 'portico_gateway_upstream_errors_total',
      help: 'Failed calls to replicas, by error code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT...).',
      labelNames: ['code'],
      registers: [registry],
    });
    this.#retries = new Counter({
      name: 'portico_gateway_upstream_retries_total',
      help: 'Requests retried on another replica after a failure before any response byte.',
      registers: [registry],
    });
    this.#clientErrors = new Counter({
      name: 'portico_gateway_client_errors_total',
      help: 'Malformed requests refused by the HTTP parser, by gateway error code.',
      labelNames: ['code'],
      registers: [registry],
    });
    const c = sources.cache;
    counterFrom(registry, 'portico_gateway_route_cache_hits_total', 'Routing lookups answered from the cache.', () => c.stats.hits);
    counterFrom(registry, 'portico_gateway_route_cache_misses_total', 'Routing lookups that read the routing table.', () => c.stats.misses);
    counterFrom(registry, 'portico_gateway_route_cache_negative_hits_total', 'Lookups answered by a cached "no such route".', () => c.stats.negativeHits);
    counterFrom(registry, 'portico_gateway_route_cache_invalidations_total', 'Cache entries dropped by routing-table changes.', () => c.stats.invalidations);
    new Gauge({
      name: 'portico_gateway_route_cache_entries',
      help: 'Routing records held in the cache.',
      registers: [registry],
      collect(this: Gauge) {
        this.set(c.stats.size);
      },
    });
    const a = sources.auth;
    counterFrom(registry, 'portico_gateway_auth_hashes_total', 'Password hashes computed for basic auth (cache misses).', () => a.stats.hashes);
    counterFrom(registry, 'portico_gateway_auth_cache_hits_total', 'Basic-auth checks answered by the verified-credential cache.', () => a.stats.cacheHits);
    counterFrom(registry, 'portico_gateway_auth_failure_cache_hits_total', 'Basic-auth refusals answered by the recent-failure cache.', () => a.stats.failureCacheHits);
    counterFrom(registry, 'portico_gateway_access_log_dropped_total', 'Access-log lines dropped because the destination could not keep up or a write failed (disk full).', sources.accessLogDropped);
    if (sources.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  }

  /** Every routed route's counters (read off the hot path by the stats reporter). */
  routes(): IterableIterator<RouteMetrics> {
    return this.#routes.values();
  }

  /** Routes evicted since the last call whose counts were not all reported (stats reporter). */
  takeRetired(): RouteMetrics[] {
    const r = this.#retired;
    this.#retired = [];
    return r;
  }

  /** How many routes have their own series now. */
  get routeCount(): number {
    return this.#routes.size;
  }

  /** The pre-bound counters of one route (endpoint key), created on first use. */
  route(key: string, labels: RouteLabels): RouteMetrics {
    let m = this.#routes.get(key);
    if (m === undefined) {
      if (this.#routes.size >= this.#maxRoutes) this.#evict();
      m = new RouteMetrics(labels);
      this.#routes.set(key, m);
    }
    return m;
  }

  /**
   * Drops the tenth of the routes idle the longest, so memory and the `/metrics` exposition stay
   * bounded however many routes a gateway serves over time (their series vanish, as a restarted
   * process's would; Prometheus' rate() copes). Runs once per tenth of the bound of new routes.
   */
  #evict(): void {
    const seen = Array.from(this.#routes.values(), (r) => r.lastSeen).sort((a, b) => a - b);
    const cutoff = seen[Math.max(0, Math.floor(seen.length / 10) - 1)] as number;
    for (const [key, r] of this.#routes) {
      if (r.lastSeen > cutoff) continue;
      this.#routes.delete(key);
      if (r.count !== r.reportedCount) this.#retired.push(r);
    }
  }

  /** Counts a failed call to a replica. */
  upstreamError(code: string): void {
    this.#upstreamErrors.inc({ code });
  }

  /** Counts a retry on another replica. */
  retry(): void {
    this.#retries.inc();
  }

  /** Counts a request refused by Node's HTTP parser. */
  clientError(code: string): void {
    this.#clientErrors.inc({ code });
  }

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
