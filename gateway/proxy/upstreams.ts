import { Pool } from 'undici';
import type { LoadSource } from '../balancer/least-pending.ts';

/** One replica address and its keep-alive connection pool. */
export class Upstream {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly pool: Pool;
  /** Connections the pool may open: requests beyond it wait in the pool's queue. */
  readonly capacity: number;
  /** Requests dispatched to this replica and not yet finished (the balancer's load). */
  pending = 0;
  /** `Date.now()` until which the replica counts as failing (after a connect error). */
  failedUntil = 0;
  /** `Date.now()` of the last request sent (idle pools are closed). */
  lastUsed = 0;

  constructor(address: string, pool: Pool, capacity: number) {
    this.address = address;
    this.capacity = capacity;
    const { host, port } = splitAddress(address);
    this.host = host;
    this.port = port;
    this.pool = pool;
  }
}

/** Splits `host:port` / `[v6]:port` into a host (brackets removed) and a port. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  let host = colon === -1 ? address : address.slice(0, colon);
  const port = colon === -1 ? 80 : Number(address.slice(colon + 1));
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port };
}

/** Options of every replica pool (from the gateway's configuration). */
export interface UpstreamOptions {
  /** Keep-alive connections per replica (`PORTICO_UPSTREAM_CONNECTIONS`). */
  readonly connections: number;
  readonly connectTimeoutMs: number;
  /** Longest silence inside a response body (`PORTICO_BODY_IDLE_SECONDS`). */
  readonly bodyIdleMs: number;
  /** A replica whose connect failed is avoided for this long when another one is available. */
  readonly failurePenaltyMs?: number;
  /** Pools unused for this long are closed. */
  readonly idlePoolMs?: number;
}

// Added to a failing replica's load so the balancer prefers any healthy one.
const FAILING_LOAD = 1_000_000;

/**
 * The undici pools, one per replica address, created on first use: `pipelining: 1`, long
 * keep-alive, the configured connection cap and timeouts. Also the balancer's view of load:
 * pending requests per address, plus a penalty for a replica that just refused a connection.
 */
export class Upstreams implements LoadSource {
  readonly #map = new Map<string, Upstream>();
  readonly #opts: UpstreamOptions;
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(opts: UpstreamOptions) {
    this.#opts = opts;
    const idleMs = opts.idlePoolMs ?? 10 * 60_000;
    this.#sweep = setInterval(() => this.#closeIdle(idleMs), Math.min(idleMs, 60_000));
    this.#sweep.unref();
  }

  /** The upstream for `address`, creating its pool on first use. */
  get(address: string): Upstream {
    let u = this.#map.get(address);
    if (u === undefined) {
      const pool = new Pool(`http://${address}`, {
        connections: this.#opts.connections,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        keepAliveMaxTimeout: 10 * 60_000,
        keepAliveTimeoutThreshold: 1_000,
        connectTimeout: this.#opts.connectTimeoutMs,
        bodyTimeout: this.#opts.bodyIdleMs,
        allowH2: false,
      });
      u = new Upstream(address, pool, this.#opts.connections);
      this.#map.set(address, u);
    }
    return u;
  }

  /** Balancer load of `address`: pending requests, plus a large penalty while it is failing. */
  load(address: string): number {
    const u = this.#map.get(address);
    if (u === undefined) return 0;
    return u.failedUntil !== 0 && u.failedUntil > Date.now() ? u.pending + FAILING_LOAD : u.pending;
  }

  /** Marks a replica as failing (a connection to it was refused or timed out). */
  markFailed(u: Upstream): void {
    u.failedUntil = Date.now() + (this.#opts.failurePenaltyMs ?? 2_000);
  }

  /** Requests pending over every replica, and what the pools report (for tests and drain). */
  stats(): { pending: number; running: number; queued: number; connected: number; pools: number } {
    let pending = 0;
    let running = 0;
    let queued = 0;
    let connected = 0;
    for (const u of this.#map.values()) {
      pending += u.pending;
      const s = u.pool.stats;
      running += s.running;
      queued += s.pending;
      connected += s.connected;
    }
    return { pending, running, queued, connected, pools: this.#map.size };
  }

  #closeIdle(idleMs: number): void {
    const cutoff = Date.now() - idleMs;
    for (const [address, u] of this.#map) {
      if (u.pending === 0 && u.lastUsed < cutoff) {
        this.#map.delete(address);
        u.pool.close().catch(() => {});
      }
    }
  }

  /** Closes every pool (in-flight requests are destroyed). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    const pools = [...this.#map.values()].map((u) => u.pool);
    this.#map.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => {})));
  }
}
