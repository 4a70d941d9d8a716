/**
 * The routing-table contract: the only records the gateway reads and the builder's publisher
 * writes. Both sides import this file; nothing else reads or writes routing keys.
 *
 * Records are kept per deployment (auth, users, aliases) and per version+endpoint (ready
 * replicas and limits), so a gateway caches what its traffic touches and a change invalidates
 * exactly the records it rewrote.
 */

/** How a deployment's endpoints are protected. */
export type AuthMode = 'none' | 'basic';

/** One version an alias points at, with its share of traffic (weights of an alias sum to 100). */
export interface WeightedVersion {
  readonly version: string;
  readonly weight: number;
}

/** What an alias resolves to: one version, or weighted versions (canary). */
export type AliasTarget = { readonly version: string } | { readonly versions: readonly WeightedVersion[] };

/** A deployment as the gateway sees it. */
export interface DeploymentRecord {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly auth: AuthMode;
  /** Basic-auth users: name -> password hash (see gateway/auth/password.ts for the format). */
  readonly users: Readonly<Record<string, string>>;
  /** Alias name -> target. A path segment that is not an alias is taken as a version name. */
  readonly aliases: Readonly<Record<string, AliasTarget>>;
}

/** One replica the gateway may send requests to. Only ready replicas are published. */
export interface ReplicaAddress {
  readonly id: string;
  /** `host:port` (IPv6 hosts in brackets). */
  readonly address: string;
}

/** One endpoint of one version: where to send its requests, and its limits. */
export interface EndpointRecord {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly version: string;
  readonly endpoint: string;
  /** Ready replicas; empty means the endpoint exists but cannot serve now (503). */
  readonly replicas: readonly ReplicaAddress[];
  /** Time to first response byte; `null` means the gateway default. */
  readonly timeoutSeconds: number | null;
  /** Largest request body; `null` means the gateway default. */
  readonly maxBodyBytes: number | null;
}

/** Identifies a deployment record. */
export interface DeploymentRef {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
}

/** Identifies an endpoint record. */
export interface EndpointRef extends DeploymentRef {
  readonly version: string;
  readonly endpoint: string;
}

/** Key of a deployment record. Names never contain `/` (the path grammar and the API refuse it). */
export function deploymentKey(ref: DeploymentRef): string {
  return `d:${ref.owner}/${ref.project}/${ref.deployment}`;
}

/** Whether `key` is a deployment record's (else an endpoint record's). */
export function isDeploymentKey(key: string): boolean {
  return key.startsWith('d:');
}

/** Key of an endpoint record. */
export function endpointKey(ref: EndpointRef): string {
  return `e:${ref.owner}/${ref.project}/${ref.deployment}/${ref.version}/${ref.endpoint}`;
}

/**
 * One atomic change to the routing table: readers see all of it or none of it. Puts are applied
 * before deletes, so a key both put and deleted ends up deleted.
 */
export interface RoutingChange {
  readonly putDeployments?: readonly DeploymentRecord[];
  readonly putEndpoints?: readonly EndpointRecord[];
  /** Keys (from `deploymentKey`/`endpointKey`) to remove. */
  readonly delete?: readonly string[];
}

/** The message each change publishes: which keys it touched, and its sequence number. */
export interface ChangeMessage {
  readonly seq: number;
  readonly keys: readonly string[];
}

/** A gateway process as registered in the live set. */
export interface GatewayInfo {
  readonly id: string;
  /** Where the gateway serves, e.g. `http://10.0.0.5:8080` (used by the admin test console). */
  readonly url: string;
  readonly pid: number;
  readonly startedAt: number;
}

/** Result of waiting for gateways to acknowledge a change. */
export interface AckResult {
  readonly seq: number;
  /** Live gateways that applied the change in time. */
  readonly acknowledged: readonly string[];
  /**
   * Gateways that did not acknowledge: those live that did not within the timeout, and those live
   * when the wait began whose heartbeat ended before they did (crashed, cut off from Redis with
   * their cached routes, or stopping): not waited for, but named.
   */
  readonly missing: readonly string[];
}

/**
 * Tracks one `waitForAcks`: `result` adds to a reading of the live gateways the ones live at the
 * first reading that have left since without acknowledging.
 */
export class AckWait {
  #initial: Set<string> | null = null;
  readonly #acked = new Set<string>();

  result(now: AckResult): AckResult {
    for (const id of now.acknowledged) this.#acked.add(id);
    if (this.#initial === null) {
      this.#initial = new Set([...now.acknowledged, ...now.missing]);
      return now;
    }
    const present = new Set([...now.acknowledged, ...now.missing]);
    const left = [...this.#initial].filter((id) => !present.has(id) && !this.#acked.has(id));
    return left.length === 0 ? now : { seq: now.seq, acknowledged: now.acknowledged, missing: [...now.missing, ...left] };
  }
}

/**
 * Upper bounds, in seconds, of the gateways' request-latency histogram (Prometheus'
 * `portico_gateway_request_duration_seconds` and the stats below); a histogram's last count is
 * the +Inf bucket.
 */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);

