import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** One access-log record: what happened to one request. Never credentials, never the query. */
export interface AccessRecord {
  /** ISO time the request arrived. */
  time: string;
  requestId: string;
  method: string;
  /** The route prefix as the client sent it (`/owner/project/deployment/alias/endpoint`), or `null`. */
  route: string | null;
  version: string | null;
  replica: string | null;
  status: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  durationMs: number;
  /** Gateway error code, when the request ended with one. */
  error?: string;
}

let lastMs = -1;
let lastIso = '';

/** `new Date(ms).toISOString()`, computed once per millisecond (many requests share one). */
export function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

const str = (v: string | null) => (v === null ? 'null' : JSON.stringify(v));

/** One record as its JSON line (fields in a fixed order; no generic object walk). */
export function formatRecord(r: AccessRecord): string {
  return `{"time":${str(r.time)},"requestId":${str(r.requestId)},"method":${str(r.method)},"route":${str(r.route)},"version":${str(r.version)},"replica":${str(r.replica)},"status":${r.status},"bytes":${r.bytes},"durationMs":${r.durationMs}${r.error === undefined ? '' : `,"error":${str(r.error)}`}}\n`;
}

const FLUSH_BYTES = 64 * 1024;
// Writes to a pipe of at most this many bytes are never interleaved with other processes'
// writes (POSIX PIPE_BUF): the workers of `portico gateway` share one stdout.
const PIPE_BUF = 4096;

function writeAtomically(out: NodeJS.WritableStream, chunk: string): boolean {
  let ok = true;
  let start = 0;
  while (chunk.length - start > PIPE_BUF) {
    // Cut after the last whole line that fits (a longer line goes alone).
    let cut = chunk.lastIndexOf('\n', start + PIPE_BUF - 1);
    if (cut < start) cut = chunk.indexOf('\n', start);
    if (cut === -1) break;
    ok = out.write(chunk.slice(start, cut + 1)) && ok;
    start = cut + 1;
  }
  if (start < chunk.length) ok = out.write(start === 0 ? chunk : chunk.slice(start)) && ok;
  return ok;
}
const FLUSH_MS = 100;
// Lines waiting beyond this (a destination that cannot keep up) are dropped and counted.
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/**
 * The access log: one JSON line per request, written in batches (at 64 KiB or every 100 ms, and
 * on `close`) to stdout, a file (appended), or nowhere (`off`), per `PORTICO_ACCESS_LOG`.
 */
export class AccessLog {
  /** Lines dropped because the destination was too slow. */
  dropped = 0;
  readonly #write: ((chunk: string) => boolean) | null;
  readonly #stream: WriteStream | null;
  #buf = '';
  #timer: NodeJS.Timeout | null = null;
  #blocked = false;
  #closed = false;

  constructor(destination: string, stdout: NodeJS.WritableStream = process.stdout) {
    if (destination === 'off') {
      this.#write = null;
      this.#stream = null;
    } else if (destination === 'stdout') {
      this.#stream = null;
      this.#write = (chunk) => writeAtomically(stdout, chunk);
    } else {
      mkdirSync(dirname(destination), { recursive: true });
      const stream = createWriteStream(destination, { flags: 'a' });
      stream.on('error', (err) => process.stderr.write(`${JSON.stringify({ level: 'error', msg: 'access log write failed', error: err.message })}\n`));
      stream.on('drain', () => {
        this.#blocked = false;
        if (this.#buf !== '') this.#flush();
      });
      this.#stream = stream;
      this.#write = (chunk) => stream.write(chunk);
    }
  }

  /** Whether lines are written at all (callers may skip building records when not). */
  get enabled(): boolean {
    return this.#write !== null && !this.#closed;
  }

  /** Queues one record. */
  log(record: AccessRecord): void {
    if (this.#write === null || this.#closed) return;
    if (this.#buf.length > MAX_BUFFERED_BYTES) {
      this.dropped++;
      return;
    }
    this.#buf += formatRecord(record);
    if (this.#buf.length >= FLUSH_BYTES) this.#flush();
    else if (this.#timer === null) {
      this.#timer = setTimeout(() => this.#flush(), FLUSH_MS);
      this.#timer.unref();
    }
  }

  #flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#buf === '' || this.#write === null || this.#blocked) return;
    const chunk = this.#buf;
    this.#buf = '';
    // A file stream that returns false is waited for ('drain'); stdout is left to Node.
    if (!this.#write(chunk) && this.#stream !== null) this.#blocked = true;
  }

  /** Writes what is queued and, for a file, closes it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#blocked = false;
    this.#flush();
    this.#closed = true;
    const stream = this.#stream;
    if (stream !== null) await new Promise<void>((resolve) => stream.end(resolve));
  }
}
