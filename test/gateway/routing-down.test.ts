import t from 'tap';
import { randomBytes } from 'node:crypto';
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
