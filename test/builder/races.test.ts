// Interleavings of operator operations with reconciler passes and builds, over the real
// controller, reconciler, publisher and embedded store; the runtime is a fake whose calls a test
// can hold, so each interleaving is forced, not hoped for.
import t, { type Test } from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobStore } from '../../builder/build/blobs.ts';
import type { EndpointInput } from '../../builder/control-plane.ts';
import { Controller } from '../../builder/controller.ts';
import { Publisher } from '../../builder/publisher.ts';
import { Reconciler } from '../../builder/reconciler.ts';
import type { EndpointSpec, EndpointStatus, Runtime } from '../../builder/runtime/runtime.ts';
import { EmbeddedStore } from '../../builder/store/embedded.ts';
import { StoreUnavailableError, type VersionEndpoint } from '../../builder/store/store.ts';
import { LogStore } from '../../builder/telemetry/logs.ts';
import { loadConfig } from '../../common/config.ts';
import { deploymentKey, endpointKey, type RoutingTable } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { busyboxEntries, importRootfs } from '../helpers/base-image.ts';
import { startDockerd } from '../helpers/dockerd.ts';
import { processAlive, waitFor } from '../helpers/poll.ts';
import { dropBeforeNextApply, startRedis } from '../helpers/redis.ts';

const DEPLOYMENT = { owner: 'acme', project: 'mnist', deployment: 'web' } as const;

/** A promise a test resolves when it wants. */
function held(): { promise: Promise<void>; release: () => void } {
  let release!: () => void;
  const promise = new Promise<void>((r) => (release = r));
  return { promise, release };
}

type Method = (...args: never[]) => unknown;

/**
 * Holds the next call of `obj[name]` (after `skip` that go straight through) until `release()`;
 * `reached` resolves when that call comes. Later calls go straight through.
 */
function holdNextCall<O extends object>(obj: O, name: keyof O, skip = 0): { reached: Promise<void>; release: () => void } {
  const gate = held();
  const reached = held();
  const slot = obj as Record<keyof O, Method>;
  const original = slot[name];
  let left = skip;
  slot[name] = async (...args: never[]) => {
    if (left-- > 0) return original.apply(obj, args);
    slot[name] = original;
    reached.release();
    await gate.promise;
    return original.apply(obj, args);
  };
  return { reached: reached.promise, release: gate.release };
}

/** Resolves once the next call of `obj[name]` has returned (a synchronous method). */
function afterNextCall<O extends object>(obj: O, name: keyof O): Promise<void> {
  const done = held();
  const slot = obj as Record<keyof O, Method>;
  const original = slot[name];
  slot[name] = (...args: never[]) => {
    slot[name] = original;
    const result = original.apply(obj, args);
    done.release();
    return result;
  };
  return done.promise;
}

/** A runtime in memory: every ensured endpoint has its replicas ready at once. */
class FakeRuntime implements Runtime {
  readonly kind = 'local' as const;
  readonly running = new Map<string, EndpointStatus>();
  readonly listeners = new Set<(s: EndpointStatus) => void>();

