import { createHash } from 'node:crypto';
import { Redis, ReplyError, type RedisOptions } from 'ioredis';
import { describeRedisUrl, redisClient } from '../../common/redis.ts';
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

/** Prefix of every Redis key and channel of the routing table unless told otherwise. */
export const DEFAULT_PREFIX = 'portico:rt:';

/** Options of `RedisRoutingTable`. */
export interface RedisRoutingTableOptions {
  /** A `PORTICO_REDIS_URL` (`redis://`, `rediss://` or `redis+sentinel://`). */
  readonly url: string;
  /** Longest one command may take before it rejects (the gateway passes `config.redisTimeoutMs`). */
  readonly commandTimeoutMs: number;
  /** Prefix of every key and channel (default `portico:rt:`); tests isolate themselves with it. */
  readonly prefix?: string;
  /**
   * How often `waitForAcks` re-reads the live set besides being woken by acks (default 100):
   * it notices gateways that expire, and acks whose message was lost.
   */
  readonly ackRecheckMs?: number;
}

// While the table is marked down after a timeout, a PING at most this often finds out when it
// is back; and the default period of waitForAcks' re-reads.
const RECHECK_MS = 100;

// Milliseconds from the Redis server's clock, so gateway clocks never matter; and removal of
// gateways whose heartbeat expired (KEYS: expiry zset, info hash, ack hash, clock hash).
//
// The server's clock runs on while the server itself is stalled (stopped, swapping, a long
// command), when no gateway can heartbeat: without care every gateway would expire at once, and
// the first alias change after the stall would find nobody to wait for. So every script here
// notes when it ran ('last'); a gap longer than a heartbeat period (the latest heartbeat's TTL
// / 3) moves every expiry on by the excess, as if the server's clock had stopped too. A gateway
// that died meanwhile then leaves the live set one TTL later than it would have: the safe side.
const LUA_LIB = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function prune(exp, info, ack, clock, now)
  local last = tonumber(redis.call('HGET', clock, 'last') or '')
  local period = tonumber(redis.call('HGET', clock, 'period') or '1000')
  if last and now - last > period then
    local shift = now - last - period
    local all = redis.call('ZRANGE', exp, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do redis.call('ZADD', exp, tonumber(all[i + 1]) + shift, all[i]) end
  end
  redis.call('HSET', clock, 'last', now)
  local dead = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
  if #dead > 0 then
    redis.call('ZREMRANGEBYSCORE', exp, '-inf', now)
    redis.call('HDEL', info, unpack(dead))
    redis.call('HDEL', ack, unpack(dead))
  end
end
`;

interface LuaScript {
  readonly lua: string;
  readonly sha: string;
}

function lua(body: string): LuaScript {
  const source = LUA_LIB + body;
  return { lua: source, sha: createHash('sha1').update(source).digest('hex') };
}

// KEYS: seq, put keys..., delete keys...  ARGV: channel, number of puts, keys as JSON, put values...
const APPLY = lua(`
local nput = tonumber(ARGV[2])
for i = 1, nput do redis.call('SET', KEYS[i + 1], ARGV[i + 3]) end
for i = nput + 2, #KEYS do redis.call('DEL', KEYS[i]) end
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '{"seq":' .. seq .. ',"keys":' .. ARGV[3] .. '}')
return seq
`);

// KEYS: exp, info, ack, clock  ARGV: id, ttlMs, info JSON
const HEARTBEAT = lua(`
local now = now_ms()
prune(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now)
redis.call('HSET', KEYS[4], 'period', math.floor(tonumber(ARGV[2]) / 3))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
`);

// KEYS: ack  ARGV: id, seq, channel. Only raises; publishes "seq id" to wake waiters.
const ACK = lua(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[2] .. ' ' .. ARGV[1])
`);

