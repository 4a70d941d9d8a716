import t, { type Test } from 'tap';
import { KubernetesRuntime, type KubernetesRuntimeOptions } from '../../../builder/runtime/kubernetes.ts';
import { ANNOTATIONS } from '../../../builder/runtime/kubernetes/manifests.ts';
import { endpointId, resourceName } from '../../../builder/runtime/kubernetes/names.ts';
import type { EndpointSpec, EndpointStatus } from '../../../builder/runtime/runtime.ts';
import { FakeKubeApi, validateManifest, type KubeObj } from '../../helpers/fake-kube-api.ts';
import { waitFor } from '../../helpers/poll.ts';

interface LogEntry {
  key: string;
  replica: string;
  stream: string;
  line: string;
  at: number;
}

interface Harness {
  fake: FakeKubeApi;
  runtime: KubernetesRuntime;
  /** Ordered: `beforeStop:<ids>` and `status:<key>:<replica states>`. */
  events: string[];
  logs: LogEntry[];
  statuses: EndpointStatus[];
  /** What `beforeStop` does after being recorded. */
  beforeStop: (key: string, ids: readonly string[]) => Promise<void>;
  spec(over?: Partial<EndpointSpec>): EndpointSpec;
  status(key: string): Promise<EndpointStatus | undefined>;
  waitStatus(key: string, what: string, pred: (s: EndpointStatus) => boolean, timeoutMs?: number): Promise<EndpointStatus>;
  /** Pods of an endpoint in the fake, oldest first. */
  pods(spec: EndpointSpec, opts?: { live?: boolean }): KubeObj[];
  /** Closes the runtime and starts another on the same fake (a controller restart). */
  reopen(): Promise<KubernetesRuntime>;
  /** Ensures a spec of one replica and makes its pod ready. */
  oneReady(): Promise<{ spec: EndpointSpec; pod: KubeObj }>;
}

const NS = 'portico-acme-mnist';
let counter = 0;

async function setup(t: Test, over: Partial<KubernetesRuntimeOptions> = {}): Promise<Harness> {
  const fake = await FakeKubeApi.start();
  const events: string[] = [];
  const logs: LogEntry[] = [];
  const statuses: EndpointStatus[] = [];
  const make = () => {
    const rt = new KubernetesRuntime({
      kubeConfig: fake.kubeConfig(),
      namespaceTemplate: 'portico-{owner}-{project}',
      stopGraceSeconds: 5,
      preStopSeconds: 10,
      ...over,
      hooks: {
        beforeStop: async (key, ids) => {
          events.push(`beforeStop:${[...ids].sort().join(',')}`);
          await h.beforeStop(key, ids);
        },
        logs: { write: (e) => void logs.push({ ...e }) },
      },
    });
    rt.onChange((s) => {
      statuses.push(s);
      events.push(`status:${s.key}:${s.replicas.map((r) => r.state).join(',')}`);
    });
    return rt;
  };
  const h: Harness = {
    fake,
    runtime: make(),
    events,
    logs,
    statuses,
    beforeStop: async () => {},
    spec(o = {}) {
      const version = o.version ?? `2024010${++counter}.0`;
      const key = `acme/mnist/web/${version}/predict`;
      return {
        key,
        owner: 'acme',
        project: 'mnist',
        deployment: 'web',
        version,
        endpoint: 'predict',
        replicas: 1,
        codeDir: '/unused',
        image: 'registry.example/acme/mnist:abc',
        command: { kind: 'exec', argv: ['python', 'serve.py', '--port', '$PORT'] },
        port: 8000,
        env: { VH_DEFAULT_PREFIX: `/${key}` },
        specHash: 'h1',
        ...o,
      };
    },
    async status(key) {
      return (await h.runtime.list()).find((s) => s.key === key);
    },
    waitStatus(key, what, pred, timeoutMs = 5000) {
      return waitFor(async () => {
        const s = await h.status(key);
        return s && pred(s) ? s : undefined;
      }, { what, timeoutMs });
    },
    pods(spec, opts = {}) {
      return fake
        .list('pods', NS, `portico.io/endpoint-id=${endpointId(spec.key)}`)
        .filter((p) => !opts.live || p.metadata.deletionTimestamp === undefined)
        .sort((a, b) => (a.metadata.creationTimestamp! < b.metadata.creationTimestamp! ? -1 : a.metadata.creationTimestamp! > b.metadata.creationTimestamp! ? 1 : a.metadata.name < b.metadata.name ? -1 : 1));
    },
    async reopen() {
      await h.runtime.close();
      h.runtime = make();
      return h.runtime;
    },
    async oneReady() {
      const spec = h.spec({ replicas: 1 });
      await h.runtime.ensure(spec);
      const pod = await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
      h.fake.setReady(NS, pod.metadata.name, true);
      await h.waitStatus(spec.key, 'ready', (s) => readyCount(s) === 1);
      return { spec, pod };
    },
  };
  t.teardown(async () => {
    await h.runtime.close();
    await fake.close();
  });
  return h;
}

const states = (s: EndpointStatus) => s.replicas.map((r) => r.state).sort().join(',');
const readyCount = (s: EndpointStatus) => s.replicas.filter((r) => r.state === 'ready').length;

