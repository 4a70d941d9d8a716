import t from 'tap';
import { ChunkedEnd } from '../../../gateway/proxy/chunked-end.ts';

const bytes = (s: string) => Buffer.from(s, 'latin1');

/** Feeds `body + after` in pieces of `step` bytes; returns the body's length as found, or -1. */
function endOf(text: string, step: number): { end: number; invalid: boolean } {
  const c = new ChunkedEnd();
  const all = bytes(text);
  for (let at = 0; at < all.length; at += step) {
    const piece = all.subarray(at, at + step);
    const n = c.feed(piece);
    if (c.invalid) return { end: -1, invalid: true };
    if (n !== -1) return { end: at + n, invalid: false };
  }
  return { end: -1, invalid: false };
}

t.test('finds the end of a chunked body however the bytes are split', async (t) => {
  const cases: [string, string][] = [
    ['one chunk', '5\r\nhello\r\n0\r\n\r\n'],
    ['several chunks, upper-case hex', 'A\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n'],
    ['extensions', '5;name=value\r\nhello\r\n0;last\r\n\r\n'],
    ['trailers', '5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n'],
    ['data that looks like framing', '7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n'],
    ['empty body', '0\r\n\r\n'],
  ];
  for (const [name, body] of cases) {
    for (const step of [1, 2, 3, 7, body.length + 20]) {
      t.same(endOf(body + 'HTTP/1.1 200 OK\r\n\r\nmore', step), { end: body.length, invalid: false }, `${name}, pieces of ${step}`);
    }
  }
});

t.test('an unfinished body has no end yet; after the end, nothing more belongs to it', async (t) => {
  t.same(endOf('5\r\nhello\r\n0\r\n', 4), { end: -1, invalid: false });
  const c = new ChunkedEnd();
  t.equal(c.feed(bytes('3\r\nabc\r\n0\r\n\r\n')), 13);
  t.equal(c.feed(bytes('anything')), 0);
});

t.test('what is not chunked encoding is marked invalid', async (t) => {
  for (const bad of ['zz\r\n', '5\r\nhelloX\r\n', '\r\n', '5\nhello', `${'f'.repeat(14)}\r\n`]) {
    t.same(endOf(bad, 1), { end: -1, invalid: true }, JSON.stringify(bad));
  }
});
