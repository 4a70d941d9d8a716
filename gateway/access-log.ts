import { closeSync, constants, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { dirname } from 'node:path';
import { writeStderr } from '../common/log.ts';

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
let lastSecond = -1;
let secondPrefix = '';
// '.000Z' ... '.999Z': the milliseconds part of an ISO time.
const MILLIS = Array.from({ length: 1000 }, (_, i) => `.${String(i).padStart(3, '0')}Z`);

/**
 * `new Date(ms).toISOString()`, cheaply: computed once per millisecond (many requests share one),
 * and from a per-second prefix otherwise (one Date per second, not per request).
 */
export function isoTime(ms: number): string {
  if (ms === lastMs) return lastIso;
  lastMs = ms;
  if (!Number.isInteger(ms) || ms < 0) return (lastIso = new Date(ms).toISOString());
  const millis = ms % 1000;
  const second = ms - millis;
  if (second !== lastSecond) {
    lastSecond = second;
    const iso = new Date(second).toISOString();
    // Everything up to the seconds' dot, whatever the year's width.
    secondPrefix = iso.slice(0, iso.length - 5);
  }
  return (lastIso = secondPrefix + (MILLIS[millis] as string));
}

// Characters JSON.stringify escapes (and lone surrogates, which it escapes too: any surrogate
// takes the slow path). A string without them is its own JSON body.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** `JSON.stringify(v)` for a string or null, with a fast path for strings needing no escapes. */
function str(v: string | null): string {
  if (v === null) return 'null';
  return NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`;
}

/**
 * One access-log line (an `AccessRecord` as JSON) from its fields, in order (`error` `''` for
 * none), without building a record first.
 */
export function formatLine(
  time: string,
  requestId: string,
  method: string,
  route: string | null,
  version: string | null,
  replica: string | null,
  status: number,
  bytes: number,
  durationMs: number,
  error: string,
): string {
  return `{"time":${str(time)},"requestId":${str(requestId)},"method":${str(method)},"route":${str(route)},"version":${str(version)},"replica":${str(replica)},"status":${status},"bytes":${bytes},"durationMs":${durationMs}${error === '' ? '' : `,"error":${str(error)}`}}\n`;
}

// Direct encoding of a line into a buffer, for the gateway's hot path: no string is built.
// Plain ASCII fields (what the gateway's own values and almost every client-sent request id
// are) are checked with one regular expression and copied by `Buffer#write`; a line with any
// other character is left to `formatLine`. Not a charCodeAt loop: the fields arrive as strings of
// several internal kinds (a concatenated time, sliced paths, parsed JSON), and a loop over them
// sent every character through V8's generic property lookup (bench/README.md).

const ASCII = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const K_TIME = ASCII('{"time":"');
const K_REQUEST_ID = ASCII('","requestId":"');
const K_METHOD = ASCII('","method":"');
const K_ROUTE = ASCII('","route":');
const K_VERSION = ASCII(',"version":');
const K_REPLICA = ASCII(',"replica":');
const K_STATUS = ASCII(',"status":');
const K_BYTES = ASCII(',"bytes":');
const K_DURATION = ASCII(',"durationMs":');
const K_ERROR = ASCII(',"error":"');
const NULL_BYTES = ASCII('null');
const QUOTE = 0x22;

function putBytes(buf: Buffer, at: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[at + i] = bytes[i] as number;
  return at + bytes.length;
}

// Printable ASCII other than `"` and `\\`: copied as they are.
const NOT_PLAIN = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;

/** Copies `s` if it is printable ASCII needing no JSON escape; else returns -1. */
function putAscii(buf: Buffer, at: number, s: string): number {
  if (NOT_PLAIN.test(s)) return -1;
  return at + buf.write(s, at, 'latin1');
}

/** A JSON string or `null`; -1 as `putAscii`. */
function putNullable(buf: Buffer, at: number, s: string | null): number {
  if (s === null) return putBytes(buf, at, NULL_BYTES);
  buf[at] = QUOTE;
  const end = putAscii(buf, at + 1, s);
  if (end < 0) return -1;
  buf[end] = QUOTE;
  return end + 1;
}

/** A non-negative safe integer's digits. */
function putUint(buf: Buffer, at: number, n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  for (let i = at + digits - 1, x = n; i >= at; i--, x = Math.floor(x / 10)) buf[i] = 0x30 + (x % 10);
  return at + digits;
}

/** `micros / 1000` as JavaScript prints it (`1.5`, `0.744`, `49`): integer part, then up to three decimals. */
function putMillis(buf: Buffer, at: number, micros: number): number {
  let end = putUint(buf, at, Math.floor(micros / 1000));
  let frac = micros % 1000;
  if (frac === 0) return end;
  let width = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    width--;
  }
  buf[end++] = 0x2e;
  for (let i = end + width - 1, x = frac; i >= end; i--, x = Math.floor(x / 10)) buf[i] = 0x30 + (x % 10);
  return end + width;
}

/**
 * Writes the line `formatLine` would make (with `durationMs = micros / 1000`) into `buf` at `at`;
 * returns where it ends, or -1 when a field needs escaping or a number is not a plain
 * non-negative integer (the caller then uses `formatLine`). `buf` must have room for
 * `maxLineBytes` of the same fields.
 */
export function encodeLine(
  buf: Buffer,
  at: number,
  time: string,
  requestId: string,
  method: string,
  route: string | null,
  version: string | null,
  replica: string | null,
  status: number,
  bytes: number,
  micros: number,
  error: string,
): number {
  if (!Number.isSafeInteger(status) || status < 0 || !Number.isSafeInteger(bytes) || bytes < 0 || !Number.isSafeInteger(micros) || micros < 0) return -1;
  let p = putBytes(buf, at, K_TIME);
  if ((p = putAscii(buf, p, time)) < 0) return -1;
  p = putBytes(buf, p, K_REQUEST_ID);
  if ((p = putAscii(buf, p, requestId)) < 0) return -1;
  p = putBytes(buf, p, K_METHOD);
  if ((p = putAscii(buf, p, method)) < 0) return -1;
  p = putBytes(buf, p, K_ROUTE);
  if ((p = putNullable(buf, p, route)) < 0) return -1;
  p = putBytes(buf, p, K_VERSION);
  if ((p = putNullable(buf, p, version)) < 0) return -1;
  p = putBytes(buf, p, K_REPLICA);
  if ((p = putNullable(buf, p, replica)) < 0) return -1;
  p = putUint(buf, putBytes(buf, p, K_STATUS), status);
  p = putUint(buf, putBytes(buf, p, K_BYTES), bytes);
  p = putMillis(buf, putBytes(buf, p, K_DURATION), micros);
  if (error !== '') {
    p = putBytes(buf, p, K_ERROR);
    if ((p = putAscii(buf, p, error)) < 0) return -1;
    buf[p++] = QUOTE;
  }
  buf[p++] = 0x7d; // }
  buf[p++] = NEWLINE;
  return p;
}

/** Most bytes `encodeLine` writes for fields of these lengths (numbers at their widest). */
function maxLineBytes(time: string, requestId: string, method: string, route: string | null, version: string | null, replica: string | null, error: string): number {
  return 160 + time.length + requestId.length + method.length + (route?.length ?? 4) + (version?.length ?? 4) + (replica?.length ?? 4) + error.length + 3 * 16;
}

// Small on purpose: the encoding buffers are touched on every request, and the fewer bytes they
// span the more of them stays in the CPU's cache. In an A/B of fresh processes at full speed this
// took the gateway from 57.6 to 51.4 µs of CPU per request (49.9 with the log off); 8 KiB flushes
// cost more again (more writes). Most of what the log still cost after that was the thread-pool
// round trip of each write, gone with direct writes (bench/README.md).
const FLUSH_BYTES = 16 * 1024;
// Lines are encoded into buffers of this size as they come (a flush hands the filled part on and
// starts a new buffer). Room for a whole line is checked at 3 bytes per UTF-16 unit, so a line of
// up to a third of this fits into an empty buffer; a longer one (a very long request target) is
// formatted as a string and becomes a chunk of its own.
const CHUNK_BYTES = 32 * 1024;
// Writes to a pipe of at most this many bytes are never interleaved with other processes'
// writes (POSIX PIPE_BUF): the workers of `portico gateway` share one stdout.
const PIPE_BUF = 4096;
const NEWLINE = 0x0a;
const LINE_END = Buffer.from('\n');
const noop = (): void => {};

function reportWriteError(err: Error): void {
  writeStderr(`${JSON.stringify({ level: 'error', msg: 'access log write failed', error: err.message })}\n`);
}

function writeAtomically(out: NodeJS.WritableStream, chunk: Buffer, done: (err?: Error | null) => void): boolean {
  let ok = true;
  let start = 0;
  while (chunk.length - start > PIPE_BUF) {
    // Cut after the last whole line that fits (a longer line goes alone).
    let cut = chunk.lastIndexOf(NEWLINE, start + PIPE_BUF - 1);
    if (cut < start) cut = chunk.indexOf(NEWLINE, start);
    if (cut === -1) break;
    if (cut + 1 === chunk.length) return out.write(chunk.subarray(start), done) && ok;
    ok = out.write(chunk.subarray(start, cut + 1)) && ok;
    start = cut + 1;
  }
  // The last write's callback comes after the earlier ones' (a stream completes in order).
  return out.write(start === 0 ? chunk : chunk.subarray(start), done) && ok;
}
const FLUSH_MS = 100;
// Requests whose fields are kept before their lines are encoded together.
const BATCH = 64;
// Encoding buffers kept for reuse once written: no allocation (and no fresh pages) per chunk.
const SPARE_BUFFERS = 2;
// Lines waiting beyond this (a destination that cannot keep up) are dropped and counted.
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
// How often a FIFO nobody reads yet is tried again.
const FIFO_RETRY_MS = 250;

/**
 * Opens `path` for appending (a regular file, created if missing, or a device such as
 * `/dev/null`); `null` for a FIFO, which could block a direct write (see `#openFifo`). Throws
 * what `open(2)` refuses (a directory, no permission, a socket).
 */
function openForDirectWrites(path: string): number | null {
  try {
    if (statSync(path).isFIFO()) return null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return openSync(path, 'a');
}

function countLines(chunk: Buffer): number {
  let n = 0;
  for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, at + 1)) n++;
  return n;
}

