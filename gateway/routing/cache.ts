import { LRUCache } from 'lru-cache';
import { isDeploymentKey, type ChangeMessage, type DeploymentRecord, type EndpointRecord, type GatewayInfo, type RoutingReader } from './contract.ts';

/** Options of `RouteCache`. */
export interface RouteCacheOptions {
  /**
   * Records kept at most (least recently used go first); as many known-missing keys are kept
   * apart from them, so a flood of unknown routes never pushes a real one out.
   */
  maxEntries: number;
  /** How long a key is remembered as missing; 0 remembers nothing. */
  negativeTtlMs: number;
  /** While the table is unavailable, cached entries serve for at most this long. */
  maxStaleMs: number;
  /** Heartbeat period; the gateway leaves the live set after 3 silent periods. */
  heartbeatMs: number;
  /** This gateway, as registered in the live set. */
  gateway: GatewayInfo;
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
  /**
   * Longest a load waits, from the cache's creation, for the cache to open (see `RouteCache`)
   * before it is answered as usual: the start of a gateway (default 2000 ms).
   */
  startupWaitMs?: number;
}

/** Thrown by `load*` when the routing table is unavailable and nothing usable is cached. */
export class RoutingUnavailableError extends Error {
  constructor(message = 'routing table unavailable', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RoutingUnavailableError';
  }
}

type Entry = DeploymentRecord | EndpointRecord;

interface Flight {
  readonly promise: Promise<Entry | null>;
}

const noop = (): void => {};

/** Default `startupWaitMs`. */
export const DEFAULT_STARTUP_WAIT_MS = 2000;

/**
 * The gateway's only view of the routing table: an LRU of records and known-missing keys in
 * front of a `RoutingReader`, invalidated by its change feed.
 *
 * - `peek*` is synchronous and cheap: the record, `null` for a key known to be missing, or
 *   `undefined` when the caller must `load*`.
 * - `load*` fetches once per key however many callers wait (single flight). A fetch that was
 *   under way when its key changed does not fill the cache, and later callers do not join it.
 * - Each change message drops the keys it names and is then acknowledged: once the controller
 *   sees the ack, a request arriving at this gateway sees the change. Records it dropped are
 *   loaded again at once, so that routes in use stay cached. A resync drops everything
 *   (changes may have been missed): the records dropped are kept aside only to serve while the
 *   table cannot answer, until this gateway acknowledges anything again.
 * - While the table is unavailable, cached entries serve for at most `maxStaleMs` from when it
 *   went down, and unknown keys fail at once with `RoutingUnavailableError`.
 * - Known-missing keys live in a bounded LRU of their own, with a short TTL.
 * - Nothing is loaded before the cache opens: the table available, the change feed followed and
 *   this gateway registered in the live set. Until then a load waits (at most `startupWaitMs`
 *   from creation). A gateway that loaded a record before it was registered could serve it after
 *   an alias PUT that did not wait for it had returned (a worker restarted during a flip did),
 *   and one that answered before its connections were up answered 503 needlessly.
 */
export class RouteCache {
  /** Plain counters for metrics: lookups answered by a record, by a known miss, by the table. */
  readonly stats: { hits: number; misses: number; negativeHits: number; invalidations: number; readonly size: number };

  private readonly reader: RoutingReader;
  private readonly cache: LRUCache<string, Entry>;
  private readonly missing: LRUCache<string, true>;
  /**
   * Records a resync dropped, or a change while the table could not answer: served only when
   * the table cannot answer (within `maxStaleMs`), and forgotten as soon as this gateway
   * acknowledges a sequence again (an ack promises the current routes). Without them, every
   * route failed from a resync until the table answered again: the change feed can come back
   * before the command connection does.
   */
  private previous: Map<string, Entry> | null = null;
  private readonly flights = new Map<string, Flight>();
  private readonly negativeTtl: { ttl: number } | undefined;
  private readonly maxStaleMs: number;
  private readonly heartbeatMs: number;
  private readonly gateway: GatewayInfo;
  private readonly now: () => number;
  private up = false;
  /** When the table went down (by `now`); undefined while it is up or was never up. */
  private downSince: number | undefined;
  /** Latest change applied here; acknowledged on each change and again on each heartbeat. */
  private appliedSeq = 0;
  private seqUnknown = true;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private tickAgain = false;
  private stopped = false;
  /** Set once the table was up and this gateway registered in it (see the class comment). */
  private opened = false;
  /** Resolves when the cache opens or its start-up wait is over; `null` after. */
  private opening: Promise<void> | null;
  private openNow: () => void = noop;
  private readonly openTimer: NodeJS.Timeout;

