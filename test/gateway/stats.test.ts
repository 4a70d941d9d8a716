import t from 'tap';
import { Redis } from 'ioredis';
import { loadConfig } from '../../common/config.ts';
import { summarizeStats } from '../../builder/telemetry/stats.ts';
import { startGateway } from '../../gateway/main.ts';
import { GatewayMetrics, type RouteMetrics } from '../../gateway/metrics.ts';
import { LATENCY_BOUNDS_SECONDS, STATS_BUCKET_MS, STATS_RETENTION_MS, type EndpointStatsDelta } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { StatsReporter } from '../../gateway/stats.ts';
import { startRedis } from '../helpers/redis.ts';
import { waitFor } from '../helpers/poll.ts';
import { call, client, deployment, endpoint, replica } from './fixtures.ts';

const ROUTE = { owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict' };
const ref = { owner: 'acme', project: 'mnist', deployment: 'web' };
const zeros = (n: number) => new Array<number>(n).fill(0);

function metrics(maxRoutes?: number): GatewayMetrics {
  return new GatewayMetrics({
    ...(maxRoutes !== undefined ? { maxRoutes } : {}),
    cache: { stats: { hits: 0, misses: 0, negativeHits: 0, invalidations: 0, size: 0 } },
    auth: { stats: { hashes: 0, cacheHits: 0, failureCacheHits: 0 } },
    inFlight: () => 0,
    accessLogDropped: () => 0,
    processMetrics: false,
  });
}

t.test('per-route series are bounded: the longest idle routes go, and their unreported counts are still reported', async (t) => {
  const m = metrics(100);
  const written: EndpointStatsDelta[] = [];
  let fail = false;
  const reporter = new StatsReporter({
    routes: () => m.routes(),
    retired: () => m.takeRetired(),
    sink: {
      async writeStats(d) {
        if (fail) throw new Error('redis down');
        written.push(...d.map((x) => ({ ...x })));
      },
    },
  });
  const hot = m.route('e:hot', { ...ROUTE, endpoint: 'hot' });
  for (let i = 0; i < 1000; i++) {
    m.route(`e:r${i}`, { ...ROUTE, endpoint: `r${i}` }).observe(200, 0.001);
    hot.observe(200, 0.001); // always the most recent: never evicted
    if (i === 500) fail = true;
    if (i % 50 === 0) await reporter.flush();
    if (i === 700) fail = false;
  }
  t.ok(m.routeCount <= 100, `at most 100 routes kept (${m.routeCount})`);
  t.ok([...m.routes()].includes(hot), 'the busy route is kept');
  await reporter.stop();
  const total = written.reduce((n, d) => n + d.requests[1]!, 0);
  t.equal(total, 2000, 'every request counted once, evicted routes and failed writes included');
  const text = await m.text();
  t.ok(text.split('\n').filter((l) => l.startsWith('portico_gateway_requests_total{')).length <= 101, 'the exposition is bounded too');
});

t.test('StatsReporter: reports differences since the last report; a failed write goes with the next', async (t) => {
  const m = metrics();
  const r = m.route('e:acme/mnist/web/v1/predict', ROUTE);
  m.route('e:acme/mnist/web/v2/predict', { ...ROUTE, version: 'v2' }); // never used: never reported
  const written: EndpointStatsDelta[][] = [];
  let fail = false;
  const reporter = new StatsReporter({
    routes: () => m.routes(),
    sink: {
      async writeStats(d) {
        if (fail) throw new Error('redis down');
        written.push(d.map((x) => ({ ...x })));
      },
    },
  });
  r.observe(200, 0.004);
  r.observe(503, 0.2);
  await reporter.flush();
  const lat = zeros(LATENCY_BOUNDS_SECONDS.length + 1);
  lat[LATENCY_BOUNDS_SECONDS.indexOf(0.005)] = 1;
  lat[LATENCY_BOUNDS_SECONDS.indexOf(0.25)] = 1;
  t.same(written, [[{ ...ROUTE, requests: [0, 1, 0, 0, 1], latency: lat, latencySum: 0.004 + 0.2 }]]);

  await reporter.flush();
  t.equal(written.length, 1, 'nothing new: nothing written');

  r.observe(404, 0.001);
  fail = true;
  await reporter.flush();
  r.observe(200, 0.001);
  fail = false;
  await reporter.flush();
  t.equal(written.length, 2);
  t.same(written[1]![0]!.requests, [0, 1, 0, 1, 0], 'the failed report\'s counts came with the next');
  t.equal(written[1]![0]!.latency[0], 2);
  t.ok(Math.abs(written[1]![0]!.latencySum - 0.002) < 1e-12);

  r.observe(500, 1);
  await reporter.stop();
  t.same(written[2]![0]!.requests, [0, 0, 0, 0, 1], 'stop sends a last report');
});

t.test('embedded table: buckets by its clock, summed, read over a window, expired after an hour', async (t) => {
  let now = 10 * STATS_RETENTION_MS + 3_000;
  const table = new EmbeddedRoutingTable({ wallClock: () => now });
  const delta = (requests: number[], version = 'v1'): EndpointStatsDelta => ({ ...ROUTE, version, requests, latency: [1, 0], latencySum: 0.001 });
  await table.writeStats([delta([0, 1, 0, 0, 0]), delta([0, 2, 0, 0, 0], 'v2')]);
  await table.writeStats([delta([0, 1, 0, 0, 1])]);
  now += STATS_BUCKET_MS;
  await table.writeStats([delta([0, 5, 0, 0, 0])]);
  const read = await table.readStats(ref, 60_000);
  t.equal(read.now, now);
  t.same(read.buckets.map((b) => [b.start, b.version, b.requests]), [
    [now - STATS_BUCKET_MS - 3_000, 'v1', [0, 2, 0, 0, 1]],
    [now - STATS_BUCKET_MS - 3_000, 'v2', [0, 2, 0, 0, 0]],
    [now - 3_000, 'v1', [0, 5, 0, 0, 0]],
  ]);
  t.same((await table.readStats(ref, 1_000)).buckets.map((b) => b.requests), [[0, 5, 0, 0, 0]], 'a short window: the current bucket');
  t.same((await table.readStats({ ...ref, deployment: 'other' }, 60_000)).buckets, []);
  now += STATS_RETENTION_MS;
  await table.writeStats([delta([0, 1, 0, 0, 0])]);
  t.same((await table.readStats(ref, STATS_RETENTION_MS * 2)).buckets.map((b) => b.requests), [[0, 1, 0, 0, 0]], 'older buckets expired');
});

t.test('two gateways on one Redis: the stats API sums both', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const prefix = 'stats-test:';
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 2000, prefix });
  t.teardown(() => writer.close());
  await waitFor(() => writer.whenAvailable(1000));
  const rep = await replica(t, (req, res) => {
    const status = req.url?.endsWith('/fail') ? 500 : req.url?.endsWith('/missing') ? 404 : 200;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status }));
  });
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [rep.address])] });

  const config = loadConfig({ PORTICO_GATEWAY_PORT: '0', PORTICO_METRICS_PORT: '0', PORTICO_ACCESS_LOG: 'off', PORTICO_LOG_LEVEL: 'error' });
  const gateways: Awaited<ReturnType<typeof startGateway>>[] = [];
  for (let i = 0; i < 2; i++) {
    const routing = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 2000, prefix });
    const gw = await startGateway({ config, routing, serveMetrics: false, processMetrics: false, statsIntervalMs: 100, gatewayId: `gw-${i}` });
    t.teardown(async () => {
      await gw.close();
      await routing.close();
    });
    gateways.push(gw);
  }
  const agent = client(t);
  // 40 requests to v1 (30 ok, 6 failing with 500, 4 with 404), split over both gateways; 5 to v2.
  const plan = [...Array(30).fill('ok'), ...Array(6).fill('fail'), ...Array(4).fill('missing')];
  for (const gw of gateways) await waitFor(async () => (await call(agent, `${gw.url}/readyz`)).status === 200, { what: 'the gateway ready' });
  const statuses = await Promise.all(plan.map(async (p, i) => (await call(agent, `${gateways[i % 2]!.url}/acme/mnist/web/v1/predict/${p}`)).status));
  t.same(statuses, plan.map((p) => (p === 'ok' ? 200 : p === 'fail' ? 500 : 404)));
  await Promise.all(Array.from({ length: 5 }, (_, i) => call(agent, `${gateways[i % 2]!.url}/acme/mnist/web/production/predict`)));
  await Promise.all(Array.from({ length: 5 }, (_, i) => call(agent, `${gateways[i % 2]!.url}/acme/mnist/web/v2/predict`)));

  const summary = await waitFor(async () => {
    const read = await writer.readStats(ref, 300_000);
    const s = summarizeStats(read.buckets, { now: read.now, windowSeconds: 300 });
    return s.items.reduce((n, i) => n + i.requests, 0) === 50 ? s : undefined;
  }, { what: 'both gateways\' stats in Redis' });
  const [v1, v2] = summary.items;
  t.equal(v1!.version, 'v1');
  t.equal(v1!.requests, 45, 'v1: 40 by name + 5 through the alias');
  t.same(v1!.statuses, { '1xx': 0, '2xx': 35, '3xx': 0, '4xx': 4, '5xx': 6 });
  t.equal(v1!.errorRate, Math.round((6 / 45) * 1e6) / 1e6);
  t.equal(v1!.clientErrorRate, Math.round((4 / 45) * 1e6) / 1e6);
  t.ok(v1!.p50 !== null && v1!.p50 > 0 && v1!.p50 <= v1!.p95! && v1!.p95! <= v1!.p99!, `percentiles ordered: ${v1!.p50}, ${v1!.p95}, ${v1!.p99}`);
  t.equal(v2!.requests, 5);
  t.equal(v2!.errorRate, 0);

  // Both gateways wrote: each counted its own share.
  const perGateway = gateways.map((g) => [...g.metrics.routes()].reduce((n, r) => n + r.count, 0));
  t.same(perGateway, [26, 24]);
  const raw = new Redis(redis.url);
  t.teardown(() => raw.quit());
  const keys = await raw.keys(`${prefix}@stats:*`);
  t.ok(keys.length >= 1);
  for (const k of keys) {
    const ttl = await raw.pttl(k);
    t.ok(ttl > 0 && ttl <= STATS_RETENTION_MS, `${k} expires (${ttl} ms)`);
  }
});

