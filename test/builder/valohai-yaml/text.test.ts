import t from 'tap';
import { decodeValohaiYaml, MAX_VALOHAI_YAML_BYTES } from '../../../builder/valohai-yaml/text.ts';

const b = (...parts: (string | number[])[]): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

const cases: { name: string; bytes: Uint8Array; text?: string; problem?: { line: number; column: number; message: string } }[] = [
  { name: 'ASCII', bytes: b('- step: {}\n'), text: '- step: {}\n' },
  { name: 'multi-byte UTF-8 (2, 3 and 4 bytes)', bytes: b('# é € 𝄞\n'), text: '# é € 𝄞\n' },
  { name: 'a UTF-8 byte order mark is dropped', bytes: b([0xef, 0xbb, 0xbf], 'a: 1\n'), text: 'a: 1\n' },
  { name: 'empty', bytes: b(''), text: '' },
  { name: 'Latin-1 byte', bytes: b('a: caf', [0xe9], '\n'), problem: { line: 1, column: 7, message: 'is not valid UTF-8 (byte 0xe9); save the file as UTF-8' } },
  { name: 'position on a later line, after multi-byte characters', bytes: b('a: 1\nb: é€𝄞 ', [0xff]), problem: { line: 2, column: 9, message: 'is not valid UTF-8 (byte 0xff); save the file as UTF-8' } },
  { name: 'truncated sequence at the end', bytes: b('a: ', [0xe2, 0x82]), problem: { line: 1, column: 4, message: 'is not valid UTF-8 (byte 0xe2); save the file as UTF-8' } },
  { name: 'overlong encoding', bytes: b('a: ', [0xc0, 0xaf]), problem: { line: 1, column: 4, message: 'is not valid UTF-8 (byte 0xc0); save the file as UTF-8' } },
  { name: 'encoded surrogate', bytes: b('a: ', [0xed, 0xa0, 0x80]), problem: { line: 1, column: 4, message: 'is not valid UTF-8 (byte 0xed); save the file as UTF-8' } },
  { name: 'above U+10FFFF', bytes: b('a: ', [0xf4, 0x90, 0x80, 0x80]), problem: { line: 1, column: 4, message: 'is not valid UTF-8 (byte 0xf4); save the file as UTF-8' } },
  { name: 'UTF-16 LE byte order mark', bytes: b([0xff, 0xfe], [0x61, 0]), problem: { line: 1, column: 1, message: 'is UTF-16 or UTF-32 encoded (byte order mark); save it as UTF-8' } },
  { name: 'UTF-16 BE byte order mark', bytes: b([0xfe, 0xff], [0, 0x61]), problem: { line: 1, column: 1, message: 'is UTF-16 or UTF-32 encoded (byte order mark); save it as UTF-8' } },
  { name: 'UTF-32 BE byte order mark', bytes: b([0, 0, 0xfe, 0xff]), problem: { line: 1, column: 1, message: 'is UTF-16 or UTF-32 encoded (byte order mark); save it as UTF-8' } },
  {
    name: 'one byte over the limit, checked before decoding',
    bytes: new Uint8Array(MAX_VALOHAI_YAML_BYTES + 1).fill(0xff),
    problem: { line: 0, column: 0, message: 'is 1048577 bytes; a valohai.yaml may have at most 1048576 bytes (1 MiB)' },
  },
  { name: 'exactly at the limit', bytes: new Uint8Array(MAX_VALOHAI_YAML_BYTES).fill(0x23), text: '#'.repeat(MAX_VALOHAI_YAML_BYTES) },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    t.strictSame(decodeValohaiYaml(c.bytes), c.problem === undefined ? { text: c.text } : { problem: c.problem });
  });
}
