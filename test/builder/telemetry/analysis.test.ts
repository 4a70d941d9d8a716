import t from 'tap';
import {
  autoBinCount,
  bucketQuantile,
  categories,
  downsample,
  histogram,
  MAX_AUTO_BINS,
  quantile,
} from '../../../builder/telemetry/analysis.ts';

t.test('downsample: buckets of step ms from `from`, mean/min/max, empty ones left out', async (t) => {
  const points: [number, number][] = [[1000, 1], [1500, 3], [2100, 10], [4000, 7], [4999, 9], [5000, 100], [900, 50]];
  const cases: { name: string; from: number; to: number; step: number; want: unknown }[] = [
    {
      name: 'one-second buckets over [1000, 5000)',
      from: 1000, to: 5000, step: 1000,
      want: [
        { t: 1000, count: 2, mean: 2, min: 1, max: 3 },
        { t: 2000, count: 1, mean: 10, min: 10, max: 10 },
        { t: 4000, count: 2, mean: 8, min: 7, max: 9 },
      ],
    },
    { name: 'one bucket holds the whole range', from: 0, to: 10_000, step: 10_000, want: [{ t: 0, count: 7, mean: 180 / 7, min: 1, max: 100 }] },
    { name: 'to is exclusive', from: 4000, to: 5000, step: 500, want: [{ t: 4000, count: 1, mean: 7, min: 7, max: 7 }, { t: 4500, count: 1, mean: 9, min: 9, max: 9 }] },
    { name: 'a range without points', from: 6000, to: 9000, step: 1000, want: [] },
    { name: 'an empty range', from: 5000, to: 5000, step: 1000, want: [] },
  ];
  for (const c of cases) t.same(downsample(points, c.from, c.to, c.step), c.want, c.name);
  t.throws(() => downsample(points, 0, 1, 0), RangeError);
});

t.test('quantile: linear interpolation between closest ranks', async (t) => {
  const cases: [number[], number, number][] = [
    [[1, 2, 3, 4], 0.5, 2.5],
    [[1, 2, 3, 4], 0, 1],
    [[1, 2, 3, 4], 1, 4],
    [[-1, 0, 1, 3], 0.25, -0.25],
    [[-1, 0, 1, 3], 0.75, 1.5],
    [[7], 0.9, 7],
  ];
  for (const [values, q, want] of cases) t.equal(quantile(values, q), want, `q${q} of ${values}`);
  t.ok(Number.isNaN(quantile([], 0.5)));
});

t.test('autoBinCount: Freedman–Diaconis, Sturges when the IQR is 0, within 1..MAX_AUTO_BINS', async (t) => {
  const uniform = Array.from({ length: 1000 }, (_, i) => i); // IQR 499.5, n^(1/3) = 10
  const cases: { name: string; values: number[]; lo: number; hi: number; want: number }[] = [
    { name: 'FD: ceil(999 * 10 / (2 * 499.5))', values: uniform, lo: 0, hi: 999, want: 10 },
    { name: 'FD on the 4 sentiment scores', values: [3, -1, 0, 1], lo: -1, hi: 3, want: 2 },
    { name: 'Sturges when most values are equal (IQR 0): ceil(log2 9) + 1', values: [5, 5, 5, 5, 5, 5, 5, 5, 100], lo: 5, hi: 100, want: 5 },
    { name: 'one value', values: [3], lo: 3, hi: 3, want: 1 },
    { name: 'no spread', values: [2, 2, 2], lo: 2, hi: 2, want: 1 },
    { name: 'capped', values: [...Array.from({ length: 100 }, () => 0), ...Array.from({ length: 100 }, (_, i) => i / 1000), 1e9], lo: 0, hi: 1e9, want: MAX_AUTO_BINS },
  ];
  for (const c of cases) t.equal(autoBinCount(c.values, c.lo, c.hi), c.want, c.name);
});