t.test('ensure creates the namespace, NetworkPolicy, headless Service, Deployment and PDB', async (t) => {
  const h = await setup(t, { gatewaySelector: { namespaceLabels: { team: 'edge' }, podLabels: { app: 'gw' } } });
  const spec = h.spec({
    replicas: 2,
    resources: { cpu: { min: 0.5, max: 2 }, memory: { min: 512, max: 1024 }, devices: { 'nvidia.com/gpu': 1 } },
    nodeSelector: 'cloud.google.com/gke-accelerator=nvidia-tesla-t4',
    tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
    env: { VH_DEFAULT_PREFIX: '/x', MODEL: 'cnn' },
  });
  await h.runtime.ensure(spec);
  const name = resourceName(spec.key);

  const ns = h.fake.get('namespaces', undefined, NS);
  t.ok(ns, 'namespace created');
  t.same(ns?.metadata.labels, { 'app.kubernetes.io/managed-by': 'portico', 'portico.io/owner': 'acme', 'portico.io/project': 'mnist' });
  const nsRequests = h.fake.requests.filter((r) => r.resource === 'namespaces');
  t.same(nsRequests.map((r) => `${r.verb}:${r.status}`), ['get:404', 'create:201'], 'looked up, then created');

  const policy = h.fake.get('networkpolicies', NS, 'portico-replicas')!;
  t.same(policy['spec'], {
    podSelector: { matchLabels: { 'app.kubernetes.io/managed-by': 'portico' } },
    policyTypes: ['Ingress'],
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'edge' } }, podSelector: { matchLabels: { app: 'gw' } } }] }],
  }, 'only the gateway pods may reach replicas');

  const svc = h.fake.get('services', NS, name)!;
  t.same(svc['spec'], {
    clusterIP: 'None',
    selector: { 'portico.io/endpoint-id': endpointId(spec.key) },
    ports: [{ name: 'http', port: 8000, targetPort: 8000, protocol: 'TCP' }],
    publishNotReadyAddresses: false,
  });

  const dep = h.fake.get('deployments', NS, name)!;
  const labels = {
    'app.kubernetes.io/managed-by': 'portico',
    'portico.io/owner': 'acme',
    'portico.io/project': 'mnist',
    'portico.io/deployment': 'web',
    'portico.io/version': spec.version,
    'portico.io/endpoint': 'predict',
    'portico.io/endpoint-id': endpointId(spec.key),
  };
  t.same(dep.metadata.labels, labels, 'owner labels');
  t.equal(dep.metadata.annotations?.[ANNOTATIONS.key], spec.key);
  t.equal(dep.metadata.annotations?.[ANNOTATIONS.specHash], 'h1');
  const dspec = dep['spec'] as {
    replicas: number;
    strategy: unknown;
    selector: unknown;
    template: { metadata: { labels: unknown; annotations: Record<string, string> }; spec: Record<string, unknown> & { containers: Record<string, unknown>[] } };
  };
  t.equal(dspec.replicas, 2);
  t.same(dspec.selector, { matchLabels: { 'portico.io/endpoint-id': endpointId(spec.key) } });
  t.same(dspec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }, 'rollouts never drop capacity');
  t.same(dspec.template.metadata.labels, labels);
  t.equal(dspec.template.metadata.annotations[ANNOTATIONS.specHash], 'h1', 'spec hash on the template: a change rolls');
  t.equal(dspec.template.spec['terminationGracePeriodSeconds'], 15, 'preStop 10 s + grace 5 s');
  t.same(dspec.template.spec['nodeSelector'], { 'cloud.google.com/gke-accelerator': 'nvidia-tesla-t4' });
  t.same(dspec.template.spec['tolerations'], [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  t.equal(dspec.template.spec['automountServiceAccountToken'], false);
  const c = dspec.template.spec.containers[0]!;
  t.equal(c['name'], 'app');
  t.equal(c['image'], 'registry.example/acme/mnist:abc');
  t.same(c['command'], ['python']);
  t.same(c['args'], ['serve.py', '--port', '8000'], '$PORT substituted with the declared port');
  t.same(c['env'], [
    { name: 'HOST', value: '0.0.0.0' },
    { name: 'MODEL', value: 'cnn' },
    { name: 'PORT', value: '8000' },
    { name: 'PYTHONUNBUFFERED', value: '1' },
    { name: 'VH_DEFAULT_PREFIX', value: '/x' },
  ]);
  t.same(c['ports'], [{ name: 'http', containerPort: 8000, protocol: 'TCP' }]);
  t.same(c['readinessProbe'], { tcpSocket: { port: 8000 }, periodSeconds: 2, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 2 });
  t.same(c['lifecycle'], { preStop: { exec: { command: ['sleep', '10'] } } });
  t.same(c['resources'], {
    requests: { cpu: '500m', memory: '512Mi' },
    limits: { cpu: '2', memory: '1024Mi', 'nvidia.com/gpu': '1' },
  }, 'min -> requests, max -> limits, devices -> limits');

  const pdb = h.fake.get('poddisruptionbudgets', NS, name)!;
  t.same(pdb['spec'], { selector: { matchLabels: { 'portico.io/endpoint-id': endpointId(spec.key) } }, minAvailable: 1 });

  for (const w of h.fake.writes().filter((r) => r.method === 'PATCH')) {
    t.equal(w.contentType, 'application/apply-patch+yaml', `${w.resource}: server-side apply`);
    t.same([w.query['fieldManager'], w.query['force'], w.query['fieldValidation']], ['portico', 'true', 'Strict']);
    t.same(validateManifest(w.body), [], `${w.resource}: valid, no unknown fields`);
  }
  t.same(h.fake.writes().map((r) => `${r.verb}:${r.resource}`), [
    'create:namespaces',
    'patch:networkpolicies',
    'patch:services',
    'patch:deployments',
    'patch:poddisruptionbudgets',
  ], 'namespace first, Service before Deployment, nothing else written');
});

t.test('registry credentials: a pull Secret per namespace, named by every Deployment, applied once', async (t) => {
  const auth = { username: 'puller', password: 'pull-token', serveraddress: 'registry.example:5000' };
  const h = await setup(t, { imagePullAuth: auth });
  const a = h.spec({ replicas: 1 });
  const b = h.spec({ replicas: 1 }); // another version of the same project: the same namespace
  await h.runtime.ensure(a);
  await h.runtime.ensure(b);

  const secret = h.fake.get('secrets', NS, 'portico-registry')!;
  t.ok(secret, 'the namespace has the pull Secret');
  t.equal(secret['type'], 'kubernetes.io/dockerconfigjson');
  t.same(secret.metadata.labels, { 'app.kubernetes.io/managed-by': 'portico' });
  t.notOk(secret.metadata.annotations?.[ANNOTATIONS.manifestHash], 'no hash of the credentials is written');
  const config = JSON.parse(Buffer.from((secret['data'] as Record<string, string>)['.dockerconfigjson']!, 'base64').toString()) as unknown;
  t.same(config, { auths: { 'registry.example:5000': { username: 'puller', password: 'pull-token', auth: Buffer.from('puller:pull-token').toString('base64') } } });
  for (const spec of [a, b]) {
    const dep = h.fake.get('deployments', NS, resourceName(spec.key))!;
    t.same((dep['spec'] as { template: { spec: { imagePullSecrets?: unknown } } }).template.spec.imagePullSecrets, [{ name: 'portico-registry' }], `${spec.key} pulls with it`);
  }
  const secretWrites = h.fake.writes().filter((r) => r.resource === 'secrets');
  t.same(secretWrites.map((r) => r.verb), ['patch'], 'applied once for the namespace, not per endpoint');
  for (const w of secretWrites) t.same(validateManifest(w.body), [], 'a valid Secret');
});

t.test('without registry credentials no Secret is written and pods name none', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  t.same(h.fake.list('secrets'), []);
  const dep = h.fake.get('deployments', NS, resourceName(spec.key))!;
  t.equal((dep['spec'] as { template: { spec: { imagePullSecrets?: unknown } } }).template.spec.imagePullSecrets, undefined);
});

