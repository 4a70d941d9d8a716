/**
 * The Redis `MetricStore` (ioredis). Rows are batched per endpoint and written every 50 ms by one
 * Lua script, which also enforces every bound atomically: the kind of a new series, the series
 * limits, each series trimmed to its newest points, and the global point budget (the largest
 * series lose their oldest tenth). Scripts build key names from the prefix passed in ARGV: fine
 * on a single Redis, not meant for Redis Cluster (as the control-plane store).
 *
 * Keys (under `prefix`; endpoint keys and metric names URI-encoded):
 *   @eps                 set     endpoints with metrics
 *   @sizes               zset    "{endpoint}\n{name}" scored by its number of points
 *   @total, @seq         string  points kept in all; point id counter
 *   e:{endpoint}:kinds   hash    name -> "number" | "string"
 *   e:{endpoint}:s:{name} zset   "{id}\x1f{replica}\x1f{value}" scored by time (ms)
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { closeRedisClient, redisClient } from '../../common/redis.ts';
import { STORE_COMMAND_TIMEOUT_MS } from '../store/redis.ts';
import {
  kindOf,
  METRIC_LIMITS,
  type MetricKeyInfo,
  type MetricKind,
  type MetricLimits,
  type MetricPoint,
  type MetricRange,
  type MetricRow,
  type MetricStore,
} from './metric-store.ts';

const FLUSH_MS = 50;
/** Rows waiting for Redis beyond this are dropped (Redis down or too slow). */
const MAX_PENDING_ROWS = 50_000;
const SEP = '\x1f';

interface Lua {
  readonly lua: string;
  readonly sha: string;
}

function lua(source: string): Lua {
  return { lua: source, sha: createHash('sha1').update(source).digest('hex') };
}

// ARGV: prefix, endpoint, pointsPerSeries, seriesPerEndpoint, totalSeries, totalPoints, values,
// then per row: at, replica, n, and n times (name, kind, value). Returns values dropped.
const ADD = lua(`
local p, ep = ARGV[1], ARGV[2]
local cap, perEp, maxSeries, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local kinds = p .. 'e:' .. ep .. ':kinds'
local sizes = p .. '@sizes'
redis.call('SADD', p .. '@eps', ep)
local id = redis.call('INCRBY', p .. '@seq', tonumber(ARGV[7])) - tonumber(ARGV[7])
local touched, order = {}, {}
local added, dropped = 0, 0
local i = 8
while i <= #ARGV do
  local at, rep, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  for _ = 1, n do
    local name, kind, val = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    local k = redis.call('HGET', kinds, name)
    if not k and redis.call('HLEN', kinds) < perEp and redis.call('ZCARD', sizes) < maxSeries then
      redis.call('HSET', kinds, name, kind)
      redis.call('ZADD', sizes, 0, ep .. '\\n' .. name)
      k = kind
    end
    if k == kind then
      id = id + 1
      redis.call('ZADD', p .. 'e:' .. ep .. ':s:' .. name, at, id .. '\\31' .. rep .. '\\31' .. val)
      added = added + 1
      if not touched[name] then touched[name] = true; order[#order + 1] = name end
    else
      dropped = dropped + 1
    end
  end
end
local total = redis.call('INCRBY', p .. '@total', added)
for _, name in ipairs(order) do
  local sk = p .. 'e:' .. ep .. ':s:' .. name
  total = total - redis.call('ZREMRANGEBYRANK', sk, 0, -cap - 1)
  redis.call('ZADD', sizes, redis.call('ZCARD', sk), ep .. '\\n' .. name)
end
while total > budget do
  local big = redis.call('ZREVRANGE', sizes, 0, 0, 'WITHSCORES')
  if #big == 0 or tonumber(big[2]) == 0 then break end
  local member, size = big[1], tonumber(big[2])
  local nl = string.find(member, '\\n', 1, true)
  local sk = p .. 'e:' .. string.sub(member, 1, nl - 1) .. ':s:' .. string.sub(member, nl + 1)
  local drop = math.max(1, math.floor(size / 10))
  local removed = redis.call('ZREMRANGEBYRANK', sk, 0, drop - 1)
  total = total - removed
  redis.call('ZADD', sizes, size - removed, member)
  if removed == 0 then redis.call('ZADD', sizes, 0, member) end
end
redis.call('SET', p .. '@total', total)
return dropped
`);

// ARGV: prefix, endpoint. Forgets the endpoint's series.
const REMOVE = lua(`
local p, ep = ARGV[1], ARGV[2]
local kinds = p .. 'e:' .. ep .. ':kinds'
local removed = 0
for _, name in ipairs(redis.call('HKEYS', kinds)) do
  local sk = p .. 'e:' .. ep .. ':s:' .. name
  removed = removed + redis.call('ZCARD', sk)
  redis.call('DEL', sk)
  redis.call('ZREM', p .. '@sizes', ep .. '\\n' .. name)
end
redis.call('DEL', kinds)
redis.call('SREM', p .. '@eps', ep)
redis.call('DECRBY', p .. '@total', removed)
return removed
`);

/** Options of `RedisMetricStore`. */
export interface RedisMetricStoreOptions {
  /** A `PORTICO_REDIS_URL` (`redis://`, `rediss://` or `redis+sentinel://`). */
  readonly url: string;
  /** Prefix of every key (tests use a fresh one each). Default `portico:metrics:`. */
  readonly prefix?: string;
  readonly limits?: Partial<MetricLimits>;
  /** Passed to ioredis as they are. */
  readonly redisOptions?: RedisOptions;
}

