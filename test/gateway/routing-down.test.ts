import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../../common/log.ts';
import { loadConfig } from '../../common/config.ts';
import { startGateway } from '../../gateway/main.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { startRedis } from '../helpers/redis.ts';
import { waitFor } from '../helpers/poll.ts';
import { call, client, deployment, endpoint, gateway, replica, type Tap } from './fixtures.ts';

async function redisSetup(t: Tap, env: Record<string, string> = {}) {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const prefix = `test:${randomBytes(4).toString('hex')}:`;
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix });
  const reader = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix });
  t.teardown(() => writer.close());
  t.teardown(() => reader.close());
  await waitFor(() => writer.isAvailable() && reader.isAvailable(), { what: 'redis connections' });
  const rep = await replica(t);
  const { gw } = await gateway(t, { routing: reader, env });
  const routes = {
    putDeployments: [deployment()],
    putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [rep.address])],
  };
  await writer.apply(routes);
  return { redis, writer, reader, rep, gw, routes };
}

t.test('Redis stopped mid-run: cached routes serve, unknown routes are a fast 503, nothing hangs', async (t) => {
  const { redis, reader, gw } = await redisSetup(t);
  const agent = client(t);
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/production/predict`)).status, 200, 'route loaded and cached');
  await redis.kill();
  await waitFor(() => !reader.isAvailable(), { what: 'the reader to notice' });
  for (let i = 0; i < 5; i++) {
    const res = await call(agent, `${gw.url}/acme/mnist/web/production/predict`);
    t.equal(res.status, 200, 'the cached route still serves');
    t.equal(res.headers['x-portico-version'], 'v1');
  }
  for (const path of ['/acme/mnist/web/v2/predict', '/acme/mnist/other/v1/predict']) {
    const started = performance.now();
    const res = await call(agent, gw.url + path);
    const ms = performance.now() - started;
    t.equal(res.status, 503, `${path}: not cached`);
    t.equal(res.json().code, 'ROUTING_UNAVAILABLE');
    t.equal(res.headers['retry-after'], '1');
    t.ok(ms < 1000, `answered in ${Math.round(ms)} ms`);
  }
  t.equal((await call(agent, `${gw.url}/readyz`)).status, 200, 'ready while the cache is within its staleness bound');
  t.equal((await call(agent, `${gw.url}/healthz`)).status, 200);
});

t.test('a Redis that stops answering (paused) is noticed within the command timeout', async (t) => {
  const { redis, gw } = await redisSetup(t);
  const agent = client(t);
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/v1/predict`)).status, 200);
  redis.pause();
  t.teardown(() => redis.resume());
  const started = performance.now();
  const res = await call(agent, `${gw.url}/acme/mnist/web/v2/predict`);
  t.equal(res.status, 503);
  t.ok(performance.now() - started < 2000, 'no hang on a silent Redis');
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/v1/predict`)).status, 200, 'cached route unaffected');
  redis.resume();
  await waitFor(async () => (await call(agent, `${gw.url}/acme/mnist/web/v2/predict`)).status === 200, { what: 'recovery after resume' });
});

t.test('past PORTICO_MAX_STALE_SECONDS the gateway is not ready and stops serving stale routes; it recovers with Redis', async (t) => {
  const { redis, writer, gw, routes } = await redisSetup(t, { PORTICO_MAX_STALE_SECONDS: '1' });
  const agent = client(t);
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/v1/predict`)).status, 200);
  await redis.kill();
  await waitFor(async () => (await call(agent, `${gw.url}/readyz`)).status === 503, { what: 'readyz 503 past the staleness bound' });
  const stale = await call(agent, `${gw.url}/acme/mnist/web/v1/predict`);
  t.equal(stale.status, 503);
  t.equal(stale.json().code, 'ROUTING_UNAVAILABLE');
  await redis.start();
  await waitFor(() => writer.isAvailable(), { what: 'the writer to reconnect' });
  await writer.apply(routes);
  await waitFor(async () => (await call(agent, `${gw.url}/readyz`)).status === 200, { what: 'ready again' });
  await waitFor(async () => (await call(agent, `${gw.url}/acme/mnist/web/v1/predict`)).status === 200, { what: 'serving again' });
});

