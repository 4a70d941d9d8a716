import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../common/config.ts';
import { createLogger } from '../../common/log.ts';
import { createTargets, parseTargetsFile, registryAuthFor, targetSpecs, TargetsError, type Target } from '../../builder/targets.ts';
import type { EndpointSpec, RuntimeHooks } from '../../builder/runtime/runtime.ts';
import { FakeKubeApi } from '../helpers/fake-kube-api.ts';

t.test('targets from variables: local always, docker and kubernetes when configured', async (t) => {
  t.same(await targetSpecs(loadConfig({})), [{ name: 'local', kind: 'local' }]);
  const specs = await targetSpecs(loadConfig({ PORTICO_DOCKER_SOCKET: '/run/d.sock', PORTICO_KUBECONFIG: '/k/config', PORTICO_REGISTRY: 'reg.example/ml' }));
  t.same(specs.map((s) => `${s.name}:${s.kind}`), ['local:local', 'docker:docker', 'kubernetes:kubernetes']);
  t.match(specs[1], { socket: '/run/d.sock', network: 'bridge', registry: 'reg.example/ml' });
  t.match(specs[2], { kubeconfig: '/k/config', namespace: 'portico-{owner}-{project}', dockerSocket: '/run/d.sock' });
});

t.test('registry credentials go to the registry host of a target only', async (t) => {
  const config = loadConfig({ PORTICO_REGISTRY: 'reg.example:5000/ml/', PORTICO_REGISTRY_USERNAME: 'bot', PORTICO_REGISTRY_PASSWORD: 'tok' });
  t.same(registryAuthFor(config, 'reg.example:5000/ml/'), { username: 'bot', password: 'tok', serveraddress: 'reg.example:5000' });
  t.same(registryAuthFor(config, 'ghcr.io/acme'), { username: 'bot', password: 'tok', serveraddress: 'ghcr.io' }, "a targets file's own registry");
  t.same(registryAuthFor(config, 'acme'), { username: 'bot', password: 'tok', serveraddress: 'docker.io' }, 'a Docker Hub namespace');
  t.equal(registryAuthFor(config, undefined), undefined, 'no registry, no credentials');
  t.equal(registryAuthFor(loadConfig({ PORTICO_REGISTRY: 'reg.example' }), 'reg.example'), undefined, 'none configured');
});

t.test('a targets file defines named targets with their gateway URLs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'targets-'));
  const file = join(dir, 'targets.json');
  writeFileSync(file, JSON.stringify({
    targets: [
      { name: 'local', kind: 'local' },
      { name: 'gpu', kind: 'kubernetes', kubeconfig: '/k/gpu', context: 'prod', gatewayUrl: 'https://gpu.example' },
    ],
  }));
  const specs = await targetSpecs(loadConfig({ PORTICO_TARGETS_FILE: file }));
  t.same(specs.map((s) => s.name), ['local', 'gpu']);
  t.equal(specs[1]?.gatewayUrl, 'https://gpu.example');
  await t.rejects(targetSpecs(loadConfig({ PORTICO_TARGETS_FILE: join(dir, 'missing.json') })), /PORTICO_TARGETS_FILE .*missing\.json/);
});

