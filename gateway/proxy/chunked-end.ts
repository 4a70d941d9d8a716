/**
 * Finds where a chunked HTTP/1.1 body ends, fed the bytes as they pass (the tunnel relays a
 * declined upgrade's answer raw and must stop after it, whether or not the replica closes).
 * Chunk extensions and trailers are skipped, not checked: the bytes go on as the replica sent
 * them; what matters is where the message ends.
 */
export class ChunkedEnd {
  #state: 'size' | 'ext' | 'sizeLf' | 'data' | 'dataCr' | 'dataLf' | 'trailerStart' | 'trailer' | 'trailerLf' | 'endLf' | 'done' = 'size';
  #size = 0;
  #digits = 0;
  #left = 0;
  /** Set when the framing is not chunked encoding: the end cannot be known. */
  invalid = false;

  /**
   * Reads `chunk`; returns how many of its bytes belong to the body (all of them, or up to and
   * including the end), or -1 when the end is not in it yet. After the end, 0.
   */
  feed(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.#state === 'done') return i;
      if (this.#state === 'data') {
        const take = Math.min(this.#left, chunk.length - i);
        this.#left -= take;
        i += take;
        if (this.#left === 0) this.#state = 'dataCr';
        continue;
      }
      const c = chunk[i++] as number;
      switch (this.#state) {
        case 'size': {
          const d = hexDigit(c);
          if (d >= 0 && this.#digits < 13) {
            this.#size = this.#size * 16 + d;
            this.#digits++;
          } else if (this.#digits > 0 && (c === 0x3b /* ; */ || c === 0x20 || c === 0x09)) this.#state = 'ext';
          else if (this.#digits > 0 && c === 0x0d) this.#state = 'sizeLf';
          else return this.#fail();
          break;
        }
        case 'ext':
          if (c === 0x0d) this.#state = 'sizeLf';
          break;
        case 'sizeLf':
          if (c !== 0x0a) return this.#fail();
          if (this.#size === 0) this.#state = 'trailerStart';
          else {
            this.#left = this.#size;
            this.#state = 'data';
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case 'dataCr':
          if (c !== 0x0d) return this.#fail();
          this.#state = 'dataLf';
          break;
        case 'dataLf':
          if (c !== 0x0a) return this.#fail();
          this.#state = 'size';
          break;
        case 'trailerStart':
          // An empty line ends the message; anything else is a trailer field line.
          this.#state = c === 0x0d ? 'endLf' : 'trailer';
          break;
        case 'trailer':
          if (c === 0x0d) this.#state = 'trailerLf';
          break;
        case 'trailerLf':
          if (c !== 0x0a) return this.#fail();
          this.#state = 'trailerStart';
          break;
        case 'endLf':
          if (c !== 0x0a) return this.#fail();
          this.#state = 'done';
          return i;
      }
    }
    return this.#state === 'done' ? i : -1;
  }

  #fail(): number {
    this.invalid = true;
    return -1;
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
