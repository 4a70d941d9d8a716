import t from 'tap';
import { newRequestId } from '../../../gateway/proxy/request-id.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('request ids are version 4 UUIDs, all different, across many refills of the random pool', async (t) => {
  const n = 20_000; // 78 refills of 256 ids
  const seen = new Set<string>();
  let bad = 0;
  for (let i = 0; i < n; i++) {
    const id = newRequestId();
    if (!UUID_V4.test(id)) bad++;
    seen.add(id);
  }
  t.equal(bad, 0, 'every id has the UUID v4 form (version and variant bits set)');
  t.equal(seen.size, n, 'no id repeats');
});

t.test('the random digits are spread evenly (each of 16 hex digits about 1/16 of the time)', async (t) => {
  const counts = new Map<string, number>();
  const n = 10_000;
  for (let i = 0; i < n; i++) {
    // The digits that are all random: not the version digit nor the variant digit.
    const id = newRequestId().replace(/-/g, '');
    for (let j = 0; j < 32; j++) if (j !== 12 && j !== 16) counts.set(id[j] as string, (counts.get(id[j] as string) ?? 0) + 1);
  }
  t.equal(counts.size, 16);
  const expected = (n * 30) / 16;
  for (const [digit, c] of counts) t.ok(Math.abs(c - expected) < expected * 0.05, `${digit}: ${c} (expected ~${Math.round(expected)})`);
});

t.test('each id is its own string: a later id does not change an earlier one', async (t) => {
  const a = newRequestId();
  const copy = `${a}`;
  newRequestId();
  t.equal(a, copy);
});
