import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadKubeConfig } from '../../../builder/runtime/kubernetes.ts';
import {
  ANNOTATIONS,
  DEFAULT_GATEWAY_SELECTOR,
  cpuQuantity,
  deploymentManifest,
  envSecretManifest,
  manifestHash,
  mebibytes,
  namespaceManifest,
  networkPolicyManifest,
  parseNodeSelector,
  pdbManifest,
  resourceRequirements,
  serviceManifest,
  type ManifestOptions,
} from '../../../builder/runtime/kubernetes/manifests.ts';
import { dnsLabel, isDnsLabel, labelValue, namespaceFor, resourceName } from '../../../builder/runtime/kubernetes/names.ts';
import { endpointStatus, type PodView, type SliceView } from '../../../builder/runtime/kubernetes/status.ts';
import type { EndpointSpec } from '../../../builder/runtime/runtime.ts';
import { endpointSpec } from '../../../builder/reconciler.ts';
import type { Version } from '../../../builder/store/store.ts';
import { processView, restrictedPodSecurityViolations, validateManifest } from '../../helpers/fake-kube-api.ts';

const OPTS: ManifestOptions = { namespace: 'portico-acme-mnist', preStopSeconds: 10, stopGraceSeconds: 5, preStopSleep: 'exec', wsgiRunner: '/opt/portico/wsgi_runner.py' };

function spec(over: Partial<EndpointSpec> = {}): EndpointSpec {
  return {
    key: 'acme/mnist/web/20240101.0/predict', owner: 'acme', project: 'mnist', deployment: 'web', version: '20240101.0', endpoint: 'predict',
    replicas: 1, codeDir: '/unused', image: 'registry.example/acme/mnist:1', command: { kind: 'shell', command: 'gunicorn -b 0.0.0.0:$PORT app:app' },
    port: 8000, env: { VH_DEFAULT_PREFIX: '/acme/mnist/web/20240101.0/predict' }, specHash: 'h1', ...over,
  };
}

const container = (s: EndpointSpec, o: ManifestOptions = OPTS) => deploymentManifest(s, o).spec!.template.spec!.containers[0]!;

t.test('names: valid DNS-1123 labels, readable, unique under slugging, at most 63 characters', async (t) => {
  const cases: [string, RegExp][] = [
    ['acme/mnist/web/20240101.0/predict', /^web-20240101-0-predict-[0-9a-f]{8}$/],
    ['acme/mnist/Web/1.0/predict', /^web-1-0-predict-[0-9a-f]{8}$/],
    ['acme/mnist/9lives/v1/predict', /^p-9lives-v1-predict-[0-9a-f]{8}$/],
    [`acme/mnist/${'a'.repeat(80)}/v1/predict`, /^a{54}-[0-9a-f]{8}$/],
    ['acme/mnist/___/..../predict', /^predict-[0-9a-f]{8}$/],
  ];
  for (const [key, re] of cases) {
    const name = resourceName(key);
    t.match(name, re, key);
    t.ok(isDnsLabel(name), `${name} is a DNS label`);
  }
  t.not(resourceName('acme/mnist/web/1.0/predict'), resourceName('acme/mnist/web/1-0/predict'), 'slugging never merges two keys');
  t.not(resourceName('acme/mnist/web/1/predict'), resourceName('other/mnist/web/1/predict'), 'other owners differ (a shared namespace)');
  t.equal(resourceName('acme/mnist/web/1/predict'), resourceName('acme/mnist/web/1/predict'), 'stable');
  t.equal(dnsLabel('portico-acme-mnist'), 'portico-acme-mnist', 'a valid name is kept');
  t.equal(namespaceFor('portico-{owner}-{project}', 'acme', 'mnist'), 'portico-acme-mnist');
  t.equal(namespaceFor('models', 'acme', 'mnist'), 'models', 'a fixed namespace');
  t.match(namespaceFor('portico-{owner}-{project}', 'Acme', 'mnist'), /^portico-acme-mnist-[0-9a-f]{8}$/);
  t.not(namespaceFor('p-{owner}', 'Acme', 'x'), namespaceFor('p-{owner}', 'acme', 'x'), 'case differences stay apart');
  t.ok(isDnsLabel(namespaceFor('portico-{owner}-{project}', 'o'.repeat(60), 'p'.repeat(60))));
  t.equal(labelValue('20240101.0'), '20240101.0');
  t.match(labelValue('ends-with-dot.'), /^ends-with-dot-[0-9a-f]{8}$/);
  t.match(labelValue('x'.repeat(70)), /^x{54}-[0-9a-f]{8}$/);
});

