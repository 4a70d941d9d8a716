import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Password hashes of basic-auth users, as stored in `DeploymentRecord.users`:
 * `scrypt$N$r$p$<salt base64>$<hash base64>` (self-describing, so costs can change later
 * without breaking stored hashes). Hashing runs on libuv's thread pool, never on the event loop.
 */

/** The cost used by `hashPassword` unless told otherwise (about 16 MiB and tens of ms per hash). */
export const DEFAULT_SCRYPT_COST = { N: 16384, r: 8, p: 1 } as const;

const KEY_BYTES = 32;
const SALT_BYTES = 16;
// Bounds on the cost a stored hash may ask for, so a corrupt record cannot make the gateway
// allocate gigabytes or spin for minutes.
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;

function scryptAsync(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Hashes `password` with a fresh random salt. The builder stores the result per user.
 * `cost` exists for tests that need cheap hashes; production callers leave it out.
 */
export async function hashPassword(
  password: string,
  cost: { N: number; r: number; p: number } = DEFAULT_SCRYPT_COST,
): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(password, salt, KEY_BYTES, { ...cost, maxmem: 256 * cost.N * cost.r });
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parseHash(hash: string): ParsedHash | null {
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const N = Number(parts[1]);
  const r = Number(parts[2]);
  const p = Number(parts[3]);
  if (!Number.isInteger(N) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0) return null;
  if (!Number.isInteger(r) || r < 1 || r > MAX_R || !Number.isInteger(p) || p < 1 || p > MAX_P) return null;
  const salt = Buffer.from(parts[4] as string, 'base64');
  const key = Buffer.from(parts[5] as string, 'base64');
  if (salt.length === 0 || key.length === 0 || key.length > 128) return null;
  return { N, r, p, salt, key };
}

/**
 * Whether `password` matches `hash` (made by `hashPassword`). Compares in constant time; a
 * malformed hash is simply a mismatch (it never throws for bad input).
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parseHash(hash);
  if (!parsed) return false;
  const { N, r, p, salt, key } = parsed;
  try {
    const derived = await scryptAsync(password, salt, key.length, { N, r, p, maxmem: 256 * N * r });
    return timingSafeEqual(derived, key);
  } catch {
    return false;
  }
}
