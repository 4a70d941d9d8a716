import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PorticoError } from '../../../common/errors.ts';
import { EmbeddedMetricStore } from '../../../builder/telemetry/metric-store-embedded.ts';
import { compareMetrics, endpointMetrics, type MetricQuery } from '../../../builder/telemetry/query.ts';

const dir = await mkdtemp(join(tmpdir(), 'portico-query-'));
const store = await EmbeddedMetricStore.open({ dir });
t.teardown(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const V1 = 'o/p/d/v1/e';
const V2 = 'o/p/d/v2/e';
// v1: score 0..9 at t = 1000 * i; label a/b. v2: score 10..14 at t = 500 + 1000 * i.
for (let i = 0; i < 10; i++) store.add(V1, { at: 1000 * i, replica: i < 5 ? 'r1' : 'r2', values: [['score', i], ['label', i % 3 === 0 ? 'a' : 'b']] });
for (let i = 0; i < 5; i++) store.add(V2, { at: 500 + 1000 * i, replica: 'r1', values: [['score', 10 + i]] });
store.add(V2, { at: 0, replica: 'r1', values: [['label', 'z']] });

t.test('endpointMetrics: keys, raw series, downsampled series, histogram, categories', async (t) => {
  const cases: { name: string; q: MetricQuery; want: unknown }[] = [
    { name: 'keys', q: {}, want: { keys: [{ name: 'label', kind: 'string', count: 10 }, { name: 'score', kind: 'number', count: 10 }] } },
    {
      name: 'raw series in a range of one replica',
      q: { key: 'score', from: 2000, to: 7000, replica: 'r2' },
      want: { key: 'score', kind: 'number', points: [[5000, 5], [6000, 6]] },
    },
    {
      name: 'downsampled by step',
      q: { key: 'score', step: 5000 },
      want: {
        key: 'score', kind: 'number', from: 0, to: 9001, step: 5000,
        points: [[0, 2], [5000, 7]],
        buckets: [{ t: 0, count: 5, mean: 2, min: 0, max: 4 }, { t: 5000, count: 5, mean: 7, min: 5, max: 9 }],
      },
    },
    {
      name: 'downsampled into N points over an explicit range',
      q: { key: 'score', points: 2, from: 0, to: 4000 },
      want: {
        key: 'score', kind: 'number', from: 0, to: 4000, step: 2000,
        points: [[0, 0.5], [2000, 2.5]],
        buckets: [{ t: 0, count: 2, mean: 0.5, min: 0, max: 1 }, { t: 2000, count: 2, mean: 2.5, min: 2, max: 3 }],
      },
    },
    { name: 'string series are raw points', q: { key: 'label', to: 2000 }, want: { key: 'label', kind: 'string', points: [[0, 'a'], [1000, 'b']] } },
    {
      name: 'histogram with bins and bounds',
      q: { key: 'score', mode: 'histogram', bins: 2, lo: 0, hi: 4 },
      want: { key: 'score', kind: 'number', count: 5, bins: [{ lo: 0, hi: 2, count: 2 }, { lo: 2, hi: 4, count: 3 }] },
    },
    {
      name: 'automatic histogram (Freedman–Diaconis: 3 bins for 0..9)',
      q: { key: 'score', mode: 'histogram' },
      want: { key: 'score', kind: 'number', count: 10, bins: [{ lo: 0, hi: 3, count: 3 }, { lo: 3, hi: 6, count: 3 }, { lo: 6, hi: 9, count: 4 }] },
    },
    {
      name: 'categories of a string key',
      q: { key: 'label', mode: 'histogram' },
      want: { key: 'label', kind: 'string', count: 10, categories: [{ value: 'b', count: 6 }, { value: 'a', count: 4 }] },
    },
  ];
  for (const c of cases) t.same(await endpointMetrics(store, V1, c.q), c.want, c.name);
});

t.test('endpointMetrics: what does not fit together is a VALIDATION_FAILED naming the parameter', async (t) => {
  const cases: [string, MetricQuery, string, number][] = [
    ['mode without key', { mode: 'series' }, 'query.mode: needs query.key', 400],
    ['bins in series mode', { key: 'score', bins: 3 }, 'query.bins: applies to mode=histogram', 400],
    ['step in histogram mode', { key: 'score', mode: 'histogram', step: 10 }, 'query.step: applies to mode=series', 400],
    ['step and points', { key: 'score', step: 10, points: 3 }, 'query.points: give either step or points, not both', 400],
    ['from after to', { key: 'score', from: 5, to: 5 }, 'query.from: must be less than query.to', 400],
    ['lo above hi', { key: 'score', mode: 'histogram', lo: 2, hi: 1 }, 'query.lo: must not be greater than query.hi', 400],
    ['too many buckets', { key: 'score', step: 1, from: 0, to: 1_000_000 }, 'query.step: 1 ms makes more than 10000 buckets', 400],
    ['downsampling strings', { key: 'label', points: 5 }, 'query.points: key "label" holds strings', 400],
    ['bins of strings', { key: 'label', mode: 'histogram', bins: 2 }, 'query.bins: key "label" holds strings', 400],
    ['an unknown key', { key: 'nope' }, 'metric "nope" was not reported by this endpoint', 404],
  ];
  for (const [name, q, message, status] of cases) {
    const err = await endpointMetrics(store, V1, q).then(() => null, (e: unknown) => e);
    t.ok(err instanceof PorticoError, name);
    t.equal((err as PorticoError).statusCode, status, name);
    t.match((err as PorticoError).message, message, name);
  }
});

t.test('compareMetrics: one result per version, shared bins and buckets', async (t) => {
  const eps = [{ version: 'v1', endpoint: V1 }, { version: 'v2', endpoint: V2 }, { version: 'v3', endpoint: 'o/p/d/v3/e' }];
  const hist = await compareMetrics(store, eps, { endpoint: 'e', key: 'score', mode: 'histogram', bins: 2 });
  t.same(hist, {
    endpoint: 'e',
    key: 'score',
    mode: 'histogram',
    versions: [
      { version: 'v1', key: 'score', kind: 'number', count: 10, bins: [{ lo: 0, hi: 7, count: 7 }, { lo: 7, hi: 14, count: 3 }] },
      { version: 'v2', key: 'score', kind: 'number', count: 5, bins: [{ lo: 0, hi: 7, count: 0 }, { lo: 7, hi: 14, count: 5 }] },
      { version: 'v3', key: 'score', kind: 'number', count: 0, bins: [{ lo: 0, hi: 7, count: 0 }, { lo: 7, hi: 14, count: 0 }] },
    ],
  }, 'bins over 0..14 from both versions\' values');

  const series = await compareMetrics(store, eps.slice(0, 2), { endpoint: 'e', key: 'score', points: 2 });
  t.same(series.versions.map((v) => 'step' in v && [v.from, v.to, v.step]), [[0, 9001, 4501], [0, 9001, 4501]], 'one from/to/step for all');
  t.same(series.versions.map((v) => 'points' in v && v.points), [[[0, 2], [4501, 7]], [[0, 12]]]);

  const cats = await compareMetrics(store, eps, { endpoint: 'e', key: 'label', mode: 'histogram' });
  t.same(cats.versions, [
    { version: 'v1', key: 'label', kind: 'string', count: 10, categories: [{ value: 'b', count: 6 }, { value: 'a', count: 4 }] },
    { version: 'v2', key: 'label', kind: 'string', count: 1, categories: [{ value: 'z', count: 1 }] },
    { version: 'v3', key: 'label', kind: null, count: 0, bins: [], categories: [] },
  ]);

  const keys = await compareMetrics(store, eps.slice(1), { endpoint: 'e' });
  t.same(keys, { endpoint: 'e', versions: [{ version: 'v2', keys: [{ name: 'label', kind: 'string', count: 1 }, { name: 'score', kind: 'number', count: 5 }] }, { version: 'v3', keys: [] }] });

  const missing = await compareMetrics(store, eps.slice(2), { endpoint: 'e', key: 'score' });
  t.same(missing.versions, [{ version: 'v3', key: 'score', kind: null, points: [] }]);

  store.add('o/p/d/v4/e', { at: 1, replica: 'r', values: [['label', 5]] });
  const mixed = await compareMetrics(store, [eps[0]!, { version: 'v4', endpoint: 'o/p/d/v4/e' }], { endpoint: 'e', key: 'label', mode: 'histogram' }).catch((e: PorticoError) => e);
  t.match(mixed, { statusCode: 400, message: /numbers in some versions and strings in others/ });
});