t.test('resources: min -> requests, max -> limits, cores and MiB, devices as limits', async (t) => {
  t.same([cpuQuantity(0.25), cpuQuantity(1), cpuQuantity(1.5), cpuQuantity(0.0001)], ['250m', '1', '1500m', '1m']);
  t.same([mebibytes(512), mebibytes(0.5)], ['512Mi', '512Ki']);
  t.same(resourceRequirements({ cpu: { max: 2 }, 'ephemeral-storage': { min: 1024 }, devices: { 'nvidia.com/gpu': 2 } }), {
    requests: { 'ephemeral-storage': '1024Mi' },
    limits: { cpu: '2', 'nvidia.com/gpu': '2' },
  });
  t.equal(resourceRequirements({}), undefined);
  t.equal(resourceRequirements(undefined), undefined);
  t.same(parseNodeSelector('a=b, c = d,bad'), { a: 'b', c: 'd' });
  t.equal(parseNodeSelector(undefined), undefined);
});

t.test('commands: shell, exec and wsgi, $PORT substituted', async (t) => {
  t.same(container(spec()).command, ['/bin/sh', '-c', 'gunicorn -b 0.0.0.0:8000 app:app']);
  const exec = container(spec({ command: { kind: 'exec', argv: ['python', 'serve.py', '${PORT}', '--root=$VH_DEFAULT_PREFIX', '$HOST', '$FOO'] } }));
  t.same([exec.command, exec.args], [['python'], ['serve.py', '8000', '--root=/acme/mnist/web/20240101.0/predict', '0.0.0.0', '$$FOO']]);
  const single = container(spec({ command: { kind: 'exec', argv: ['serve'] } }));
  t.same([single.command, single.args], [['serve'], undefined]);
  const wsgi = container(spec({ command: { kind: 'wsgi', module: 'app:application' } }));
  t.same(wsgi.command, ['python3', '/opt/portico/wsgi_runner.py', '--host', '0.0.0.0', '--port', '8000', 'app:application']);
  t.same(wsgi.env?.find((e) => e.name === 'SCRIPT_NAME'), { name: 'SCRIPT_NAME', value: '/acme/mnist/web/20240101.0/predict' });
  t.throws(() => deploymentManifest(spec({ command: { kind: 'exec', argv: [] } }), OPTS), /empty list/);
  t.throws(() => deploymentManifest(spec({ image: '' }), OPTS), /has no image/);
  t.equal(container(spec({ env: { PYTHONUNBUFFERED: '0', PORT: '1' } })).env?.find((e) => e.name === 'PYTHONUNBUFFERED')?.value, '0', 'the spec may override PYTHONUNBUFFERED');
  t.equal(container(spec({ env: { PORT: '1' } })).env?.find((e) => e.name === 'PORT')?.value, '8000', 'but not PORT');
});

t.test('listen host: 0.0.0.0 by default; "::" (IPv6-only clusters) for HOST and the WSGI runner', async (t) => {
  const host = (c: ReturnType<typeof container>) => c.env?.find((e) => e.name === 'HOST')?.value;
  const wsgi = spec({ command: { kind: 'wsgi', module: 'app' } });
  t.equal(host(container(spec())), '0.0.0.0');
  t.same(container(wsgi).command?.slice(2, 4), ['--host', '0.0.0.0']);
  const v6 = { ...OPTS, listenHost: '::' } as const;
  t.equal(host(container(spec(), v6)), '::');
  t.same(container(wsgi, v6).command, ['python3', '/opt/portico/wsgi_runner.py', '--host', '::', '--port', '8000', 'app']);
  t.same(validateManifest(deploymentManifest(wsgi, v6)), []);
});

