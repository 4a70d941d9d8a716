import { closeSync, fstatSync, openSync, read, readdirSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { keyFileName, keyOfFileName } from './key-files.ts';

const readAt = promisify(read);

/** One stored log line. `stream` is `build` for build logs. */
export interface StoredLine {
  readonly at: number;
  readonly stream: 'stdout' | 'stderr' | 'build';
  readonly replica?: string;
  readonly line: string;
}

/** Filters of a log query (all optional). */
export interface LogFilter {
  /** Only the newest N matching lines (of what is stored; followed lines are not counted). */
  readonly tail?: number;
  readonly replica?: string;
  /** Only lines with `since <= at`... */
  readonly since?: number;
  /** ...and `at < until` (epoch milliseconds). */
  readonly until?: number;
  /** Only lines containing this text (after masking: a secret value never matches). */
  readonly contains?: string;
}

/** Longest line kept (characters); the rest is cut and marked with `…`. */
export const MAX_LINE = 16 * 1024;
/** Lines a follower may fall behind by before lines are dropped for it (and it is told so). */
export const FOLLOW_QUEUE_MAX = 10_000;
const FLUSH_MS = 50;
const READ_CHUNK = 64 * 1024;
const MAX_OPEN_FILES = 128;

function matches(l: StoredLine, f: LogFilter): boolean {
  if (f.replica !== undefined && l.replica !== f.replica) return false;
  if (f.since !== undefined && l.at < f.since) return false;
  if (f.until !== undefined && l.at >= f.until) return false;
  if (f.contains !== undefined && !l.line.includes(f.contains)) return false;
  return true;
}

interface KeyState {
  /** Append descriptor of the current file, opened on first write. */
  fd: number | null;
  /** Bytes of the current file, including `pending`. */
  size: number;
  /** Lines appended but not yet written. */
  pending: string[];
}

/** Where a follower's queue overflowed: that many lines are missing here. */
interface Gap {
  skipped: number;
}

interface Follower {
  readonly filter: LogFilter;
  readonly queue: (StoredLine | Gap)[];
  /** Lines in the queue (gaps not counted). */
  lines: number;
  ended: boolean;
  wake: (() => void) | undefined;
}

/**
 * Log lines per key (an endpoint of a version, or `build/...` for a version's build), as NDJSON
 * files under `root`. Each key keeps at most about `maxBytes` on disk: the current file is
 * rotated to `.1` (replacing the previous one) before it would exceed `maxBytes / 2`. Lines
 * pass through `mask` (secret values) when stored and again when read, so a secret added later
 * is hidden in older lines too.
 *
 * Appends are synchronous and cheap: lines are buffered and written every 50 ms (at most half
 * of `maxBytes` per key waits). A read takes a consistent cut of the files, so a followed read
 * gets every line exactly once: the stored ones, then each new one as it is appended.
 */
export class LogStore {
  readonly root: string;
  private readonly maxBytes: number;
  private readonly mask: (line: string) => string;
  /** Keys with an open file or pending lines, least recently written first. */
  private readonly keys = new Map<string, KeyState>();
  private readonly followers = new Map<string, Set<Follower>>();
  /** Keys `end` was called for and that had no line since: a follow of them ends at once. */
  private readonly ended = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** Lines lost to write errors (a full disk). */
  dropped = 0;

  constructor(opts: { root: string; maxBytes: number; mask?: (line: string) => string }) {
    this.root = opts.root;
    this.maxBytes = opts.maxBytes;
    this.mask = opts.mask ?? ((l) => l);
  }

  /** Ensures the folder exists; call once before use. */
  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** Appends one line (masked, then cut to `MAX_LINE`); followers get it at once. */
  append(key: string, entry: StoredLine): void {
    const masked = this.mask(entry.line);
    const line = masked.length > MAX_LINE ? `${masked.slice(0, MAX_LINE)}…` : masked;
    const stored: StoredLine = { at: entry.at, stream: entry.stream, ...(entry.replica !== undefined ? { replica: entry.replica } : {}), line };
    const text = JSON.stringify(stored) + '\n';
    const bytes = Buffer.byteLength(text);
    if (this.ended.size > 0) this.ended.delete(key);
    const s = this.state(key);
    if (s.size > 0 && s.size + bytes > this.maxBytes / 2) this.rotate(key, s);
    s.pending.push(text);
    s.size += bytes;
    this.timer ??= setTimeout(() => this.flushAll(), FLUSH_MS);
    const followers = this.followers.get(key);
    if (followers) for (const f of followers) if (matches(stored, f.filter)) push(f, stored);
  }

  /**
   * Ends every follow of `key` once its queued lines are read (a build has finished); a follow
   * that starts later ends after the stored lines, until a line is appended again.
   */
  end(key: string): void {
    this.ended.add(key);
    endAll(this.followers.get(key));
  }

  private state(key: string): KeyState {
    let s = this.keys.get(key);
    if (s) {
      // Most recently used last: the first entries are closed when too many files are open.
      this.keys.delete(key);
      this.keys.set(key, s);
      return s;
    }
    let size = 0;
    let torn = false;
    try {
      size = statSync(this.path(key)).size;
      if (size > 0) torn = lastByte(this.path(key), size) !== 0x0a;
    } catch {
      // no file yet
    }
    // A line torn by a crash is ended, so that the next line is not glued to it.
    s = { fd: null, size: size + (torn ? 1 : 0), pending: torn ? ['\n'] : [] };
    this.keys.set(key, s);
    if (this.keys.size > MAX_OPEN_FILES) {
      for (const [k, old] of this.keys) {
        if (this.keys.size <= MAX_OPEN_FILES) break;
        if (k === key) continue;
        this.write(old, k);
        this.closeFd(old);
        this.keys.delete(k);
      }
    }
    return s;
  }

  private path(key: string): string {
    return join(this.root, keyFileName(key));
  }

  /** Writes a key's pending lines to its current file. */
  private write(s: KeyState, key?: string): void {
    if (s.pending.length === 0) return;
    const text = s.pending.join('');
    const n = s.pending.length;
    s.pending = [];
    try {
      if (s.fd === null) {
        if (key === undefined) throw new Error('no file');
        s.fd = openSync(this.path(key), 'a');
      }
      writeSync(s.fd, text);
    } catch {
      this.dropped += n; // a full disk must not crash the controller; the lines are lost
    }
  }

  private writeKey(key: string): void {
    const s = this.keys.get(key);
    if (s) this.write(s, key);
  }

  private closeFd(s: KeyState): void {
    if (s.fd === null) return;
    try {
      closeSync(s.fd);
    } catch {
      // already closed
    }
    s.fd = null;
  }

  private rotate(key: string, s: KeyState): void {
    this.write(s, key);
    this.closeFd(s);
    try {
      renameSync(this.path(key), `${this.path(key)}.1`);
    } catch {
      // nothing written yet
    }
    s.size = 0;
  }

  private flushAll(): void {
    this.timer = undefined;
    for (const [key, s] of this.keys) this.write(s, key);
  }

  /**
   * Lines of `key`, oldest first (in the order they were appended), filtered; with `tail`, the
   * newest `tail` matching lines only.
   */
  async query(key: string, filter: LogFilter = {}): Promise<StoredLine[]> {
    const out: StoredLine[] = [];
    for await (const l of this.read(key, filter)) out.push(l);
    return out;
  }

  /**
   * The stored lines of `key` (as `query`), then with `follow` each new matching line as it is
   * appended, until `signal` aborts or `end(key)` is called. A follower that falls
   * `FOLLOW_QUEUE_MAX` lines behind loses the lines that do not fit and is told how many, by a
   * line of its own (stream `stderr`) where they are missing.
   */
  async *read(key: string, filter: LogFilter = {}, opts: { follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<StoredLine> {
    // Synchronously: write what is pending, open both files at their current sizes and subscribe,
    // so no line is missed or seen twice between the files and the followed lines.
    this.writeKey(key);
    const files: { fd: number; size: number }[] = [];
    for (const p of [`${this.path(key)}.1`, this.path(key)]) {
      try {
        const fd = openSync(p, 'r');
        files.push({ fd, size: fstatSync(fd).size });
      } catch {
        // no such file
      }
    }
    let follower: Follower | undefined;
    if (opts.follow && !opts.signal?.aborted) {
      follower = { filter, queue: [], lines: 0, ended: this.ended.has(key), wake: undefined };
      let set = this.followers.get(key);
      if (!set) this.followers.set(key, (set = new Set()));
      set.add(follower);
    }
    try {
      const backlog: StoredLine[] = [];
      const need = filter.tail ?? Infinity;
      // Newest first: the current file, then `.1`.
      for (let i = files.length - 1; i >= 0 && backlog.length < need; i--) {
        const f = files[i]!;
        await readBackwards(f.fd, f.size, (raw) => {
          let l: StoredLine;
          try {
            l = JSON.parse(raw) as StoredLine;
          } catch {
            return true; // a torn line after a crash: skip it
          }
          l = { ...l, line: this.mask(l.line) };
          if (matches(l, filter)) backlog.push(l);
          return backlog.length < need;
        });
      }
      for (const f of files.splice(0)) closeQuietly(f.fd);
      for (let i = backlog.length - 1; i >= 0; i--) yield backlog[i]!;
      if (!follower) return;
      const signal = opts.signal;
      const onAbort = () => follower.wake?.();
      signal?.addEventListener('abort', onAbort);
      try {
        for (;;) {
          const next = follower.queue.shift();
          if (next && 'skipped' in next) {
            yield { at: Date.now(), stream: 'stderr', line: `[portico] ${next.skipped} log line(s) skipped here: this reader fell too far behind` };
            continue;
          }
          if (next) {
            follower.lines--;
            yield next;
            continue;
          }
          if (follower.ended || signal?.aborted) return;
          await new Promise<void>((resolve) => (follower.wake = resolve));
          follower.wake = undefined;
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      for (const f of files) closeQuietly(f.fd);
      if (follower) {
        const set = this.followers.get(key);
        set?.delete(follower);
        if (set?.size === 0) this.followers.delete(key);
      }
    }
  }

  /**
   * Forgets the logs of `key` and of every key under it (`key/...`): the endpoints of a deleted
   * version (`owner/project/deployment/version`), or a version's build log. Their follows end
   * after their queued lines.
   */
  async remove(key: string): Promise<void> {
    const under = (k: string) => k === key || k.startsWith(`${key}/`);
    for (const k of this.ended) if (under(k)) this.ended.delete(k);
    // Their follows end: a version created again under the same name is another one.
    for (const [k, set] of this.followers) {
      if (!under(k)) continue;
      endAll(set);
      this.followers.delete(k);
    }
    for (const [k, s] of this.keys) {
      if (!under(k)) continue;
      this.closeFd(s);
      this.keys.delete(k);
    }
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return;
    }
    for (const n of names) {
      const k = keyOfFileName(n.replace(/\.1$/, ''));
      if (k !== undefined && under(k)) rmSync(join(this.root, n), { force: true });
    }
  }

  /** Size on disk of a key's logs, pending lines included (for tests and the UI). */
  async size(key: string): Promise<number> {
    this.writeKey(key);
    let total = 0;
    for (const p of [`${this.path(key)}.1`, this.path(key)]) {
      try {
        total += statSync(p).size;
      } catch {
        // none
      }
    }
    return total;
  }

  /** Writes what is pending, closes files and ends every follow. */
  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [key, s] of this.keys) {
      this.write(s, key);
      this.closeFd(s);
    }
    this.keys.clear();
    for (const key of this.followers.keys()) this.end(key);
  }
}

/** Ends follows once their queued lines are read. */
function endAll(followers: Iterable<Follower> | undefined): void {
  for (const f of followers ?? []) {
    f.ended = true;
    f.wake?.();
  }
}

function push(f: Follower, l: StoredLine): void {
  if (f.lines >= FOLLOW_QUEUE_MAX) {
    const last = f.queue[f.queue.length - 1];
    if (last && 'skipped' in last) last.skipped++;
    else f.queue.push({ skipped: 1 });
  } else {
    f.queue.push(l);
    f.lines++;
  }
  f.wake?.();
}

function lastByte(path: string, size: number): number {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, size - 1);
    return b[0]!;
  } finally {
    closeSync(fd);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/**
 * Calls `onLine` with each complete line of the first `size` bytes of a file, last line first,
 * until it returns false. Splitting on the newline byte is safe in UTF-8 (it never occurs
 * inside a multi-byte character), so every line decodes whole.
 */
async function readBackwards(fd: number, size: number, onLine: (line: string) => boolean): Promise<void> {
  let pos = size;
  let rest: Buffer = Buffer.alloc(0);
  const chunk = Buffer.allocUnsafe(READ_CHUNK);
  while (pos > 0) {
    const len = Math.min(READ_CHUNK, pos);
    pos -= len;
    const { bytesRead } = await readAt(fd, chunk, 0, len, pos);
    const buf = Buffer.concat([chunk.subarray(0, bytesRead), rest]);
    let end = buf.length;
    for (let i = buf.length - 1; i >= 0; i--) {
      if (buf[i] !== 0x0a) continue;
      if (end > i + 1 && !onLine(buf.toString('utf8', i + 1, end))) return;
      end = i;
    }
    rest = Buffer.from(buf.subarray(0, end));
  }
  if (rest.length > 0) onLine(rest.toString('utf8'));
}