t.test('secret environment: values in a Secret the Deployment refers to, never in the Deployment; deleted with the endpoint', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1, env: { VH_DEFAULT_PREFIX: '/x', MODEL: 'cnn', API_KEY: 'sk-live-0123456789', DB_PASSWORD: 'hunter2-hunter2' }, secretEnv: ['API_KEY', 'DB_PASSWORD'] });
  await h.runtime.ensure(spec);
  const name = resourceName(spec.key);
  const secret = h.fake.get('secrets', NS, name)!;
  t.ok(secret, 'a Secret named like the Deployment');
  t.equal(secret['type'], 'Opaque');
  t.equal(secret.metadata.labels?.['portico.io/endpoint-id'], endpointId(spec.key), 'labelled as the endpoint\'s');
  t.notOk(secret.metadata.annotations?.[ANNOTATIONS.manifestHash], 'no hash of the values is written');
  const data = Object.fromEntries(Object.entries(secret['data'] as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  t.same(data, { API_KEY: 'sk-live-0123456789', DB_PASSWORD: 'hunter2-hunter2' }, 'exactly the secret values');
  const dep = h.fake.get('deployments', NS, name)!;
  const text = JSON.stringify(dep);
  t.notOk(text.includes('sk-live-0123456789') || text.includes('hunter2-hunter2'), 'no secret value in the Deployment');
  const env = (dep['spec'] as { template: { spec: { containers: { env: { name: string; value?: string; valueFrom?: unknown }[] }[] } } }).template.spec.containers[0]!.env;
  t.same(env.find((e) => e.name === 'API_KEY'), { name: 'API_KEY', valueFrom: { secretKeyRef: { name, key: 'API_KEY' } } });
  t.same(env.find((e) => e.name === 'MODEL'), { name: 'MODEL', value: 'cnn' }, 'the others as values');
  const order = h.fake.writes().filter((r) => r.resource === 'secrets' || r.resource === 'deployments').map((r) => r.resource);
  t.same(order.slice(0, 2), ['secrets', 'deployments'], 'the Secret exists before the pods that read it');
  for (const w of h.fake.writes().filter((r) => r.resource === 'secrets')) t.same(validateManifest(w.body), [], 'a valid Secret');

  const writes = h.fake.writes().length;
  await h.runtime.ensure(spec);
  t.equal(h.fake.writes().length, writes, 'a repeated ensure writes nothing');

  await h.runtime.remove(spec.key);
  t.notOk(h.fake.get('secrets', NS, name), 'removed with the endpoint');
});

t.test('a repeated ensure writes nothing; a new spec hash rolls the Deployment without downtime', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const [pod] = await waitFor(() => (h.pods(spec).length === 1 ? h.pods(spec) : undefined), { what: 'a pod' });
  h.fake.setReady(NS, pod!.metadata.name, true);
  await h.waitStatus(spec.key, '1 ready', (s) => readyCount(s) === 1);

  const writes = h.fake.writes().length;
  const rvBefore = h.fake.get('deployments', NS, resourceName(spec.key))!.metadata.resourceVersion;
  await h.runtime.ensure(spec);
  await h.runtime.ensure({ ...spec });
  t.equal(h.fake.writes().length, writes, 'no request changed anything');
  t.equal(h.fake.get('deployments', NS, resourceName(spec.key))!.metadata.resourceVersion, rvBefore, 'Deployment untouched');

  // The spec changes: the Deployment's template changes; the old pod serves until the new one is ready.
  const next = { ...spec, image: 'registry.example/acme/mnist:def', specHash: 'h2' };
  await h.runtime.ensure(next);
  const dep = h.fake.get('deployments', NS, resourceName(spec.key))!;
  const tmpl = (dep['spec'] as { template: { metadata: { annotations: Record<string, string> }; spec: { containers: { image: string }[] } } }).template;
  t.equal(tmpl.metadata.annotations[ANNOTATIONS.specHash], 'h2');
  t.equal(tmpl.spec.containers[0]!.image, 'registry.example/acme/mnist:def');
  t.same(h.fake.writes().slice(writes).map((r) => `${r.verb}:${r.resource}`), ['patch:deployments'], 'only the Deployment changed');

  const fresh = await waitFor(() => h.pods(spec, { live: true }).find((p) => p.metadata.name !== pod!.metadata.name), { what: 'the new pod' });
  const s1 = await h.waitStatus(spec.key, 'old ready + new starting', (s) => s.replicas.length === 2);
  t.same(s1.replicas.map((r) => [r.id, r.state]), [[pod!.metadata.name, 'ready'], [fresh.metadata.name, 'starting']], 'old keeps serving');
  t.notOk(h.events.some((e) => e.startsWith('beforeStop')), 'nothing stopped yet');

  h.fake.setReady(NS, fresh.metadata.name, true);
  const s2 = await h.waitStatus(spec.key, 'old stopping', (s) => s.replicas.some((r) => r.id === pod!.metadata.name && r.state === 'stopping'));
  t.equal(s2.replicas.find((r) => r.id === fresh.metadata.name)?.state, 'ready');
  t.equal(s2.replicas.find((r) => r.id === pod!.metadata.name)?.address, null, 'a stopping replica has no address');
  await waitFor(() => h.events.includes(`beforeStop:${pod!.metadata.name}`), { what: 'beforeStop for the replaced pod' });
  h.fake.reap();
  const s3 = await h.waitStatus(spec.key, 'only the new pod', (s) => s.replicas.length === 1);
  t.equal(s3.replicas[0]!.id, fresh.metadata.name);
});

t.test('replicas follow the EndpointSlice: ready, unready, addresses, terminating', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 2, port: 9000 });
  await h.runtime.ensure(spec);
  const pods = await waitFor(() => (h.pods(spec).length === 2 ? h.pods(spec) : undefined), { what: 'two pods' });
  let s = await h.waitStatus(spec.key, 'two starting', (x) => states(x) === 'starting,starting');
  t.ok(s.replicas.every((r) => r.address === null), 'no address before ready');

  const ip = (p: KubeObj) => (p['status'] as { podIP: string }).podIP;
  h.fake.setReady(NS, pods[0]!.metadata.name, true);
  s = await h.waitStatus(spec.key, 'one ready', (x) => readyCount(x) === 1);
  t.same(s.replicas.find((r) => r.state === 'ready'), { id: pods[0]!.metadata.name, address: `${ip(pods[0]!)}:9000`, state: 'ready', restarts: 0, startedAt: s.replicas.find((r) => r.state === 'ready')!.startedAt });
  h.fake.setReady(NS, pods[1]!.metadata.name, true);
  s = await h.waitStatus(spec.key, 'two ready', (x) => readyCount(x) === 2);
  t.same(s.replicas.map((r) => r.address).sort(), [`${ip(pods[0]!)}:9000`, `${ip(pods[1]!)}:9000`].sort());

  h.fake.setReady(NS, pods[0]!.metadata.name, false);
  s = await h.waitStatus(spec.key, 'one unready again', (x) => readyCount(x) === 1);
  t.equal(s.replicas.find((r) => r.id === pods[0]!.metadata.name)?.state, 'starting', 'failing readiness: out of routing');

  // Kubernetes stops a pod on its own (eviction): stopping at once, and beforeStop is called.
  const evicted = { ...h.fake.get('pods', NS, pods[1]!.metadata.name)! };
  evicted.metadata.deletionTimestamp = new Date().toISOString();
  h.fake.put('pods', evicted);
  s = await h.waitStatus(spec.key, 'evicted pod stopping', (x) => x.replicas.find((r) => r.id === pods[1]!.metadata.name)?.state === 'stopping');
  t.equal(readyCount(s), 0);
  await waitFor(() => h.events.includes(`beforeStop:${pods[1]!.metadata.name}`), { what: 'beforeStop for the evicted pod' });
  t.equal(h.events.filter((e) => e === `beforeStop:${pods[1]!.metadata.name}`).length, 1, 'announced once although pod and slice both changed');
});

