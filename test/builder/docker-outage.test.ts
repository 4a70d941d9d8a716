// A controller with a docker target (startController on a private dockerd) restarted while the
// engine cannot be reached: what the gateways route to meanwhile, and after.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startController, type RunningController } from '../../builder/main.ts';
import { embeddedStoreDir } from '../../builder/store/open.ts';
import { EmbeddedStore } from '../../builder/store/embedded.ts';
import { loadConfig } from '../../common/config.ts';
import type { Logger } from '../../common/log.ts';
import { endpointKey } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { importBusybox } from '../helpers/base-image.ts';
import { startDockerd } from '../helpers/dockerd.ts';
import { waitFor } from '../helpers/poll.ts';

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const DEP = { owner: 'acme', project: 'mnist', deployment: 'web' } as const;
const REF = { ...DEP, version: 'v1' } as const;
const EP = { ...REF, endpoint: 'predict' } as const;

t.test('a controller restarted while the docker engine cannot be reached keeps the routes it found; they follow the containers once it answers', async (t) => {
  t.setTimeout(90_000);
  const engine = await startDockerd();
  t.teardown(() => engine.stop());
  await importBusybox(engine.docker, 'portico-test/busybox:1');
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-docker-outage-test-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // The controller reaches the engine through a proxy: the outage closes every connection and refuses new ones.
  const socket = join(dataDir, 'docker.sock');
  let down = false;
  const open = new Set<Socket>();
  const proxy = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(engine.socket);
    open.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => proxy.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of open) s.destroy();
    proxy.close(() => resolve());
  }));
  const outage = (on: boolean) => {
    down = on;
    if (on) for (const s of open) s.destroy();
  };
  const routing = new EmbeddedRoutingTable();
  t.teardown(() => routing.close());
  const store = await EmbeddedStore.open({ dir: embeddedStoreDir(dataDir) });
  await store.createDeployment({ owner: DEP.owner, project: DEP.project, name: DEP.deployment, target: 'docker', auth: 'none' });
  await store.createVersion({
    ...DEP, name: REF.version, status: 'starting', enabled: true, source: { path: '/src' }, environment: {}, inheritEnvironment: true, codeDir: '/code',
    images: { predict: 'portico-test/busybox:1' },
    endpoints: [{ name: 'predict', definition: { name: 'predict', command: { kind: 'shell', command: 'exec httpd -f -p $PORT' }, port: 8000 }, replicas: 1, enabled: true, timeoutSeconds: null, maxBodyBytes: null, files: [] }],
  });
  await store.close();
  const running = new Set<RunningController>();
  t.teardown(async () => {
    for (const r of running) await r.close();
  });
  const start = async () => {
    const r = await startController({ config: loadConfig({ PORTICO_DATA_DIR: dataDir, PORTICO_DOCKER_SOCKET: socket, PORTICO_DOCKER_NETWORK: 'host' }), routing, log: silent });
    running.add(r);
    return r;
  };
  const routed = async () => (await routing.getEndpoint(endpointKey(EP)))?.replicas;

  const first = await start();
  const before = await waitFor(async () => ((await routed())?.length === 1 ? routed() : undefined), { what: 'the replica routed', timeoutMs: 30_000 });
  running.delete(first);
  await first.close();

  outage(true);
  const second = await start();
  t.same(await routed(), before, 'after the start the route is the one from before the restart');
  const view = await waitFor(async () => {
    const v = await second.controller.getVersion(REF);
    return v.endpoints[0]?.error?.includes('docker engine unreachable') ? v : undefined;
  }, { what: 'the endpoint error naming the outage', timeoutMs: 15_000 });
  t.match(view.endpoints[0]?.error, /^docker engine unreachable: /, 'the endpoint says why its replicas are not known');
  t.not(view.status, 'failed', 'a version whose replicas are not known is not failed');
  t.same(await routed(), before, 'after the first reconcile pass the route is still the one from before');

  outage(false);
  const after = await waitFor(async () => {
    const v = await second.controller.getVersion(REF);
    return v.status === 'ready' && v.endpoints[0]?.error === undefined ? v : undefined;
  }, { what: 'the version ready without an error', timeoutMs: 30_000 });
  t.equal(after.status, 'ready');
  t.same(await routed(), before, 'the adopted container is routed as before');
  t.equal((await engine.docker.listContainers({ all: true, filters: { label: ['portico.managed=true'] } })).length, 1, 'adopted, not duplicated');
});
