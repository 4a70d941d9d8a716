// A controller with a kubernetes target (startController against the recording fake API server)
// restarted while the cluster does not answer: what the gateways route to meanwhile, and after.
import t, { type Test } from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startController, type RunningController } from '../../builder/main.ts';
import { embeddedStoreDir } from '../../builder/store/open.ts';
import { EmbeddedStore } from '../../builder/store/embedded.ts';
import { endpointId } from '../../builder/runtime/kubernetes/names.ts';
import { loadConfig } from '../../common/config.ts';
import type { Logger } from '../../common/log.ts';
import { endpointKey } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { FakeKubeApi, type KubeObj } from '../helpers/fake-kube-api.ts';
import { waitFor } from '../helpers/poll.ts';

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const DEP = { owner: 'acme', project: 'mnist', deployment: 'web' } as const;
const REF = { ...DEP, version: 'v1' } as const;
const EP = { ...REF, endpoint: 'predict' } as const;
const NS = 'portico-acme-mnist';

interface Cluster {
  fake: FakeKubeApi;
  routing: EmbeddedRoutingTable;
  /** Starts a controller on the shared data directory, routing table and cluster. */
  start(): Promise<RunningController>;
  /** Live pods of the endpoint in the fake. */
  pods(): KubeObj[];
  /** The replicas the routing table holds for the endpoint. */
  routed(): Promise<readonly { id: string; address: string }[] | undefined>;
}

/** A deployment on target `kubernetes` with one version of one endpoint (one replica), not started yet. */
async function cluster(t: Test): Promise<Cluster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-outage-test-'));
  const fake = await FakeKubeApi.start();
  const routing = new EmbeddedRoutingTable();
  const kubeconfig = join(dataDir, 'kubeconfig');
  await writeFile(kubeconfig, fake.kubeConfig().exportConfig(), { mode: 0o600 });
  const store = await EmbeddedStore.open({ dir: embeddedStoreDir(dataDir) });
  await store.createDeployment({ owner: DEP.owner, project: DEP.project, name: DEP.deployment, target: 'kubernetes', auth: 'none' });
  await store.createVersion({
    ...DEP, name: REF.version, status: 'starting', enabled: true, source: { path: '/src' }, environment: {}, inheritEnvironment: true, codeDir: '/code',
    images: { predict: 'registry.example/acme/mnist:abc' },
    endpoints: [{ name: 'predict', definition: { name: 'predict', command: { kind: 'shell', command: 'serve' }, port: 8000 }, replicas: 1, enabled: true, timeoutSeconds: null, maxBodyBytes: null, files: [] }],
  });
  await store.close();
  const running = new Set<RunningController>();
  t.teardown(async () => {
    fake.outage(null);
    for (const r of running) await r.close();
    await fake.close();
    await routing.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return {
    fake,
    routing,
    async start() {
      const r = await startController({ config: loadConfig({ PORTICO_DATA_DIR: dataDir, PORTICO_KUBECONFIG: kubeconfig }), routing, log: silent });
      running.add(r);
      const close = r.close.bind(r);
      return { ...r, close: async (o) => { running.delete(r); await close(o); } };
    },
    pods() {
      return fake.list('pods', NS, `portico.io/endpoint-id=${endpointId(`${DEP.owner}/${DEP.project}/${DEP.deployment}/${REF.version}/predict`)}`).filter((p) => p.metadata.deletionTimestamp === undefined);
    },
    async routed() {
      return (await routing.getEndpoint(endpointKey(EP)))?.replicas;
    },
  };
}

t.test('a controller restarted while the cluster answers 503 keeps the routes it found; they follow the pods once it answers', async (t) => {
  t.setTimeout(90_000);
  const c = await cluster(t);
  const first = await c.start();
  const pod = await waitFor(() => c.pods()[0], { what: 'the pod' });
  c.fake.setReady(NS, pod.metadata.name, true);
  const before = await waitFor(async () => ((await c.routed())?.length === 1 ? c.routed() : undefined), { what: 'the replica routed' });
  await first.close();

  c.fake.outage(503);
  const second = await c.start(); // waits out the runtime's startup timeout
  t.same(await c.routed(), before, 'after the start the route is the one from before the restart');
  const view = await waitFor(async () => {
    const v = await second.controller.getVersion(REF);
    return v.endpoints[0]?.error?.includes('kubernetes API unreachable') ? v : undefined;
  }, { what: 'the endpoint error naming the outage', timeoutMs: 15_000 });
  t.match(view.endpoints[0]?.error, /kubernetes API unreachable: .*503/, 'the endpoint says why its replicas are not known');
  t.not(view.status, 'failed', 'a version whose replicas are not known is not failed');
  t.same(await c.routed(), before, 'after the first reconcile pass the route is still the one from before');

  // Meanwhile the pod stops being ready: once the cluster answers, the route follows it.
  c.fake.setReady(NS, pod.metadata.name, false);
  c.fake.outage(null);
  await waitFor(async () => (await c.routed())?.length === 0, { what: 'the unready pod out of the route', timeoutMs: 30_000 });
  c.fake.setReady(NS, pod.metadata.name, true);
  await waitFor(async () => (await c.routed())?.length === 1, { what: 'the ready pod routed again', timeoutMs: 10_000 });
  const after = await waitFor(async () => {
    const v = await second.controller.getVersion(REF);
    return v.status === 'ready' && v.endpoints[0]?.error === undefined ? v : undefined;
  }, { what: 'the version ready without an error', timeoutMs: 15_000 });
  t.equal(after.status, 'ready');
});