// KEYS: exp, info, ack (and clock, unused)  ARGV: id
const UNREGISTER = lua(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
`);

// KEYS: exp, info, ack, clock. Returns the live gateways' info JSON.
const LIVE = lua(`
prune(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms())
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
`);

// KEYS: exp, info, ack, clock. Returns id, acked seq, id, acked seq... of the live gateways.
const ACK_STATE = lua(`
prune(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms())
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '0'
end
return out
`);

// Stats: one hash per deployment and time bucket (by the server's clock), fields
// "{version}/{endpoint} r{class}" (requests), " l{bucket}" (latency counts) and " s" (latency sum).
// ARGV: bucketMs, ttlMs, then per delta: key base, number of fields, (field, increment)...
const WRITE_STATS = lua(`
local bms = tonumber(ARGV[1])
local now = now_ms()
local bucket = string.format('%d', now - (now % bms))
local i = 3
while i <= #ARGV do
  local key = ARGV[i] .. bucket
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, n do
    redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('PEXPIRE', key, ARGV[2])
end
`);

// ARGV: key base, bucketMs, windowMs. Returns now, then (bucket start, HGETALL) per bucket found.
const READ_STATS = lua(`
local bms = tonumber(ARGV[2])
local now = now_ms()
local b = math.floor((now - tonumber(ARGV[3])) / bms) * bms
local out = { string.format('%d', now) }
while b <= now do
  local start = string.format('%d', b)
  local h = redis.call('HGETALL', ARGV[1] .. start)
  if #h > 0 then
    out[#out + 1] = start
    out[#out + 1] = h
  end
  b = b + bms
end
return out
`);

const noop = (): void => {};

/**
 * The routing table in Redis, shared by many gateways and the controller. Records are JSON
 * strings under `<prefix><key>`; `apply` is one Lua script (records, `INCR` of the sequence,
 * `PUBLISH` of the change message), so readers see a change whole or not at all. Gateway
 * liveness and acknowledgements are kept by the Redis server's clock.
 *
 * No call ever hangs: commands are not queued while disconnected, each one rejects after
 * `commandTimeoutMs`, and nothing is retried; the connection reconnects by itself with a capped
 * backoff, and fires `onReconnect` each time it is back. The change feed runs on a second
 * connection, created when first needed, which fires `onResync` each time it (re)subscribes.
 * `isAvailable()` is false while the command connection is down or timing out, or while a
 * needed subscription is not in place.
 */
export class RedisRoutingTable implements RoutingTable {
  private readonly cmd: Redis;
  private sub: Redis | undefined;
  private readonly redisOptions: RedisOptions;
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly ackRecheckMs: number;
  private readonly prefix: string;
  private readonly seqKey: string;
  private readonly liveKeys: [exp: string, info: string, ack: string, clock: string];
  private readonly changeChannel: string;
  private readonly ackChannel: string;
  /** Channels the subscriber connection must hold. */
  private readonly wanted = new Set<string>();
  private readonly changeListeners: ((msg: ChangeMessage) => void)[] = [];
  private readonly resyncListeners: (() => void)[] = [];
  private readonly availabilityListeners: ((up: boolean) => void)[] = [];
  private readonly reconnectListeners: (() => void)[] = [];
  private readonly upWaiters = new Set<() => void>();
  /** Waits for acks, woken by each ack message and when the ack subscription is (re)made. */
  private readonly ackWaiters = new Set<() => void>();
  private cmdUp = false;
  /** Whether the command connection was ready before: its next 'ready' is a reconnection. */
  private cmdWasReady = false;
  private feedUp = false;
  private available = false;
  private probe: NodeJS.Timeout | undefined;
  private checkingFeed = false;
  private closed = false;
  private lastError: string | undefined;

  constructor(opts: RedisRoutingTableOptions) {
    this.url = opts.url;
    this.timeoutMs = opts.commandTimeoutMs;
    this.ackRecheckMs = opts.ackRecheckMs ?? RECHECK_MS;
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    const p = this.prefix;
    this.seqKey = `${p}@seq`;
    this.liveKeys = [`${p}@gateways:expiry`, `${p}@gateways:info`, `${p}@gateways:ack`, `${p}@gateways:clock`];
    this.changeChannel = `${p}@changes`;
    this.ackChannel = `${p}@acks`;
    this.redisOptions = {
      commandTimeout: opts.commandTimeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      connectTimeout: Math.max(1000, opts.commandTimeoutMs),
      // A connection that stops answering altogether (a half-open socket after a failover) is
      // replaced instead of waiting minutes for TCP keep-alive to give up on it.
      socketTimeout: Math.max(2000, 8 * opts.commandTimeoutMs),
      retryStrategy: (times) => Math.min(25 * 2 ** times, 1000),
      connectionName: 'portico-routing',
    };
    this.cmd = redisClient(this.url, this.redisOptions);
    // Failures are seen through 'close' and rejected commands; without a listener ioredis
    // would print every connection error. The last one is kept for `describe()`.
    this.cmd.on('error', (err: Error) => {
      this.lastError = err.message;
    });
    this.cmd.on('ready', () => {
      this.setCmdUp(true);
      if (this.cmdWasReady && !this.closed) notify(this.reconnectListeners, undefined);
      this.cmdWasReady = true;
    });
    this.cmd.on('close', () => this.setCmdUp(false));
  }

  async getDeployment(key: string): Promise<DeploymentRecord | null> {
    const json = await this.track(this.cmd.get(this.prefix + key));
    return json === null ? null : (JSON.parse(json) as DeploymentRecord);
  }

  async getEndpoint(key: string): Promise<EndpointRecord | null> {
    const json = await this.track(this.cmd.get(this.prefix + key));
    return json === null ? null : (JSON.parse(json) as EndpointRecord);
  }

  async currentSeq(): Promise<number> {
    return Number((await this.track(this.cmd.get(this.seqKey))) ?? 0);
  }

  onChange(listener: (msg: ChangeMessage) => void): void {
    this.changeListeners.push(listener);
    void this.listen(this.changeChannel);
  }

  onResync(listener: () => void): void {
    this.resyncListeners.push(listener);
  }

  onAvailability(listener: (up: boolean) => void): void {
    this.availabilityListeners.push(listener);
  }

  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  isAvailable(): boolean {
    return this.available;
  }

  describe(): string {
    const where = `Redis at ${describeRedisUrl(this.url)}`;
    return this.available || this.lastError === undefined ? where : `${where}: ${this.lastError}`;
  }

  /** Resolves `true` once the table is available (at once if it is), `false` after `timeoutMs`. */
  whenAvailable(timeoutMs: number): Promise<boolean> {
    if (this.available) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (up: boolean): void => {
        clearTimeout(timer);
        this.upWaiters.delete(onUp);
        resolve(up);
      };
      const onUp = (): void => done(true);
      const timer = setTimeout(done, timeoutMs, false);
      this.upWaiters.add(onUp);
    });
  }

  /** Also checks, at the same pace, that the change feed's connection still answers. */
  async heartbeat(info: GatewayInfo, ttlMs: number): Promise<void> {
    this.checkFeed();
    await this.run(HEARTBEAT, this.liveKeys, [info.id, ttlMs, JSON.stringify(info)]);
  }

  async ack(id: string, seq: number): Promise<void> {
    await this.run(ACK, [this.liveKeys[2]], [id, seq, this.ackChannel]);
  }

  async unregister(id: string): Promise<void> {
    await this.run(UNREGISTER, this.liveKeys, [id]);
  }

  async apply(change: RoutingChange): Promise<number> {
    const puts: [string, string][] = [
      ...(change.putDeployments ?? []).map((r): [string, string] => [deploymentKey(r), JSON.stringify(r)]),
      ...(change.putEndpoints ?? []).map((r): [string, string] => [endpointKey(r), JSON.stringify(r)]),
    ];
    const deletes = change.delete ?? [];
    const keys = [...new Set([...puts.map((p) => p[0]), ...deletes])];
    const redisKeys = [this.seqKey, ...puts.map((p) => this.prefix + p[0]), ...deletes.map((k) => this.prefix + k)];
    const args = [this.changeChannel, puts.length, JSON.stringify(keys), ...puts.map((p) => p[1])];
    return Number(await this.run(APPLY, redisKeys, args));
  }

  async liveGateways(): Promise<GatewayInfo[]> {
    const infos = (await this.run(LIVE, this.liveKeys, [])) as (string | null)[];
    return infos.filter((s) => s !== null).map((s) => JSON.parse(s) as GatewayInfo);
  }

  async waitForAcks(seq: number, timeoutMs: number): Promise<AckResult> {
    const deadline = performance.now() + timeoutMs;
    // An ack message wakes the wait; one that arrives while the state is being read is
    // remembered so that it is not lost.
    let woken = false;
    let wake = noop;
    const onAck = (): void => {
      woken = true;
      wake();
    };
    this.ackWaiters.add(onAck);
    try {
      await this.listen(this.ackChannel);
      let last: AckResult | undefined;
      let lastError: unknown;
      const tracked = new AckWait();
      for (;;) {
        woken = false;
        try {
          const now = await this.ackState(seq);
          last = tracked.result(now);
          if (now.missing.length === 0) return last;
        } catch (err) {
          lastError = err;
        }
        const left = deadline - performance.now();
        if (left <= 0) break;
        if (!woken) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(left, this.ackRecheckMs));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = noop;
        }
      }
      if (last) return last;
      throw lastError;
    } finally {
      this.ackWaiters.delete(onAck);
    }
  }

  async keys(): Promise<string[]> {
    const match = `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}[de]:*`;
    const out = new Set<string>();
    let cursor = '0';
    do {
      const [next, batch] = await this.track(this.cmd.scan(cursor, 'MATCH', match, 'COUNT', 1000));
      cursor = next;
      for (const key of batch) out.add(key.slice(this.prefix.length));
    } while (cursor !== '0');
    return [...out];
  }

  async writeStats(deltas: readonly EndpointStatsDelta[]): Promise<void> {
    const args: (string | number)[] = [STATS_BUCKET_MS, STATS_RETENTION_MS];
    for (const d of deltas) {
      const id = `${encodeURIComponent(d.version)}/${encodeURIComponent(d.endpoint)}`;
      const fields: (string | number)[] = [];
      d.requests.forEach((n, i) => n !== 0 && fields.push(`${id} r${i}`, n));
      d.latency.forEach((n, i) => n !== 0 && fields.push(`${id} l${i}`, n));
      if (d.latencySum !== 0) fields.push(`${id} s`, d.latencySum);
      if (fields.length === 0) continue;
      args.push(this.statsBase(d), fields.length / 2, ...fields);
    }
    if (args.length === 2) return;
    await this.run(WRITE_STATS, [], args);
  }

  async readStats(ref: DeploymentRef, windowMs: number): Promise<{ now: number; buckets: EndpointStatsBucket[] }> {
    const flat = (await this.run(READ_STATS, [], [this.statsBase(ref), STATS_BUCKET_MS, windowMs])) as [string, ...(string | string[])[]];
    const buckets: EndpointStatsBucket[] = [];
    for (let i = 1; i + 1 < flat.length; i += 2) {
      const start = Number(flat[i]);
      const h = flat[i + 1] as string[];
      const cells = new Map<string, { requests: number[]; latency: number[]; latencySum: number }>();
      for (let j = 0; j + 1 < h.length; j += 2) {
        const field = h[j] as string;
        const sp = field.lastIndexOf(' ');
        const id = field.slice(0, sp);
        const what = field.slice(sp + 1);
        let c = cells.get(id);
        if (!c) cells.set(id, (c = { requests: [0, 0, 0, 0, 0], latency: [], latencySum: 0 }));
        const value = Number(h[j + 1]);
        const index = Number(what.slice(1));
        if (what === 's') c.latencySum = value;
        else if (what[0] === 'r') c.requests[index] = value;
        else if (what[0] === 'l') c.latency[index] = value;
      }
      for (const [id, c] of cells) {
        const slash = id.indexOf('/');
        for (let k = 0; k < c.latency.length; k++) c.latency[k] ??= 0;
        buckets.push({
          owner: ref.owner,
          project: ref.project,
          deployment: ref.deployment,
          version: decodeURIComponent(id.slice(0, slash)),
          endpoint: decodeURIComponent(id.slice(slash + 1)),
          start,
          ...c,
        });
      }
    }
    return { now: Number(flat[0]), buckets };
  }

  private statsBase(ref: DeploymentRef): string {
    return `${this.prefix}@stats:${[ref.owner, ref.project, ref.deployment].map(encodeURIComponent).join('/')}:`;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopProbe();
    this.cmd.disconnect();
    this.sub?.disconnect();
  }

  private async ackState(seq: number): Promise<AckResult> {
    const flat = (await this.run(ACK_STATE, this.liveKeys, [])) as string[];
    const acknowledged: string[] = [];
    const missing: string[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      (Number(flat[i + 1]) >= seq ? acknowledged : missing).push(flat[i] as string);
    }
    return { seq, acknowledged, missing };
  }

  private run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.track(
      this.cmd.evalsha(script.sha, keys.length, ...keys, ...args).catch((err: unknown) => {
        // The server's script cache is empty after a restart: send the source once.
        if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
        return this.cmd.eval(script.lua, keys.length, ...keys, ...args);
      }),
    );
  }

  /** Follows each command's outcome: a reply proves the server answers, a timeout that it does not. */
  private track<T>(command: Promise<T>): Promise<T> {
    return command.then(
      (value) => {
        if (!this.cmdUp) this.setCmdUp(true);
        return value;
      },
      (err: unknown) => {
        if (!(err instanceof ReplyError)) {
          // Connected but failing (a timeout): that is the cause. Otherwise the connection's
          // own error says more than "stream isn't writeable".
          if (err instanceof Error && this.cmd.status === 'ready') this.lastError = err.message;
          this.setCmdUp(false);
        }
        throw err;
      },
    );
  }

  private setCmdUp(up: boolean): void {
    if (this.closed) return;
    this.cmdUp = up;
    if (up) this.stopProbe();
    // Connected but not answering (e.g. a stopped server): nobody else would notice its return.
    else if (this.cmd.status === 'ready') this.startProbe();
    this.update();
  }

  private startProbe(): void {
    if (this.probe) return;
    const ping = (): void => void this.track(this.cmd.ping()).catch(noop);
    this.probe = setInterval(ping, Math.max(RECHECK_MS, this.timeoutMs));
    this.probe.unref();
    ping(); // a single slow reply should not keep the table marked down for a whole period
  }

  private stopProbe(): void {
    clearInterval(this.probe);
    this.probe = undefined;
  }

  private update(): void {
    const up = this.cmdUp && (this.wanted.size === 0 || this.feedUp);
    if (up === this.available || this.closed) return;
    this.available = up;
    notify(this.availabilityListeners, up);
    if (up) for (const waiter of this.upWaiters) waiter();
  }

  /**
   * Adds `channel` to those the subscriber connection holds: subscribed at once when connected
   * (resolving after), else by `subscribeAll` once it is.
   */
  private async listen(channel: string): Promise<void> {
    if (this.wanted.has(channel)) return;
    this.wanted.add(channel);
    const sub = this.subscriber();
    if (sub.status !== 'ready') {
      this.update(); // subscribeAll() takes every wanted channel once the connection is ready
      return;
    }
    try {
      await sub.subscribe(channel);
    } catch {
      sub.disconnect(true);
      return;
    }
    if (channel === this.ackChannel) this.wakeAckWaiters();
  }

  private subscriber(): Redis {
    if (this.sub) return this.sub;
    const sub = redisClient(this.url, { ...this.redisOptions, connectionName: 'portico-routing-feed' });
    sub.on('error', noop);
    sub.on('ready', () => void this.subscribeAll(sub));
    sub.on('close', () => {
      this.feedUp = false;
      this.update();
    });
    sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    this.sub = sub;
    return sub;
  }

  /**
   * A subscriber only receives, so a dead socket would go unnoticed and changes be missed
   * silently: one that does not answer a PING is replaced (and resyncs once resubscribed).
   */
  private checkFeed(): void {
    const sub = this.sub;
    if (!sub || sub.status !== 'ready' || this.checkingFeed) return;
    this.checkingFeed = true;
    sub.ping().then(noop, (err: unknown) => {
      if (!(err instanceof ReplyError) && !this.closed && sub.status === 'ready') sub.disconnect(true);
    }).finally(() => {
      this.checkingFeed = false;
    });
  }

  private async subscribeAll(sub: Redis): Promise<void> {
    try {
      await sub.subscribe(...this.wanted);
    } catch {
      if (!this.closed) sub.disconnect(true); // reconnects, and tries again when ready
      return;
    }
    this.feedUp = true;
    // Messages published while there was no subscription are lost: readers must resync.
    if (this.wanted.has(this.changeChannel)) notify(this.resyncListeners, undefined);
    // Acks sent while there was no subscription are in the hash only: waiters must look again.
    if (this.wanted.has(this.ackChannel)) this.wakeAckWaiters();
    this.update();
  }

  private wakeAckWaiters(): void {
    for (const waiter of this.ackWaiters) waiter();
  }

  private onMessage(channel: string, message: string): void {
    if (channel === this.changeChannel) {
      let msg: ChangeMessage;
      try {
        msg = JSON.parse(message) as ChangeMessage;
      } catch {
        return; // not ours: only APPLY publishes here
      }
      notify(this.changeListeners, msg);
    } else if (channel === this.ackChannel) {
      this.wakeAckWaiters();
    }
  }
}

/**
 * Calls each listener in order; one that throws does not stop the others and its error
 * surfaces as an uncaught exception.
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
