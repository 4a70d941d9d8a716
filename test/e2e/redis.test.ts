// Scale-out on Redis: one `portico controller` and two `portico gateway` processes share a real
// redis-server. An alias PUT is acknowledged by both gateways; both serve; the controller can be
// SIGKILLed and restarted while the gateways keep serving.
import t from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, waitFor } from '../helpers/poll.ts';
import { ROOT, killReplicas, removeDataDir, startPortico, type PorticoProcess } from '../helpers/portico.ts';
import { startRedis } from '../helpers/redis.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const TOKEN = 'e2e-redis-token-0123456789abcdef';

t.test('controller + 2 gateways on Redis', async (t) => {
  const redis = await startRedis();
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-redis-e2e-'));
  const env = { PORTICO_REDIS_URL: redis.url, PORTICO_ADMIN_TOKEN: TOKEN, PORTICO_HEARTBEAT_MS: '200' };
  const adminPort = await freePort();
  const procs: PorticoProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) await p.stop();
    killReplicas(dataDir); // a stopped `portico controller` leaves its replicas running (see the end)
    await redis.stop();
    await removeDataDir(dataDir);
  });
  const controllerPorts = { gateway: await freePort(), admin: adminPort, metrics: await freePort() };
  let controller = await startPortico({ command: 'controller', dataDir, env, ports: controllerPorts });
  procs.push(controller);
  const gateways: PorticoProcess[] = [];
  for (let i = 0; i < 2; i++) {
    const g = await startPortico({ command: 'gateway', dataDir, env, ports: { gateway: await freePort(), admin: adminPort, metrics: await freePort() } });
    procs.push(g);
    gateways.push(g);
  }

  t.equal((await controller.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const versions: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await controller.api('POST', '/projects/acme/nlp/deployments/web/versions', { source: { path: EXAMPLE } });
    versions.push(r.body.name);
    await waitFor(async () => (await controller.api('GET', `/projects/acme/nlp/deployments/web/versions/${r.body.name}`)).body.status === 'ready', { timeoutMs: 30_000 });
  }
  const [v1, v2] = versions as [string, string];

  // Both gateways are live: a PUT names both as acknowledged.
  const put = await waitFor(async () => {
    const r = await controller.api('PUT', '/projects/acme/nlp/deployments/web/aliases/production', { version: v1 });
    return r.body.acknowledged?.length === 2 ? r : undefined;
  }, { what: 'both gateways acknowledging' });
  t.same(put.body.missing, []);
  const via = async (g: PorticoProcess) => {
    const res = await request(`${g.gatewayUrl}/acme/nlp/web/production/sentiment`);
    await res.body.dump();
    return { status: res.statusCode, version: res.headers['x-portico-version'] };
  };
  for (const g of gateways) t.same(await via(g), { status: 200, version: v1 });

  // A flip is visible on both gateways as soon as the PUT returns.
  const flip = await controller.api('PUT', '/projects/acme/nlp/deployments/web/aliases/production', { version: v2 });
  t.equal(flip.body.acknowledged.length, 2);
  for (const g of gateways) t.same(await via(g), { status: 200, version: v2 });

  // The controller dies: gateways keep serving from Redis.
  await controller.kill();
  for (const g of gateways) t.same(await via(g), { status: 200, version: v2 }, 'serving without a controller');

  // A new controller adopts the replicas and can flip again.
  controller = await startPortico({ command: 'controller', dataDir, env, ports: controllerPorts });
  procs.push(controller);
  const back = await controller.api('PUT', '/projects/acme/nlp/deployments/web/aliases/production', { version: v1 });
  t.equal(back.status, 200);
  t.equal(back.body.acknowledged.length, 2);
  for (const g of gateways) t.same(await via(g), { status: 200, version: v1 });
  const history = await controller.api('GET', '/projects/acme/nlp/deployments/web/aliases/production/history');
  t.same(history.body.items.map((i: { to: { version: string } }) => i.to.version), [v1, v2, v1]);

  // A controller stopped on purpose (SIGTERM: an upgrade) leaves the replicas serving too.
  await controller.stop();
  for (const g of gateways) t.same(await via(g), { status: 200, version: v1 }, 'serving after the controller stopped');
  t.equal(killReplicas(dataDir), 2, 'its two replicas were still running (the test stops them)');
});
