import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Publisher } from '../../builder/publisher.ts';
import { endpointSpec, Reconciler, type StoreLostReport } from '../../builder/reconciler.ts';
import type { EndpointSpec, EndpointStatus, Runtime } from '../../builder/runtime/runtime.ts';
import { EmbeddedStore } from '../../builder/store/embedded.ts';
import type { Store, Version, VersionEndpoint } from '../../builder/store/store.ts';
import { endpointKey } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';

const endpoint: VersionEndpoint = {
  name: 'predict',
  definition: { name: 'predict', command: { kind: 'shell', command: 'serve' }, port: 8000 },
  replicas: 2,
  enabled: true,
  timeoutSeconds: null,
  maxBodyBytes: null,
  files: [],
};

function version(over: Partial<Version> = {}): Version {
  return {
    owner: 'acme', project: 'nlp', deployment: 'web', name: 'v1', status: 'ready', createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z',
    enabled: true, source: { path: '/src' }, environment: { MODEL: 'small', API_KEY: 'k-1' }, inheritEnvironment: true, endpoints: [endpoint], codeDir: '/code', ...over,
  };
}

t.test('endpointSpec: secret names go with the spec, only those the environment has', async (t) => {
  const spec = endpointSpec(version({ secretEnvironment: ['API_KEY', 'REMOVED'] }), endpoint);
  t.same(spec.secretEnv, ['API_KEY']);
  t.same(spec.env, { MODEL: 'small', API_KEY: 'k-1', VH_DEFAULT_PREFIX: '/acme/nlp/web/v1/predict' }, 'the values stay in env (the runtime decides how to pass them)');
  const inherited = endpointSpec(version({ secretEnvironment: ['constructor', 'toString'], environment: { toString: 's' } }), endpoint);
  t.same(inherited.secretEnv, ['toString'], 'a name Object.prototype has is not taken for one the environment has');
});

t.test('endpointSpec: without secrets the spec (and its hash, which restarts replicas) is what it was', async (t) => {
  const plain = endpointSpec(version(), endpoint);
  t.notOk('secretEnv' in plain, 'no secretEnv field');
  t.equal(endpointSpec(version({ secretEnvironment: [] }), endpoint).specHash, plain.specHash, 'an empty list changes nothing');
  t.not(endpointSpec(version({ secretEnvironment: ['API_KEY'] }), endpoint).specHash, plain.specHash, 'a secret changes how replicas get it: a new hash');
});

/** Replicas ready at once, except for the keys whose ensure or remove the API refuses. */
class RefusingRuntime implements Runtime {
  readonly kind = 'kubernetes' as const;
  readonly running = new Map<string, EndpointStatus>();
  readonly refused = new Set<string>();
  readonly #listeners = new Set<(s: EndpointStatus) => void>();