  async ensure(spec: EndpointSpec): Promise<void> {
    const replicas = Array.from({ length: spec.replicas }, (_, i) => ({ id: `${spec.version}-${i}`, address: `127.0.0.1:${9000 + i}`, state: 'ready' as const, restarts: 0 }));
    const s: EndpointStatus = { key: spec.key, replicas };
    this.running.set(spec.key, s);
    for (const l of this.listeners) l(s);
  }
  async remove(key: string): Promise<void> {
    this.running.delete(key);
  }
  async list(): Promise<EndpointStatus[]> {
    return [...this.running.values()];
  }
  onChange(listener: (s: EndpointStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async close(): Promise<void> {}
}

/**
 * `ready` resolves once `op` has finished or waits for the reconciler's exclusion (which the pass
 * a test holds keeps), whichever comes first: the test then lets the pass go on.
 */
function settledOrWaiting(reconciler: Reconciler, op: Promise<void>): { ready: Promise<void>; done: Promise<void> } {
  const waiting = held();
  const exclusive = reconciler.exclusive.bind(reconciler);
  reconciler.exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    waiting.release();
    return exclusive(fn);
  };
  return { ready: Promise.race([op, waiting.promise]), done: op };
}

const endpoint: VersionEndpoint = {
  name: 'predict',
  definition: { name: 'predict', command: { kind: 'shell', command: 'serve' }, port: 8000 },
  replicas: 1,
  enabled: true,
  timeoutSeconds: null,
  maxBodyBytes: null,
  files: [],
};

async function harness<R extends RoutingTable = EmbeddedRoutingTable>(
  t: Test,
  routing: R = new EmbeddedRoutingTable() as RoutingTable as R,
  opts: { dockerSocket?: string; env?: Record<string, string> } = {},
) {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-races-test-'));
  const config = loadConfig({ PORTICO_DATA_DIR: dataDir, PORTICO_ADMIN_TOKEN: 'e'.repeat(40), ...opts.env });
  const store = await EmbeddedStore.open({ dir: join(dataDir, 'store') });
  const publisher = new Publisher(routing, { ackTimeoutMs: 100 });
  const runtime = new FakeRuntime();
  const errors: unknown[] = [];
  // With a docker engine, target `docker` builds images on it (its replicas run in a fake too).
  const docker = opts.dockerSocket ? { name: 'docker', kind: 'docker' as const, gatewayUrl: 'http://127.0.0.1:8080', runtime: new FakeRuntime(), docker: { socket: opts.dockerSocket, registry: undefined } } : null;
  const runtimes = new Map<string, Runtime>([['local', runtime], ...(docker ? [['docker', docker.runtime] as const] : [])]);
  const reconciler = new Reconciler({ store, runtimes, publisher, onError: (err) => errors.push(err), storeId: await store.initStoreId(), onStoreLost: (r) => errors.push(r) });
  const logs = new LogStore({ root: join(dataDir, 'logs'), maxBytes: 1 << 20 });
  await logs.init();
  /** A controller over the harness's store and data (a second one: the same after a restart). */
  const newController = (blobs = new BlobStore(join(dataDir, 'blobs'))) => new Controller({
    config, store, routing, publisher, reconciler, blobs, logs, log: () => undefined,
    targets: [{ name: 'local', kind: 'local', gatewayUrl: 'http://127.0.0.1:8080', runtime }, ...(docker ? [docker] : [])],
  });
  const controller = newController();
  t.teardown(async () => {
    await reconciler.close();
    await logs.close();
    await store.close();
    await routing.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await store.createDeployment({ owner: DEPLOYMENT.owner, project: DEPLOYMENT.project, name: DEPLOYMENT.deployment, target: 'local', auth: 'none' });
  /** A built version (as a finished build leaves it), not yet reconciled. */
  const builtVersion = (name: string) => store.createVersion({
    ...DEPLOYMENT, name, status: 'starting', enabled: true, source: { path: '/src' }, environment: {}, inheritEnvironment: true, endpoints: [endpoint], codeDir: join(dataDir, 'code'),
  });
  return { store, routing, publisher, runtime, reconciler, controller, errors, builtVersion, logs, dataDir, newController };
}

t.test('a version deleted while a reconciler pass is under way: no replicas, no route left behind', async (t) => {
  const { routing, runtime, reconciler, controller, builtVersion } = await harness(t);
  await builtVersion('v1');
  await reconciler.trigger();
  const key = endpointKey({ ...DEPLOYMENT, version: 'v1', endpoint: 'predict' });
  t.ok(await routing.getEndpoint(key), 'v1 is routed');
  t.ok(runtime.running.has('acme/mnist/web/v1/predict'), 'v1 runs');

  // A pass reads the versions (v1 among them), then waits in the runtime's list...
  const list = holdNextCall(runtime, 'list');
  const pass = reconciler.trigger();
  await list.reached;
  // ...while v1 is deleted; then the pass goes on with what it read.
  const deleted = settledOrWaiting(reconciler, controller.deleteVersion({ ...DEPLOYMENT, version: 'v1' }, 'admin'));
  await deleted.ready;
  list.release();
  await Promise.all([pass, deleted.done]);

  t.equal(await routing.getEndpoint(key), null, 'no route of the deleted version is published again');
  t.notOk(runtime.running.has('acme/mnist/web/v1/predict'), 'no replica of the deleted version runs');
});

t.test('a deployment deleted while a reconciler pass is under way: no replicas, no route left behind', async (t) => {
  const { routing, runtime, reconciler, controller, builtVersion } = await harness(t);
  await builtVersion('v1');
  await reconciler.trigger();
  const key = endpointKey({ ...DEPLOYMENT, version: 'v1', endpoint: 'predict' });
  t.ok(await routing.getEndpoint(key), 'v1 is routed');

  const list = holdNextCall(runtime, 'list');
  const pass = reconciler.trigger();
  await list.reached;
  const deleted = settledOrWaiting(reconciler, controller.deleteDeployment(DEPLOYMENT, 'admin'));
  await deleted.ready;
  list.release();
  await Promise.all([pass, deleted.done]);

  t.equal(await routing.getEndpoint(key), null, 'no route of the deleted deployment is published again');
  t.notOk(runtime.running.has('acme/mnist/web/v1/predict'), 'no replica of the deleted deployment runs');
});

t.test('a version deleted as its build finishes: the replicas and routes the build brought go too', async (t) => {
  const { store, routing, runtime, reconciler, controller, builtVersion } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  const built = await builtVersion('v1');
  // v1 as the delete first reads it: still building, no endpoints yet.
  await store.updateVersion(ref, (draft) => {
    draft.status = 'building';
    draft.endpoints = [];
    delete draft.codeDir;
  });
  // The delete is held after that read (at its alias check)...
  const aliases = holdNextCall(store, 'listAliases');
  const deleted = controller.deleteVersion(ref, 'admin');
  await aliases.reached;
  // ...while the build finishes (as `build` does: the store, then a pass).
  await store.updateVersion(ref, (draft) => {
    draft.endpoints = built.endpoints;
    if (built.codeDir !== undefined) draft.codeDir = built.codeDir;
    draft.status = 'starting';
  });
  await reconciler.trigger();
  const key = endpointKey({ ...ref, endpoint: 'predict' });
  t.ok(await routing.getEndpoint(key), 'the pass routed v1');
  aliases.release();
  await deleted;

  t.equal(await store.getVersion(ref), null, 'v1 is gone');
  t.equal(await routing.getEndpoint(key), null, 'and so is its route');
  t.notOk(runtime.running.has('acme/mnist/web/v1/predict'), 'and its replica');
});

t.test('two alias PUTs at once: the gateway ends with what the store has, not the older of the two', async (t) => {
  const { store, routing, controller, builtVersion } = await harness(t);
  await builtVersion('v1');
  await builtVersion('v2');
  // The first PUT is held while it reads the deployment's record to publish (after its aliases)...
  const users = holdNextCall(store, 'getUserHashes');
  const first = controller.setAlias(DEPLOYMENT, 'production', { version: 'v1' }, { force: true }, 'admin');
  await users.reached;
  // ...while a second PUT moves the alias on (and returns, or waits for the first to publish).
  const second = controller.setAlias(DEPLOYMENT, 'production', { version: 'v2' }, { force: true }, 'admin');
  await waitFor(async () => (await store.listAudit()).items.some((e) => e.action === 'alias.set' && (e.details as { to?: { version?: string } }).to?.version === 'v2'), { what: 'the second PUT to be recorded' });
  users.release();
  await Promise.all([first, second]);

  t.same(await store.getAlias(DEPLOYMENT, 'production'), { name: 'production', version: 'v2' }, 'the store has the later PUT');
  t.same((await routing.getDeployment(deploymentKey(DEPLOYMENT)))?.aliases, { production: { version: 'v2' } }, 'and so does the routing table');
});

t.test('a deployment deleted while an alias PUT publishes it: the gateways do not get it back', async (t) => {
  const { store, routing, controller, builtVersion } = await harness(t);
  await builtVersion('v1');
  await controller.setAlias(DEPLOYMENT, 'production', { version: 'v1' }, { force: true }, 'admin');
  t.ok(await routing.getDeployment(deploymentKey(DEPLOYMENT)), 'the deployment is routed');
  // The PUT is held while it reads the deployment's record to publish...
  const users = holdNextCall(store, 'getUserHashes');
  const put = controller.setAlias(DEPLOYMENT, 'staging', { version: 'v1' }, { force: true }, 'admin');
  await users.reached;
  // ...while the deployment is deleted.
  const deleted = controller.deleteDeployment(DEPLOYMENT, 'admin');
  await waitFor(async () => (await store.getDeployment(DEPLOYMENT)) === null, { what: 'the deployment to leave the store' });
  users.release();
  await Promise.all([put, deleted]);

  t.equal(await routing.getDeployment(deploymentKey(DEPLOYMENT)), null, 'no record of the deleted deployment is routed');
});

t.test('a version stopped and started while it builds: still building, and built again after a restart', async (t) => {
  const { store, controller, builtVersion } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await builtVersion('v1');
  // v1 as a build under way leaves it (the build itself is not run here).
  await store.updateVersion(ref, (draft) => {
    draft.status = 'building';
    draft.endpoints = [];
    delete draft.codeDir;
  });
  const stopped = await controller.patchVersion(ref, { enabled: false }, 'admin');
  t.match(stopped, { enabled: false });
  t.equal((await store.getVersion(ref))?.status, 'building', 'stopping it does not hide that its build runs');
  const started = await controller.patchVersion(ref, { enabled: true }, 'admin');
  t.match(started, { status: 'building', enabled: true }, 'started again: building, not failed');

  await controller.patchVersion(ref, { enabled: false }, 'admin');
  // A controller restarted now builds it again, as every unfinished build.
  await controller.resumeBuilds();
  t.ok((await controller.buildLog(ref)).some((l) => l.line === 'controller restarted: building again'), 'the build is resumed');
  await waitFor(async () => (await store.getVersion(ref))?.status === 'failed', { what: 'the resumed build to fail (its source does not exist)' });
});

/**
 * Creates version v1 of endpoint `predict` (`endpoint` as its request) with file `model` given,
 * on a controller of its own whose storing of that file never ends; resolves once it is there.
 */
async function buildHeldAtFile(dataDir: string, newController: (blobs: BlobStore) => Controller, endpoint: EndpointInput = {}): Promise<void> {
  const code = join(dataDir, 'src');
  await mkdir(code);
  await writeFile(join(code, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: python:3.12\n    server-command: serve\n    files:\n      - name: model\n        path: model.bin\n');
  await writeFile(join(dataDir, 'model.bin'), 'weights');
  const blobs = new BlobStore(join(dataDir, 'blobs'));
  const held = holdNextCall(blobs, 'put');
  const predict = { ...endpoint, files: { model: { path: join(dataDir, 'model.bin') } } };
  await newController(blobs).createVersion(DEPLOYMENT, { name: 'v1', source: { path: code }, endpoints: { predict } }, 'admin');
  await held.reached;
}

t.test('a build resumed after a restart builds what was asked: the files given and the replicas', async (t) => {
  const { store, dataDir, newController } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  // The first controller's build is held where it stores the file given: the process dies there.
  await buildHeldAtFile(dataDir, newController, { replicas: 3, timeoutSeconds: 7 });

  const restarted = newController();
  await restarted.resumeBuilds();
  await waitFor(async () => (await store.getVersion(ref))?.status !== 'building', { what: 'the resumed build to end' });
  const v = await store.getVersion(ref);
  t.not(v?.status, 'failed', `not failed: ${v?.reason ?? ''}`);
  t.match(v?.endpoints, [{ name: 'predict', replicas: 3, timeoutSeconds: 7, files: [{ name: 'model', size: 7 }] }], 'the replicas, timeout and file asked for');
});

/**
 * Starts building version v1 of a code folder with a requirements.txt, on a `python3` (first on
 * PATH) whose venv is made at once and whose pip never ends (as one waiting on an index);
 * resolves with pip's pid once it runs.
 */
async function buildWithHangingPip(t: Test, dataDir: string, controller: Controller): Promise<number> {
  const bin = join(dataDir, 'bin');
  const pidFile = join(dataDir, 'pip.pid');
  await mkdir(bin);
  await writeFile(join(bin, 'python3'), [
    '#!/bin/sh',
    'case "$*" in',
    '  "-m pip --version") echo "pip 0 (fake)" ;;',
    '  "-c import venv, ensurepip") ;;',
    '  "-m venv --clear "*) mkdir -p "$4/bin" && cp "$0" "$4/bin/python" ;;',
    `  *) echo $$ > '${pidFile}'; exec sleep 600 ;;`,
    'esac',
    '',
  ].join('\n'), { mode: 0o755 });
  const path = process.env['PATH'];
  process.env['PATH'] = `${bin}:${path ?? ''}`;
  let pid = 0;
  t.teardown(() => {
    process.env['PATH'] = path;
    if (pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
  });
  const code = join(dataDir, 'src');
  await mkdir(code);
  await writeFile(join(code, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: python:3.12\n    server-command: serve\n');
  await writeFile(join(code, 'requirements.txt'), 'porticodep==0.1.0\n');
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: code } }, 'admin');
  pid = await waitFor(async () => Number(await readFile(pidFile, 'utf8')) || undefined, { what: 'pip to start' });
  return pid;
}

t.test('a build that times out is stopped: pip is killed, not left running after the version failed', async (t) => {
  const { store, dataDir, controller } = await harness(t, undefined, { env: { PORTICO_BUILD_TIMEOUT_SECONDS: '1' } });
  const pid = await buildWithHangingPip(t, dataDir, controller);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await waitFor(async () => (await store.getVersion(ref))?.status === 'failed', { what: 'the build to time out' });
  t.match(await store.getVersion(ref), { reason: /timed out after 1 s/ });
  t.notOk(processAlive(pid), 'pip is gone once the version shows failed');
});

t.test('a build that times out in a step that cannot be stopped fails all the same, soon after', async (t) => {
  const { store, dataDir, newController } = await harness(t, undefined, { env: { PORTICO_BUILD_TIMEOUT_SECONDS: '1' } });
  const ref = { ...DEPLOYMENT, version: 'v1' };
  // Storing the file never ends, whatever the abort.
  await buildHeldAtFile(dataDir, newController);
  await waitFor(async () => (await store.getVersion(ref))?.status === 'failed', { what: 'the build to be given up on', timeoutMs: 20_000 });
  t.match(await store.getVersion(ref), { reason: /timed out after 1 s/ });
});

t.test('a version deleted while it builds: its build is stopped, pip killed', async (t) => {
  const { store, dataDir, controller, logs } = await harness(t);
  const pid = await buildWithHangingPip(t, dataDir, controller);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  const ended = afterNextCall(logs, 'end');
  await controller.deleteVersion(ref, 'admin');
  await waitFor(() => !processAlive(pid), { what: 'pip to be killed', timeoutMs: 5000 });
  await ended;
  t.equal(await store.getVersion(ref), null, 'the version is gone');
});

t.test('a version deleted while it builds: a new version of its name starts with an empty build log', async (t) => {
  const { store, controller, logs } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  // The build is held where it resolves its upload (the create's own check passes)...
  const { id } = await controller.createUpload(Readable.from(['an archive']), 'admin');
  const upload = holdNextCall(store, 'getUpload', 1);
  const ended = afterNextCall(logs, 'end');
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { upload: id } }, 'admin');
  await upload.reached;
  // ...while the version and the upload are deleted; then it goes on to its end (it fails: no
  // such upload).
  await controller.deleteVersion(ref, 'admin');
  await store.deleteUpload(id);
  upload.release();
  await ended;

  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent' } }, 'admin');
  await waitFor(async () => (await store.getVersion(ref))?.status === 'failed', { what: 'the new build to fail' });
  const lines = (await controller.buildLog(ref)).map((l) => l.line);
  t.notOk(lines.some((l) => l.includes(id)), `no line of the deleted version's build: ${JSON.stringify(lines)}`);
});

t.test('a version deleted while it builds and created again: the old build does not write into the new one', async (t) => {
  const { store, controller, logs } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  const { id } = await controller.createUpload(Readable.from(['an archive']), 'admin');
  const upload = holdNextCall(store, 'getUpload', 1);
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { upload: id } }, 'admin');
  await upload.reached;
  await controller.deleteVersion(ref, 'admin');
  await store.deleteUpload(id);
  // A new v1, whose build ends first...
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent' } }, 'admin');
  await waitFor(async () => (await store.getVersion(ref))?.status === 'failed', { what: 'the new build to fail' });
  // ...then the old build ends.
  const ended = afterNextCall(logs, 'end');
  upload.release();
  await ended;
  t.match(await store.getVersion(ref), { status: 'failed', reason: /source\.path/ }, 'the new v1 keeps its own outcome');
  const lines = (await controller.buildLog(ref)).map((l) => l.line);
  t.notOk(lines.some((l) => l.includes(id)), `no line of the deleted version's build: ${JSON.stringify(lines)}`);
});

t.test('a version deleted while its image builds: the image it was building does not stay on the engine', async (t) => {
  const engine = await startDockerd();
  t.teardown(() => engine.stop());
  // A "python" whose pip takes a while: the version is deleted while the image build runs it.
  await importRootfs(engine.docker, 'portico-test/slowpip:1', [
    ...busyboxEntries(),
    { type: 'data', path: 'usr/bin/python3', mode: 0o755, data: '#!/bin/sh\necho "installing"\nsleep 3\n' },
  ]);
  const { store, controller, logs, dataDir } = await harness(t, undefined, { dockerSocket: engine.socket });
  await store.createDeployment({ owner: DEPLOYMENT.owner, project: DEPLOYMENT.project, name: 'edge', target: 'docker', auth: 'none' });
  const ref = { ...DEPLOYMENT, deployment: 'edge', version: 'v1' };
  const src = join(dataDir, 'src');
  await mkdir(src);
  await writeFile(join(src, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: portico-test/slowpip:1\n    port: 8000\n    server-command: httpd -f -p $PORT\n');
  await writeFile(join(src, 'requirements.txt'), 'numpy\n');
  const ended = afterNextCall(logs, 'end');
  await controller.createVersion(ref, { name: 'v1', source: { path: src } }, 'admin');
  await waitFor(async () => (await controller.buildLog(ref)).some((l) => l.line === 'installing'), { what: 'the image build at its pip step', timeoutMs: 30_000 });
  await controller.deleteVersion(ref, 'admin');
  await ended;
  const label = { filters: { label: ['portico.managed=true', 'portico.deployment=edge', 'portico.version=v1'] } };
  t.same(await engine.docker.listImages(label), [], 'no image of the deleted version is left');
  t.equal(await store.getVersion(ref), null);
});

t.test('PORTICO_BUILD_TIMEOUT_SECONDS bounds the whole build: the image build gets only what the code build left', async (t) => {
  const engine = await startDockerd();
  t.teardown(() => engine.stop());
  // An image build of about 2 s (its pip), after a code build of about 4 s (a model file served
  // slowly): alone, each fits the 6 s limit; together they do not.
  await importRootfs(engine.docker, 'portico-test/slowpip:2', [
    ...busyboxEntries(),
    { type: 'data', path: 'usr/bin/python3', mode: 0o755, data: '#!/bin/sh\necho "installing"\nsleep 2\n' },
  ]);
  const files = createServer((_req, res) => {
    setTimeout(() => res.end('weights'), 4000);
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  t.teardown(() => files.close());
  const { store, controller, dataDir } = await harness(t, undefined, { dockerSocket: engine.socket, env: { PORTICO_BUILD_TIMEOUT_SECONDS: '6' } });
  await store.createDeployment({ owner: DEPLOYMENT.owner, project: DEPLOYMENT.project, name: 'edge', target: 'docker', auth: 'none' });
  const src = join(dataDir, 'src');
  await mkdir(src);
  await writeFile(join(src, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: portico-test/slowpip:2\n    port: 8000\n    server-command: httpd -f -p $PORT\n    files:\n      - name: model\n        path: model.bin\n');
  await writeFile(join(src, 'requirements.txt'), 'numpy\n');
  const model = { url: `http://127.0.0.1:${(files.address() as AddressInfo).port}/model.bin` };
  const ref = { ...DEPLOYMENT, deployment: 'edge', version: 'v1' };
  await controller.createVersion(ref, { name: 'v1', source: { path: src }, endpoints: { predict: { files: { model } } } }, 'admin');
  await waitFor(async () => (await store.getVersion(ref))?.status !== 'building', { what: 'the build to end', timeoutMs: 60_000 });
  const v = await store.getVersion(ref);
  t.equal(v?.status, 'failed', 'over the limit in all: failed');
  t.match(v?.reason, /image build timed out/);
  t.same(await engine.docker.listImages({ filters: { label: ['portico.managed=true', 'portico.deployment=edge'] } }), [], 'no image left');
});

t.test('a version and a deployment deleted while Redis went away before their routes were: the routes go once it is back', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const table = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 1000 });
  t.ok(await table.whenAvailable(5000), 'connected');
  const { routing, reconciler, controller, builtVersion } = await harness(t, table);
  for (const name of ['v1', 'v2']) await builtVersion(name);
  await reconciler.trigger();
  const key = (version: string) => endpointKey({ ...DEPLOYMENT, version, endpoint: 'predict' });
  t.ok((await routing.getEndpoint(key('v1'))) && (await routing.getEndpoint(key('v2'))), 'both versions are routed');

  // Each delete finds the routing table's connection gone after the store's write: refused (503).
  dropBeforeNextApply(routing, redis.url);
  await t.rejects(controller.deleteVersion({ ...DEPLOYMENT, version: 'v1' }, 'admin'));
  await waitFor(() => routing.isAvailable(), { what: 'the table back' });
  await waitFor(async () => (await routing.getEndpoint(key('v1'))) === null, { what: 'the deleted version unrouted' });
  await controller.setAlias(DEPLOYMENT, 'production', { version: 'v2' }, {}, 'admin');
  dropBeforeNextApply(routing, redis.url);
  await t.rejects(controller.deleteDeployment(DEPLOYMENT, 'admin'));
  await waitFor(async () => (await routing.getDeployment(deploymentKey(DEPLOYMENT))) === null && (await routing.getEndpoint(key('v2'))) === null, { what: 'the deleted deployment unrouted' });
});

t.test('a version and a deployment deleted while the runtime does not answer: the deletes succeed, the reconciler stops the replicas later', async (t) => {
  const { routing, runtime, reconciler, controller, builtVersion } = await harness(t);
  await builtVersion('v1');
  await builtVersion('v2');
  await reconciler.trigger();
  t.ok(runtime.running.has('acme/mnist/web/v1/predict') && runtime.running.has('acme/mnist/web/v2/predict'), 'both run');
  // The engine or cluster is down: every remove fails.
  const remove = runtime.remove.bind(runtime);
  runtime.remove = () => Promise.reject(new Error('connect ENOENT /var/run/docker.sock'));

  await controller.deleteVersion({ ...DEPLOYMENT, version: 'v1' }, 'admin');
  t.equal(await routing.getEndpoint(endpointKey({ ...DEPLOYMENT, version: 'v1', endpoint: 'predict' })), null, 'v1 is no longer routed');
  t.equal((await controller.audit({}))[0]?.action, 'version.delete', 'the delete is in the audit log');
  await controller.deleteDeployment(DEPLOYMENT, 'admin');
  t.equal((await controller.audit({}))[0]?.action, 'deployment.delete', 'so is the deployment delete');
  t.equal(await routing.getDeployment(deploymentKey(DEPLOYMENT)), null, 'the deployment is no longer routed');

  // The runtime answers again: the next pass stops what no record wants.
  runtime.remove = remove;
  await reconciler.trigger();
  t.same([...runtime.running.keys()], [], 'no replica of the deleted version or deployment runs');
});

t.test('a version whose audit entry cannot be written (the store failing right then) still builds: it does not stay building', async (t) => {
  const { store, controller } = await harness(t);
  const ref = { ...DEPLOYMENT, version: 'v1' };
  // Redis goes away between the version's write and its audit entry's.
  const appendAudit = store.appendAudit.bind(store);
  store.appendAudit = () => Promise.reject(new StoreUnavailableError('Redis connection lost'));
  await t.rejects(controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent-portico-source' } }, 'admin'), StoreUnavailableError, 'the request is refused (503)');
  store.appendAudit = appendAudit;
  t.equal((await store.getVersion(ref))?.status, 'building', 'the version was stored');
  await waitFor(async () => (await store.getVersion(ref))?.status !== 'building', { what: 'its build to run and end' });
  t.match(await store.getVersion(ref), { status: 'failed', reason: /nonexistent-portico-source/ }, 'built (and failed: its source does not exist), not left building until a restart');
});