t.test('histogram: equal-width bins, edges settle values exactly, bounds leave values out', async (t) => {
  const cases: { name: string; values: number[]; opts: Parameters<typeof histogram>[1]; want: unknown }[] = [
    {
      name: 'explicit bins over the values\' range',
      values: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      opts: { bins: 2 },
      want: [{ lo: 0, hi: 5, count: 5 }, { lo: 5, hi: 10, count: 6 }],
    },
    {
      name: 'a value on an inner edge goes up; the maximum stays in the last bin',
      values: [0, 1, 2, 3],
      opts: { bins: 3 },
      want: [{ lo: 0, hi: 1, count: 1 }, { lo: 1, hi: 2, count: 1 }, { lo: 2, hi: 3, count: 2 }],
    },
    {
      name: 'lo/hi bounds: values outside are left out',
      values: [-5, 0, 1, 2, 3, 4, 50],
      opts: { bins: 4, lo: 0, hi: 4 },
      want: [{ lo: 0, hi: 1, count: 1 }, { lo: 1, hi: 2, count: 1 }, { lo: 2, hi: 3, count: 1 }, { lo: 3, hi: 4, count: 2 }],
    },
    { name: 'only lo: hi is the largest value above it', values: [-5, 1, 3], opts: { bins: 2, lo: 1 }, want: [{ lo: 1, hi: 2, count: 1 }, { lo: 2, hi: 3, count: 1 }] },
    { name: 'all values equal: one bin', values: [4, 4, 4], opts: {}, want: [{ lo: 4, hi: 4, count: 3 }] },
    { name: 'automatic bins', values: [3, -1, 0, 1], opts: {}, want: [{ lo: -1, hi: 1, count: 2 }, { lo: 1, hi: 3, count: 2 }] },
    { name: 'no values, no bounds: no bins', values: [], opts: { bins: 5 }, want: [] },
    { name: 'no values inside explicit bounds: zero counts', values: [9], opts: { bins: 2, lo: 0, hi: 2 }, want: [{ lo: 0, hi: 1, count: 0 }, { lo: 1, hi: 2, count: 0 }] },
  ];
  for (const c of cases) t.same(histogram(c.values, c.opts), c.want, c.name);
  const many = histogram(Array.from({ length: 10_000 }, (_, i) => (i * 7919) % 1000), { bins: 7 });
  t.equal(many.reduce((s, b) => s + b.count, 0), 10_000, 'every value is counted once');
  t.equal(many[0]!.lo, 0);
  t.equal(many.at(-1)!.hi, 999);
  t.throws(() => histogram([1], { lo: 2, hi: 1 }), RangeError);
  // Floating point: each value equal to an inner edge lands in the bin that starts there.
  for (const k of [3, 7, 10, 13]) {
    const edges = histogram([0, 0.3], { bins: k }).map((b) => b.lo);
    const bins = histogram([...edges, 0.3], { bins: k });
    t.same(bins.map((b) => b.count), [...Array.from({ length: k - 1 }, () => 1), 2], `edges of ${k} bins over [0, 0.3]`);
  }
});

t.test('categories: most frequent first, ties by value', async (t) => {
  t.same(categories(['b', 'a', 'positive', 'b', 'a', 'c']), [
    { value: 'a', count: 2 },
    { value: 'b', count: 2 },
    { value: 'c', count: 1 },
    { value: 'positive', count: 1 },
  ]);
  t.same(categories([]), []);
});

t.test('bucketQuantile: interpolated inside the bucket, as histogram_quantile', async (t) => {
  const bounds = [0.1, 0.2, 0.5, 1];
  const cases: { name: string; counts: number[]; q: number; want: number | null }[] = [
    { name: 'median inside the first bucket (from 0)', counts: [10, 0, 0, 0, 0], q: 0.5, want: 0.05 },
    { name: 'p50 at the edge of two buckets', counts: [5, 5, 0, 0, 0], q: 0.5, want: 0.1 },
    { name: 'p95 in the third bucket', counts: [50, 30, 20, 0, 0], q: 0.95, want: 0.2 + 0.3 * 0.75 },
    { name: 'p99 in +Inf: the highest finite bound', counts: [0, 0, 0, 0, 3], q: 0.99, want: 1 },
    { name: 'no observations', counts: [0, 0, 0, 0, 0], q: 0.5, want: null },
  ];
  for (const c of cases) {
    const got = bucketQuantile(bounds, c.counts, c.q);
    if (c.want === null) t.equal(got, null, c.name);
    else t.ok(Math.abs((got as number) - c.want) < 1e-12, `${c.name}: ${got} ~ ${c.want}`);
  }
});

t.test('values near ±Number.MAX_VALUE: finite edges, means and quantiles, every value counted', async (t) => {
  const huge = [-1e308, 0.5, 2, 1e308, 1.7976931348623157e308];
  for (const opts of [{}, { bins: 2 }, { bins: 7 }]) {
    const bins = histogram(huge, opts);
    t.ok(bins.every((b) => Number.isFinite(b.lo) && Number.isFinite(b.hi) && b.lo <= b.hi), `edges are finite numbers (${JSON.stringify(opts)})`);
    t.equal(bins.reduce((s, b) => s + b.count, 0), huge.length, `every value is counted once (${JSON.stringify(opts)})`);
    t.equal(bins[0]!.lo, -1e308);
    t.equal(bins.at(-1)!.hi, 1.7976931348623157e308);
  }
  t.same(histogram(huge, { bins: 2 }).map((b) => b.count), [3, 2], 'the middle of [-1e308, MAX] splits the values');
  t.same(downsample([[0, 1e308], [1, 1e308], [2, -1e308]], 0, 10, 10), [{ t: 0, count: 3, mean: 1e308 / 3, min: -1e308, max: 1e308 }], 'a mean whose sum overflows');
  t.same(downsample([[0, 1.7976931348623157e308], [1, 1.7976931348623157e308]], 0, 10, 10)[0]!.mean, 1.7976931348623157e308);
  t.equal(quantile([-1e308, 1e308], 0.25), -0.5e308, 'quantile between values whose difference overflows');
  t.ok(autoBinCount([-1e308, 0, 1, 1e308], -1e308, 1e308) >= 1);
});
