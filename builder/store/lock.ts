/**
 * The embedded store's single-writer lock: a `lock` file in its directory naming the owning
 * process. A lock whose process is gone (SIGKILL, power loss) is taken over; one whose process
 * lives makes `acquireLock` fail with `StoreLockedError`. The directory must not be shared
 * between machines (a pid means nothing on another host).
 */
import { link, readFile, rename, unlink, writeFile, realpath } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Another live process holds the data directory. */
export class StoreLockedError extends Error {
  readonly code = 'STORE_LOCKED';
  readonly dir: string;
  readonly pid: number;
  constructor(dir: string, owner: LockOwner) {
    super(
      `the store in ${dir} is in use by process ${owner.pid} on ${owner.host} (since ${owner.since}); ` +
        `stop that process or use another PORTICO_DATA_DIR (lock file: ${join(dir, 'lock')})`,
    );
    this.name = 'StoreLockedError';
    this.dir = dir;
    this.pid = owner.pid;
  }
}

/** What the lock file holds. */
interface LockOwner {
  pid: number;
  /** Start time of the process (Linux /proc), so a recycled pid is not taken for the owner. */
  start: string | null;
  host: string;
  since: string;
  nonce: string;
}

/** A held lock. */
export interface DirLock {
  /** Removes the lock file if it is still ours. */
  release(): Promise<void>;
}

const hasProc = existsSync('/proc/self/stat');

/** Directories this process holds: a lock with our own pid is live only if listed here. */
const held = new Set<string>();

/** State and start time of a process from Linux's /proc (`null` elsewhere, or if it is gone). */
function procStat(pid: number): { state: string; start: string } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields 3 (state) and 22 (starttime), counted after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '?', start: fields[19] ?? '?' };
  } catch {
    return null;
  }
}

function isLive(owner: LockOwner, dir: string): boolean {
  if (owner.pid === process.pid) return held.has(dir);
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: a process with that pid exists, owned by someone else.
  }
  const stat = procStat(owner.pid);
  // Without /proc nothing more can be told; with it, no entry means the process just ended.
  if (stat === null) return !hasProc;
  // A zombie is dead; a different start time means the pid was recycled.
  return stat.state !== 'Z' && (owner.start === null || stat.start === owner.start);
}

function parseOwner(text: string): LockOwner | null {
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || typeof o.nonce !== 'string') return null;
    return { pid: o.pid, start: o.start ?? null, host: o.host ?? '?', since: o.since ?? '?', nonce: o.nonce };
  } catch {
    return null;
  }
}

async function readOwner(path: string): Promise<{ text: string; owner: LockOwner | null } | null> {
  try {
    const text = await readFile(path, 'utf8');
    return { text, owner: parseOwner(text) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Takes the lock of `dir` (which must exist). The lock file appears complete or not at all
 * (written aside, then hard-linked into place), so a reader never judges a half-written one.
 */
export async function acquireLock(dirPath: string): Promise<DirLock> {
  const dir = await realpath(dirPath);
  const path = join(dir, 'lock');
  const me: LockOwner = {
    pid: process.pid,
    start: procStat(process.pid)?.start ?? null,
    host: hostname(),
    since: new Date().toISOString(),
    nonce: randomBytes(8).toString('hex'),
  };
  const mine = JSON.stringify(me);
  const tmp = `${path}.${process.pid}.${me.nonce}.tmp`;
  await writeFile(tmp, mine, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await link(tmp, path);
        held.add(dir);
        return { release: () => release(dir, path, mine) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const current = await readOwner(path);
      if (current === null) continue;
      if (current.owner && isLive(current.owner, dir)) throw new StoreLockedError(dir, current.owner);
      // Stale (or unreadable garbage): move it aside, and make sure what we moved is what we judged.
      const aside = `${path}.stale.${process.pid}.${me.nonce}`;
      try {
        await rename(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const moved = await readOwner(aside);
      if (moved !== null && moved.text !== current.text) {
        // Another process took the stale lock over in between: put its lock back.
        await link(aside, path).catch(() => {});
      }
      await unlink(aside).catch(() => {});
    }
    throw new Error(`cannot take the lock of ${dir}: it keeps changing hands`);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function release(dir: string, path: string, mine: string): Promise<void> {
  held.delete(dir);
  const current = await readOwner(path);
  if (current?.text === mine) await unlink(path).catch(() => {});
}