/** Request stats are summed per time bucket of this width (milliseconds)... */
export const STATS_BUCKET_MS = 10_000;
/** ...and a bucket is kept this long (milliseconds). */
export const STATS_RETENTION_MS = 3_600_000;

/** What one gateway process counted for one endpoint of one version since its last report. */
export interface EndpointStatsDelta extends EndpointRef {
  /** Requests answered, by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`. */
  readonly requests: readonly number[];
  /** Requests per latency bucket (`LATENCY_BOUNDS_SECONDS`, then +Inf), not cumulative. */
  readonly latency: readonly number[];
  /** Sum of the latencies, in seconds. */
  readonly latencySum: number;
}

/** One time bucket of one endpoint of one version: every gateway's reports in it, summed. */
export interface EndpointStatsBucket extends EndpointStatsDelta {
  /** Start of the bucket, epoch milliseconds (a multiple of `STATS_BUCKET_MS`). */
  readonly start: number;
}

/** The gateway's side: read records, follow changes, say it is alive and what it applied. */
export interface RoutingReader {
  getDeployment(key: string): Promise<DeploymentRecord | null>;
  getEndpoint(key: string): Promise<EndpointRecord | null>;
  /** Latest change sequence number that was published. */
  currentSeq(): Promise<number>;
  /**
   * Called for each change, in order, after its records are readable. Registering the first
   * listener starts the change feed.
   */
  onChange(listener: (msg: ChangeMessage) => void): void;
  /**
   * Called when the change feed is (re)established after a time in which changes may have been
   * missed: after an interruption, and (for a feed that starts asynchronously) when it first
   * starts. The reader's user must treat everything it cached before as stale.
   */
  onResync(listener: () => void): void;
  /** Called when the table becomes unreachable (`false`) or reachable again (`true`). */
  onAvailability(listener: (up: boolean) => void): void;
  /** Whether the table is reachable right now. */
  isAvailable(): boolean;
  /**
   * Where the table is and, while it is unreachable, why (the last connection error), for log
   * lines: `Redis at 127.0.0.1:6379: connect ECONNREFUSED 127.0.0.1:6379`. Never a password.
   */
  describe?(): string;
  /** Registers or refreshes this gateway in the live set (called every heartbeat period). */
  heartbeat(info: GatewayInfo, ttlMs: number): Promise<void>;
  /**
   * Records that gateway `id` has applied every change up to `seq`: a request it receives from
   * now on sees data at least that new. Acknowledgements only ever raise the recorded `seq`.
   */
  ack(id: string, seq: number): Promise<void>;
  /** Removes the gateway from the live set (on shutdown). */
  unregister(id: string): Promise<void>;
  /**
   * Adds this gateway's counts to the current time bucket (by the table's clock), where they sum
   * with every other gateway's; buckets expire after `STATS_RETENTION_MS`. Optional: a table
   * without it gets no stats.
   */
  writeStats?(deltas: readonly EndpointStatsDelta[]): Promise<void>;
  close(): Promise<void>;
}

/** The builder's side: the publisher is its only user. */
export interface RoutingWriter {
  /** Applies the change atomically, publishes its message and returns its sequence number. */
  apply(change: RoutingChange): Promise<number>;
  /** Live gateways (heartbeat within their TTL). */
  liveGateways(): Promise<GatewayInfo[]>;
  /**
   * Resolves once every live gateway has acknowledged `seq`, or when `timeoutMs` has passed
   * (naming the live gateways that did not). Gateways whose heartbeat ends meanwhile are no longer
   * waited for, and are named in `missing` unless they acknowledged first (`AckWait`).
   */
  waitForAcks(seq: number, timeoutMs: number): Promise<AckResult>;
  /** Every key in the table (for the publisher's full resync after a controller restart). */
  keys(): Promise<string[]>;
  /** One endpoint's record (a restarted controller keeps those whose replicas it cannot see yet). */
  getEndpoint(key: string): Promise<EndpointRecord | null>;
  /**
   * Called each time the connection to the table is made again after it was lost. The table may
   * have lost writes meanwhile (a server restarted from its last snapshot or append-only file, a
   * failover to a replica that was behind): a writer that skips records it believes written must
   * write them again. Optional: a table in this process's memory never loses writes.
   */
  onReconnect?(listener: () => void): void;
  /**
   * The deployment's stats buckets that overlap the last `windowMs` (by the table's clock, also
   * returned as `now`), summed over every gateway, in time order. Optional, as `writeStats`.
   */
  readStats?(ref: DeploymentRef, windowMs: number): Promise<{ now: number; buckets: EndpointStatsBucket[] }>;
  close(): Promise<void>;
}

/** A routing table implementation offers both sides. */
export interface RoutingTable extends RoutingReader, RoutingWriter {
  close(): Promise<void>;
}
