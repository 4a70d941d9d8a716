import { hash, randomBytes } from 'node:crypto';
import { parse } from 'basic-auth';
import { LRUCache } from 'lru-cache';
import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors } from '../errors.ts';
import type { Exchange, Stage } from '../exchange.ts';
import type { DeploymentRecord } from '../routing/contract.ts';
import { DEFAULT_SCRYPT_COST, verifyPassword } from './password.ts';

/** Counters of what `BasicAuthenticator.check` did (for metrics and tests). */
export interface AuthStats {
  /** Password hashes actually computed (cache misses). */
  hashes: number;
  /** Requests let through by the verified-credential cache, without a hash. */
  cacheHits: number;
  /** Requests refused by the recent-failure cache, without a hash. */
  failureCacheHits: number;
}

interface Verified {
  readonly user: string;
  /** The stored hash the password was checked against (`null`: the user did not exist). */
  readonly hash: string | null;
  /** Failures only: when the entry stops counting. */
  readonly expires: number;
}

// Same cost as real hashes, so an unknown user takes as long to refuse as a wrong password;
// its key is random, so no password matches it.
const DUMMY_HASH = `scrypt$${DEFAULT_SCRYPT_COST.N}$${DEFAULT_SCRYPT_COST.r}$${DEFAULT_SCRYPT_COST.p}$${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}`;

/**
 * Basic-auth checks against a deployment's users (name -> hash from `hashPassword`).
 *
 * Steady-state requests do not pay a hash: a verified `Authorization` value is remembered under
 * SHA-256(process secret + deployment key + header) — never the password itself — with the
 * stored hash it matched, and counts only while the record still holds that same hash (a
 * password change or user removal takes effect at once). Failures are remembered briefly, in a
 * separate bounded cache, so a flood of one wrong password costs one hash and cannot evict good
 * entries. Concurrent first requests with the same credentials share one hash computation (only
 * while the user's stored hash is the same: never across a password change). A
 * keep-alive connection also remembers its last verified header (given as `connection`), so
 * its next requests cost a string comparison, not a digest.
 * Unknown users are checked against a dummy hash of the same cost.
 */
export class BasicAuthenticator {
  readonly stats: AuthStats = { hashes: 0, cacheHits: 0, failureCacheHits: 0 };
  readonly #secret = randomBytes(32).toString('hex');
  readonly #ok: LRUCache<string, Verified>;
  readonly #failed: LRUCache<string, Verified>;
  readonly #pending = new Map<string, Promise<boolean>>();
  readonly #failureTtlMs: number;
  readonly #verify: (password: string, hash: string) => Promise<boolean>;
  readonly #now: () => number;