  constructor(reader: RoutingReader, opts: RouteCacheOptions) {
    this.reader = reader;
    this.opening = new Promise((resolve) => {
      this.openNow = resolve;
    });
    void this.opening.then(() => {
      this.opening = null;
    });
    // Kept referenced: a load waiting on it must be answered even if nothing else is pending.
    this.openTimer = setTimeout(this.openNow, opts.startupWaitMs ?? DEFAULT_STARTUP_WAIT_MS);
    this.now = opts.now ?? (() => performance.now());
    this.maxStaleMs = opts.maxStaleMs;
    this.heartbeatMs = opts.heartbeatMs;
    this.gateway = opts.gateway;
    this.negativeTtl = opts.negativeTtlMs > 0 ? { ttl: opts.negativeTtlMs } : undefined;
    // ttlResolution 0: with an injected clock a cached "now" would hide the clock's moves.
    const cache = new LRUCache<string, Entry>({ max: opts.maxEntries });
    this.cache = cache;
    const missing = new LRUCache<string, true>({
      max: opts.maxEntries,
      perf: { now: this.now },
      ttlResolution: opts.now ? 0 : 1,
    });
    this.missing = missing;
    this.stats = {
      hits: 0,
      misses: 0,
      negativeHits: 0,
      invalidations: 0,
      get size() {
        return cache.size + missing.size;
      },
    };
  }

