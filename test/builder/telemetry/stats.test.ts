import t from 'tap';
import { LATENCY_BOUNDS_SECONDS, STATS_BUCKET_MS, type EndpointStatsBucket } from '../../../gateway/routing/contract.ts';
import { summarizeStats } from '../../../builder/telemetry/stats.ts';

const ref = { owner: 'acme', project: 'nlp', deployment: 'web' };
const lat = (counts: Record<number, number>) => Array.from({ length: LATENCY_BOUNDS_SECONDS.length + 1 }, (_, i) => counts[i] ?? 0);
const bucket = (start: number, version: string, requests: number[], latency: number[], latencySum: number, endpoint = 'sentiment'): EndpointStatsBucket =>
  ({ ...ref, version, endpoint, start, requests, latency, latencySum });

t.test('summarizeStats: sums the buckets in the window per version and endpoint', async (t) => {
  const now = 1_000_000 + 5_000; // 5 s into a bucket
  const i10ms = LATENCY_BOUNDS_SECONDS.indexOf(0.01);
  const i100ms = LATENCY_BOUNDS_SECONDS.indexOf(0.1);
  const buckets = [
    bucket(1_000_000 - 70_000, 'v1', [0, 1000, 0, 0, 0], lat({ [i10ms]: 1000 }), 5), // before the window
    bucket(1_000_000 - 60_000, 'v1', [0, 80, 0, 10, 10], lat({ [i10ms]: 90, [i100ms]: 10 }), 1.5),
    bucket(1_000_000, 'v1', [0, 20, 0, 0, 0], lat({ [i10ms]: 20 }), 0.1),
    bucket(1_000_000, 'v2', [0, 3, 0, 0, 1], lat({ [i100ms]: 4 }), 0.2),
  ];
  const s = summarizeStats(buckets, { now, windowSeconds: 60, include: [{ version: 'v1', endpoint: 'sentiment' }, { version: 'v0', endpoint: 'sentiment' }] });
  t.equal(s.from, 1_000_000 - 60_000, 'from the start of the bucket holding now - window');
  t.equal(s.to, now);
  t.equal(s.bucketSeconds, STATS_BUCKET_MS / 1000);
  t.same(s.items.map((i) => i.version), ['v0', 'v1', 'v2'], 'sorted; included versions without requests too');
  const [v0, v1, v2] = s.items;
  t.same(v0, { version: 'v0', endpoint: 'sentiment', requests: 0, requestsPerSecond: 0, statuses: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, errorRate: 0, clientErrorRate: 0, meanMs: null, p50: null, p95: null, p99: null, series: [] });
  t.equal(v1!.requests, 120);
  t.equal(v1!.requestsPerSecond, Math.round((120 / 65) * 1000) / 1000, 'over the 65 s the buckets cover');
  t.same(v1!.statuses, { '1xx': 0, '2xx': 100, '3xx': 0, '4xx': 10, '5xx': 10 });
  t.equal(v1!.errorRate, Math.round((10 / 120) * 1e6) / 1e6);
  t.equal(v1!.clientErrorRate, Math.round((10 / 120) * 1e6) / 1e6);
  t.equal(v1!.meanMs, Math.round((1.6 / 120) * 1e6) / 1e3);
  // 110 of 120 in (5 ms, 10 ms], 10 in (50 ms, 100 ms].
  const ms = (v: number) => Math.round(v * 1000) / 1000;
  t.equal(v1!.p50, ms(5 + 5 * (60 / 110)), 'p50 interpolated inside (5, 10] ms');
  t.equal(v1!.p95, ms(50 + 50 * ((114 - 110) / 10)), 'p95 inside (50, 100] ms');
  t.equal(v1!.p99, ms(50 + 50 * ((118.8 - 110) / 10)));
  t.same(v1!.series, [[1_000_000 - 60_000, 100, 10], [1_000_000, 20, 0]]);
  t.equal(v2!.errorRate, 0.25);
});