  constructor(opts: {
    maxEntries?: number;
    failureTtlMs?: number;
    /** Replaces `verifyPassword` (tests). */
    verify?: (password: string, hash: string) => Promise<boolean>;
    now?: () => number;
  } = {}) {
    const max = opts.maxEntries ?? 10_000;
    this.#ok = new LRUCache({ max });
    this.#failed = new LRUCache({ max });
    this.#failureTtlMs = opts.failureTtlMs ?? 5_000;
    this.#verify = opts.verify ?? verifyPassword;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Whether `authorization` (the raw header value) names a user of `users` with the right
   * password. Synchronous when the answer is cached or the header is unusable; otherwise a
   * promise that never rejects.
   */
  check(
    deploymentKey: string,
    users: Readonly<Record<string, string>>,
    authorization: string | undefined,
    connection?: object,
  ): boolean | Promise<boolean> {
    if (authorization === undefined || authorization.length > 4096) return false;
    // The connection's last verified header: a keep-alive client sending the same credentials
    // again costs a string comparison, no digest. Kept only as long as the connection is.
    const conn = connection as { [VERIFIED]?: ConnectionVerified } | undefined;
    const last = conn?.[VERIFIED];
    if (last !== undefined && last.authorization === authorization && last.deploymentKey === deploymentKey && storedHash(users, last.user) === last.hash) {
      this.stats.cacheHits++;
      return true;
    }
    // A keyed digest (secret prefix) rather than an HMAC: HMAC's per-call key setup cost a
    // sixth of the gateway's CPU; a secret-prefixed SHA-256 serves the same purpose here (an
    // in-process cache key that neither holds nor reveals the password).
    const key = hash('sha256', this.#secret + deploymentKey + '\0' + authorization, 'base64');

    const ok = this.#ok.get(key);
    if (ok !== undefined && storedHash(users, ok.user) === ok.hash) {
      this.stats.cacheHits++;
      if (conn) conn[VERIFIED] = { deploymentKey, authorization, user: ok.user, hash: ok.hash as string };
      return true;
    }
    const failed = this.#failed.get(key);
    if (failed !== undefined && failed.expires > this.#now() && storedHash(users, failed.user) === failed.hash) {
      this.stats.failureCacheHits++;
      return false;
    }

    const creds = parse(authorization);
    if (!creds) return false;
    const stored = storedHash(users, creds.name);
    // Shared only by checks against the same stored hash: a request arriving after a password
    // change must not ride on a check of the old one still in flight.
    const pendingKey = stored === null ? key : `${key}\0${stored}`;
    let p = this.#pending.get(pendingKey);
    if (!p) {
      p = this.#hash(key, pendingKey, creds.name, creds.pass, stored);
      this.#pending.set(pendingKey, p);
    }
    if (!conn || stored === null) return p;
    return p.then((good) => {
      if (good) conn[VERIFIED] = { deploymentKey, authorization, user: creds.name, hash: stored };
      return good;
    });
  }

  async #hash(key: string, pendingKey: string, user: string, password: string, stored: string | null): Promise<boolean> {
    this.stats.hashes++;
    let matched = false;
    try {
      matched = await this.#verify(password, stored ?? DUMMY_HASH);
    } catch {
      matched = false;
    } finally {
      this.#pending.delete(pendingKey);
    }
    const good = matched && stored !== null;
    if (good) {
      this.#ok.set(key, { user, hash: stored, expires: 0 });
      this.#failed.delete(key);
    } else {
      this.#failed.set(key, { user, hash: stored, expires: this.#now() + this.#failureTtlMs });
    }
    return good;
  }
}

/** Where a connection keeps its last verified credentials. */
const VERIFIED = Symbol('portico.verifiedCredentials');

interface ConnectionVerified {
  readonly deploymentKey: string;
  readonly authorization: string;
  readonly user: string;
  readonly hash: string;
}

function storedHash(users: Readonly<Record<string, string>>, user: string): string | null {
  return Object.hasOwn(users, user) ? (users[user] ?? null) : null;
}

/** The `WWW-Authenticate` value for a deployment: `Basic realm="owner/project/deployment"`. */
export function basicChallenge(owner: string, project: string, deployment: string): string {
  const realm = `${owner}/${project}/${deployment}`.replace(/["\\]/g, '\\$&');
  return `Basic realm="${realm}"`;
}

function challenge(ex: Exchange): PorticoError {
  return new PorticoError(GatewayErrors.AUTH_REQUIRED, undefined, {
    headers: { 'www-authenticate': basicChallenge(ex.owner, ex.project, ex.deployment) },
  });
}

/**
 * Stage: when the deployment's `auth` is `basic`, lets the request through only with the
 * credentials of one of its users; else 401 `AUTH_REQUIRED` with a `WWW-Authenticate` challenge.
 * The `Authorization` header itself never reaches the replica (see proxy/headers.ts).
 */
export function authenticate(auth: BasicAuthenticator): Stage {
  return (ex) => {
    const d = ex.deploymentRecord as DeploymentRecord;
    if (d.auth !== 'basic') return undefined;
    const ok = auth.check(ex.deploymentKey, d.users, ex.authorization, ex.req.socket);
    if (ok === true) return undefined;
    if (ok === false) return challenge(ex);
    return ok.then((good) => (good ? undefined : challenge(ex)));
  };
}