/** See the module comment. */
export class RedisMetricStore implements MetricStore {
  readonly limits: MetricLimits;
  readonly counters = { added: 0, dropped: 0 };
  private readonly redis: Redis;
  private readonly prefix: string;
  private pending = new Map<string, MetricRow[]>();
  private pendingRows = 0;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(opts: RedisMetricStoreOptions) {
    this.limits = { ...METRIC_LIMITS, ...opts.limits };
    this.prefix = opts.prefix ?? 'portico:metrics:';
    // Bounded as the control-plane store's commands: a stalled Redis fails a metrics query (503)
    // and lets close() (a controller's SIGTERM) return, rather than waiting until it answers.
    this.redis = redisClient(opts.url, { maxRetriesPerRequest: 2, commandTimeout: STORE_COMMAND_TIMEOUT_MS, ...opts.redisOptions });
    this.redis.on('error', () => {}); // seen through failed writes (counted as dropped)
  }

  add(endpoint: string, row: MetricRow): void {
    if (this.closed || row.values.length === 0) return;
    if (this.pendingRows >= MAX_PENDING_ROWS) {
      this.counters.dropped += row.values.length;
      return;
    }
    let rows = this.pending.get(endpoint);
    if (!rows) this.pending.set(endpoint, (rows = []));
    rows.push(row);
    this.pendingRows++;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_MS);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = new Map();
    this.pendingRows = 0;
    const op = async () => {
      for (const [endpoint, rows] of batch) await this.write(endpoint, rows);
    };
    const next = this.chain.then(op, op);
    this.chain = next.catch(() => {});
    return next;
  }

  private async write(endpoint: string, rows: readonly MetricRow[]): Promise<void> {
    // A batch of at most ~1000 values per script call keeps each call short.
    for (let start = 0; start < rows.length; ) {
      const args: (string | number)[] = [];
      let values = 0;
      let end = start;
      while (end < rows.length && values < 1000) {
        const row = rows[end++]!;
        args.push(row.at, row.replica, row.values.length);
        for (const [name, value] of row.values) args.push(enc(name), kindOf(value), String(value));
        values += row.values.length;
      }
      const l = this.limits;
      try {
        const dropped = Number(await this.run(ADD, [this.prefix, enc(endpoint), l.pointsPerSeries, l.seriesPerEndpoint, l.totalSeries, l.totalPoints, values, ...args]));
        this.counters.added += values - dropped;
        this.counters.dropped += dropped;
      } catch {
        this.counters.dropped += values;
      }
      start = end;
    }
  }

  private async run(script: Lua, args: (string | number)[]): Promise<unknown> {
    try {
      return await this.redis.evalsha(script.sha, 0, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return await this.redis.eval(script.lua, 0, ...args);
    }
  }

  private series(endpoint: string, name: string): string {
    return `${this.prefix}e:${enc(endpoint)}:s:${enc(name)}`;
  }

  async keys(endpoint: string): Promise<MetricKeyInfo[]> {
    await this.flush();
    const kinds = await this.redis.hgetall(`${this.prefix}e:${enc(endpoint)}:kinds`);
    const names = Object.keys(kinds);
    if (names.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const n of names) pipe.zcard(`${this.prefix}e:${enc(endpoint)}:s:${n}`);
    const counts = (await pipe.exec()) ?? [];
    return names
      .map((n, i) => ({ name: decodeURIComponent(n), kind: kinds[n] as MetricKind, count: Number(counts[i]?.[1] ?? 0) }))
      .filter((k) => k.count > 0)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async points(endpoint: string, key: string, range: MetricRange = {}): Promise<{ kind: MetricKind; points: MetricPoint[] } | null> {
    await this.flush();
    const kind = (await this.redis.hget(`${this.prefix}e:${enc(endpoint)}:kinds`, enc(key))) as MetricKind | null;
    if (kind === null) return null;
    const flat = await this.redis.zrangebyscore(
      this.series(endpoint, key),
      range.from === undefined ? '-inf' : range.from,
      range.to === undefined ? '+inf' : `(${range.to}`,
      'WITHSCORES',
    );
    const parsed: { id: number; point: MetricPoint }[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const m = flat[i]!;
      const a = m.indexOf(SEP);
      const b = m.indexOf(SEP, a + 1);
      const replica = m.slice(a + 1, b);
      if (range.replica !== undefined && replica !== range.replica) continue;
      const raw = m.slice(b + 1);
      parsed.push({ id: Number(m.slice(0, a)), point: { at: Number(flat[i + 1]), value: kind === 'number' ? Number(raw) : raw, replica } });
    }
    // Members of one time sort by their text; point ids (increasing) give the arrival order.
    parsed.sort((x, y) => x.point.at - y.point.at || x.id - y.id);
    const points = parsed.map((x) => x.point);
    return { kind, points };
  }

  async remove(prefix: string): Promise<void> {
    await this.flush();
    const eps = await this.redis.smembers(`${this.prefix}@eps`);
    for (const e of eps) {
      if (decodeURIComponent(e).startsWith(prefix)) await this.run(REMOVE, [this.prefix, e]);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await closeRedisClient(this.redis);
  }
}

/** `s` URI-encoded, a lone surrogate as U+FFFD (Redis stores UTF-8: it could not keep one anyway). */
function enc(s: string): string {
  return encodeURIComponent(s.toWellFormed());
}
