import { closeSync, fstatSync, ftruncateSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

/** Longest line kept whole; a longer one is passed on in pieces of this size. */
const MAX_LINE = 64 * 1024;
const CHUNK = 64 * 1024;

/**
 * Follows one replica output file that the replica itself appends to (O_APPEND), splitting it
 * into lines. Once everything written has been read and the file is over `maxBytes`, it is
 * truncated to 0 so files stay bounded while the replica keeps appending.
 *
 * The race: bytes the replica appends between our last read and the truncate are lost (a few
 * microseconds' worth; the check is repeated just before truncating to make it small). A replica
 * that writes faster than it is read is not bounded until it pauses.
 */
export class LogTail {
  readonly path: string;
  #fd: number | null;
  #offset: number;
  #decoder = new StringDecoder('utf8');
  #partial = '';
  readonly #maxBytes: number;
  readonly #onLine: (line: string) => void;
  readonly #buf = Buffer.allocUnsafe(CHUNK);

  /** Opens `path` (which must exist); `fromEnd` skips what is already in it (adoption). */
  constructor(path: string, opts: { fromEnd: boolean; maxBytes: number; onLine: (line: string) => void }) {
    this.path = path;
    this.#fd = openSync(path, 'r+');
    this.#offset = opts.fromEnd ? fstatSync(this.#fd).size : 0;
    this.#maxBytes = opts.maxBytes;
    this.#onLine = opts.onLine;
  }

  /** Reads what was appended since the last call and passes on every complete line. */
  poll(): void {
    const fd = this.#fd;
    if (fd === null) return;
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch {
      return;
    }
    if (size < this.#offset) this.#offset = 0; // truncated by someone else
    while (this.#offset < size) {
      const n = readSync(fd, this.#buf, 0, Math.min(CHUNK, size - this.#offset), this.#offset);
      if (n <= 0) break;
      this.#offset += n;
      this.#feed(this.#decoder.write(this.#buf.subarray(0, n)));
    }
    if (this.#offset > this.#maxBytes && fstatSync(fd).size === this.#offset) {
      ftruncateSync(fd, 0);
      this.#offset = 0;
    }
  }

  /** Reads the rest and passes on a last unterminated line too (the writer has exited). */
  flush(): void {
    this.poll();
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    if (rest !== '') this.#onLine(rest.replace(/\r$/, ''));
  }

  /** Stops following; the file stays. */
  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }

  #feed(text: string): void {
    const s = this.#partial + text;
    let start = 0;
    let nl: number;
    while ((nl = s.indexOf('\n', start)) !== -1) {
      this.#emit(s.slice(start, nl).replace(/\r$/, ''));
      start = nl + 1;
    }
    let rest = s.slice(start);
    while (rest.length > MAX_LINE) {
      this.#onLine(rest.slice(0, MAX_LINE));
      rest = rest.slice(MAX_LINE);
    }
    this.#partial = rest;
  }

  #emit(line: string): void {
    let l = line;
    while (l.length > MAX_LINE) {
      this.#onLine(l.slice(0, MAX_LINE));
      l = l.slice(MAX_LINE);
    }
    this.#onLine(l);
  }
}