/**
 * The access log: one JSON line per request, written in batches (at 16 KiB or every 100 ms, and
 * on `close`) to stdout, a file (appended), or nowhere (`off`), per `PORTICO_ACCESS_LOG`.
 *
 * The fields of up to 64 requests are kept, then encoded together into a preallocated buffer,
 * and a flush only hands filled buffers on: no conversion stalls the event loop. Encoding a line
 * once per request, amid everything else a request does, took about 4.5 µs on the reference
 * machine; in a loop over 64 requests, with the encoder's code and data warm, under 1 µs, and the
 * gateway used 3% less CPU per request for it (bench/README.md). The fields held are a few
 * strings of each of the last 64 requests: too few and too short-lived to weigh on the young
 * generation, as a queue of finished lines did.
 *
 * A file is written with plain `write(2)` calls from the event loop, as nginx writes its access
 * log: one call per 16 KiB of lines, which the page cache takes in about 10 µs here. Handing each
 * batch to libuv's thread pool instead (an `fs.WriteStream`) cost the gateway 4-5% more CPU per
 * request (bench/README.md), all of it in waking a pool thread and being woken back. A write that
 * fails (disk full) drops its lines, counts them in `dropped`, and is reported on stderr; the
 * next batch is tried again.
 */
export class AccessLog {
  /** Lines dropped because the destination was too slow or failed (disk full, a reader gone). */
  dropped = 0;
  readonly #write: ((chunk: Buffer, done: () => void) => boolean) | null;
  /** A FIFO destination: whether the path is one, and its open end once a reader has it open. */
  readonly #fifo: boolean;
  #pipe: Socket | null = null;
  #retry: NodeJS.Timeout | null = null;
  /** The open file written directly, or -1; and its path (`reopen`). */
  #fd: number;
  readonly #path: string;
  /** The error code of the last failed direct write, reported once until a write succeeds. */
  #failing = '';
  /** Whether a failed direct write left a line without its end in the file. */
  #cut = false;
  /** The buffer lines are encoded into, and how much of it is used. */
  #cur: Buffer | null = null;
  #used = 0;
  /** Filled chunks not yet handed on (while a file destination catches up), with their buffers. */
  #queue: Buffer[] = [];
  #owners: (Buffer | null)[] = [];
  /** Written buffers, ready for reuse. */
  #spare: Buffer[] = [];
  #queued = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Requests whose fields wait in the arrays below (`appendFields`), not yet encoded. */
  #pending = 0;
  readonly #times: string[] = new Array<string>(BATCH).fill('');
  readonly #ids: string[] = new Array<string>(BATCH).fill('');
  readonly #methods: string[] = new Array<string>(BATCH).fill('');
  readonly #routes: (string | null)[] = new Array<string | null>(BATCH).fill(null);
  readonly #versions: (string | null)[] = new Array<string | null>(BATCH).fill(null);
  readonly #replicas: (string | null)[] = new Array<string | null>(BATCH).fill(null);
  readonly #errors: string[] = new Array<string>(BATCH).fill('');
  /** Status, bytes and microseconds of each waiting request. */
  readonly #numbers = new Float64Array(3 * BATCH);
  #blocked = false;
  #closed = false;

