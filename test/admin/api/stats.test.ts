// The stats API through a real gateway and controller (`portico start`): known numbers of
// requests with known statuses, counted within the window. With Redis too (the gateway writes
// its buckets there, the controller reads them), together with Redis-kept metrics.
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { waitFor } from '../../helpers/poll.ts';
import { createDeployment, D as FD, readyVersion, REF, startApi } from '../harness.ts';
import { ROOT, removeDataDir, startPortico, type PorticoProcess } from '../../helpers/portico.ts';
import { startRedis } from '../../helpers/redis.ts';

const PROBE = join(ROOT, 'test', 'fixtures', 'apps', 'telemetry');
const SENTIMENT = join(ROOT, 'examples', 'node-sentiment');
const D = '/projects/acme/nlp/deployments/web';

async function deploy(p: PorticoProcess, path: string): Promise<string> {
  const created = await p.api('POST', `${D}/versions`, { source: { path } });
  if (created.status !== 202) throw new Error(`POST versions: ${created.status} ${JSON.stringify(created.body)}`);
  const name = created.body.name as string;
  await waitFor(async () => {
    const v = await p.api('GET', `${D}/versions/${name}`);
    if (v.body.status === 'failed') throw new Error(`version failed: ${v.body.reason}`);
    return v.body.status === 'ready';
  }, { timeoutMs: 30_000, what: `version ${name} ready` });
  return name;
}

async function send(url: string, opts: { method?: string; body?: string } = {}): Promise<number> {
  const res = await request(url, { method: (opts.method ?? 'GET') as 'GET', ...(opts.body !== undefined ? { body: opts.body } : {}) });
  await res.body.dump();
  return res.statusCode;
}

t.test('stats: requests, statuses, error rates and latency percentiles per version and endpoint', async (t) => {
  const p = await startPortico();
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const probe = await deploy(p, PROBE);
  const sentiment = await deploy(p, SENTIMENT);

  const stats = async (window = 60) => (await p.api('GET', `${D}/stats?window=${window}`)).body;
  const before = await stats();
  t.same(before.items.map((i: { version: string; endpoint: string; requests: number }) => [i.version, i.endpoint, i.requests]), [[probe, 'probe', 0], [sentiment, 'sentiment', 0]], 'every endpoint, none with requests yet');

  const url = `${p.gatewayUrl}/acme/nlp/web/${probe}/probe`;
  const statuses: number[] = [];
  for (let i = 0; i < 15; i++) statuses.push(await send(`${url}?status=200`));
  for (let i = 0; i < 3; i++) statuses.push(await send(`${url}?status=500`));
  for (let i = 0; i < 2; i++) statuses.push(await send(`${url}?status=404`));
  t.same(statuses, [...Array(15).fill(200), ...Array(3).fill(500), ...Array(2).fill(404)]);
  // A version without replicas: the gateway's own 503 counts as an error of that version.
  t.equal((await p.api('PATCH', `${D}/versions/${probe}`, { endpoints: { probe: { replicas: 0 } } })).status, 200);
  await waitFor(async () => (await send(url)) === 503, { what: 'the gateway answering 503' });
  t.equal(await send(url), 503);
  t.equal(await send(`${p.gatewayUrl}/acme/nlp/web/${sentiment}/sentiment`, { method: 'POST', body: '{"text":"good"}' }), 200);

  const s = await waitFor(async () => {
    const body = await stats();
    const item = body.items.find((i: { endpoint: string }) => i.endpoint === 'probe');
    const total = body.items.reduce((n: number, i: { requests: number }) => n + i.requests, 0);
    return item && item.requests >= 22 && total >= item.requests + 1 ? body : undefined;
  }, { timeoutMs: 15_000, what: 'the gateway\'s counts in the stats' });
  t.equal(s.window, 60);
  t.equal(s.bucketSeconds, 10);
  t.ok(s.to - s.from >= 60_000 && s.to - s.from <= 70_000, 'the buckets cover the window');
  const item = s.items.find((i: { endpoint: string }) => i.endpoint === 'probe');
  const fives = item.statuses['5xx'];
  t.equal(item.version, probe);
  t.ok(item.requests === 20 + fives - 3, 'every request counted once');
  t.ok(fives >= 4, `the 500s and at least one gateway 503 (${fives})`);
  t.same({ ...item.statuses, '5xx': 0 }, { '1xx': 0, '2xx': 15, '3xx': 0, '4xx': 2, '5xx': 0 });
  t.equal(item.errorRate, Math.round((fives / item.requests) * 1e6) / 1e6);
  t.equal(item.clientErrorRate, Math.round((2 / item.requests) * 1e6) / 1e6);
  t.equal(item.requestsPerSecond, Math.round((item.requests / ((s.to - s.from) / 1000)) * 1000) / 1000);
  t.ok(item.meanMs > 0 && item.p50 > 0 && item.p50 <= item.p95 && item.p95 <= item.p99, `latencies ${item.meanMs} ${item.p50} ${item.p95} ${item.p99}`);
  t.equal(item.series.reduce((n: number, b: number[]) => n + b[1]!, 0), item.requests, 'the series adds up');
  const sent = s.items.find((i: { endpoint: string }) => i.endpoint === 'sentiment');
  t.same([sent.version, sent.requests, sent.errorRate], [sentiment, 1, 0]);

  const bad = await p.api('GET', `${D}/stats?window=5`);
  t.equal(bad.status, 400);
  t.match(bad.body, { code: 'VALIDATION_FAILED', message: 'query.window: must be an integer from 10 to 3600' });
  t.equal((await p.api('GET', '/projects/acme/nlp/deployments/nope/stats')).status, 404);
  t.equal((await stats(10)).window, 10);
});

