import { Redis, type RedisOptions } from 'ioredis';

/** Port of a sentinel given without one. */
export const SENTINEL_PORT = 26379;

/** What `PORTICO_REDIS_URL` names: one server, or a master found through Redis Sentinel. */
export type RedisTarget =
  | { readonly kind: 'server'; readonly url: string }
  | {
      readonly kind: 'sentinel';
      readonly sentinels: readonly { readonly host: string; readonly port: number }[];
      /** The master's name the sentinels monitor. */
      readonly name: string;
      readonly db: number;
      readonly username?: string;
      readonly password?: string;
      readonly sentinelPassword?: string;
    };

// redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db][?sentinelPassword=...]
const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#@]+)\/([^/?#]+)(?:\/(\d+))?\/?(?:\?([^#]*))?$/;
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/;

/**
 * Reads a Redis URL: `redis://` or `rediss://` (one server, as ioredis reads it), or
 * `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db]` (the master
 * the sentinels name; `?sentinelPassword=...` when the sentinels want one). Throws an `Error`
 * saying what is wrong.
 */
export function parseRedisUrl(url: string): RedisTarget {
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    try {
      new URL(url);
    } catch {
      throw new Error('not a URL');
    }
    return { kind: 'server', url };
  }
  if (!url.startsWith('redis+sentinel://')) throw new Error('expected a redis:, rediss: or redis+sentinel: URL');
  const m = SENTINEL_URL.exec(url);
  if (!m) throw new Error('expected redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db]');
  const [, user, password, hosts, name, db, query] = m as unknown as [string, string | undefined, string | undefined, string, string, string | undefined, string | undefined];
  const sentinels = hosts.split(',').map((h) => {
    const hp = HOST_PORT.exec(h);
    const port = hp?.[2] === undefined ? SENTINEL_PORT : Number(hp[2]);
    if (!hp || port < 1 || port > 65535) throw new Error(`sentinel ${JSON.stringify(h)}: expected host or host:port`);
    return { host: (hp[1] as string).replace(/^\[|\]$/g, ''), port };
  });
  const params = new URLSearchParams(query ?? '');
  for (const k of params.keys()) if (k !== 'sentinelPassword') throw new Error(`unknown parameter ${JSON.stringify(k)} (only sentinelPassword)`);
  const decode = (s: string | undefined) => (s === undefined || s === '' ? undefined : decodeURIComponent(s));
  const username = decode(user);
  const pass = decode(password);
  const sentinelPassword = params.get('sentinelPassword') ?? undefined;
  return {
    kind: 'sentinel',
    sentinels,
    name: decodeURIComponent(name),
    db: db === undefined ? 0 : Number(db),
    ...(username !== undefined ? { username } : {}),
    ...(pass !== undefined ? { password: pass } : {}),
    ...(sentinelPassword ? { sentinelPassword } : {}),
  };
}

/**
 * An ioredis client for `url` (see `parseRedisUrl`) with `options`. Through Sentinel it talks to
 * the current master only, and moves to the new one when the sentinels announce a failover.
 */
export function redisClient(url: string, options: RedisOptions): Redis {
  const target = parseRedisUrl(url);
  if (target.kind === 'server') return new Redis(url, options);
  return new Redis({
    ...options,
    sentinels: target.sentinels.map((s) => ({ ...s })),
    name: target.name,
    db: target.db,
    role: 'master',
    failoverDetector: true,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
  });
}

/**
 * Closes a client made by `redisClient`: QUIT (pending replies arrive first), then disconnect,
 * which through Sentinel is also what closes the failover detector's connections to the
 * sentinels (a clean QUIT alone leaves them open).
 */
export async function closeRedisClient(client: Redis): Promise<void> {
  await client.quit().catch(() => {});
  client.disconnect();
}

/** Where `url` points, for people (no password): `127.0.0.1:6379`, `master mymaster via s1:26379,s2:26379`. */
export function describeRedisUrl(url: string): string {
  const target = parseRedisUrl(url);
  if (target.kind === 'server') return new URL(url).host;
  return `master ${target.name} via Sentinel ${target.sentinels.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`).join(',')}`;
}

/**
 * Whether `err` says the Redis server could not be reached or did not answer in time (ioredis's
 * own errors), rather than refusing a command: what callers answer with "unavailable, retry".
 */
export function isRedisOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    isRedisTimeout(err) ||
    err.message === 'Connection is closed.' ||
    err.message.startsWith("Stream isn't writeable")
  );
}

/** Whether `err` is ioredis's `commandTimeout` expiring: the command was sent, and may still be carried out. */
export function isRedisTimeout(err: unknown): boolean {
  return err instanceof Error && err.message === 'Command timed out';
}
