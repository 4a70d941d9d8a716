/**
 * The MetricStore contract: the embedded and Redis stores run this same suite
 * (metric-store-embedded.test.ts, metric-store-redis.test.ts). `fresh(limits)` gives a new,
 * empty store per case; `reopen` (when the store persists) closes it and opens it again on the
 * same backing.
 */
import type { Test } from 'tap';
import type { MetricLimits, MetricRow, MetricStore } from '../../../builder/telemetry/metric-store.ts';

/** How the suite gets stores of one implementation. */
export interface MetricStoreTarget {
  fresh(limits?: Partial<MetricLimits>): Promise<{ store: MetricStore; reopen(): Promise<MetricStore> }>;
}

const EP = 'acme/nlp/web/20240101.0/sentiment';
const OTHER = 'acme/nlp/web/20240101.1/sentiment';

function row(at: number, values: Record<string, number | string>, replica = 'r1'): MetricRow {
  return { at, replica, values: Object.entries(values) };
}

/** Registers the contract's subtests on `t`. */
export function metricStoreContract(t: Test, target: MetricStoreTarget): void {
  const open = async (t: Test, limits?: Partial<MetricLimits>) => {
    const f = await target.fresh(limits);
    let store = f.store;
    t.teardown(() => store.close());
    return {
      get store() {
        return store;
      },
      async reopen() {
        store = await f.reopen();
        return store;
      },
    };
  };

  t.test('keys, kinds and counts; points in time order with their replica', async (t) => {
    const s = (await open(t)).store;
    t.same(await s.keys(EP), []);
    t.equal(await s.points(EP, 'score'), null);
    s.add(EP, row(3000, { score: 3, label: 'positive' }));
    s.add(EP, row(1000, { score: -1, label: 'negative' }, 'r2'));
    s.add(EP, row(2000, { score: 0.5 }));
    s.add(OTHER, row(1000, { other: 1 }));
    t.same(await s.keys(EP), [
      { name: 'label', kind: 'string', count: 2 },
      { name: 'score', kind: 'number', count: 3 },
    ]);
    t.same(await s.points(EP, 'score'), {
      kind: 'number',
      points: [
        { at: 1000, value: -1, replica: 'r2' },
        { at: 2000, value: 0.5, replica: 'r1' },
        { at: 3000, value: 3, replica: 'r1' },
      ],
    });
    t.same(await s.points(EP, 'label'), {
      kind: 'string',
      points: [{ at: 1000, value: 'negative', replica: 'r2' }, { at: 3000, value: 'positive', replica: 'r1' }],
    });
    t.same(await s.keys(OTHER), [{ name: 'other', kind: 'number', count: 1 }], 'endpoints are apart');
    t.equal(await s.points(EP, 'other'), null);
  });

  t.test('ranges: from inclusive, to exclusive; a replica; ties keep arrival order', async (t) => {
    const s = (await open(t)).store;
    for (let i = 0; i < 10; i++) s.add(EP, row(1000 * i, { v: i }, i % 2 === 0 ? 'even' : 'odd'));
    s.add(EP, row(5000, { v: 50 }));
    s.add(EP, row(5000, { v: 51 }));
    const values = async (range: Parameters<MetricStore['points']>[2]) => (await s.points(EP, 'v', range))?.points.map((p) => p.value);
    t.same(await values({ from: 3000, to: 6000 }), [3, 4, 5, 50, 51]);
    t.same(await values({ from: 8000 }), [8, 9]);
    t.same(await values({ to: 2000 }), [0, 1]);
    t.same(await values({ replica: 'even' }), [0, 2, 4, 6, 8]);
    t.same(await values({ from: 20_000 }), [], 'an existing series with no point in range');
  });

  t.test('a series keeps its first kind; values of the other kind are dropped', async (t) => {
    const s = (await open(t)).store;
    s.add(EP, row(1, { x: 1 }));
    s.add(EP, row(2, { x: 'one' }));
    s.add(EP, row(3, { x: 2, y: 'a' }));
    t.same((await s.points(EP, 'x'))?.points.map((p) => p.value), [1, 2]);
    t.same(await s.keys(EP), [{ name: 'x', kind: 'number', count: 2 }, { name: 'y', kind: 'string', count: 1 }]);
    await s.flush();
    t.equal(s.counters.dropped, 1);
    t.equal(s.counters.added, 3);
  });

  t.test('bound: a series keeps its newest points', async (t) => {
    const s = (await open(t, { pointsPerSeries: 100 })).store;
    for (let i = 0; i < 1000; i++) s.add(EP, row(i, { v: i, w: `s${i % 3}` }));
    t.same(await s.keys(EP), [{ name: 'v', kind: 'number', count: 100 }, { name: 'w', kind: 'string', count: 100 }]);
    const pts = (await s.points(EP, 'v'))!.points;
    t.same(pts.map((p) => p.value), Array.from({ length: 100 }, (_, i) => 900 + i));
  });

  t.test('bound: keys per endpoint and series in all; values of further keys are dropped', async (t) => {
    const s = (await open(t, { seriesPerEndpoint: 3, totalSeries: 5 })).store;
    s.add(EP, row(1, { a: 1, b: 2, c: 3, d: 4 }));
    s.add(EP, row(2, { d: 4, a: 5 }));
    s.add(OTHER, row(1, { a: 1, b: 2, c: 3 }));
    t.same((await s.keys(EP)).map((k) => k.name), ['a', 'b', 'c']);
    t.same((await s.keys(OTHER)).map((k) => k.name), ['a', 'b'], 'the global series bound');
    t.same((await s.points(EP, 'a'))?.points.map((p) => p.value), [1, 5]);
    t.equal(s.counters.dropped, 3);
  });

  t.test('bound: beyond the global budget the largest series lose their oldest points', async (t) => {
    const s = (await open(t, { pointsPerSeries: 1000, totalPoints: 1000 })).store;
    for (let i = 0; i < 900; i++) s.add(EP, row(i, { big: i }));
    for (let i = 0; i < 200; i++) s.add(OTHER, row(i, { small: i }));
    const keys = [...(await s.keys(EP)), ...(await s.keys(OTHER))];
    const total = keys.reduce((n, k) => n + k.count, 0);
    t.ok(total <= 1000, `total ${total} within the budget`);
    t.ok(total >= 900, `only about a tenth of the largest series went (total ${total})`);
    const big = (await s.points(EP, 'big'))!.points;
    t.ok(big.length < 900, 'the largest series shrank');
    t.equal(big.at(-1)!.value, 899, 'its newest point stayed');
    t.equal((await s.points(OTHER, 'small'))!.points.length, 200, 'the small series kept everything');
  });

  t.test('remove forgets the endpoints under a prefix', async (t) => {
    const s = (await open(t)).store;
    s.add(EP, row(1, { a: 1 }));
    s.add(OTHER, row(1, { a: 1 }));
    s.add('acme/nlp/web2/v/e', row(1, { a: 1 }));
    await s.remove('acme/nlp/web/20240101.0/');
    t.same(await s.keys(EP), []);
    t.equal(await s.points(EP, 'a'), null);
    t.equal((await s.keys(OTHER)).length, 1);
    await s.remove('acme/nlp/web/');
    t.same(await s.keys(OTHER), []);
    t.equal((await s.keys('acme/nlp/web2/v/e')).length, 1, 'web2 is not under acme/nlp/web/');
    s.add(EP, row(2, { a: 'now a string' }));
    t.same(await s.keys(EP), [{ name: 'a', kind: 'string', count: 1 }], 'a removed series starts afresh');
  });

  t.test('odd key names and values are kept as they are', async (t) => {
    const s = (await open(t)).store;
    const names = ['a:b', 'with space', 'ümlaut/ß', '\u001fsep', 'e:x:s:y', '__proto__'];
    s.add(EP, { at: 1, replica: 'r.1', values: names.map((n, i) => [n, i]) });
    s.add(EP, { at: 2, replica: 'r.1', values: [['str', 'a\u001fb\nc "quoted" ü']] });
    t.same((await s.keys(EP)).map((k) => k.name).sort(), [...names, 'str'].sort());
    for (const [i, n] of names.entries()) t.same((await s.points(EP, n))?.points, [{ at: 1, value: i, replica: 'r.1' }], n);
    t.same((await s.points(EP, 'str'))?.points[0]?.value, 'a\u001fb\nc "quoted" ü');
  });

  t.test('reads see every add made before them; what was flushed survives a reopen', async (t) => {
    const o = await open(t);
    for (let i = 0; i < 50; i++) o.store.add(EP, row(i, { v: i * 0.1, l: i % 2 ? 'odd' : 'even' }));
    t.equal((await o.store.points(EP, 'v'))?.points.length, 50);
    await o.store.flush();
    const again = await o.reopen();
    t.same(await again.keys(EP), [{ name: 'l', kind: 'string', count: 50 }, { name: 'v', kind: 'number', count: 50 }]);
    t.same((await again.points(EP, 'v'))?.points.map((p) => p.value), Array.from({ length: 50 }, (_, i) => i * 0.1));
    again.add(EP, row(100, { v: 'text' }));
    t.equal((await again.points(EP, 'v'))?.points.length, 50, 'the kind survives too');
  });
}