  /**
   * Follows the change feed, acknowledges the current sequence, registers this gateway and
   * keeps its heartbeat (an unref'd timer). Resolves even when the table is down; the
   * heartbeat keeps trying.
   */
  async start(): Promise<void> {
    this.reader.onChange((msg) => this.onChange(msg));
    this.reader.onResync(() => this.onResync());
    this.up = this.reader.isAvailable();
    this.reader.onAvailability((up) => this.onAvailability(up));
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.heartbeatMs);
    this.timer.unref();
  }

  /** The cached deployment, `null` if known missing, `undefined` if it must be loaded. */
  peekDeployment(key: string): DeploymentRecord | null | undefined {
    return this.peek(key) as DeploymentRecord | null | undefined;
  }

  /** The cached endpoint, `null` if known missing, `undefined` if it must be loaded. */
  peekEndpoint(key: string): EndpointRecord | null | undefined {
    return this.peek(key) as EndpointRecord | null | undefined;
  }

  /** The deployment from the cache or the table; rejects with `RoutingUnavailableError`. */
  loadDeployment(key: string): Promise<DeploymentRecord | null> {
    return this.load(key, 'd') as Promise<DeploymentRecord | null>;
  }

  /** The endpoint from the cache or the table; rejects with `RoutingUnavailableError`. */
  loadEndpoint(key: string): Promise<EndpointRecord | null> {
    return this.load(key, 'e') as Promise<EndpointRecord | null>;
  }

  /** For `/readyz`: the table is reachable, or it is down but the cache is within its staleness bound. */
  isReady(): boolean {
    if (!this.opened) return false;
    return this.up || (this.downSince !== undefined && this.now() - this.downSince <= this.maxStaleMs);
  }

  /** Stops the heartbeat and leaves the live set (tolerating a table that is down). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.openTimer);
    this.openNow();
    await this.reader.unregister(this.gateway.id).catch(noop);
  }

  private peek(key: string): Entry | null | undefined {
    if (this.downSince !== undefined && this.now() - this.downSince > this.maxStaleMs) return undefined;
    const value = this.cache.get(key);
    if (value !== undefined) {
      this.stats.hits++;
      return value;
    }
    if (this.missing.get(key) === true) {
      this.stats.negativeHits++;
      return null;
    }
    return undefined;
  }

  /** A record a resync dropped, while it may still serve (see `previous`). */
  private stale(key: string): Entry | undefined {
    if (this.previous === null) return undefined;
    if (this.downSince !== undefined && this.now() - this.downSince > this.maxStaleMs) return undefined;
    return this.previous.get(key);
  }

  private load(key: string, kind: 'd' | 'e'): Promise<Entry | null> {
    if (this.opening !== null) return this.opening.then(() => this.load(key, kind));
    const cached = this.peek(key);
    if (cached !== undefined) return Promise.resolve(cached);
    if (!this.up) {
      const prev = this.stale(key);
      return prev !== undefined ? Promise.resolve(prev) : Promise.reject(new RoutingUnavailableError());
    }
    const running = this.flights.get(key);
    if (running) return running.promise;
    this.stats.misses++;
    const fetch = kind === 'd' ? this.reader.getDeployment(key) : this.reader.getEndpoint(key);
    const flight: Flight = {
      promise: fetch.then(
        (record) => {
          // Still the current flight: no change to this key (and no resync) happened meanwhile.
          if (this.flights.get(key) === flight) {
            this.flights.delete(key);
            if (record) this.cache.set(key, record);
            else if (this.negativeTtl) this.missing.set(key, true, this.negativeTtl);
          }
          return record;
        },
        (err: unknown) => {
          if (this.flights.get(key) === flight) this.flights.delete(key);
          const prev = this.stale(key);
          if (prev !== undefined) return prev;
          throw new RoutingUnavailableError(`routing table unavailable: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        },
      ),
    };
    this.flights.set(key, flight);
    return flight.promise;
  }

  /**
   * A change: its keys are dropped and the change acknowledged. While the table cannot answer
   * (the change feed can be back before the command connection after Redis stalled), a dropped
   * record could not be loaded again: it is kept aside to serve while the table stays away, and
   * the acknowledgement waits for the table to answer (the heartbeat sends it, after dropping
   * what was kept aside). Until then the controller has not heard from this gateway, so the
   * change is not yet promised here.
   */
  private onChange(msg: ChangeMessage): void {
    const down = !this.up;
    let refresh: string[] | undefined;
    for (const key of msg.keys) {
      const record = this.cache.peek(key);
      if (record !== undefined) {
        if (down) (this.previous ??= new Map()).set(key, record);
        else (refresh ??= []).push(key);
      }
      if (this.cache.delete(key)) this.stats.invalidations++;
      this.missing.delete(key);
      this.flights.delete(key);
    }
    if (msg.seq > this.appliedSeq) this.appliedSeq = msg.seq;
    if (!down) this.sendAck();
    // A record in use is loaded again at once rather than by the next request: it is then
    // cached anew should the table go away right after the change (else a hot route that had
    // just changed would answer 503 through an outage that the routes around it ride out).
    // The load starts after the change was applied, so it reads the change or newer.
    if (refresh !== undefined) for (const key of refresh) this.load(key, isDeploymentKey(key) ? 'd' : 'e').catch(noop);
  }

  private onResync(): void {
    this.stats.invalidations += this.cache.size + this.missing.size;
    if (this.cache.size > 0) {
      const prev = this.previous ?? new Map<string, Entry>();
      for (const [key, record] of this.cache.entries()) prev.set(key, record);
      this.previous = prev;
    }
    this.cache.clear();
    this.missing.clear();
    this.flights.clear();
    // The table may have been replaced (a Redis restart starts the sequence again): what this
    // gateway has applied is now whatever the table says is current.
    this.appliedSeq = 0;
    this.seqUnknown = true;
    void this.tick();
  }

  private onAvailability(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    if (up) {
      this.downSince = undefined;
      void this.tick(); // re-register and re-acknowledge at once rather than at the next period
    } else {
      this.downSince = this.now();
    }
  }

  private sendAck(): void {
    if (this.stopped) return;
    this.previous = null;
    this.reader.ack(this.gateway.id, this.appliedSeq).catch(noop);
  }

  /** Runs `beat`, once more if asked again meanwhile (a resync must not wait a whole period). */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    try {
      do {
        this.tickAgain = false;
        await this.beat();
      } while (this.tickAgain && !this.stopped);
    } finally {
      this.ticking = false;
    }
  }

  /**
   * One heartbeat: learn the current sequence if needed, acknowledge while the table is available
   * (again: an ack lost while it was down, or dropped with an expired registration, is
   * restored), then register.
   */
  private async beat(): Promise<void> {
    try {
      if (this.seqUnknown) {
        const seq = await this.reader.currentSeq();
        this.seqUnknown = false;
        if (seq > this.appliedSeq) this.appliedSeq = seq;
      }
      // Nothing is acknowledged while the table is unavailable (`onAvailability` runs a beat at
      // once when it is back): the change feed may be away, and the sequence applied here may be
      // that of a table since replaced (Redis restarted empty, a failover to a replica behind),
      // where acks only ever raise: acknowledged there, it would count for changes this gateway
      // never saw until the new sequence passed it. Records kept aside serve while the table
      // cannot answer; the ack that ends them drops them first: once it is seen, no request here
      // may get a record kept aside.
      if (this.up) {
        this.previous = null;
        await this.reader.ack(this.gateway.id, this.appliedSeq);
      }
      // Stopped meanwhile: it has left the live set, and registering again would have alias
      // changes wait for a gateway that is gone until its registration expires.
      if (this.stopped) return;
      await this.reader.heartbeat(this.gateway, 3 * this.heartbeatMs);
      if (this.up && !this.opened) {
        this.opened = true;
        clearTimeout(this.openTimer);
        this.openNow();
      }
    } catch {
      // The table is down: the next period (or its return) tries again.
    }
  }
}