t.test('every problem of a targets file is named with its entry', async (t) => {
  const cases: [string, RegExp[]][] = [
    ['{', [/f\.json: not JSON/]],
    ['{"targets": []}', [/at least one target/]],
    [
      JSON.stringify({ targets: [{ name: 'A', kind: 'local' }, { name: 'x', kind: 'docker' }, { name: 'x', kind: 'ecs' }, { name: 'k', kind: 'kubernetes', gatewayUrl: 'ftp://x' }] }),
      [/targets\[0\]\.name/, /targets\[1\]\.socket/, /targets\[2\]\.name: x is defined twice/, /targets\[2\]\.kind/, /targets\[3\]\.gatewayUrl/, /targets\[3\]\.kubeconfig/],
    ],
    [
      JSON.stringify({ targets: [
        { name: 'a', kind: 'kubernetes', kubeconfig: '/k', podSecurity: 'strict' },
        { name: 'b', kind: 'kubernetes', kubeconfig: '/k', podSecurity: 'restricted', runAsUser: 0 },
        { name: 'c', kind: 'kubernetes', kubeconfig: '/k', runAsUser: 1000 },
        { name: 'd', kind: 'kubernetes', kubeconfig: '/k', podSecurity: 'restricted', runAsUser: '1000' },
        { name: 'e', kind: 'kubernetes', kubeconfig: '/k', listenHost: '[::]' },
      ] }),
      [
        /f\.json: targets\[0\]\.podSecurity: expected "restricted"/,
        /f\.json: targets\[1\]\.runAsUser: expected a user id from 1 to 2147483647 \(not root\)/,
        /f\.json: targets\[2\]\.runAsUser: only with "podSecurity": "restricted"/,
        /f\.json: targets\[3\]\.runAsUser: expected a user id/,
        /f\.json: targets\[4\]\.listenHost: expected "0\.0\.0\.0" or "::"/,
      ],
    ],
    [
      // A misspelt or misplaced field would otherwise be dropped without a word.
      JSON.stringify({ target: [], targets: [
        { name: 'a', kind: 'kubernetes', kubeconfig: '/k', podsecurity: 'restricted' },
        { name: 'b', kind: 'docker', socket: '/s', namespace: 'x' },
        { name: 'c', kind: 'local', gatewayURL: 'http://x' },
      ] }),
      [
        /f\.json: target: unknown field \(expected targets\)/,
        /f\.json: targets\[0\]\.podsecurity: unknown field of a kubernetes target \(known: .*podSecurity/,
        /f\.json: targets\[1\]\.namespace: unknown field of a docker target \(known: name, kind, gatewayUrl, socket, network, registry\)/,
        /f\.json: targets\[2\]\.gatewayURL: unknown field of a local target \(known: name, kind, gatewayUrl\)/,
      ],
    ],
  ];
  for (const [text, patterns] of cases) {
    const err = t.throws(() => parseTargetsFile(text, 'f.json')) as unknown as TargetsError;
    t.type(err, TargetsError);
    for (const p of patterns) t.match(err.message, p);
  }
});

t.test('a kubernetes target of a targets file with podSecurity restricted and listenHost writes pods with them', async (t) => {
  const fake = await FakeKubeApi.start();
  t.teardown(() => fake.close());
  const dir = mkdtempSync(join(tmpdir(), 'targets-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, fake.kubeConfig().exportConfig());
  const file = join(dir, 'targets.json');
  writeFileSync(file, JSON.stringify({ targets: [
    { name: 'open', kind: 'kubernetes', kubeconfig, namespace: 'open-{project}' },
    { name: 'strict', kind: 'kubernetes', kubeconfig, namespace: 'strict-{project}', podSecurity: 'restricted', runAsUser: 1000, listenHost: '::' },
  ] }));
  const hooks = { beforeStop: async () => {}, logs: { write: () => {} } } as unknown as RuntimeHooks;
  const targets = await createTargets(loadConfig({ PORTICO_TARGETS_FILE: file, PORTICO_DATA_DIR: dir }), hooks, createLogger('test', 'error'));
  t.teardown(() => Promise.all(targets.map((x) => x.runtime.close())));
  const spec: EndpointSpec = {
    key: 'acme/mnist/web/v1/predict', owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict', replicas: 1, codeDir: '/unused',
    image: 'registry.example/acme/mnist:1', command: { kind: 'exec', argv: ['serve'] }, port: 8000, env: {}, specHash: 'h1',
  };
  const podSpec = async (target: Target, namespace: string) => {
    await target.runtime.ensure(spec);
    const [deployment] = fake.list('deployments', namespace);
    return (deployment?.['spec'] as { template: { spec: { securityContext?: unknown; containers: { securityContext?: unknown; env: { name: string; value?: string }[] }[] } } }).template.spec;
  };
  const open = await podSpec(targets[0]!, 'open-mnist');
  t.equal(open.securityContext, undefined, 'none by default');
  t.equal(open.containers[0]!.env.find((e) => e.name === 'HOST')?.value, '0.0.0.0');
  const strict = await podSpec(targets[1]!, 'strict-mnist');
  t.same(strict.securityContext, { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
  t.same(strict.containers[0]!.securityContext, { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
  t.equal(strict.containers[0]!.env.find((e) => e.name === 'HOST')?.value, '::', 'listenHost');
});

t.test('a kubeconfig of a targets file that cannot be read is named with its file and target', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'targets-'));
  const file = join(dir, 'targets.json');
  writeFileSync(file, JSON.stringify({ targets: [{ name: 'gpu', kind: 'kubernetes', kubeconfig: join(dir, 'missing.kubeconfig') }] }));
  const config = loadConfig({ PORTICO_TARGETS_FILE: file, PORTICO_DATA_DIR: dir });
  const hooks = { beforeStop: async () => {}, logs: { write: () => {} } } as unknown as RuntimeHooks;
  const err = await createTargets(config, hooks, createLogger('test', 'error')).then(() => undefined, (e: unknown) => e);
  t.type(err, TargetsError);
  t.match((err as Error).message, `${file}: target gpu, kubeconfig ${join(dir, 'missing.kubeconfig')}: `);
  t.match((err as Error).message, /ENOENT/);
});