t.test('with Redis: stats through Redis buckets, metrics in Redis sorted sets', async (t) => {
  const redis = await startRedis();
  const p = await startPortico({ env: { PORTICO_REDIS_URL: redis.url } });
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
    await redis.stop();
  });
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const v = await deploy(p, SENTIMENT);
  const url = `${p.gatewayUrl}/acme/nlp/web/${v}/sentiment`;
  const codes = [];
  for (const text of ['great and fast', 'bad', 'meh']) codes.push(await send(url, { method: 'POST', body: JSON.stringify({ text }) }));
  codes.push(await send(url, { method: 'POST', body: 'not json' }));
  t.same(codes, [200, 200, 200, 400]);

  const item = await waitFor(async () => {
    const i = (await p.api('GET', `${D}/stats?window=120`)).body.items[0];
    return i?.requests === 4 ? i : undefined;
  }, { timeoutMs: 15_000, what: 'stats from Redis' });
  t.same(item.statuses, { '1xx': 0, '2xx': 3, '3xx': 0, '4xx': 1, '5xx': 0 });
  t.equal(item.clientErrorRate, 0.25);

  const series = await waitFor(async () => {
    const r = await p.api('GET', `${D}/versions/${v}/endpoints/sentiment/metrics?key=score`);
    return r.body.points?.length === 3 ? r.body : undefined;
  }, { what: 'metrics from Redis' });
  t.same(series.points.map((pt: number[]) => pt[1]), [3, -1, 0]);
  t.same((await p.api('GET', `${D}/versions/${v}/endpoints/sentiment/metrics?key=label&mode=histogram`)).body.categories, [
    { value: 'negative', count: 1 },
    { value: 'neutral', count: 1 },
    { value: 'positive', count: 1 },
  ]);
});

t.test('over the fake control plane: the route passes the window (default 300) and answers the shape', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const now = Date.now();
  const start = now - (now % 10_000);
  api.fake.addStats([{ ...REF, version: 'v1', endpoint: 'predict', start, requests: [0, 9, 0, 0, 1], latency: [10], latencySum: 0.005 }]);
  const r = await api.call('GET', `${FD}/stats`);
  t.equal(r.status, 200);
  t.equal(r.json.window, 300);
  t.match(r.json.items[0], { version: 'v1', endpoint: 'predict', requests: 10, errorRate: 0.1, clientErrorRate: 0, meanMs: 0.5, p50: 0.5, series: [[start, 10, 1]] });
  t.same(api.fake.calls.filter((c) => c.op === 'deploymentStats').map((c) => c.args[1]), [{ window: 300 }]);
  t.equal((await api.call('GET', `${FD}/stats?window=3601`)).json.message, 'query.window: must be an integer from 10 to 3600');
  t.equal((await api.call('GET', `${FD}/stats?since=1`)).status, 400);
});
