import type { Logger } from '../common/log.ts';
import type { RouteMetrics } from './metrics.ts';
import type { EndpointStatsDelta, RoutingReader } from './routing/contract.ts';

/** How often a gateway reports its counts unless told otherwise. */
export const STATS_INTERVAL_MS = 2000;
/** Routes per stats write (a report of more routes is several writes). */
export const STATS_BATCH_ROUTES = 200;

/**
 * Reports what a gateway process served to the routing table's stats sink, for the controller's
 * stats API. Nothing runs on the request path: every few seconds a timer reads the per-route
 * counters the listener keeps anyway (`RouteMetrics`), subtracts what was reported before and
 * writes the differences. A failed write is not lost: its counts go with the next one.
 */
export class StatsReporter {
  readonly #routes: () => Iterable<RouteMetrics>;
  readonly #sink: Required<Pick<RoutingReader, 'writeStats'>>;
  readonly #intervalMs: number;
  readonly #log: Logger | undefined;
  readonly #retired: () => RouteMetrics[];
  /** Retired routes whose report failed: they go with the next one. */
  #pending: RouteMetrics[] = [];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(opts: {
    routes: () => Iterable<RouteMetrics>;
    /** Routes dropped from `routes` with counts not yet reported (GatewayMetrics.takeRetired). */
    retired?: () => RouteMetrics[];
    sink: Required<Pick<RoutingReader, 'writeStats'>>;
    intervalMs?: number;
    log?: Logger;
  }) {
    this.#routes = opts.routes;
    this.#retired = opts.retired ?? (() => []);
    this.#sink = opts.sink;
    this.#intervalMs = opts.intervalMs ?? STATS_INTERVAL_MS;
    this.#log = opts.log;
  }

  /** Starts reporting every interval (the timer does not keep the process alive). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.flush(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Writes what was counted since the last successful report; one report at a time. */
  flush(): Promise<void> {
    this.#running ??= this.#report().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #report(): Promise<void> {
    const deltas: EndpointStatsDelta[] = [];
    const taken: [RouteMetrics, Float64Array, number][] = [];
    const retired = [...this.#pending, ...this.#retired()];
    this.#pending = [];
    for (const r of [...retired, ...this.#routes()]) {
      if (r.count === r.reportedCount) continue;
      const before = r.reported;
      // requests, buckets, sum: one array per route, read back on the next report.
      const now = new Float64Array(r.requests.length + r.buckets.length + 1);
      now.set(r.requests, 0);
      now.set(r.buckets, r.requests.length);
      now[now.length - 1] = r.sum;
      const l = r.labels as Record<string, string>;
      deltas.push({
        owner: l.owner as string,
        project: l.project as string,
        deployment: l.deployment as string,
        version: l.version as string,
        endpoint: l.endpoint as string,
        requests: Array.from(r.requests, (v, i) => v - (before?.[i] ?? 0)),
        latency: Array.from(r.buckets, (v, i) => v - (before?.[r.requests.length + i] ?? 0)),
        latencySum: r.sum - (before?.[now.length - 1] ?? 0),
      });
      taken.push([r, now, r.count]);
    }
    // In batches: one write of every route a busy gateway served would be one Redis command
    // with hundreds of thousands of arguments (more than a call can spread, and a long stall of
    // the Redis every gateway reads routes from). A batch counts as reported once written; a
    // failed one and those after it go with the next report (retired routes included: they are
    // handed back).
    for (let i = 0; i < deltas.length; i += STATS_BATCH_ROUTES) {
      try {
        await this.#sink.writeStats(deltas.slice(i, i + STATS_BATCH_ROUTES));
      } catch (err) {
        this.#log?.warn('gateway stats not reported; they go with the next report', { error: (err as Error).message });
        const failed = new Set(taken.slice(i).map(([r]) => r));
        this.#pending = retired.filter((r) => failed.has(r));
        return;
      }
      for (let j = i; j < Math.min(i + STATS_BATCH_ROUTES, taken.length); j++) {
        const [r, now, count] = taken[j] as [RouteMetrics, Float64Array, number];
        r.reported = now;
        r.reportedCount = count;
      }
    }
  }

  /** Stops the timer and sends a last report. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
    await this.flush();
  }
}
