import {
  deploymentKey,
  endpointKey,
  AckWait,
  STATS_BUCKET_MS,
  STATS_RETENTION_MS,
  type AckResult,
  type ChangeMessage,
  type DeploymentRecord,
  type DeploymentRef,
  type EndpointRecord,
  type EndpointStatsBucket,
  type EndpointStatsDelta,
  type GatewayInfo,
  type RoutingChange,
  type RoutingTable,
} from './contract.ts';

/** Options of `EmbeddedRoutingTable`. */
export interface EmbeddedRoutingTableOptions {
  /** Clock for heartbeat expiry, in milliseconds (default `performance.now`). */
  readonly now?: () => number;
  /** Wall clock of the stats buckets, epoch milliseconds (default `Date.now`). */
  readonly wallClock?: () => number;
}

interface StatsCell {
  readonly requests: number[];
  readonly latency: number[];
  latencySum: number;
}

interface LiveGateway {
  readonly info: GatewayInfo;
  readonly expiresAt: number;
}

/**
 * The routing table in this process's memory, for the single-process default (controller and
 * gateway share one instance). `apply` is atomic and calls the change listeners synchronously,
 * in registration order, before it resolves. Always available; never resyncs.
 */
export class EmbeddedRoutingTable implements RoutingTable {
  // Records are kept as JSON so readers get their own copies, as they would from Redis.
  private readonly records = new Map<string, string>();
  private readonly gateways = new Map<string, LiveGateway>();
  private readonly acks = new Map<string, number>();
  private readonly changeListeners: ((msg: ChangeMessage) => void)[] = [];
  private readonly ackWaiters = new Set<() => void>();
  private readonly now: () => number;
  private readonly wallClock: () => number;
  /** Stats: deployment key -> bucket start -> "version/endpoint" -> counts. */
  private readonly stats = new Map<string, Map<number, Map<string, StatsCell>>>();
  private seq = 0;

  constructor(opts: EmbeddedRoutingTableOptions = {}) {
    this.now = opts.now ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? Date.now;
  }

  async getDeployment(key: string): Promise<DeploymentRecord | null> {
    const json = this.records.get(key);
    return json === undefined ? null : (JSON.parse(json) as DeploymentRecord);
  }

  async getEndpoint(key: string): Promise<EndpointRecord | null> {
    const json = this.records.get(key);
    return json === undefined ? null : (JSON.parse(json) as EndpointRecord);
  }

  async currentSeq(): Promise<number> {
    return this.seq;
  }

  onChange(listener: (msg: ChangeMessage) => void): void {
    this.changeListeners.push(listener);
  }

  onResync(_listener: () => void): void {}

  onAvailability(_listener: (up: boolean) => void): void {}

  isAvailable(): boolean {
    return true;
  }

  async apply(change: RoutingChange): Promise<number> {
    // Serialise everything before touching the maps, so a bad record leaves no partial change.
    const puts: [string, string][] = [
      ...(change.putDeployments ?? []).map((r): [string, string] => [deploymentKey(r), JSON.stringify(r)]),
      ...(change.putEndpoints ?? []).map((r): [string, string] => [endpointKey(r), JSON.stringify(r)]),
    ];
    const deletes = change.delete ?? [];
    for (const [key, json] of puts) this.records.set(key, json);
    for (const key of deletes) this.records.delete(key);
    const seq = ++this.seq;
    const msg: ChangeMessage = Object.freeze({ seq, keys: Object.freeze([...new Set([...puts.map((p) => p[0]), ...deletes])]) });
    notify(this.changeListeners, msg);
    return seq;
  }

  async heartbeat(info: GatewayInfo, ttlMs: number): Promise<void> {
    this.gateways.set(info.id, { info: { ...info }, expiresAt: this.now() + ttlMs });
  }

  async ack(id: string, seq: number): Promise<void> {
    if (seq <= (this.acks.get(id) ?? 0)) return;
    this.acks.set(id, seq);
    for (const waiter of this.ackWaiters) waiter();
  }

  async unregister(id: string): Promise<void> {
    this.gateways.delete(id);
    this.acks.delete(id);
    for (const waiter of this.ackWaiters) waiter();
  }

