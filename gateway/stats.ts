import type { Logger } from '../common/log.ts';
import type { RouteMetrics } from './metrics.ts';
import type { EndpointStatsDelta, RoutingReader } from './routing/contract.ts';

/** How often a gateway reports its counts unless told otherwise. */
export const STATS_INTERVAL_MS = 2000;
/** Routes per stats write (a report of more routes is several writes). */
export const STATS_BATCH_ROUTES = 200;

interface Snapshot {
  readonly requests: Float64Array;
  readonly buckets: Float64Array;
  sum: number;
}

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
  /** What was reported so far, per route. */
  readonly #reported = new Map<RouteMetrics, Snapshot>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(opts: {
    routes: () => Iterable<RouteMetrics>;
    sink: Required<Pick<RoutingReader, 'writeStats'>>;
    intervalMs?: number;
    log?: Logger;
  }) {
    this.#routes = opts.routes;
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
    const taken: [RouteMetrics, Snapshot][] = [];
    for (const r of this.#routes()) {
      if (r.count === 0) continue;
      const before = this.#reported.get(r);
      if (before && before.sum === r.sum && sameCounts(before.requests, r.requests)) continue;
      const now: Snapshot = { requests: Float64Array.from(r.requests), buckets: Float64Array.from(r.buckets), sum: r.sum };
      const l = r.labels as Record<string, string>;
      deltas.push({
        owner: l.owner as string,
        project: l.project as string,
        deployment: l.deployment as string,
        version: l.version as string,
        endpoint: l.endpoint as string,
        requests: Array.from(now.requests, (v, i) => v - (before?.requests[i] ?? 0)),
        latency: Array.from(now.buckets, (v, i) => v - (before?.buckets[i] ?? 0)),
        latencySum: now.sum - (before?.sum ?? 0),
      });
      taken.push([r, now]);
    }
    // In batches: one write of every route a busy gateway served would be one Redis command
    // with hundreds of thousands of arguments (more than a call can spread, and a long stall of
    // the Redis every gateway reads routes from). A batch counts as reported once written; a
    // failed one and those after it go with the next report.
    for (let i = 0; i < deltas.length; i += STATS_BATCH_ROUTES) {
      try {
        await this.#sink.writeStats(deltas.slice(i, i + STATS_BATCH_ROUTES));
      } catch (err) {
        this.#log?.warn('gateway stats not reported; they go with the next report', { error: (err as Error).message });
        return;
      }
      for (let j = i; j < Math.min(i + STATS_BATCH_ROUTES, taken.length); j++) {
        const [r, s] = taken[j] as [RouteMetrics, Snapshot];
        this.#reported.set(r, s);
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

function sameCounts(a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