t.test('a gateway just started on Redis answers its first requests from the table, not 503', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const prefix = `test:${randomBytes(4).toString('hex')}:`;
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix });
  t.teardown(() => writer.close());
  await waitFor(() => writer.isAvailable(), { what: 'the writer' });
  const rep = await replica(t);
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  // As a restarted `portico gateway` worker does: a new table connection, requests at once.
  for (let i = 0; i < 3; i++) {
    const reader = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix });
    t.teardown(() => reader.close());
    const { gw } = await gateway(t, { routing: reader });
    const res = await call(agent, `${gw.url}/acme/mnist/web/production/predict`);
    t.equal(res.status, 200, `gateway ${i + 1}: the first request is served`);
    t.equal(res.headers['x-portico-version'], 'v1');
    const live = await writer.liveGateways();
    t.ok(live.some((g) => g.id === gw.id), 'by a gateway already in the live set (an alias PUT waits for it)');
  }
});

t.test('a gateway says in its log when Redis is unreachable at its start, when it goes and when it is back', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  await redis.kill();
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger('gateway', 'info', (l) => void lines.push(JSON.parse(l) as { level: string; msg: string }));
  const reader = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250 });
  t.teardown(() => reader.close());
  const config = loadConfig({ PORTICO_GATEWAY_PORT: '0', PORTICO_METRICS_PORT: '0', PORTICO_ACCESS_LOG: 'off' });
  const gw = await startGateway({ config, routing: reader, processMetrics: false, log });
  t.teardown(() => gw.close());
  const res = await call(client(t), `${gw.url}/acme/mnist/web/v1/predict`);
  t.equal(res.status, 503, 'routes answer 503 once the start-up wait is over');
  // Each line says where the table is and, while it is unreachable, why.
  const where = `Redis at ${new URL(redis.url).host}`;
  const said = (re: RegExp) => lines.some((l) => re.test(l.msg));
  await waitFor(() => lines.some((l) => l.level === 'warn' && /not reachable yet/.test(l.msg)), { what: 'the start-up warning' });
  t.ok(said(new RegExp(`^routing table not reachable yet \\(${where}: connect ECONNREFUSED [^)]+\\): `)), 'the start-up warning names the address and the error');
  await redis.start();
  await waitFor(() => said(/^routing table reachable/), { what: 'the return logged' });
  t.ok(said(new RegExp(`^routing table reachable \\(${where}\\)$`)), 'the return names the address');
  await redis.kill();
  await waitFor(() => lines.some((l) => l.level === 'warn' && /unreachable.*: cached routes keep serving/.test(l.msg)), { what: 'the loss logged' });
  t.ok(said(new RegExp(`^routing table unreachable \\(${where}: .+\\): cached routes keep serving`)), 'the loss names the address and the error');
});

t.test('a gateway back on a restarted (empty) Redis before its change feed acknowledges nothing until it resyncs', async (t) => {
  const { redis, writer, gw, routes } = await redisSetup(t, { PORTICO_HEARTBEAT_MS: '100' });
  const agent = client(t);
  let seq = 0;
  for (let i = 0; i < 3; i++) seq = await writer.apply(routes);
  t.same((await writer.waitForAcks(seq, 2000)).missing, [], `the gateway applied seq ${seq}`);
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/production/predict`)).headers['x-portico-version'], 'v1');

  // The new server takes commands but refuses SUBSCRIBE for now: the gateway's command connection
  // is back, its change feed is not (as when the feed reconnects last, or after a failover).
  await redis.kill();
  await redis.start(['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '-subscribe']);
  await waitFor(async () => (await writer.liveGateways()).some((g) => g.id === gw.id), { what: 'the gateway registered on the new server' });
  const flipped = { ...routes, putDeployments: [deployment({ aliases: { production: { version: 'v2' } } })] };
  const next = await writer.apply(flipped);
  t.ok(next < seq, `the new server's sequence (${next}) starts below what the gateway applied before (${seq})`);
  const acks = await writer.waitForAcks(next, 500);
  const res = await call(agent, `${gw.url}/acme/mnist/web/production/predict`);
  t.equal(res.headers['x-portico-version'], 'v1', 'the gateway, without its feed, still routes the old way');
  t.same(acks, { seq: next, acknowledged: [], missing: [gw.id] }, 'so it is not counted as having applied the change');

  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.call('ACL', 'SETUSER', 'default', '+subscribe');
  t.same((await writer.waitForAcks(next, 5000)).missing, [], 'acknowledged once its feed is back');
  t.equal((await call(agent, `${gw.url}/acme/mnist/web/production/predict`)).headers['x-portico-version'], 'v2');
});