  async liveGateways(): Promise<GatewayInfo[]> {
    return [...this.live().values()].map((g) => ({ ...g.info }));
  }

  waitForAcks(seq: number, timeoutMs: number): Promise<AckResult> {
    return new Promise((resolve) => {
      let expiryTimer: NodeJS.Timeout | undefined;
      const tracked = new AckWait();
      const check = (final: boolean): void => {
        const acknowledged: string[] = [];
        const missing: string[] = [];
        let nextExpiry = Infinity;
        for (const [id, g] of this.live()) {
          if ((this.acks.get(id) ?? 0) >= seq) acknowledged.push(id);
          else {
            missing.push(id);
            nextExpiry = Math.min(nextExpiry, g.expiresAt);
          }
        }
        const result = tracked.result({ seq, acknowledged, missing });
        if (missing.length === 0 || final) {
          clearTimeout(timeout);
          clearTimeout(expiryTimer);
          this.ackWaiters.delete(waiter);
          resolve(result);
          return;
        }
        // A silent gateway stops being waited for once its heartbeat expires.
        clearTimeout(expiryTimer);
        expiryTimer = setTimeout(check, Math.max(0, nextExpiry - this.now()) + 1, false);
      };
      const waiter = (): void => check(false);
      const timeout = setTimeout(check, timeoutMs, true);
      this.ackWaiters.add(waiter);
      check(false);
    });
  }

  async keys(): Promise<string[]> {
    return [...this.records.keys()];
  }

  async writeStats(deltas: readonly EndpointStatsDelta[]): Promise<void> {
    const now = this.wallClock();
    const start = now - (now % STATS_BUCKET_MS);
    for (const d of deltas) {
      const dep = deploymentKey(d);
      let buckets = this.stats.get(dep);
      if (!buckets) this.stats.set(dep, (buckets = new Map()));
      for (const old of buckets.keys()) if (old <= now - STATS_RETENTION_MS) buckets.delete(old);
      let cells = buckets.get(start);
      if (!cells) buckets.set(start, (cells = new Map()));
      const id = `${d.version}/${d.endpoint}`;
      let c = cells.get(id);
      if (!c) cells.set(id, (c = { requests: [], latency: [], latencySum: 0 }));
      d.requests.forEach((n, i) => (c.requests[i] = (c.requests[i] ?? 0) + n));
      d.latency.forEach((n, i) => (c.latency[i] = (c.latency[i] ?? 0) + n));
      c.latencySum += d.latencySum;
    }
  }

  async readStats(ref: DeploymentRef, windowMs: number): Promise<{ now: number; buckets: EndpointStatsBucket[] }> {
    const now = this.wallClock();
    const first = Math.floor((now - windowMs) / STATS_BUCKET_MS) * STATS_BUCKET_MS;
    const out: EndpointStatsBucket[] = [];
    const buckets = this.stats.get(deploymentKey(ref));
    for (const [start, cells] of buckets ?? []) {
      if (start < first || start > now || start <= now - STATS_RETENTION_MS) continue;
      for (const [id, c] of cells) {
        const slash = id.indexOf('/');
        out.push({
          owner: ref.owner,
          project: ref.project,
          deployment: ref.deployment,
          version: id.slice(0, slash),
          endpoint: id.slice(slash + 1),
          start,
          requests: [...c.requests],
          latency: [...c.latency],
          latencySum: c.latencySum,
        });
      }
    }
    return { now, buckets: out.sort((a, b) => a.start - b.start) };
  }

  async close(): Promise<void> {}

  /** Live gateways by id, after dropping the expired ones. */
  private live(): Map<string, LiveGateway> {
    const now = this.now();
    for (const [id, g] of this.gateways) {
      if (g.expiresAt <= now) {
        this.gateways.delete(id);
        this.acks.delete(id);
      }
    }
    return this.gateways;
  }
}

/**
 * Calls each listener in order; one that throws does not stop the others (nor fail the change
 * that is already applied) and its error surfaces as an uncaught exception.
 */
function notify<T>(listeners: readonly ((arg: T) => void)[], arg: T): void {
  for (const listener of listeners) {
    try {
      listener(arg);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