t.test('env values and commands reach the process as given, though the kubelet expands $(VAR) and $$', async (t) => {
  const env = { VH_DEFAULT_PREFIX: '/p', DB_URL: 'postgres://app:pa$$w0rd@db/app', TEMPLATE: 'Total: $(PORT) $(NOPE) $x $', LAST: 'ends with $' };
  const shell = processView(container(spec({ env, command: { kind: 'shell', command: 'echo $$ > /tmp/pid; exec serve --host $(HOST) --port $PORT' } })));
  t.same(shell.command, ['/bin/sh', '-c', 'echo $$ > /tmp/pid; exec serve --host $(HOST) --port 8000'], '$$ and $(HOST) left to the shell; $PORT substituted as everywhere');
  for (const [name, value] of Object.entries(env)) t.equal(shell.env[name], value, name);
  const exec = processView(container(spec({ command: { kind: 'exec', argv: ['serve', '--price', '$$5', '--ref', '$(PORT)', '$PORT'] } })));
  t.same([exec.command, exec.args], [['serve'], ['--price', '$$5', '--ref', '$(PORT)', '8000']]);
  const wsgi = processView(container(spec({ env: { VH_DEFAULT_PREFIX: '/acme/$$/v1/predict' }, command: { kind: 'wsgi', module: 'app:app' } })));
  t.equal(wsgi.env['SCRIPT_NAME'], '/acme/$$/v1/predict');
});

t.test('stopping: preStop sleep as exec or kubelet action, grace = preStop + stop grace', async (t) => {
  t.same(container(spec(), { ...OPTS, preStopSleep: 'action' }).lifecycle, { preStop: { sleep: { seconds: 10 } } });
  t.equal(container(spec(), { ...OPTS, preStopSeconds: 0 }).lifecycle, undefined, 'no hook when there is nothing to wait for');
  t.equal(deploymentManifest(spec(), { ...OPTS, preStopSeconds: 7, stopGraceSeconds: 3 }).spec!.template.spec!.terminationGracePeriodSeconds, 10);
});

