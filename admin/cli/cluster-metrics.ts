import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

// prom-client's protocol between the primary and its workers (a worker answers it once it has
// constructed an `AggregatorRegistry`; see `portico gateway`).
const REQUEST = 'prom-client:getMetricsReq';
const RESPONSE = 'prom-client:getMetricsRes';

/** One registry's metrics as `getMetricsAsJSON` gives them (the parts used here). */
interface MetricJSON {
  readonly name: string;
  readonly type: string;
  readonly values: readonly unknown[];
}

interface Answer {
  readonly type?: unknown;
  readonly requestId?: unknown;
  readonly metrics?: MetricJSON[][];
  readonly error?: unknown;
}

interface Scrape {
  readonly waiting: Set<Worker>;
  readonly done: () => void;
}

/** Metric types whose sum over processes only ever grows, so a dead worker's share is kept. */
const MONOTONIC = new Set(['counter', 'histogram']);

/**
 * The cluster primary's metrics: the sum over its workers, as prom-client's
 * `AggregatorRegistry.clusterMetrics` gives it, with two differences operators need. A worker
 * that dies takes its counts with it there, so every summed counter went backwards (27,202 to
 * 17,359 requests after one SIGKILL), which Prometheus reads as a reset of the whole sum and
 * `rate()` turns into a spike; here the counters and histograms a dead worker last reported stay
 * in the sum (what it counted after the last scrape is lost; its gauges go). And a worker that
 * dies during a scrape made that scrape fail after 5 s; here it is left out of it, as is one
 * still starting.
 */
export class ClusterMetrics {
  readonly contentType = AggregatorRegistry.PROMETHEUS_CONTENT_TYPE;
  /** Each live worker's metrics as it last reported them. */
  readonly #last = new Map<Worker, MetricJSON[]>();
  /** Workers that have exited: they answer no more. */
  readonly #exited = new WeakSet<Worker>();
  /** Counters and histograms of dead workers, summed (one worker after the other). */
  #retired: Promise<MetricJSON[]> = Promise.resolve([]);
  readonly #scrapes = new Map<number, Scrape>();
  #nextId = 0;
  readonly #timeoutMs: number;

  readonly #answers: (worker: Worker) => boolean;
  readonly #own: Registry | undefined;

  /**
   * `answers` tells the workers that answer metrics requests by now: a worker still starting is
   * connected but does not, and waiting for it held every scrape during a restart for the whole
   * timeout. `timeoutMs`: longest a scrape waits for a worker that should answer. `own`: the
   * primary's own metrics (its process's), summed with the workers' like one more of them: a
   * pod's memory and CPU are the primary's too.
   */
  constructor(opts: { timeoutMs?: number; answers?: (worker: Worker) => boolean; own?: Registry } = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#answers = opts.answers ?? (() => true);
    this.#own = opts.own;
    cluster.on('message', (worker, msg: Answer | null) => this.#onAnswer(worker, msg));
    cluster.on('exit', (worker) => this.#retire(worker));
  }

  /** The Prometheus text of the sum over live and dead workers. */
  async text(): Promise<string> {
    const id = this.#nextId++;
    const waiting = new Set<Worker>();
    for (const w of Object.values(cluster.workers ?? {})) {
      if (w === undefined || !w.isConnected() || !this.#answers(w)) continue;
      waiting.add(w);
      w.send({ type: REQUEST, requestId: id });
    }
    if (waiting.size > 0) {
      // A worker that does not answer in time counts with what it reported last.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#timeoutMs);
        this.#scrapes.set(id, {
          waiting,
          done: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
      this.#scrapes.delete(id);
    }
    const parts = [...this.#last.values()];
    if (this.#own !== undefined) parts.push((await this.#own.getMetricsAsJSON()) as unknown as MetricJSON[]);
    const retired = await this.#retired;
    if (retired.length > 0) parts.push(retired);
    return AggregatorRegistry.aggregate(parts as never).metrics();
  }

  #onAnswer(worker: Worker, msg: Answer | null): void {
    if (msg?.type !== RESPONSE || typeof msg.requestId !== 'number') return;
    // The IPC channel is read apart from the exit: an answer a worker sent just before it died may
    // come after its 'exit', when its counts are in `#retired` already (they were counted twice).
    if (Array.isArray(msg.metrics) && !this.#exited.has(worker)) this.#last.set(worker, msg.metrics.flat());
    this.#settle(msg.requestId, worker);
  }

  #settle(id: number, worker: Worker): void {
    const scrape = this.#scrapes.get(id);
    if (scrape === undefined) return;
    scrape.waiting.delete(worker);
    if (scrape.waiting.size === 0) scrape.done();
  }

  #retire(worker: Worker): void {
    this.#exited.add(worker);
    const last = this.#last.get(worker);
    this.#last.delete(worker);
    for (const id of this.#scrapes.keys()) this.#settle(id, worker);
    if (last === undefined) return;
    const kept = last.filter((m) => MONOTONIC.has(m.type));
    this.#retired = this.#retired.then(async (sum) => (await AggregatorRegistry.aggregate([sum, kept] as never).getMetricsAsJSON()) as unknown as MetricJSON[]);
  }
}