t.test('scale down: the chosen pods are marked, announced and stopping before replicas drop', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 3 });
  await h.runtime.ensure(spec);
  const pods = await waitFor(() => (h.pods(spec).length === 3 ? h.pods(spec) : undefined), { what: 'three pods' });
  for (const p of pods.slice(0, 2)) h.fake.setReady(NS, p.metadata.name, true);
  await h.waitStatus(spec.key, 'two ready', (s) => readyCount(s) === 2);

  // While beforeStop runs, the Deployment must still have 3 replicas: nothing is killed early.
  let replicasDuringBeforeStop: number | undefined;
  h.beforeStop = async () => {
    replicasDuringBeforeStop = (h.fake.get('deployments', NS, resourceName(spec.key))!['spec'] as { replicas: number }).replicas;
  };
  const writes = h.fake.writes().length;
  await h.runtime.ensure({ ...spec, replicas: 1 });
  const notReady = pods[2]!.metadata.name;
  const newestReady = pods[1]!.metadata.name;
  t.same(h.events.filter((e) => e.startsWith('beforeStop')), [`beforeStop:${[notReady, newestReady].sort().join(',')}`], 'the not-ready pod, then the newest ready one');
  t.equal(replicasDuringBeforeStop, 3, 'beforeStop completes before replicas go down');
  t.same(h.fake.writes().slice(writes).map((r) => `${r.verb}:${r.resource}:${r.name}`), [
    `patch:pods:${notReady}`,
    `patch:pods:${newestReady}`,
    `patch:deployments:${resourceName(spec.key)}`,
    `patch:poddisruptionbudgets:${resourceName(spec.key)}`,
  ], 'deletion cost on the chosen pods, then the Deployment (and the PDB budget)');
  t.equal(h.fake.writes().find((r) => r.resource === 'pods')?.contentType, 'application/merge-patch+json');
  for (const name of [notReady, newestReady]) {
    t.equal(h.fake.get('pods', NS, name)!.metadata.annotations?.[ANNOTATIONS.deletionCost], '-1000');
  }
  const s = await h.waitStatus(spec.key, 'victims stopping', (x) => x.replicas.filter((r) => r.state === 'stopping').length === 2);
  t.same(s.replicas.filter((r) => r.state === 'ready').map((r) => r.id), [pods[0]!.metadata.name], 'the oldest ready pod keeps serving');
  // The fake's ReplicaSet controller honours the deletion cost: exactly the chosen pods terminate.
  await waitFor(() => h.pods(spec, { live: true }).length === 1, { what: 'Kubernetes terminating two pods' });
  t.same(h.pods(spec, { live: true }).map((p) => p.metadata.name), [pods[0]!.metadata.name]);
  t.equal(h.events.filter((e) => e.startsWith('beforeStop')).length, 1, 'no second announcement when they terminate');
  h.fake.reap();
  await h.waitStatus(spec.key, 'one replica left', (x) => x.replicas.length === 1 && readyCount(x) === 1);
  const pdb = h.fake.get('poddisruptionbudgets', NS, resourceName(spec.key))!;
  t.same((pdb['spec'] as Record<string, unknown>)['maxUnavailable'], 1, 'one replica: maxUnavailable 1');
  t.notOk('minAvailable' in (pdb['spec'] as Record<string, unknown>), 'minAvailable dropped by the apply');

  // Scale up again.
  await h.runtime.ensure({ ...spec, replicas: 2 });
  await waitFor(() => h.pods(spec, { live: true }).length === 2, { what: 'a second pod' });
  t.equal(h.events.filter((e) => e.startsWith('beforeStop')).length, 1, 'scale-up stops nothing');
});

t.test('remove announces the replicas, then deletes the Deployment, PDB and Service', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 2 });
  await h.runtime.ensure(spec);
  const pods = await waitFor(() => (h.pods(spec).length === 2 ? h.pods(spec) : undefined), { what: 'two pods' });
  for (const p of pods) h.fake.setReady(NS, p.metadata.name, true);
  await h.waitStatus(spec.key, 'two ready', (s) => readyCount(s) === 2);
  let deploymentDuringBeforeStop = false;
  h.beforeStop = async () => {
    deploymentDuringBeforeStop = h.fake.get('deployments', NS, resourceName(spec.key)) !== undefined;
  };
  const writes = h.fake.writes().length;
  await h.runtime.remove(spec.key);
  t.same(h.events.filter((e) => e.startsWith('beforeStop')), [`beforeStop:${pods.map((p) => p.metadata.name).sort().join(',')}`]);
  t.ok(deploymentDuringBeforeStop, 'beforeStop ran while the replicas were still there');
  t.same(h.fake.writes().slice(writes).map((r) => `${r.verb}:${r.resource}`), ['delete:deployments', 'delete:poddisruptionbudgets', 'delete:services', 'delete:secrets'], 'the env Secret too, whether or not there is one (404 here)');
  t.notOk(h.fake.get('deployments', NS, resourceName(spec.key)));
  t.notOk(h.fake.get('services', NS, resourceName(spec.key)));
  t.notOk(h.fake.get('poddisruptionbudgets', NS, resourceName(spec.key)));
  t.equal(await h.status(spec.key), undefined, 'forgotten');
  t.same(h.statuses.at(-1), { key: spec.key, replicas: [] }, 'last report: no replicas');
  // Removing again (already gone) is fine.
  await h.runtime.remove(spec.key);
});