  async ensure(spec: EndpointSpec): Promise<void> {
    if (this.refused.has(spec.key)) throw new Error(`HTTP 403: admission webhook denied ${spec.key}`);
    const s: EndpointStatus = { key: spec.key, replicas: [{ id: `${spec.version}-0`, address: '10.0.0.1:8000', state: 'ready', restarts: 0 }] };
    this.running.set(spec.key, s);
    for (const l of this.#listeners) l(s);
  }
  async remove(key: string): Promise<void> {
    if (this.refused.has(key)) throw new Error(`HTTP 403: cannot delete ${key}`);
    this.running.delete(key);
  }
  async list(): Promise<EndpointStatus[]> {
    return [...this.running.values()];
  }
  onChange(listener: (s: EndpointStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  async close(): Promise<void> {}
}

const dep = { owner: 'acme', project: 'nlp', deployment: 'web' };
const key = (v: string) => `acme/nlp/web/${v}/predict`;

/**
 * A reconciler over a fresh embedded store holding deployment `web` (target `k8s`) with one
 * single-replica version per name, and a `RefusingRuntime`. `view` is the store as the reconciler
 * sees it (default: the store itself).
 */
async function reconcilerWith(t: Test, versions: readonly string[], view: (store: EmbeddedStore) => Store = (s) => s) {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-reconciler-test-'));
  const store = await EmbeddedStore.open({ dir: join(dataDir, 'store') });
  const routing = new EmbeddedRoutingTable();
  const runtime = new RefusingRuntime();
  const errors: unknown[] = [];
  const lost: StoreLostReport[] = [];
  const storeId = await store.initStoreId();
  const publisher = new Publisher(routing, { ackTimeoutMs: 100 });
  const reconciler = new Reconciler({ store: view(store), runtimes: new Map([['k8s', runtime]]), publisher, onError: (err) => errors.push(err), storeId, onStoreLost: (r) => lost.push(r) });
  t.teardown(async () => {
    await reconciler.close();
    await store.close();
    await routing.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await store.createDeployment({ owner: dep.owner, project: dep.project, name: dep.deployment, target: 'k8s', auth: 'none' });
  const one = { ...endpoint, replicas: 1 };
  for (const name of versions) {
    await store.createVersion({ ...dep, name, status: 'starting', enabled: true, source: { path: '/src' }, environment: {}, inheritEnvironment: true, endpoints: [one], codeDir: '/code' });
  }
  return { store, routing, publisher, runtime, reconciler, errors, lost, storeId };
}

t.test('a pass goes on past an endpoint its runtime refuses: the others are still ensured, removed and routed', async (t) => {
  const { store, routing, runtime, reconciler, errors, lost } = await reconcilerWith(t, ['v1', 'v2', 'v3']);
  // Left over from a deleted version, and the API refuses to delete it.
  runtime.running.set(key('gone'), { key: key('gone'), replicas: [] });
  runtime.refused.add(key('gone'));
  runtime.refused.add(key('v2'));

  await reconciler.trigger();
  t.ok(runtime.running.has(key('v1')) && runtime.running.has(key('v3')), 'the other versions run');
  for (const v of ['v1', 'v3']) {
    t.equal((await routing.getEndpoint(endpointKey({ ...dep, version: v, endpoint: 'predict' })))?.replicas.length, 1, `${v} is routed`);
    t.equal((await store.getVersion({ ...dep, version: v }))?.status, 'ready', `${v} is ready`);
  }
  t.match(errors.map(String), [/cannot delete/, /admission webhook denied/], 'each refusal reported');
  t.same(lost, []);
});

t.test('a store that lost its id (emptied, replaced) wants nothing: a pass removes nothing, says so, and keeps refusing', async (t) => {
  // The store as the reconciler sees it, whose id the test takes away and gives back.
  let id: string | null | undefined;
  const { store, runtime, reconciler, errors, lost, storeId } = await reconcilerWith(t, ['v1'], (store) => new Proxy(store, {
    get: (target, prop) => prop === 'getStoreId' && id !== undefined ? async () => id : (Reflect.get(target, prop, target) as (...a: unknown[]) => unknown).bind(target),
  }));
  runtime.running.set(key('gone'), { key: key('gone'), replicas: [] });
  await reconciler.trigger();
  t.same([...runtime.running.keys()].sort(), [key('v1')], 'the same store: what it does not name is removed');
  t.same(lost, []);

  // The store is emptied: here, the deployment goes with the id (what FLUSHALL does in one step).
  id = null;
  await store.deleteDeployment(dep);
  runtime.running.set(key('gone'), { key: key('gone'), replicas: [] });
  await reconciler.trigger();
  t.same([...runtime.running.keys()].sort(), [key('gone'), key('v1')], 'nothing removed');
  t.same(lost, [
    { expected: storeId, found: null, kept: [] },
    { expected: storeId, found: null, kept: [key('gone'), key('v1')] },
  ], 'said once, then which replicas were kept');
  t.ok(reconciler.storeLost());

  await reconciler.trigger();
  t.equal(lost.length, 2, 'an unchanged set of kept replicas is not said again');
  // The id coming back (a restore) does not make removals safe without a restart.
  id = storeId;
  await reconciler.trigger();
  t.same([...runtime.running.keys()].sort(), [key('gone'), key('v1')], 'still nothing removed');
  t.same(errors, []);
});

t.test('while a runtime cannot tell its replicas\' state, their routes and the version\'s status stay; then they follow it again', async (t) => {
  const { store, routing, publisher, runtime, reconciler } = await reconcilerWith(t, []);
  let unknown: string | undefined = 'kubernetes API unreachable: HTTP 503';
  Object.assign(runtime, { stateUnknown: () => unknown });
  const ref = { ...dep, version: 'v1', endpoint: 'predict' };
  await store.createVersion({ ...dep, name: 'v1', status: 'ready', enabled: true, source: { path: '/src' }, environment: {}, inheritEnvironment: true, endpoints: [{ ...endpoint, replicas: 1 }], codeDir: '/code' });
  const before = [{ id: 'pod-a', address: '10.0.0.9:8000' }];
  await publisher.putEndpoint({ ...ref, replicas: before, timeoutSeconds: null, maxBodyBytes: null });
  runtime.refused.add('acme/nlp/web/v1/predict'); // its ensure fails, as against an unreachable API

  await reconciler.trigger();
  t.same((await routing.getEndpoint(endpointKey(ref)))?.replicas, before, 'the route is kept');
  t.same(reconciler.status('acme/nlp/web/v1/predict', 'k8s'), { key: 'acme/nlp/web/v1/predict', replicas: [], error: unknown, unknown }, 'the status says why');
  const v = await store.getVersion({ ...dep, version: 'v1' });
  t.same([v?.status, v?.reason], ['ready', `endpoint predict: ${unknown}`], 'the version keeps its status, with the reason');

  unknown = undefined;
  runtime.refused.clear();
  await reconciler.trigger();
  t.same((await routing.getEndpoint(endpointKey(ref)))?.replicas, [{ id: 'v1-0', address: '10.0.0.1:8000' }], 'the route follows the runtime again');
  const after = await store.getVersion({ ...dep, version: 'v1' });
  t.same([after?.status, after?.reason], ['ready', undefined]);
});