t.test('pod security: none by default; "restricted" meets that Pod Security Standard, with runAsUser when given', async (t) => {
  const podSpec = (o: ManifestOptions) => deploymentManifest(spec(), o).spec!.template.spec!;
  t.equal(podSpec(OPTS).securityContext, undefined, 'the default is unchanged: images that run as root keep running');
  t.equal(podSpec(OPTS).containers[0]!.securityContext, undefined);
  t.match(restrictedPodSecurityViolations(podSpec(OPTS)), /^violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false .*unrestricted capabilities .*runAsNonRoot != true .*seccompProfile /);
  for (const runAsUser of [undefined, 1000]) {
    const restricted = podSpec({ ...OPTS, podSecurity: 'restricted', ...(runAsUser !== undefined ? { runAsUser } : {}) });
    t.equal(restrictedPodSecurityViolations(restricted), null, `admitted, runAsUser ${runAsUser}`);
    t.same(restricted.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' }, ...(runAsUser !== undefined ? { runAsUser } : {}) });
    t.same(restricted.containers[0]!.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  }
  t.not(manifestHash(deploymentManifest(spec(), { ...OPTS, podSecurity: 'restricted' })), manifestHash(deploymentManifest(spec(), OPTS)), 'turning it on applies the Deployments again');
});

t.test('PDB: one replica may go (drains never block), above that all but one stay', async (t) => {
  const budget = (replicas: number) => {
    const s = pdbManifest(spec({ replicas }), OPTS).spec!;
    return { maxUnavailable: s.maxUnavailable, minAvailable: s.minAvailable };
  };
  t.same(budget(0), { maxUnavailable: 1, minAvailable: undefined });
  t.same(budget(1), { maxUnavailable: 1, minAvailable: undefined });
  t.same(budget(3), { maxUnavailable: undefined, minAvailable: 2 });
});

t.test('every generated manifest is valid and has no unknown fields', async (t) => {
  const variants: EndpointSpec[] = [
    spec(),
    spec({ replicas: 0 }),
    spec({ replicas: 5, command: { kind: 'wsgi', module: 'app' } }),
    spec({
      command: { kind: 'exec', argv: ['serve', '--port', '$PORT'] },
      resources: { cpu: { min: 0.5, max: 4 }, memory: { min: 1024.5, max: 8192 }, 'ephemeral-storage': { max: 10240 }, devices: { 'nvidia.com/gpu': 1, 'amd.com/gpu': 2 } },
      nodeSelector: 'pool=gpu,zone=a',
      tolerations: [{ key: 'gpu', operator: 'Equal', value: 'true', effect: 'NoSchedule' }, { operator: 'Exists' }],
    }),
  ];
  for (const s of variants) {
    const restricted = [deploymentManifest(s, { ...OPTS, podSecurity: 'restricted' }), deploymentManifest(s, { ...OPTS, podSecurity: 'restricted', runAsUser: 1000 })];
    for (const o of [deploymentManifest(s, OPTS), deploymentManifest(s, { ...OPTS, preStopSleep: 'action' }), ...restricted, serviceManifest(s, OPTS), pdbManifest(s, OPTS)]) {
      t.same(validateManifest(o), [], `${o.kind} of ${JSON.stringify(s.command)} replicas ${s.replicas}`);
    }
  }
  t.same(validateManifest(namespaceManifest('portico-acme-mnist', 'acme', 'mnist')), []);
  t.same(validateManifest(networkPolicyManifest('portico-acme-mnist', DEFAULT_GATEWAY_SELECTOR)), []);
});

t.test('secret environment: a Secret of exactly the secret names; the runtime\'s own names stay values', async (t) => {
  t.equal(envSecretManifest(spec(), OPTS), null, 'no secrets, no Secret');
  t.equal(envSecretManifest(spec({ env: { A: '1' }, secretEnv: ['GONE'] }), OPTS), null, 'a secret name without a value is ignored');
  const s = spec({ command: { kind: 'wsgi', module: 'app:app' }, env: { VH_DEFAULT_PREFIX: '/p', TOKEN: 't0ps3cret', PORT: '1', SCRIPT_NAME: 'x', PLAIN: 'v' }, secretEnv: ['PORT', 'SCRIPT_NAME', 'TOKEN'] });
  const secret = envSecretManifest(s, OPTS)!;
  t.same(validateManifest(secret), [], 'valid');
  t.same(secret.metadata!.name, resourceName(s.key));
  t.same(secret.data, { TOKEN: Buffer.from('t0ps3cret').toString('base64') }, 'PORT and SCRIPT_NAME are set by the runtime, so they are not taken from the Secret');
  const env = container(s).env!;
  t.same(env.find((e) => e.name === 'TOKEN'), { name: 'TOKEN', valueFrom: { secretKeyRef: { name: resourceName(s.key), key: 'TOKEN' } } });
  t.same(env.find((e) => e.name === 'PORT'), { name: 'PORT', value: '8000' });
  t.same(env.find((e) => e.name === 'PLAIN'), { name: 'PLAIN', value: 'v' });
  t.notOk(JSON.stringify(deploymentManifest(s, OPTS)).includes('t0ps3cret'), 'the value is not in the Deployment');
  t.same(validateManifest(deploymentManifest(s, OPTS)), [], 'the Deployment with references is valid');
});

t.test('secret environment: names Object.prototype has (constructor, toString...) are secrets like any other', async (t) => {
  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf'];
  const s = spec({ env: Object.fromEntries(names.map((n) => [n, `s3cret-${n}`])), secretEnv: names });
  t.same(Object.keys(envSecretManifest(s, OPTS)!.data!).sort(), [...names].sort(), 'every one in the Secret');
  const env = container(s).env!;
  for (const n of names) t.same(env.find((e) => e.name === n), { name: n, valueFrom: { secretKeyRef: { name: resourceName(s.key), key: n } } }, n);
  t.notOk(JSON.stringify(deploymentManifest(s, OPTS)).includes('s3cret'), 'no value in the Deployment');
});

t.test('secret environment: nothing in the Deployment is derived from a secret value, not even the spec hash', async (t) => {
  const version = (environment: Record<string, string>, secretEnvironment?: string[]): Version => ({
    owner: 'acme', project: 'mnist', deployment: 'web', name: '20240101.0', status: 'ready', createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-01T00:00:00.000Z',
    enabled: true, source: { path: '/src' }, environment, ...(secretEnvironment ? { secretEnvironment } : {}), inheritEnvironment: true, codeDir: '/data/versions/1', images: { predict: 'registry.example/acme/mnist:1' },
    endpoints: [{ name: 'predict', definition: { name: 'predict', command: { kind: 'shell', command: 'serve' }, port: 8000 }, replicas: 1, enabled: true, timeoutSeconds: null, maxBodyBytes: null, files: [] }],
  });
  const of = (v: Version) => endpointSpec(v, v.endpoints[0]!);
  const withKey = (key: string) => of(version({ MODEL: 'cnn', API_KEY: key }, ['API_KEY']));
  t.same(deploymentManifest(withKey('hunter2'), OPTS), deploymentManifest(withKey('sk-live-0123456789'), OPTS), 'the same Deployment whatever the secret value');
  const a = deploymentManifest(withKey('hunter2'), OPTS);
  const b = deploymentManifest(of(version({ MODEL: 'rnn', API_KEY: 'hunter2' }, ['API_KEY'])), OPTS);
  t.not(a.spec!.template.metadata!.annotations![ANNOTATIONS.specHash], b.spec!.template.metadata!.annotations![ANNOTATIONS.specHash], 'a plain value still changes the spec hash');
  const plain = of(version({ MODEL: 'cnn' }));
  t.equal(deploymentManifest(plain, OPTS).metadata!.annotations![ANNOTATIONS.specHash], plain.specHash, 'without secrets the spec hash is the spec\'s (their pods do not roll)');
});

t.test('the manifest hash changes with content, not with key order', async (t) => {
  const a = deploymentManifest(spec(), OPTS);
  t.equal(a.metadata!.annotations![ANNOTATIONS.manifestHash], manifestHash(a), 'the stored hash is the hash of the rest');
  const reverse = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(reverse) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverse(x)])) : v;
  const reordered = reverse(a) as typeof a;
  t.not(JSON.stringify(reordered), JSON.stringify(a), 'really reordered');
  t.equal(manifestHash(reordered), manifestHash(a));
  t.not(manifestHash(deploymentManifest(spec({ replicas: 2 }), OPTS)), manifestHash(a), 'replicas count');
  t.not(manifestHash(deploymentManifest(spec({ specHash: 'h2' }), OPTS)), manifestHash(a));
});

