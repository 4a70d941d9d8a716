/**
 * The controller lease on Redis: one active controller per store (design.md). The embedded store
 * has its directory lock (`lock.ts`); on Redis, two `portico controller` processes would otherwise
 * both reconcile, each starting its own replicas of the same versions.
 *
 * A key holding the owner (a random id, pid, host, since), set with `NX` and an expiry and renewed
 * at a third of it. A controller that finds it taken waits, checking every second, and takes it
 * once the owner lets it go (a clean stop deletes it) or stops renewing it (SIGKILL, a lost
 * machine: after at most the expiry). A renewal that finds another owner (this controller was
 * stalled past the expiry, and a standby took over) ends this one: `onLost` is called, and the
 * process should exit, as a supervisor then restarts it as the standby. A renewal that cannot reach
 * Redis is tried again: while Redis does not answer, neither controller can read or write the
 * store.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { closeRedisClient, redisClient } from '../../common/redis.ts';
import { STORE_COMMAND_TIMEOUT_MS } from './redis.ts';

/** Who holds the lease, as its key stores it. */
export interface LeaseOwner {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  readonly since: string;
}

// Extends the lease when it is still ours; takes it again when it has gone (expired while Redis
// did not answer, with nobody waiting). 1: ours, 0: another controller's.
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;

// Deletes the lease only when it is still ours.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

const WAIT_POLL_MS = 1000;

/** The lease while this controller holds it. */
export class ControllerLease {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #value: string;
  readonly #ttlMs: number;
  readonly #onLost: (owner: LeaseOwner | null) => void;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(redis: Redis, key: string, value: string, ttlMs: number, onLost: (owner: LeaseOwner | null) => void) {
    this.#redis = redis;
    this.#key = key;
    this.#value = value;
    this.#ttlMs = ttlMs;
    this.#onLost = onLost;
  }

  /**
   * Takes the lease on `url`, waiting while another controller holds it (`onWaiting` is told who,
   * once, and again when the owner changes). Rejects when Redis does not answer (the caller's
   * start fails as it would on the store) or `signal` aborts.
   */
  static async acquire(opts: {
    readonly url: string;
    readonly ttlMs: number;
    readonly key?: string;
    readonly onWaiting?: (owner: LeaseOwner) => void;
    readonly onLost: (owner: LeaseOwner | null) => void;
    readonly signal?: AbortSignal;
  }): Promise<ControllerLease> {
    // As the store's client: a Redis that does not answer fails the start the same way.
    const redis = redisClient(opts.url, { commandTimeout: STORE_COMMAND_TIMEOUT_MS });
    redis.on('error', () => {});
    const key = opts.key ?? 'portico:controller:lease';
    const owner: LeaseOwner = { id: randomBytes(12).toString('hex'), pid: process.pid, host: hostname(), since: new Date().toISOString() };
    const value = JSON.stringify(owner);
    let told = '';
    try {
      for (;;) {
        opts.signal?.throwIfAborted();
        if ((await redis.set(key, value, 'PX', opts.ttlMs, 'NX')) === 'OK') break;
        const current = await redis.get(key);
        if (current !== null && current !== told) {
          told = current;
          opts.onWaiting?.(parseOwner(current));
        }
        await new Promise<void>((resolve) => setTimeout(resolve, WAIT_POLL_MS));
      }
    } catch (err) {
      await closeRedisClient(redis);
      throw err;
    }
    const lease = new ControllerLease(redis, key, value, opts.ttlMs, opts.onLost);
    lease.#schedule();
    return lease;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#renew(), Math.max(100, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    let ours: boolean;
    try {
      ours = (await this.#redis.eval(RENEW, 1, this.#key, this.#value, this.#ttlMs)) === 1;
    } catch {
      // Redis does not answer: tried again at the next period.
      this.#schedule();
      return;
    }
    if (this.#closed) return;
    if (ours) {
      this.#schedule();
      return;
    }
    this.#closed = true;
    const current = await this.#redis.get(this.#key).catch(() => null);
    this.#onLost(current === null ? null : parseOwner(current));
  }

  /** Stops renewing and lets the lease go (a standby takes over at once). */
  async release(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    const wasOurs = !this.#closed;
    this.#closed = true;
    if (wasOurs) await this.#redis.eval(RELEASE, 1, this.#key, this.#value).catch(() => 0);
    await closeRedisClient(this.#redis);
  }
}

function parseOwner(text: string): LeaseOwner {
  try {
    const o = JSON.parse(text) as Partial<LeaseOwner>;
    return { id: String(o.id ?? '?'), pid: Number(o.pid ?? 0), host: String(o.host ?? '?'), since: String(o.since ?? '?') };
  } catch {
    return { id: '?', pid: 0, host: '?', since: '?' };
  }
}