t.test('a remove that fails is reported, and the endpoint can be wanted again', async (t) => {
  const h = await setup(t);
  const { spec, pod } = await h.oneReady();
  h.fake.failNext('delete', 'deployments', 403);
  await t.rejects(h.runtime.remove(spec.key), /HTTP-Code: 403/);
  const failed = await h.status(spec.key);
  t.match(failed?.error, /^kubernetes: HTTP 403: injected failure/, 'the failure is the endpoint error');
  t.same(failed?.replicas.map((r) => r.state), ['stopping'], 'announced replicas stay out of routing');
  await h.runtime.ensure(spec);
  const again = await h.waitStatus(spec.key, 'ready again', (s) => readyCount(s) === 1);
  t.equal(again.error, undefined);
  await h.runtime.remove(spec.key);
  t.notOk(h.fake.get('deployments', NS, resourceName(spec.key)), 'removed on the next try');
});

t.test('a project namespace deleted behind Portico\'s back is created again at the next resync', async (t) => {
  const h = await setup(t, { resyncMs: 300 });
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  h.fake.removeNamespace(NS);
  await h.waitStatus(spec.key, 'its pod gone', (s) => s.replicas.length === 0);
  // The reconciler ensures every few seconds: one of those may still fail, the next ones heal it.
  const name = resourceName(spec.key);
  await waitFor(async () => {
    await h.runtime.ensure(spec).catch(() => {});
    return h.fake.get('deployments', NS, name);
  }, { what: 'the Deployment back', timeoutMs: 5000 });
  t.ok(h.fake.get('namespaces', undefined, NS), 'namespace created again');
  t.ok(h.fake.get('networkpolicies', NS, 'portico-replicas'), 'with its NetworkPolicy');
  t.ok(h.fake.get('services', NS, name), 'the Service');
  t.ok(h.fake.get('poddisruptionbudgets', NS, name), 'the PDB');
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'a new pod' });
  h.fake.setReady(NS, pod.metadata.name, true);
  const s = await h.waitStatus(spec.key, 'ready again', (x) => readyCount(x) === 1);
  t.equal(s.error, undefined, 'no error left');
});

t.test('a new runtime adopts what is running: lists by label, writes nothing for the same spec', async (t) => {
  const h = await setup(t);
  const a = h.spec({ replicas: 1 });
  const b = h.spec({ replicas: 1, endpoint: 'explain', key: 'acme/mnist/web/v9/explain', version: 'v9' });
  await h.runtime.ensure(a);
  await h.runtime.ensure(b);
  const pod = await waitFor(() => h.pods(a)[0], { what: 'pod of a' });
  h.fake.setReady(NS, pod.metadata.name, true);
  await h.waitStatus(a.key, 'ready', (s) => readyCount(s) === 1);

  const rt = await h.reopen();
  const since = h.fake.requests.length;
  const listed = await rt.list();
  t.same(listed.map((s) => s.key).sort(), [a.key, b.key].sort(), 'both endpoints adopted');
  const adoptedA = listed.find((s) => s.key === a.key)!;
  t.equal(readyCount(adoptedA), 1, 'ready replica known at once');
  t.equal(adoptedA.replicas[0]!.id, pod.metadata.name);
  const lists = h.fake.requests.slice(0, since).filter((r) => r.verb === 'list').slice(-6);
  t.ok(lists.every((r) => r.query['labelSelector'] === 'app.kubernetes.io/managed-by=portico'), 'listed by label');

  await rt.ensure(a);
  await rt.ensure(b);
  t.same(h.fake.writes().filter((r) => h.fake.requests.indexOf(r) >= since), [], 'same specs: nothing written');
  await rt.remove(b.key);
  t.notOk(h.fake.get('deployments', NS, resourceName(b.key)), 'an adopted endpoint can be removed');
});

t.test('crash loops and image pull failures become endpoint errors', async (t) => {
  const h = await setup(t, { crashLoopRestarts: 3 });
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  const name = pod.metadata.name;
  const last = { terminated: { exitCode: 3, reason: 'Error', message: 'Traceback (most recent call last):\n  File "serve.py"\nFileNotFoundError: /models/missing.pkl\n' } };
  h.fake.setContainer(NS, name, { ready: false, restartCount: 1, state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 10s' } }, lastState: last });
  let s = await h.waitStatus(spec.key, 'crashed', (x) => x.replicas[0]?.state === 'crashed');
  t.equal(s.error, undefined, 'one restart is not a crash loop yet');
  t.match(s.replicas[0]!.reason, /^exited with code 3; last output: Traceback/);
  h.fake.setContainer(NS, name, { restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: last });
  s = await h.waitStatus(spec.key, 'crash loop error', (x) => x.error !== undefined);
  t.equal(s.error, `crash loop: replica ${name} restarted 3 times, last exited with code 3; last output: Traceback (most recent call last): | File "serve.py" | FileNotFoundError: /models/missing.pkl`);
  t.equal(s.replicas[0]!.restarts, 3);

  h.fake.setContainer(NS, name, { restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } } });
  s = await h.waitStatus(spec.key, 'oom', (x) => /OOMKilled/.test(x.error ?? ''));
  t.match(s.error, /last exited with code 137 \(OOMKilled\)$/);

  const spec2 = h.spec({ replicas: 1, image: 'registry.example/acme/nope:1' });
  await h.runtime.ensure(spec2);
  const pod2 = await waitFor(() => h.pods(spec2)[0], { what: 'a pod' });
  h.fake.setContainer(NS, pod2.metadata.name, { state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.example/acme/nope:1"' } } });
  s = await h.waitStatus(spec2.key, 'image error', (x) => x.error !== undefined);
  t.equal(s.error, 'image registry.example/acme/nope:1 cannot be pulled (ImagePullBackOff): Back-off pulling image "registry.example/acme/nope:1"');
  t.equal(s.replicas[0]!.state, 'starting');

  // Fixed: the error clears once the pod runs.
  h.fake.setReady(NS, pod2.metadata.name, true);
  s = await h.waitStatus(spec2.key, 'recovered', (x) => x.error === undefined && readyCount(x) === 1);
  t.pass('error cleared');
});

t.test('pods that cannot be created (quota, admission): the Deployment\'s ReplicaFailure is the endpoint error until they can', async (t) => {
  const h = await setup(t);
  h.fake.refusePods('exceeded quota: compute, requested: cpu=2, used: cpu=8, limited: cpu=8');
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const s = await h.waitStatus(spec.key, 'the refusal as the error', (x) => x.error !== undefined);
  t.match(s.error, /^pods cannot be created \(FailedCreate\): pods "[^"]+" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=8, limited: cpu=8$/);
  t.same(s.replicas, [], 'no replica');
  t.same(h.pods(spec), [], 'no pod in the cluster');

  h.fake.refusePods(null);
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'the pod, once allowed' });
  h.fake.setReady(NS, pod.metadata.name, true);
  const ok = await h.waitStatus(spec.key, 'ready without the error', (x) => x.error === undefined && readyCount(x) === 1);
  t.equal(ok.error, undefined);
});

