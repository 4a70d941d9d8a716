import { EventEmitter, on } from 'node:events';
import { createWriteStream, renameSync, statSync, type WriteStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** One stored log line. `stream` is `build` for build logs. */
export interface StoredLine {
  readonly at: number;
  readonly stream: 'stdout' | 'stderr' | 'build';
  readonly replica?: string;
  readonly line: string;
}

/** Filters of a log query (all optional). */
export interface LogFilter {
  readonly tail?: number;
  readonly replica?: string;
  readonly since?: number;
  readonly until?: number;
  readonly contains?: string;
}

const MAX_LINE = 16 * 1024;

/** Makes a log key safe as a file name (keys look like `owner/project/deployment/version/endpoint`). */
function fileName(key: string): string {
  return encodeURIComponent(key).replace(/\./g, '%2E') + '.ndjson';
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function matches(l: StoredLine, f: LogFilter): boolean {
  if (f.replica !== undefined && l.replica !== f.replica) return false;
  if (f.since !== undefined && l.at < f.since) return false;
  if (f.until !== undefined && l.at > f.until) return false;
  if (f.contains !== undefined && !l.line.includes(f.contains)) return false;
  return true;
}

/**
 * Log lines per key (an endpoint of a version, or a version's build), as NDJSON files under
 * `root`, each bounded to about `maxBytes` (the current file plus one rotated predecessor).
 * Lines pass through `mask` (secret values) before they are stored or shown. `follow` yields new
 * lines as they are written.
 */
export class LogStore {
  readonly root: string;
  private readonly maxBytes: number;
  private readonly mask: (line: string) => string;
  private readonly streams = new Map<string, { ws: WriteStream; size: number }>();
  private readonly events = new EventEmitter();

  constructor(opts: { root: string; maxBytes: number; mask?: (line: string) => string }) {
    this.root = opts.root;
    this.maxBytes = opts.maxBytes;
    this.mask = opts.mask ?? ((l) => l);
    this.events.setMaxListeners(0);
  }

  /** Appends one line (truncated to 16 KiB, masked). */
  append(key: string, entry: StoredLine): void {
    const line = this.mask(entry.line.length > MAX_LINE ? `${entry.line.slice(0, MAX_LINE)}…` : entry.line);
    const stored: StoredLine = { ...entry, line };
    const text = JSON.stringify(stored) + '\n';
    let s = this.streams.get(key);
    if (!s) {
      s = { ws: this.open(key), size: sizeOf(join(this.root, fileName(key))) };
      this.streams.set(key, s);
    }
    s.ws.write(text);
    s.size += Buffer.byteLength(text);
    if (s.size > this.maxBytes / 2) this.rotate(key, s);
    this.events.emit(key, stored);
  }

  private open(key: string): WriteStream {
    const ws = createWriteStream(join(this.root, fileName(key)), { flags: 'a' });
    ws.on('error', () => {}); // a full disk must not crash the controller; lines are lost.
    return ws;
  }

  private rotate(key: string, s: { ws: WriteStream; size: number }): void {
    // Renaming an open file keeps the old stream writing into the renamed inode, so lines still
    // buffered in it land in `.1`, in order; new lines go to a fresh file.
    const path = join(this.root, fileName(key));
    try {
      renameSync(path, `${path}.1`);
    } catch {
      return;
    }
    s.ws.end();
    s.ws = this.open(key);
    s.size = 0;
  }

  /** Ensures the folder exists; call once before use. */
  async init(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** Lines of `key`, oldest first, filtered, at most `tail` of the newest. */
  async query(key: string, filter: LogFilter = {}): Promise<StoredLine[]> {
    await this.flush(key);
    const base = join(this.root, fileName(key));
    const out: StoredLine[] = [];
    for (const path of [`${base}.1`, base]) {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch {
        continue;
      }
      for (const raw of text.split('\n')) {
        if (raw === '') continue;
        try {
          const l = JSON.parse(raw) as StoredLine;
          if (matches(l, filter)) out.push(l);
        } catch {
          // a torn last line after a crash: skip it
        }
      }
    }
    out.sort((a, b) => a.at - b.at);
    return filter.tail !== undefined ? out.slice(Math.max(0, out.length - filter.tail)) : out;
  }

  /** New lines of `key` matching `filter`, until `signal` aborts. */
  async *follow(key: string, filter: LogFilter, signal: AbortSignal): AsyncGenerator<StoredLine> {
    try {
      for await (const [l] of on(this.events, key, { signal })) {
        if (matches(l as StoredLine, filter)) yield l as StoredLine;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
  }

  private flush(key: string): Promise<void> {
    const s = this.streams.get(key);
    if (!s || s.ws.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => s.ws.write('', () => resolve()));
  }

  /** Size on disk of a key's logs (for tests and the UI). */
  async size(key: string): Promise<number> {
    let total = 0;
    for (const p of [`${join(this.root, fileName(key))}.1`, join(this.root, fileName(key))]) {
      total += await stat(p).then((s) => s.size, () => 0);
    }
    return total;
  }

  /** Closes open files. */
  async close(): Promise<void> {
    await Promise.all([...this.streams.values()].map((s) => new Promise<void>((r) => s.ws.end(() => r()))));
    this.streams.clear();
  }
}
