import { randomFillSync } from 'node:crypto';

/**
 * New request ids: random (version 4) UUIDs, as `crypto.randomUUID()` makes them, from the same
 * source (`randomFillSync`), but written into one buffer and read out as a single flat string.
 * `randomUUID()` joins some twenty pieces per id, which the gateway then flattens again in every
 * header and log line it writes the id into; this is one of the few allocations per request the
 * gateway can save.
 */

const IDS_PER_FILL = 256;
const random = Buffer.alloc(16 * IDS_PER_FILL);
let next = random.length;
// The 36 characters of the id being written; the dashes never change.
const text = Buffer.from('00000000-0000-0000-0000-000000000000', 'latin1');
const HEX = Buffer.from('0123456789abcdef', 'latin1');
// Where each of the 16 bytes' two hex digits go.
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/** A new random UUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, lowercase hex, RFC 9562 version 4). */
export function newRequestId(): string {
  if (next === random.length) {
    randomFillSync(random);
    next = 0;
  }
  for (let i = 0; i < 16; i++) {
    let b = random[next + i] as number;
    if (i === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // variant 10xx
    const at = AT[i] as number;
    text[at] = HEX[b >> 4] as number;
    text[at + 1] = HEX[b & 15] as number;
  }
  next += 16;
  return text.toString('latin1');
}