t.test('a namespace enforcing the "restricted" Pod Security Standard: refused by default, admitted with podSecurity restricted', async (t) => {
  const restrictedNamespace = (h: Harness) => h.fake.put('namespaces', { metadata: { name: NS, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } });
  const plain = await setup(t);
  restrictedNamespace(plain);
  const refusedSpec = plain.spec();
  await plain.runtime.ensure(refusedSpec);
  const refused = await plain.waitStatus(refusedSpec.key, 'the refusal as the error', (x) => x.error !== undefined);
  t.match(refused.error, /^pods cannot be created \(FailedCreate\): pods "[^"]+" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false/, 'the default is unchanged');
  t.same(plain.pods(refusedSpec), [], 'no pod');

  for (const runAsUser of [undefined, 1000]) {
    const h = await setup(t, { podSecurity: 'restricted', ...(runAsUser !== undefined ? { runAsUser } : {}) });
    restrictedNamespace(h);
    const spec = h.spec();
    await h.runtime.ensure(spec);
    const pod = await waitFor(() => h.pods(spec)[0], { what: 'the admitted pod' });
    const podSpec = pod['spec'] as { securityContext?: Record<string, unknown>; containers: { securityContext?: Record<string, unknown> }[] };
    t.same(podSpec.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' }, ...(runAsUser !== undefined ? { runAsUser } : {}) }, `pod security context, runAsUser ${runAsUser}`);
    t.same(podSpec.containers[0]!.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    h.fake.setReady(NS, pod.metadata.name, true);
    const ok = await h.waitStatus(spec.key, 'ready', (x) => readyCount(x) === 1);
    t.equal(ok.error, undefined);
  }
});

t.test('an evicted pod, replaced by its ReplicaSet, is no replica and no endpoint error once the replacement is ready', async (t) => {
  const h = await setup(t);
  const { spec, pod } = await h.oneReady();
  // The kubelet evicts it (node under memory pressure): the pod stays in the API, phase Failed.
  const evicted = h.fake.get('pods', NS, pod.metadata.name)!;
  evicted['status'] = { phase: 'Failed', reason: 'Evicted', message: 'The node was low on resource: memory.' };
  h.fake.put('pods', evicted);
  const fresh = await waitFor(() => h.pods(spec).find((p) => p.metadata.name !== pod.metadata.name), { what: 'the replacement' });
  const s1 = await h.waitStatus(spec.key, 'evicted and replacement', (s) => s.replicas.length === 2);
  t.match(s1.error, /Evicted/, 'while nothing is ready, the eviction is why');
  h.fake.setReady(NS, fresh.metadata.name, true);
  const s2 = await h.waitStatus(spec.key, 'replacement ready', (s) => readyCount(s) === 1 && s.replicas.length === 1);
  t.same(s2.replicas.map((r) => [r.id, r.state]), [[fresh.metadata.name, 'ready']]);
  t.equal(s2.error, undefined, 'no error left');
});

t.test('API failures and unrunnable specs become the endpoint error and reject ensure', async (t) => {
  const h = await setup(t);
  const noImage = h.spec();
  delete (noImage as { image?: string }).image;
  await t.rejects(h.runtime.ensure(noImage), /has no image/);
  t.match((await h.status(noImage.key))?.error, /^kubernetes: endpoint .* has no image/);
  t.equal(h.fake.writes().length, 0, 'nothing written for it');

  // Something the API server rejects (422): its message becomes the endpoint error.
  const good = h.spec();
  await t.rejects(h.runtime.ensure({ ...good, port: 8000.5 }), /HTTP-Code: 422/);
  const s = await h.status(good.key);
  t.match(s?.error, /^kubernetes: HTTP 422: Service ".*" is invalid: data\/spec\/ports\/0\/port must be integer/, 'the API message is shown');
  await h.runtime.ensure(good);
  t.equal((await h.status(good.key))?.error, undefined, 'a good spec clears it');
});

t.test('an API call that gets no answer fails after requestTimeoutMs with a clear error, and frees the endpoint for the next one', async (t) => {
  const h = await setup(t, { requestTimeoutMs: 500 });
  const { spec } = await h.oneReady();
  h.fake.outage('hang');
  const started = Date.now();
  const outcome = await Promise.race([
    h.runtime.ensure({ ...spec, replicas: 2 }).then(() => 'resolved', (err: unknown) => err),
    new Promise((resolve) => setTimeout(resolve, 10_000, 'still waiting after 10 s')).then((x) => x),
  ]);
  t.match(outcome, { name: 'KubeTimeoutError', message: /^the API server did not answer within 0\.5 s: PATCH \/apis\/apps\/v1\/namespaces\/portico-acme-mnist\/deployments\// }, 'rejected with the timeout');
  t.ok(Date.now() - started < 5000, 'within the bound');
  t.match((await h.status(spec.key))?.error, /^kubernetes: the API server did not answer within 0\.5 s: PATCH /, 'the endpoint error says so');
  h.fake.outage(null);
  await h.runtime.ensure({ ...spec, replicas: 2 });
  t.equal((await h.status(spec.key))?.error, undefined, 'the next call goes through');
});

t.test('names are valid and stable for long and odd keys', async (t) => {
  const h = await setup(t, { namespaceTemplate: 'Models.{owner}' });
  const spec = h.spec({ key: `Acme/mnist/${'Web'.repeat(30)}/2024.1_x/predict`, owner: 'Acme', deployment: 'Web'.repeat(30), version: '2024.1_x' });
  await h.runtime.ensure(spec);
  const ns = h.runtime.namespaceOf('Acme', 'mnist');
  t.match(ns, /^models-acme-[0-9a-f]{8}$/, 'template applied, slugged, hash-suffixed');
  const name = resourceName(spec.key);
  t.ok(name.length <= 63 && /^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(name), name);
  t.ok(h.fake.get('deployments', ns, name), 'Deployment under the slugged name');
  const dep = h.fake.get('deployments', ns, name)!;
  t.equal(dep.metadata.labels?.['portico.io/owner'], 'Acme', 'a valid label value is kept');
  t.ok(Object.values(dep.metadata.labels ?? {}).every((v) => v.length <= 63));
});

t.test('a dropped watch resumes from the last resourceVersion without listing again', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 2 });
  await h.runtime.ensure(spec);
  const pods = await waitFor(() => (h.pods(spec).length === 2 ? h.pods(spec) : undefined), { what: 'two pods' });
  await h.waitStatus(spec.key, 'two starting', (s) => s.replicas.length === 2);
  await waitFor(() => h.fake.watchCount('pods') === 1 && h.fake.watchCount('endpointslices') === 1, { what: 'watches open' });
  const before = structuredClone(h.runtime.watchStats);
  t.same([before.pods.lists, before.slices.lists], [1, 1], 'one initial LIST each');

  const lastRvOf = (resource: 'pods' | 'endpointslices') =>
    String(Math.max(...h.fake.list(resource, undefined, 'app.kubernetes.io/managed-by=portico').map((o) => Number(o.metadata.resourceVersion))));
  for (const [how, pod] of [['end', pods[0]!], ['reset', pods[1]!]] as const) {
    const expected = { pods: lastRvOf('pods'), endpointslices: lastRvOf('endpointslices') };
    await waitFor(() => h.runtime.watchStats.pods.resourceVersion === expected.pods && h.runtime.watchStats.slices.resourceVersion === expected.endpointslices, { what: 'informers caught up' });
    const since = h.fake.requests.length;
    t.equal(h.fake.dropWatches(how), 3, `the pod, EndpointSlice and Deployment watches dropped (${how})`);
    // Changes made while nobody watches are delivered by the resumed watch.
    h.fake.setReady(NS, pod.metadata.name, true);
    await h.waitStatus(spec.key, `${pod.metadata.name} ready after ${how}`, (s) => s.replicas.some((r) => r.id === pod.metadata.name && r.state === 'ready'));
    const rewatch = h.fake.requests.slice(since).filter((r) => r.verb === 'watch' && r.resource !== 'deployments');
    t.ok(rewatch.length >= 2, 'watched again');
    for (const r of rewatch.slice(0, 2)) {
      t.equal(r.query['resourceVersion'], expected[r.resource as 'pods' | 'endpointslices'], `${r.resource}: resumed from the last resourceVersion it saw`);
      t.equal(r.query['allowWatchBookmarks'], 'true');
      t.equal(r.query['labelSelector'], 'app.kubernetes.io/managed-by=portico');
    }
    t.equal(h.fake.requests.slice(since).filter((r) => r.verb === 'list').length, 0, 'no LIST');
  }
  t.same([h.runtime.watchStats.pods.lists, h.runtime.watchStats.slices.lists], [1, 1]);
});

t.test('state unknown: before the cluster first answers, and while a watch has been failing staleAfterMs; known again after', async (t) => {
  const h = await setup(t, { startupTimeoutMs: 300, staleAfterMs: 500 });
  const fake = h.fake;
  fake.outage(503);
  await h.reopen();
  await h.runtime.list(); // waits out the startup timeout
  t.match(h.runtime.stateUnknown(), /^kubernetes API unreachable: .*503/, 'never listed: unknown, with the API\'s answer');
  fake.outage(null);
  await waitFor(() => h.runtime.stateUnknown() === undefined, { what: 'known once it answers', timeoutMs: 15_000 });

  const { spec } = await h.oneReady();
  t.equal((await h.status(spec.key))?.unknown, undefined);
  fake.outage(503);
  fake.dropWatches('reset');
  const blind = await h.waitStatus(spec.key, 'unknown after staleAfterMs', (s) => s.unknown !== undefined, 10_000);
  t.match(blind.unknown, /^kubernetes API unreachable since \d{4}-\d\d-\d\dT[\d:.]+Z \(replicas not watched\): /);
  await waitFor(() => /HTTP 503/.test(h.runtime.stateUnknown() ?? ''), { what: 'the last failure named' });
  t.equal(blind.error, blind.unknown, 'the error says it');
  t.equal(readyCount(blind), 1, 'the replicas last seen are still listed');
  fake.outage(null);
  const back = await h.waitStatus(spec.key, 'known again', (s) => s.unknown === undefined, 15_000);
  t.equal(back.error, undefined);
});

t.test('410 Gone (expired resourceVersion) makes the informers list again', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 2 });
  await h.runtime.ensure(spec);
  const pods = await waitFor(() => (h.pods(spec).length === 2 ? h.pods(spec) : undefined), { what: 'two pods' });
  for (const p of pods) h.fake.setReady(NS, p.metadata.name, true);
  await h.waitStatus(spec.key, 'two ready', (s) => readyCount(s) === 2);
  await waitFor(() => h.fake.watchCount() === 3, { what: 'watches open' });

  // While disconnected (synchronously, before any reconnect): one pod vanishes outright, and the
  // history is compacted past the informers' position. Only a LIST can tell them it is gone.
  h.fake.dropWatches('end');
  h.fake.remove('pods', NS, pods[1]!.metadata.name);
  h.fake.compact();
  const s = await h.waitStatus(spec.key, 'the vanished pod dropped', (x) => !x.replicas.some((r) => r.id === pods[1]!.metadata.name));
  t.equal(s.replicas.find((r) => r.id === pods[0]!.metadata.name)?.state, 'ready', 'the other one still ready');
  t.equal(s.replicas.length, 2, 'the Deployment controller replaced it (a new pod, starting)');
  await waitFor(() => h.runtime.watchStats.pods.expired === 1 && h.runtime.watchStats.slices.expired === 1, { what: 'both saw 410' });
  t.same([h.runtime.watchStats.pods.lists, h.runtime.watchStats.slices.lists], [2, 2], 'listed again after the 410');
  const gone = h.fake.requests.filter((r) => r.verb === 'watch' && r.status === 200).length;
  t.ok(gone >= 4, 'and watching again');

  // The same as an HTTP status (some servers answer the WATCH request itself with 410).
  h.fake.failNextWatches('endpointslices', 410);
  h.fake.dropWatches('end', 'endpointslices');
  await waitFor(() => h.runtime.watchStats.slices.lists === 3, { what: 'relist after HTTP 410' });
  h.fake.setReady(NS, pods[0]!.metadata.name, false);
  await h.waitStatus(spec.key, 'still following changes', (x) => readyCount(x) === 0);
});