  /**
   * Throws when a file destination cannot be opened (its directory is created first), so a
   * gateway with an unwritable log path refuses to start rather than serve unlogged.
   */
  constructor(destination: string, stdout: NodeJS.WritableStream = process.stdout) {
    this.#fd = -1;
    this.#path = destination;
    this.#fifo = false;
    if (destination === 'off') {
      this.#write = null;
    } else if (destination === 'stdout') {
      this.#watch(stdout);
      this.#write = (chunk, done) => this.#writeStream(stdout, chunk, done, true);
    } else {
      let fd: number | null;
      try {
        mkdirSync(dirname(destination), { recursive: true });
        fd = openForDirectWrites(destination);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw Object.assign(new Error(`cannot open the access log (PORTICO_ACCESS_LOG=${destination}): ${e.code ?? e.message}`, { cause: err }), { code: e.code });
      }
      if (fd !== null) {
        this.#fd = fd;
        this.#write = (chunk, done) => {
          this.#writeDirect(this.#fd, chunk);
          done();
          return true;
        };
        return;
      }
      this.#fifo = true;
      // Lines wait (bounded as for a slow reader) until a reader has the FIFO open.
      this.#blocked = true;
      this.#write = (chunk, done) => this.#writeStream(this.#pipe as Socket, chunk, done, true);
      this.#openFifo(true);
    }
  }

  // A FIFO is opened without blocking, and written from the event loop like stdout: a blocking
  // open(2) waits for a reader, and a blocking write(2) for one that stopped reading, each holding
  // a thread of libuv's pool, which the process then waited for as it exited (SIGTERM never ended
  // the gateway). With no reader yet (ENXIO), it is tried again every FIFO_RETRY_MS (`retry`).
  #openFifo(retry: boolean): void {
    this.#retry = null;
    let fd: number;
    try {
      fd = openSync(this.#path, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENXIO') this.#failed(e);
      if (retry) {
        this.#retry = setTimeout(() => this.#openFifo(true), FIFO_RETRY_MS);
        this.#retry.unref();
      }
      return;
    }
    const pipe = new Socket({ fd, readable: false, writable: true });
    this.#watch(pipe);
    pipe.on('drain', () => {
      this.#blocked = false;
      if (this.#used + this.#queued > 0) this.#flush();
    });
    this.#pipe = pipe;
    this.#failing = '';
    this.#blocked = false;
    this.#flush();
  }

  // A stream destination (stdout, a FIFO) whose reader went away (EPIPE: a log shipper that
  // restarted, `| head`) is destroyed: its 'error' is reported once, not left unhandled, which
  // ended the whole gateway with a stack trace at its next line. The listener stays after
  // `close`: a write still under way may fail after it.
  #watch(out: NodeJS.WritableStream): void {
    out.on('error', (err: NodeJS.ErrnoException) => {
      this.#blocked = false;
      this.#failed(err);
    });
  }

  // The lines of a write that fails, and of every write once the stream is destroyed, are dropped
  // and counted as a failed file write's are; so are those that find MAX_BUFFERED_BYTES waiting in
  // the stream already (stdout to a reader that stopped reading: Node buffered it all, without
  // bound, until the gateway ran out of memory).
  #writeStream(out: NodeJS.WritableStream & { readonly destroyed?: boolean; readonly writableLength?: number }, chunk: Buffer, done: () => void, atomic: boolean): boolean {
    if (out.destroyed === true || (out.writableLength ?? 0) > MAX_BUFFERED_BYTES) {
      this.dropped += countLines(chunk);
      done();
      return true;
    }
    const after = (err?: Error | null): void => {
      if (err) this.dropped += countLines(chunk);
      done();
    };
    return atomic ? writeAtomically(out, chunk, after) : out.write(chunk, after);
  }

  #failed(err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'ERROR';
    if (code !== this.#failing) reportWriteError(err);
    this.#failing = code;
  }

  #writeDirect(fd: number, chunk: Buffer): void {
    let at = 0;
    try {
      // A line a failed write cut off is ended first: the next line was glued to it, and both
      // were lost to a reader of JSON lines.
      if (this.#cut) {
        writeSync(fd, LINE_END);
        this.#cut = false;
      }
      while (at < chunk.length) at += writeSync(fd, chunk, at);
      this.#failing = '';
    } catch (err) {
      // The lines written whole before the failure are kept (they were counted as dropped too).
      this.dropped += countLines(at === 0 ? chunk : chunk.subarray(at));
      if (at > 0 && chunk[at - 1] !== NEWLINE) this.#cut = true;
      this.#failed(err as NodeJS.ErrnoException);
    }
  }

  /** Whether lines are written at all (callers may skip building records when not). */
  get enabled(): boolean {
    return this.#write !== null && !this.#closed;
  }

  /** Queues one line made by `formatLine`, after the lines of `appendFields` calls before it. */
  append(line: string): void {
    if (this.#write === null || this.#closed) return;
    if (this.#pending > 0) this.#encodePending();
    this.#appendLine(line);
  }

  #appendLine(line: string): void {
    if (this.#queued + this.#used > MAX_BUFFERED_BYTES) {
      this.dropped++;
      return;
    }
    const room = line.length * 3;
    if (room > CHUNK_BYTES) {
      this.#seal();
      this.#enqueue(Buffer.from(line), null);
    } else {
      this.#used += this.#bufferWithRoom(room).write(line, this.#used, 'utf8');
    }
    this.#queuedLine();
  }

  /**
   * Queues one request's line from its fields (those of `formatLine`, the duration in whole
   * microseconds): the gateway's hot path. The fields wait with those of up to 63 other requests
   * and are encoded together (see the class). A line is encoded straight into the buffer when
   * every field is plain ASCII, otherwise through `formatLine`: the same bytes either way.
   */
  appendFields(
    time: string,
    requestId: string,
    method: string,
    route: string | null,
    version: string | null,
    replica: string | null,
    status: number,
    bytes: number,
    micros: number,
    error: string,
  ): void {
    if (this.#write === null || this.#closed) return;
    if (this.#queued + this.#used > MAX_BUFFERED_BYTES) {
      this.dropped++;
      return;
    }
    const i = this.#pending;
    this.#times[i] = time;
    this.#ids[i] = requestId;
    this.#methods[i] = method;
    this.#routes[i] = route;
    this.#versions[i] = version;
    this.#replicas[i] = replica;
    this.#errors[i] = error;
    this.#numbers[3 * i] = status;
    this.#numbers[3 * i + 1] = bytes;
    this.#numbers[3 * i + 2] = micros;
    this.#pending = i + 1;
    if (this.#pending === BATCH) this.#encodePending();
    else if (this.#timer === null) {
      this.#timer = setTimeout(() => this.#flush(), FLUSH_MS);
      this.#timer.unref();
    }
  }

  // Encodes the waiting requests' lines, in order. The fields stay in the arrays until
  // overwritten: a few strings of the last 64 requests.
  #encodePending(): void {
    const n = this.#pending;
    this.#pending = 0;
    const num = this.#numbers;
    for (let i = 0; i < n; i++) {
      const time = this.#times[i] as string;
      const requestId = this.#ids[i] as string;
      const method = this.#methods[i] as string;
      const route = this.#routes[i] as string | null;
      const version = this.#versions[i] as string | null;
      const replica = this.#replicas[i] as string | null;
      const error = this.#errors[i] as string;
      const status = num[3 * i] as number;
      const bytes = num[3 * i + 1] as number;
      const micros = num[3 * i + 2] as number;
      const room = maxLineBytes(time, requestId, method, route, version, replica, error);
      const end = room <= CHUNK_BYTES ? encodeLine(this.#bufferWithRoom(room), this.#used, time, requestId, method, route, version, replica, status, bytes, micros, error) : -1;
      if (end >= 0) {
        this.#used = end;
        this.#queuedLine();
      } else {
        this.#appendLine(formatLine(time, requestId, method, route, version, replica, status, bytes, micros / 1000, error));
      }
    }
  }

  // A line was added: flush at FLUSH_BYTES, else within FLUSH_MS.
  #queuedLine(): void {
    if (this.#used + this.#queued >= FLUSH_BYTES) this.#flush();
    else if (this.#timer === null) {
      this.#timer = setTimeout(() => this.#flush(), FLUSH_MS);
      this.#timer.unref();
    }
  }

  // The buffer the next line goes into, with at least `room` bytes free after `#used` (room is
  // at most CHUNK_BYTES): the current one, or a spare or new one once the current is sealed.
  #bufferWithRoom(room: number): Buffer {
    if (this.#cur !== null && this.#used + room > CHUNK_BYTES) this.#seal();
    return (this.#cur ??= this.#spare.pop() ?? Buffer.allocUnsafe(CHUNK_BYTES));
  }

  // Moves the used part of the current buffer to the queue; the next line starts another buffer
  // (this one is reused only once it has been written).
  #seal(): void {
    if (this.#cur !== null && this.#used > 0) {
      this.#enqueue(this.#cur.subarray(0, this.#used), this.#cur);
      this.#cur = null;
      this.#used = 0;
    }
  }

  #enqueue(chunk: Buffer, owner: Buffer | null): void {
    this.#queue.push(chunk);
    this.#owners.push(owner);
    this.#queued += chunk.length;
  }

  #reuse(owner: Buffer): void {
    if (this.#spare.length < SPARE_BUFFERS) this.#spare.push(owner);
  }

  #flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#pending > 0) this.#encodePending();
    if (this.#used + this.#queued === 0 || this.#write === null || this.#blocked) return;
    this.#seal();
    const chunks = this.#queue;
    const owners = this.#owners;
    this.#queue = [];
    this.#owners = [];
    this.#queued = 0;
    let ok = true;
    for (let i = 0; i < chunks.length; i++) {
      const owner = owners[i] ?? null;
      ok = this.#write(chunks[i] as Buffer, owner === null ? noop : () => this.#reuse(owner)) && ok;
    }
    // A FIFO that returns false is waited for ('drain'); stdout is bounded in `#writeStream`.
    if (!ok && this.#pipe !== null) this.#blocked = true;
  }

  /**
   * For a file written directly: writes what is queued to the file open now, then opens the path
   * again, so that after logrotate has moved the file (its `create` mode) the next lines go to a
   * new one. `portico gateway` and `portico start` do this on SIGHUP. A path that cannot be opened
   * any more is reported on stderr and the old file kept. Nothing to do for stdout, `off` or a
   * FIFO.
   */
  reopen(): void {
    if (this.#fd === -1 || this.#closed) return;
    this.#blocked = false;
    this.#flush();
    let fd: number | null;
    try {
      fd = openForDirectWrites(this.#path);
    } catch (err) {
      reportWriteError(new Error(`cannot reopen the access log ${this.#path}: ${(err as Error).message}`));
      return;
    }
    if (fd === null) {
      reportWriteError(new Error(`cannot reopen the access log ${this.#path}: it is no longer a file`));
      return;
    }
    closeSync(this.#fd);
    this.#fd = fd;
    this.#cut = false;
  }

  /**
   * Writes what is queued and, for a file, closes it. A FIFO gets at most `timeoutMs` to take
   * its lines; those it has not taken then (a reader that stopped reading), and all of them when
   * nobody has it open, are dropped and counted.
   */
  async close(timeoutMs = Infinity): Promise<void> {
    if (this.#closed) return;
    if (this.#retry !== null) {
      // A last try, for a reader that came since.
      clearTimeout(this.#retry);
      this.#openFifo(false);
    }
    if (this.#fifo && this.#pipe === null) this.#dropQueued();
    this.#blocked = false;
    this.#flush();
    this.#closed = true;
    if (this.#fd !== -1) {
      closeSync(this.#fd);
      this.#fd = -1;
    }
    const pipe = this.#pipe;
    if (pipe === null || pipe.destroyed) return;
    await new Promise<void>((resolve) => {
      // Destroying it calls back the writes still waiting with an error: they count as dropped.
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => pipe.destroy(), timeoutMs) : undefined;
      pipe.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      pipe.end();
    });
  }

  // Drops and counts every line not handed on yet.
  #dropQueued(): void {
    if (this.#pending > 0) this.#encodePending();
    this.#seal();
    for (const chunk of this.#queue) this.dropped += countLines(chunk);
    this.#queue = [];
    this.#owners = [];
    this.#queued = 0;
  }
}
