import { isUtf8 } from 'node:buffer';

/**
 * Turning the bytes of a valohai.yaml into text, refusing what should not be parsed at all:
 * files above the size limit (checked before anything else) and files that are not UTF-8.
 */

/** Largest valohai.yaml accepted, in bytes (1 MiB; real files are a few kilobytes). */
export const MAX_VALOHAI_YAML_BYTES = 1024 * 1024;

/** Why a file cannot be read as text; `line`/`column` 1-based, or 0 for the whole file. */
export interface TextProblem {
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

/** The message for a file of `size` bytes above `MAX_VALOHAI_YAML_BYTES` (`size` may be a lower bound). */
export function tooLargeMessage(size: number, atLeast = false): string {
  return `is ${atLeast ? 'more than ' : ''}${size} bytes; a valohai.yaml may have at most ${MAX_VALOHAI_YAML_BYTES} bytes (1 MiB)`;
}

/**
 * Decodes a valohai.yaml's bytes as UTF-8 (dropping a UTF-8 byte order mark). Promises a
 * `TextProblem` instead when the file is larger than `MAX_VALOHAI_YAML_BYTES`, is UTF-16/UTF-32
 * (by its byte order mark) or holds a byte sequence that is not UTF-8, positioned at it.
 */
export function decodeValohaiYaml(bytes: Uint8Array): { text: string } | { problem: TextProblem } {
  if (bytes.length > MAX_VALOHAI_YAML_BYTES) {
    return { problem: { line: 0, column: 0, message: tooLargeMessage(bytes.length) } };
  }
  const b0 = bytes[0];
  const b1 = bytes[1];
  if ((b0 === 0xff && b1 === 0xfe) || (b0 === 0xfe && b1 === 0xff) || (b0 === 0 && b1 === 0 && bytes[2] === 0xfe)) {
    return {
      problem: { line: 1, column: 1, message: 'is UTF-16 or UTF-32 encoded (byte order mark); save it as UTF-8' },
    };
  }
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes);
    let lineStart = 0;
    let line = 1;
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    // Columns count UTF-16 code units, like the YAML parser's positions.
    const column = new TextDecoder().decode(bytes.subarray(lineStart, at)).length + 1;
    const hex = (bytes[at] ?? 0).toString(16).padStart(2, '0');
    return { problem: { line, column, message: `is not valid UTF-8 (byte 0x${hex}); save the file as UTF-8` } };
  }
  const start = b0 === 0xef && b1 === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  return { text: new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes.subarray(start)) };
}

/** Offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  const cont = (i: number, lo = 0x80, hi = 0xbf): boolean => {
    const c = bytes[i];
    return c !== undefined && c >= lo && c <= hi;
  };
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    let len = 0;
    if (b < 0x80) len = 1;
    else if (b >= 0xc2 && b <= 0xdf) len = cont(i + 1) ? 2 : 0;
    else if (b === 0xe0) len = cont(i + 1, 0xa0) && cont(i + 2) ? 3 : 0;
    else if (b === 0xed) len = cont(i + 1, 0x80, 0x9f) && cont(i + 2) ? 3 : 0;
    else if (b >= 0xe1 && b <= 0xef) len = cont(i + 1) && cont(i + 2) ? 3 : 0;
    else if (b === 0xf0) len = cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    else if (b >= 0xf1 && b <= 0xf3) len = cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    else if (b === 0xf4) len = cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    if (len === 0) return i;
    i += len;
  }
  return bytes.length;
}