t.test('a BOOKMARK advances the resourceVersion: after compaction the watch resumes without a LIST', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  await h.waitStatus(spec.key, 'one replica', (s) => s.replicas.length === 1);
  await waitFor(() => h.fake.watchCount() === 3, { what: 'watches open' });
  // Unrelated objects change (other labels): the informers see none of it, only the bookmark.
  h.fake.put('pods', { metadata: { name: 'other', namespace: 'default', labels: { app: 'x' } }, spec: { containers: [{ name: 'x', image: 'x' }] } });
  const rv = String(h.fake.resourceVersion);
  t.not(h.runtime.watchStats.pods.resourceVersion, rv, 'behind before the bookmark');
  h.fake.bookmark();
  await waitFor(() => Object.values(h.runtime.watchStats).every((w) => w.resourceVersion === rv), { what: 'bookmarks read' });
  const since = h.fake.requests.length;
  h.fake.compact();
  h.fake.dropWatches('end');
  await waitFor(() => h.fake.requests.slice(since).filter((r) => r.verb === 'watch').length >= 3, { what: 'resumed watches' });
  const resumed = h.fake.requests.slice(since).filter((r) => r.verb === 'watch');
  t.same(resumed.map((r) => r.query['resourceVersion']), [rv, rv, rv], 'resumed from the bookmark');
  t.same([h.runtime.watchStats.pods.lists, h.runtime.watchStats.pods.expired], [1, 0], 'no 410, no LIST');
  h.fake.setReady(NS, pod.metadata.name, true);
  await h.waitStatus(spec.key, 'events still flow', (s) => readyCount(s) === 1);
});

