// A store that is lost or replaced under the controller (Redis restarted empty, FLUSHALL, the
// embedded store's directory deleted, PORTICO_REDIS_URL pointed at another database) reads as a
// store that wants no replica. The controller must notice, by the store's id, and remove
// nothing: production replicas keep running (docs/operations.md, section 4).
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { startController, type RunningController } from '../../builder/main.ts';
import { loadConfig } from '../../common/config.ts';
import type { Logger } from '../../common/log.ts';
import { deploymentKey, endpointKey, type RoutingTable } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { waitFor } from '../helpers/poll.ts';
import { startRedis } from '../helpers/redis.ts';

const EXAMPLE = join(import.meta.dirname, '../../examples/node-sentiment');
const DEPLOYMENT = { owner: 'acme', project: 'nlp', deployment: 'web' } as const;
const V1 = { ...DEPLOYMENT, version: 'v1' } as const;
const ENDPOINT = { ...V1, endpoint: 'sentiment' } as const;

/** A logger keeping the error messages (with their fields) for the test to look at. */
function recordingLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  const none = () => undefined;
  return { errors, debug: none, info: none, warn: none, error: (msg, extra) => { errors.push(`${msg} ${JSON.stringify(extra ?? {})}`); } };
}

/** Whether something answers HTTP at `address` (`host:port`). */
async function answers(address: string): Promise<boolean> {
  try {
    const res = await request(`http://${address}/`, { headersTimeout: 2000, bodyTimeout: 2000 });
    await res.body.dump();
    return true;
  } catch {
    return false;
  }
}

/**
 * A controller on `dataDir` writing `routing`; stopped on teardown with its local replicas (the
 * store that named them may be gone, so deleting the deployment could not stop them).
 */
async function start(t: Test, dataDir: string, env: Record<string, string>, routing: RoutingTable, log: Logger): Promise<RunningController> {
  const running = await startController({ config: loadConfig({ PORTICO_DATA_DIR: dataDir, PORTICO_FLIP_ACK_MS: '100', ...env }), routing, log });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await running.close({ stopReplicas: true });
  });
  return { ...running, close: async (opts) => { closed = true; await running.close(opts); } };
}

/** Creates deployment `web` with version `v1` of the example and returns its replica's address once ready. */
async function runV1(running: RunningController): Promise<string> {
  await running.controller.createDeployment(DEPLOYMENT, { name: 'web' }, 'admin');
  await running.controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: EXAMPLE } }, 'admin');
  return waitFor(async () => {
    const v = await running.controller.getVersion(V1);
    return v.status === 'ready' ? v.endpoints[0]?.replicas.find((r) => r.state === 'ready')?.address ?? undefined : undefined;
  }, { timeoutMs: 30_000, what: 'v1 ready' });
}

for (const how of ['FLUSHALL', 'restarted without persistence'] as const) {
  t.test(`Redis emptied under a running controller (${how}): its replicas keep running and routed, the error says what happened`, async (t) => {
    const redis = await startRedis();
    t.teardown(() => redis.stop());
    const routing = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 1000 });
    t.teardown(() => routing.close());
    t.ok(await routing.whenAvailable(5000), 'routing table connected');
    const dataDir = await mkdtemp(join(tmpdir(), 'portico-store-lost-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    const log = recordingLogger();
    const running = await start(t, dataDir, { PORTICO_REDIS_URL: redis.url }, routing, log);
    const address = await runV1(running);
    t.ok(await answers(address), 'the replica answers');
    t.equal(running.controller.storeStatus(), 'ok');

    if (how === 'FLUSHALL') {
      const raw = new Redis(redis.url);
      await raw.flushall();
      await raw.quit();
    } else {
      await redis.kill();
      await redis.start();
    }
    // Bounded: a pass comes every 5 s. Before the store had an id, the first one removed the replica.
    await waitFor(async () => log.errors.some((e) => e.includes('store was lost or replaced')) || !(await answers(address)), {
      timeoutMs: 20_000, what: 'a reconcile pass after the store was emptied',
    });
    t.ok(await answers(address), 'the replica still answers after a pass on the emptied store');
    t.match(log.errors.find((e) => e.includes('store was lost or replaced')), /docs\/operations\.md/, 'the error points at the operations doc');
    await waitFor(async () => log.errors.some((e) => e.includes('were not removed') && e.includes('acme/nlp/web/v1/sentiment')), { what: 'the kept replica named' });
    // The routing table went with the store (one Redis): the controller writes back the routes it
    // had, so the gateways keep serving the replicas that run.
    await waitFor(async () => (await routing.getEndpoint(endpointKey(ENDPOINT)))?.replicas.some((r) => r.address === address), {
      timeoutMs: 10_000, what: 'the endpoint route written again',
    });
    await waitFor(async () => (await routing.getDeployment(deploymentKey(DEPLOYMENT))) !== null, { timeoutMs: 10_000, what: 'the deployment record written again' });
    await waitFor(async () => (await answers(address)) && log.errors.filter((e) => e.includes('were not removed')).length > 0, { what: 'still running' });
    t.equal(await running.store.getStoreId(), null, 'the controller gives the emptied store no id of its own');
    t.equal(running.controller.storeStatus(), 'lost', 'the admin API\'s /healthz says so');
  });
}