t.test('status: slices decide readiness; pods explain the rest', async (t) => {
  const pod = (name: string, extra: Partial<PodView['status']> = {}, meta: Partial<NonNullable<PodView['metadata']>> = {}): PodView => ({
    metadata: { name, creationTimestamp: '2024-01-01T00:00:00Z', ...meta },
    status: { podIP: '10.0.0.1', startTime: '2024-01-01T00:00:01Z', containerStatuses: [{ name: 'app', restartCount: 0, state: { running: {} } }], ...extra },
  });
  const slice = (endpoints: SliceView['endpoints'], addressType = 'IPv4'): SliceView => ({ addressType, endpoints, ports: [{ name: 'http', port: 8000 }] });
  const base = { key: 'k', image: 'img:1', port: 8000, draining: new Set<string>(), crashLoopRestarts: 3 };
  const s = endpointStatus({
    ...base,
    pods: [pod('a'), pod('b'), pod('c', {}, { deletionTimestamp: '2024-01-01T00:01:00Z' }), pod('d')],
    slices: [
      slice([
        { addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'a' } },
        { addresses: ['10.0.0.2'], conditions: {}, targetRef: { kind: 'Pod', name: 'b' } },
        { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true }, targetRef: { kind: 'Pod', name: 'c' } },
        { addresses: ['10.0.0.4'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'd' } },
        { addresses: ['10.0.0.5'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'e' } },
      ]),
      slice([{ addresses: ['fd00::7'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'f' } }], 'IPv6'),
    ],
  });
  t.same(s.replicas.map((r) => [r.id, r.state, r.address]), [
    ['a', 'ready', '10.0.0.1:8000'],
    ['b', 'ready', '10.0.0.2:8000'],
    ['c', 'stopping', null],
    ['d', 'starting', null],
    ['e', 'ready', '10.0.0.5:8000'],
    ['f', 'ready', '[fd00::7]:8000'],
  ], 'absent ready counts as ready; terminating is stopping; slice entries without a pod yet; IPv6 bracketed');
  t.equal(s.replicas[0]!.startedAt, Date.parse('2024-01-01T00:00:01Z'));

  const drained = endpointStatus({ ...base, draining: new Set(['a']), pods: [pod('a')], slices: [slice([{ addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'a' } }])] });
  t.same(drained.replicas.map((r) => [r.state, r.address]), [['stopping', null]], 'announced for scale-down: no longer routed');

  const unschedulable = endpointStatus({ ...base, pods: [pod('a', { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes have nvidia.com/gpu' }], containerStatuses: [] })], slices: [] });
  t.equal(unschedulable.error, 'replica a cannot be scheduled: 0/3 nodes have nvidia.com/gpu');
  const config = endpointStatus({ ...base, pods: [pod('a', { containerStatuses: [{ name: 'app', restartCount: 0, state: { waiting: { reason: 'CreateContainerConfigError', message: 'secret "x" not found' } } }] })], slices: [] });
  t.equal(config.error, 'replica a cannot start: CreateContainerConfigError: secret "x" not found');
  const failed = endpointStatus({ ...base, pods: [pod('a', { phase: 'Failed', reason: 'Evicted', message: 'low on memory' })], slices: [] });
  t.same([failed.replicas[0]!.state, failed.error], ['crashed', 'replica a failed: Evicted: low on memory']);
  // An evicted pod stays in the API (phase Failed) long after its ReplicaSet replaced it: once a
  // replica is ready it is history, not a crashed replica, and no longer the endpoint's error.
  const evicted = pod('a', { phase: 'Failed', reason: 'Evicted', message: 'low on memory' }, { creationTimestamp: '2024-01-01T00:00:00Z' });
  const replaced = endpointStatus({ ...base, pods: [evicted, pod('b', { podIP: '10.0.0.2' }, { creationTimestamp: '2024-01-01T00:05:00Z' })], slices: [slice([{ addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'b' } }])] });
  t.same([replaced.replicas.map((r) => [r.id, r.state]), replaced.error], [[['b', 'ready']], undefined], 'a replaced failed pod is no replica and no error');
  const replacing = endpointStatus({ ...base, pods: [evicted, pod('b', { podIP: '10.0.0.2' }, { creationTimestamp: '2024-01-01T00:05:00Z' })], slices: [] });
  t.same([replacing.replicas.map((r) => [r.id, r.state]), replacing.error], [[['a', 'crashed'], ['b', 'starting']], 'replica a failed: Evicted: low on memory'], 'while nothing is ready it explains why');
  const runtimeError = endpointStatus({ ...base, pods: [], slices: [], runtimeError: 'kubernetes: HTTP 403: forbidden' });
  t.equal(runtimeError.error, 'kubernetes: HTTP 403: forbidden');
});

t.test('loadKubeConfig reads PORTICO_KUBECONFIG and selects PORTICO_KUBE_CONTEXT', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config');
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: a',
    'clusters: [{name: a, cluster: {server: "https://a.example:6443"}}, {name: b, cluster: {server: "https://b.example:6443"}}]',
    'users: [{name: u, user: {token: t}}]',
    'contexts: [{name: a, context: {cluster: a, user: u}}, {name: b, context: {cluster: b, user: u}}]',
  ].join('\n'));
  t.equal(loadKubeConfig(file).getCurrentCluster()?.server, 'https://a.example:6443', 'its current context by default');
  t.equal(loadKubeConfig(file, 'b').getCurrentCluster()?.server, 'https://b.example:6443');
  t.throws(() => loadKubeConfig(file, 'c'), /has no context "c"/);
});