t.test('a gateway reports to the embedded table it reads (portico start)', async (t) => {
  const table = new EmbeddedRoutingTable();
  const rep = await replica(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const config = loadConfig({ PORTICO_GATEWAY_PORT: '0', PORTICO_METRICS_PORT: '0', PORTICO_ACCESS_LOG: 'off', PORTICO_LOG_LEVEL: 'error' });
  const gw = await startGateway({ config, routing: table, serveMetrics: false, processMetrics: false, statsIntervalMs: 50 });
  const agent = client(t);
  for (let i = 0; i < 3; i++) await call(agent, `${gw.url}/acme/mnist/web/v1/predict`);
  await call(agent, `${gw.url}/acme/mnist/web/v9/predict`); // unknown version: not a route, not reported
  await waitFor(async () => (await table.readStats(ref, 60_000)).buckets.reduce((n, b) => n + (b.requests[1] ?? 0), 0) === 3);
  await call(agent, `${gw.url}/acme/mnist/web/v1/predict`);
  await gw.close();
  const all = (await table.readStats(ref, 60_000)).buckets;
  t.equal(all.reduce((n, b) => n + (b.requests[1] ?? 0), 0), 4, 'close sends the last counts');
  t.same([...new Set(all.map((b) => b.version))], ['v1']);
  const routes: RouteMetrics[] = [...gw.metrics.routes()];
  t.equal(routes.length, 1);
});