t.test('embedded store deleted while the controller was stopped: the restarted controller removes none of the replicas it adopts, nor their routes', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-store-lost-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const routing = new EmbeddedRoutingTable(); // outlives both controllers, as a Redis table would
  t.teardown(() => routing.close());
  const first = await start(t, dataDir, {}, routing, recordingLogger());
  const address = await runV1(first);
  const id = (await readFile(join(dataDir, 'store-id'), 'utf8')).trim();
  t.equal(id, await first.store.getStoreId(), 'the data directory remembers the store id');
  await first.close(); // replicas keep running for the next controller to adopt

  await rm(join(dataDir, 'store'), { recursive: true, force: true });
  const log = recordingLogger();
  const second = await start(t, dataDir, {}, routing, log);
  t.match(log.errors.find((e) => e.includes('store was lost or replaced')), /docs\/operations\.md/, 'said at start');
  await waitFor(async () => log.errors.filter((e) => e.includes('not removed')).length > 0 || !(await answers(address)), {
    timeoutMs: 15_000, what: 'a reconcile pass on the new store',
  });
  t.ok(await answers(address), 'the adopted replica still answers after a pass');
  t.ok((await routing.getEndpoint(endpointKey(ENDPOINT)))?.replicas.some((r) => r.address === address), 'its route was not deleted at start');
  t.not(await routing.getDeployment(deploymentKey(DEPLOYMENT)), null, 'nor its deployment record');
  t.equal(await second.store.getStoreId(), null, 'the new store is not taken over without the operator');
  t.equal(second.controller.storeStatus(), 'lost');
  t.equal((await readFile(join(dataDir, 'store-id'), 'utf8')).trim(), id, 'the data directory still names the lost store');
});

t.test('Redis emptied under a running controller: the blob store keeps every file (the store\'s backup still names them)', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const routing = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 1000 });
  t.teardown(() => routing.close());
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-store-lost-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const running = await start(t, dataDir, { PORTICO_REDIS_URL: redis.url }, routing, recordingLogger());
  await running.controller.createDeployment(DEPLOYMENT, { name: 'web' }, 'admin');
  const model = await running.controller.createUpload(Readable.from(['{"good": 1}']), 'admin');
  await running.controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: EXAMPLE }, endpoints: { sentiment: { replicas: 0, files: { model: { upload: model.id } } } } }, 'admin');
  await waitFor(async () => (await running.controller.getVersion(V1)).status !== 'building', { what: 'the build' });
  const builtFile = (await running.store.getUpload(model.id))!.path;
  t.equal((await running.controller.getVersion(V1)).endpoints[0]!.files[0]!.sha256, model.sha256, 'the version has the uploaded file');
  const up = await running.controller.createUpload(Readable.from(['model']), 'admin');
  const file = (await running.store.getUpload(up.id))!.path;
  await running.controller.cleanBlobs();
  t.ok(await stat(builtFile).then(() => true), 'the version\'s file is stored');

  const client = new Redis(redis.url);
  t.teardown(() => client.quit());
  await client.flushall();
  await running.controller.cleanBlobs();
  t.equal(running.controller.storeStatus(), 'lost', 'the clean noticed');
  t.ok(await stat(file).then(() => true, () => false), 'the upload\'s file stays');
  t.ok(await stat(builtFile).then(() => true, () => false), 'the version\'s file stays');
});