t.test('logs are followed per pod with timestamps, once each, until the pod goes', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  const name = pod.metadata.name;
  h.fake.appendLog(NS, name, 'loading model');
  h.fake.appendLog(NS, name, 'listening on 8000');
  await waitFor(() => h.logs.length === 2, { what: 'two lines' });
  t.same(h.logs.map((l) => [l.key, l.replica, l.stream, l.line]), [
    [spec.key, name, 'stdout', 'loading model'],
    [spec.key, name, 'stdout', 'listening on 8000'],
  ]);
  t.ok(Math.abs(h.logs[0]!.at - Date.now()) < 5000, 'the kubelet timestamp is the time');
  const req = h.fake.requests.find((r) => r.resource === 'pods/log')!;
  t.same([req.verb, req.query['follow'], req.query['timestamps'], req.query['container']], ['get', 'true', 'true', 'app']);

  // The container restarts: the stream ends, a new one starts from the last timestamp; nothing twice.
  h.fake.endLogStreams(NS, name);
  h.fake.setContainer(NS, name, { restartCount: 1, ready: false, state: { running: { startedAt: new Date().toISOString() } } });
  await waitFor(() => h.fake.logStreamCount(NS, name) === 1, { what: 'log followed again' });
  const again = h.fake.requests.filter((r) => r.resource === 'pods/log').at(-1)!;
  t.ok(again.query['sinceTime'], 'resumed with sinceTime');
  h.fake.appendLog(NS, name, 'Traceback: boom');
  await waitFor(() => h.logs.length === 3, { what: 'third line' });
  t.same(h.logs.map((l) => l.line), ['loading model', 'listening on 8000', 'Traceback: boom'], 'no line repeated');

  // The pod goes: the stream stops and is not reopened.
  await h.runtime.ensure({ ...spec, replicas: 0 });
  await waitFor(() => h.pods(spec, { live: true }).length === 0, { what: 'pod terminating' });
  h.fake.reap();
  await h.waitStatus(spec.key, 'no replicas', (s) => s.replicas.length === 0);
  const logRequests = h.fake.requests.filter((r) => r.resource === 'pods/log').length;
  await waitFor(() => h.fake.logStreamCount(NS, name) === 0, { what: 'stream closed' });
  t.equal(h.fake.requests.filter((r) => r.resource === 'pods/log').length, logRequests, 'not reopened');
});

t.test('two kubernetes targets on one cluster with the same namespace template: each adopts only its own endpoints', async (t) => {
  const h = await setup(t, { target: 'public' });
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const name = resourceName(spec.key);
  for (const resource of ['deployments', 'services', 'poddisruptionbudgets'] as const) {
    t.equal(h.fake.get(resource, NS, name)?.metadata.annotations?.[ANNOTATIONS.target], 'public', `${resource}: the target that wrote it`);
  }
  // The controller restarts: the other target's runtime lists the cluster too. What it adopts,
  // the reconciler removes as not wanted there.
  const internal = new KubernetesRuntime({ kubeConfig: h.fake.kubeConfig(), namespaceTemplate: 'portico-{owner}-{project}', stopGraceSeconds: 5, target: 'internal', hooks: { beforeStop: async () => {}, logs: { write: () => {} } } });
  t.teardown(() => internal.close());
  t.same((await internal.list()).map((s) => s.key), [], 'not adopted by the other target');
  const rt = await h.reopen();
  t.same((await rt.list()).map((s) => s.key), [spec.key], 'adopted by its own');
});

t.test('a second kubernetes target on the same cluster (another namespace template) neither records nor adopts the first one\'s replicas', async (t) => {
  const h = await setup(t);
  const other: LogEntry[] = [];
  const errors: string[] = [];
  const second = new KubernetesRuntime({
    kubeConfig: h.fake.kubeConfig(),
    namespaceTemplate: 'internal-{owner}-{project}',
    stopGraceSeconds: 5,
    hooks: { beforeStop: async () => {}, logs: { write: (e) => void other.push({ ...e }) } },
    onError: (message) => errors.push(message),
  });
  t.teardown(() => second.close());
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  const pod = await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  h.fake.setReady(NS, pod.metadata.name, true);
  await waitFor(async () => ((await second.list()) && h.fake.watchCount('pods') === 2) || undefined, { what: 'both watching' });
  h.fake.appendLog(NS, pod.metadata.name, 'served 1 request');
  await waitFor(() => h.logs.length === 1, { what: 'the line in its own target' });
  // The first target's log stream is open; give the second the same chance before looking.
  await waitFor(() => h.fake.requests.filter((r) => r.resource === 'pods/log').length >= 1, { what: 'a log request' });
  h.fake.appendLog(NS, pod.metadata.name, 'served 2 requests');
  await waitFor(() => h.logs.length === 2, { what: 'the second line in its own target' });
  t.same(other, [], 'not recorded a second time by the other target');
  t.equal(h.fake.requests.filter((r) => r.resource === 'pods/log').length, 1, 'one log stream for the pod');
  t.same(await second.list(), [], 'nor adopted by it');
});

t.test('close stops watching and leaves the replicas running', async (t) => {
  const h = await setup(t);
  const spec = h.spec({ replicas: 1 });
  await h.runtime.ensure(spec);
  await waitFor(() => h.pods(spec)[0], { what: 'a pod' });
  await waitFor(() => h.fake.watchCount() === 3, { what: 'watches open' });
  const writes = h.fake.writes().length;
  await h.runtime.close();
  await waitFor(() => h.fake.watchCount() === 0, { what: 'watches closed' });
  t.equal(h.fake.writes().length, writes, 'nothing deleted');
  t.ok(h.fake.get('deployments', NS, resourceName(spec.key)));
  await t.rejects(h.runtime.ensure(spec), /closed/);
  h.runtime = await h.reopen();
});
