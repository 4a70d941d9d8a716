import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import t from 'tap';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadConfig, VARIABLES } from '../../common/config.ts';
import { KubernetesRuntime } from '../../builder/runtime/kubernetes.ts';
import { DEFAULT_GATEWAY_SELECTOR } from '../../builder/runtime/kubernetes/manifests.ts';
import { resourceName } from '../../builder/runtime/kubernetes/names.ts';
import type { EndpointSpec } from '../../builder/runtime/runtime.ts';
import { FakeKubeApi, matchesSelector, validateManifest } from '../helpers/fake-kube-api.ts';
import { waitFor } from '../helpers/poll.ts';

/*
 * Renders deploy/kubernetes overlays with a minimal kustomize (kustomize itself is not available
 * here; `kubectl apply -k` is the real way): `resources` (files and directories), `patches` with
 * `path` (strategic merge: maps merge; containers/env/volumes/volumeMounts/ports lists merge by
 * their Kubernetes merge keys; other lists are replaced), `namespace` (also ServiceAccount
 * subjects of bindings), `images`, `secretGenerator` with `envs` and `generatorOptions`
 * (`disableNameSuffixHash` only). Any other kustomization field fails the test, so the overlays
 * cannot silently outgrow the renderer.
 */

type Obj = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
};

const ROOT = resolve(import.meta.dirname, '../../deploy/kubernetes');
const OVERLAYS = ['production', 'small'];
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'PersistentVolume', 'StorageClass']);
const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'patches', 'images', 'secretGenerator', 'generatorOptions']);
/** patchMergeKey of the list fields our patches touch (from the Kubernetes API types). */
const MERGE_KEYS: Record<string, string> = { containers: 'name', initContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath', imagePullSecrets: 'name' };

function readDocs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null);
}

function smp(target: unknown, patch: unknown, field = '', parentKind = ''): unknown {
  if (Array.isArray(patch)) {
    const key = field === 'ports' ? (parentKind === 'Service' ? 'port' : 'containerPort') : MERGE_KEYS[field];
    if (!key || !Array.isArray(target)) return structuredClone(patch);
    const out = structuredClone(target) as Record<string, unknown>[];
    for (const item of patch as Record<string, unknown>[]) {
      const i = out.findIndex((o) => o[key] === item[key]);
      if (i >= 0) out[i] = smp(out[i], item, '', parentKind) as Record<string, unknown>;
      else out.push(structuredClone(item));
    }
    return out;
  }
  if (patch === null || typeof patch !== 'object') return patch;
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = smp(out[k], v, k, parentKind);
  }
  return out;
}

function envFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const l = line.trim();
    if (l === '' || l.startsWith('#')) continue;
    const at = l.indexOf('=');
    if (at <= 0) throw new Error(`${file}: not KEY=VALUE: ${l}`);
    out[l.slice(0, at)] = l.slice(at + 1);
  }
  return out;
}

function render(dir: string): Obj[] {
  const k = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
  for (const f of Object.keys(k)) if (!KNOWN_FIELDS.has(f)) throw new Error(`${dir}: kustomization field ${f} is not supported by the test renderer`);
  let objs: Obj[] = [];
  for (const r of (k['resources'] as string[] | undefined) ?? []) {
    const p = resolve(dir, r);
    objs.push(...(statSync(p).isDirectory() ? render(p) : readDocs(p)));
  }
  const gen = k['generatorOptions'] as { disableNameSuffixHash?: boolean } | undefined;
  for (const g of (k['secretGenerator'] as { name: string; envs?: string[] }[] | undefined) ?? []) {
    if (!gen?.disableNameSuffixHash) throw new Error('the renderer supports generators only with disableNameSuffixHash');
    const data: Record<string, string> = {};
    for (const e of g.envs ?? []) for (const [key, v] of Object.entries(envFile(resolve(dir, e)))) data[key] = Buffer.from(v).toString('base64');
    objs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: g.name }, type: 'Opaque', data });
  }
  for (const p of (k['patches'] as { path?: string }[] | undefined) ?? []) {
    if (!p.path) throw new Error(`${dir}: only patches with a path are supported`);
    for (const patch of readDocs(resolve(dir, p.path))) {
      const i = objs.findIndex((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name && o.apiVersion === patch.apiVersion);
      if (i < 0) throw new Error(`${dir}/${p.path}: no ${patch.kind} ${patch.metadata.name} to patch`);
      objs[i] = smp(objs[i], patch, '', patch.kind) as Obj;
    }
  }
  const ns = k['namespace'] as string | undefined;
  if (ns) {
    const accounts = new Set(objs.filter((o) => o.kind === 'ServiceAccount').map((o) => o.metadata.name));
    objs = objs.map((o) => {
      const c = structuredClone(o);
      if (!CLUSTER_SCOPED.has(c.kind)) c.metadata.namespace = ns;
      for (const s of (c['subjects'] as { kind: string; name: string; namespace?: string }[] | undefined) ?? []) {
        if (s.kind === 'ServiceAccount' && accounts.has(s.name)) s.namespace = ns;
      }
      return c;
    });
  }
  for (const img of (k['images'] as { name: string; newName?: string; newTag?: string }[] | undefined) ?? []) {
    for (const o of objs) {
      for (const c of podSpec(o)?.containers ?? []) {
        const [name, tag] = splitImage(c.image);
        if (name !== img.name) continue;
        c.image = `${img.newName ?? name}:${img.newTag ?? tag ?? 'latest'}`;
      }
    }
  }
  return objs;
}

function splitImage(image: string): [string, string | undefined] {
  const at = image.lastIndexOf(':');
  return at > image.lastIndexOf('/') ? [image.slice(0, at), image.slice(at + 1)] : [image, undefined];
}

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string }; persistentVolumeClaim?: { claimName: string }; emptyDir?: unknown }[];
}

function podTemplate(o: Obj): { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } | undefined {
  return (o['spec'] as { template?: { metadata: { labels: Record<string, string> }; spec: PodSpec } } | undefined)?.template;
}
function podSpec(o: Obj): PodSpec | undefined {
  return podTemplate(o)?.spec;
}
const workloads = (objs: Obj[]) => objs.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
const find = (objs: Obj[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name);
const selectorString = (m: Record<string, string>) => Object.entries(m).map(([k, v]) => `${k}=${v}`).join(',');

function matchesLabelSelector(labels: Record<string, string>, sel: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values?: string[] }[] }): boolean {
  if (sel.matchLabels && !matchesSelector(labels, selectorString(sel.matchLabels))) return false;
  for (const e of sel.matchExpressions ?? []) {
    const v = labels[e.key];
    if (e.operator === 'In' && (v === undefined || !e.values?.includes(v))) return false;
    if (e.operator === 'NotIn' && v !== undefined && e.values?.includes(v)) return false;
    if (e.operator === 'Exists' && v === undefined) return false;
    if (e.operator === 'DoesNotExist' && v !== undefined) return false;
  }
  return true;
}

/** Container port number a Service/probe port (name or number) refers to in a pod spec, if any. */
function resolvePort(spec: PodSpec, port: string | number): number | undefined {
  for (const c of spec.containers) for (const p of c.ports ?? []) if (p.name === port || p.containerPort === port) return p.containerPort;
  return undefined;
}

for (const overlay of OVERLAYS) {
  t.test(`overlay ${overlay}`, async (t) => {
    const objs = render(join(ROOT, 'overlays', overlay));
    const ns = 'portico';

    t.test('every object is valid and has no unknown fields', async (t) => {
      for (const o of objs) t.same(validateManifest(o), [], `${o.kind}/${o.metadata.name}`);
      const ids = objs.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
      t.equal(new Set(ids).size, ids.length, 'no duplicate objects');
      for (const o of objs) if (!CLUSTER_SCOPED.has(o.kind)) t.equal(o.metadata.namespace, ns, `${o.kind}/${o.metadata.name} in ${ns}`);
      t.ok(find(objs, 'Namespace', ns), 'the namespace itself');
    });

    t.test('images are replaced by the overlay', async (t) => {
      for (const w of workloads(objs)) {
        for (const c of podSpec(w)!.containers) {
          if (w.metadata.name === 'portico-redis') t.match(c.image, /^redis:\d/, 'redis pinned');
          else t.equal(c.image, 'registry.example.com/portico:0.1.0', `${w.metadata.name}/${c.name}`);
        }
      }
    });

    t.test('selectors match pod labels; Services, probes and HPA point at real ports and workloads', async (t) => {
      for (const w of workloads(objs)) {
        const sel = (w['spec'] as { selector: { matchLabels: Record<string, string> } }).selector;
        t.ok(matchesLabelSelector(podTemplate(w)!.metadata.labels, sel), `${w.kind}/${w.metadata.name}: selector matches its template`);
        for (const c of podSpec(w)!.containers) {
          for (const probe of [c.readinessProbe, c.livenessProbe]) {
            if (probe?.httpGet) t.ok(resolvePort(podSpec(w)!, probe.httpGet.port), `${w.metadata.name}: probe port ${probe.httpGet.port} exists`);
          }
        }
      }
      for (const svc of objs.filter((o) => o.kind === 'Service')) {
        const spec = svc['spec'] as { selector: Record<string, string>; ports: { port: number; targetPort: string | number }[] };
        const backing = workloads(objs).filter((w) => matchesSelector(podTemplate(w)!.metadata.labels, selectorString(spec.selector)));
        t.equal(backing.length, 1, `Service ${svc.metadata.name} selects exactly one workload`);
        for (const p of spec.ports) t.ok(resolvePort(podSpec(backing[0]!)!, p.targetPort), `Service ${svc.metadata.name} port ${p.port} -> ${p.targetPort} exists`);
      }
      const redis = find(objs, 'StatefulSet', 'portico-redis')!;
      const gov = find(objs, 'Service', (redis['spec'] as { serviceName: string }).serviceName);
      t.equal((gov?.['spec'] as { clusterIP?: string } | undefined)?.clusterIP, 'None', 'StatefulSet governed by a headless Service');
      for (const pdb of objs.filter((o) => o.kind === 'PodDisruptionBudget')) {
        const sel = (pdb['spec'] as { selector: { matchLabels: Record<string, string> } }).selector;
        t.equal(workloads(objs).filter((w) => matchesLabelSelector(podTemplate(w)!.metadata.labels, sel)).length, 1, `PDB ${pdb.metadata.name} covers one workload`);
      }
      for (const hpa of objs.filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
        const spec = hpa['spec'] as { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number };
        const target = find(objs, spec.scaleTargetRef.kind, spec.scaleTargetRef.name);
        t.ok(target, `HPA ${hpa.metadata.name} targets ${spec.scaleTargetRef.name}`);
        t.notOk('replicas' in ((target?.['spec'] as object | undefined) ?? {}), 'the HPA owns replicas: the Deployment does not set them');
        t.ok(spec.minReplicas >= 1 && spec.maxReplicas >= spec.minReplicas, 'sane bounds');
      }
      for (const np of objs.filter((o) => o.kind === 'NetworkPolicy')) {
        const spec = np['spec'] as { podSelector: { matchLabels?: Record<string, string> }; ingress?: { from?: { podSelector?: never }[]; ports?: { port: string | number }[] }[] };
        const guarded = workloads(objs).filter((w) => matchesLabelSelector(podTemplate(w)!.metadata.labels, spec.podSelector));
        t.equal(guarded.length, 1, `NetworkPolicy ${np.metadata.name} guards one workload`);
        for (const rule of spec.ingress ?? []) {
          for (const p of rule.ports ?? []) t.ok(resolvePort(podSpec(guarded[0]!)!, p.port), `NetworkPolicy ${np.metadata.name}: port ${p.port} exists`);
          for (const f of rule.from ?? []) {
            if (f.podSelector) t.ok(workloads(objs).some((w) => matchesLabelSelector(podTemplate(w)!.metadata.labels, f.podSelector!)), `NetworkPolicy ${np.metadata.name}: its peers exist`);
          }
        }
      }
      const redisPolicy = find(objs, 'NetworkPolicy', 'portico-redis')!;
      const peers = ((redisPolicy['spec'] as { ingress: { from: { podSelector: never }[] }[] }).ingress[0]!.from[0]!.podSelector);
      const allowed = workloads(objs).filter((w) => matchesLabelSelector(podTemplate(w)!.metadata.labels, peers)).map((w) => w.metadata.name).sort();
      t.same(allowed, ['portico-controller', 'portico-gateway'], 'Redis reachable from gateway and controller only');
    });

    t.test('references resolve: config, secrets, volumes, service accounts, role bindings', async (t) => {
      for (const w of workloads(objs)) {
        const spec = podSpec(w)!;
        for (const c of spec.containers) {
          for (const e of c.envFrom ?? []) {
            if (e.configMapRef) t.ok(find(objs, 'ConfigMap', e.configMapRef.name), `${w.metadata.name}: ConfigMap ${e.configMapRef.name}`);
            if (e.secretRef) t.ok(find(objs, 'Secret', e.secretRef.name), `${w.metadata.name}: Secret ${e.secretRef.name}`);
          }
          for (const m of c.volumeMounts ?? []) {
            const claimed = ((w['spec'] as { volumeClaimTemplates?: { metadata: { name: string } }[] }).volumeClaimTemplates ?? []).some((v) => v.metadata.name === m.name);
            t.ok(claimed || spec.volumes?.some((v) => v.name === m.name), `${w.metadata.name}: volume ${m.name}`);
          }
        }
        for (const v of spec.volumes ?? []) {
          if (v.configMap) t.ok(find(objs, 'ConfigMap', v.configMap.name), `${w.metadata.name}: ConfigMap ${v.configMap.name}`);
          if (v.persistentVolumeClaim) t.ok(find(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName), `${w.metadata.name}: PVC ${v.persistentVolumeClaim.claimName}`);
        }
        if (spec.serviceAccountName) t.ok(find(objs, 'ServiceAccount', spec.serviceAccountName), `${w.metadata.name}: ServiceAccount ${spec.serviceAccountName}`);
      }
      for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
        const ref = b['roleRef'] as { kind: string; name: string };
        t.ok(find(objs, ref.kind, ref.name), `${b.metadata.name}: ${ref.kind} ${ref.name}`);
        for (const s of b['subjects'] as { kind: string; name: string; namespace: string }[]) {
          t.same([s.kind, s.namespace], ['ServiceAccount', ns]);
          t.ok(find(objs, 'ServiceAccount', s.name), `${b.metadata.name}: subject ${s.name}`);
        }
      }
    });

    t.test('settings are known variables with valid values', async (t) => {
      const config = (find(objs, 'ConfigMap', 'portico-config')!['data'] ?? {}) as Record<string, string>;
      for (const k of Object.keys(config)) t.ok(k in VARIABLES, `${k} is a known variable`);
      const controller = podSpec(find(objs, 'Deployment', 'portico-controller')!)!.containers[0]!;
      const env = Object.fromEntries((controller.env ?? []).map((e) => [e.name, e.value ?? '']));
      for (const k of Object.keys(env)) t.ok(k in VARIABLES, `${k} is a known variable`);
      const secret = find(objs, 'Secret', 'portico-admin')!;
      const secretEnv = Object.fromEntries(Object.entries((secret['data'] ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
      t.same(secretEnv, { PORTICO_ADMIN_TOKEN: '' }, 'the placeholder token is empty (the controller then creates one), never a known value');
      const loaded = loadConfig({ ...config, ...env, ...secretEnv });
      t.equal(loaded.kubeNamespace, 'portico-{owner}-{project}');
      t.equal(loaded.redisUrl, 'redis://portico-redis:6379');

      // The controller's kubeconfig, as the runtime will load it.
      const kcMap = find(objs, 'ConfigMap', 'portico-kubeconfig')!;
      const mount = controller.volumeMounts!.find((m) => env['PORTICO_KUBECONFIG']!.startsWith(`${m.mountPath}/`))!;
      const volume = podSpec(find(objs, 'Deployment', 'portico-controller')!)!.volumes!.find((v) => v.name === mount.name)!;
      t.equal(volume.configMap?.name, 'portico-kubeconfig', 'PORTICO_KUBECONFIG is inside the mounted kubeconfig ConfigMap');
      const file = env['PORTICO_KUBECONFIG']!.slice(mount.mountPath.length + 1);
      const kc = new KubeConfig();
      kc.loadFromString((kcMap['data'] as Record<string, string>)[file]!);
      t.equal(kc.getCurrentCluster()?.server, 'https://kubernetes.default.svc');
      t.same(kc.getCurrentUser()?.authProvider, { name: 'tokenFile', config: { tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' } }, 'token re-read from the projected file');
    });

    t.test('gateway: probes, drain longer than PORTICO_DRAIN_SECONDS, public LoadBalancer, metrics, HPA, PDB', async (t) => {
      const config = find(objs, 'ConfigMap', 'portico-config')!['data'] as Record<string, string>;
      const gw = find(objs, 'Deployment', 'portico-gateway')!;
      const spec = podSpec(gw)!;
      const c = spec.containers[0]!;
      t.same(c.args, ['gateway']);
      t.equal(c.readinessProbe?.httpGet?.path, '/readyz');
      t.equal(c.livenessProbe?.httpGet?.path, '/healthz');
      t.equal(resolvePort(spec, c.readinessProbe!.httpGet!.port), Number(config['PORTICO_GATEWAY_PORT']), 'probes hit the gateway port');
      const preStop = Number(c.lifecycle?.preStop?.exec?.command.at(-1));
      t.ok(preStop > 0, 'a preStop sleep lets the Service drop the pod before SIGTERM');
      t.ok(spec.terminationGracePeriodSeconds! > preStop + Number(config['PORTICO_DRAIN_SECONDS']), `grace ${spec.terminationGracePeriodSeconds} > preStop ${preStop} + drain ${config['PORTICO_DRAIN_SECONDS']}`);
      const annotations = podTemplate(gw)!.metadata.annotations ?? {};
      t.equal(annotations['prometheus.io/scrape'], 'true');
      t.equal(Number(annotations['prometheus.io/port']), resolvePort(spec, 'metrics'), 'metrics annotation names the metrics port');
      t.equal(resolvePort(spec, 'metrics'), Number(config['PORTICO_METRICS_PORT']));
      const svc = find(objs, 'Service', 'portico-gateway')!['spec'] as { type: string; ports: { port: number; targetPort: string }[] };
      t.equal(svc.type, 'LoadBalancer');
      t.notOk(svc.ports.some((p) => resolvePort(spec, p.targetPort) === Number(config['PORTICO_METRICS_PORT'])), 'metrics are not public');
      t.ok(find(objs, 'HorizontalPodAutoscaler', 'portico-gateway'));
      t.ok(find(objs, 'PodDisruptionBudget', 'portico-gateway'));
      t.equal(spec.serviceAccountName, 'portico-gateway');
      t.equal((spec as { automountServiceAccountToken?: boolean }).automountServiceAccountToken, false, 'gateways get no API token');
      // The replicas' NetworkPolicy (written by the runtime) admits exactly these pods.
      t.ok(matchesSelector(podTemplate(gw)!.metadata.labels, selectorString({ ...DEFAULT_GATEWAY_SELECTOR.podLabels })), 'gateway pods match the runtime\'s default gateway selector');
      t.same(DEFAULT_GATEWAY_SELECTOR.namespaceLabels, { 'kubernetes.io/metadata.name': ns });
    });

    t.test('controller: one replica, Recreate, its own ServiceAccount, data volume', async (t) => {
      const d = find(objs, 'Deployment', 'portico-controller')!;
      const spec = d['spec'] as { replicas: number; strategy: { type: string } };
      t.equal(spec.replicas, 1);
      t.equal(spec.strategy.type, 'Recreate');
      t.same(podSpec(d)!.containers[0]!.args, ['controller']);
      t.equal(podSpec(d)!.serviceAccountName, 'portico-controller');
      t.ok(podSpec(d)!.containers[0]!.volumeMounts!.some((m) => m.mountPath === '/data'), 'PORTICO_DATA_DIR on the volume');
      const redis = find(objs, 'StatefulSet', 'portico-redis')!;
      const args = podSpec(redis)!.containers[0]!.args!;
      t.ok(args.includes('--appendonly') && args.includes('noeviction'), 'Redis persists (AOF) and never evicts');
      t.ok(((redis['spec'] as { volumeClaimTemplates: unknown[] }).volumeClaimTemplates.length), 'Redis on a persistent volume');
    });
  });
}

t.test('the controller\'s RBAC grants exactly what the kubernetes runtime calls', async (t) => {
  // Run the runtime through everything it does against the recording fake.
  const fake = await FakeKubeApi.start();
  t.teardown(() => fake.close());
  const hooks = { beforeStop: async () => {}, logs: { write: () => {} } };
  // With registry credentials, so the image pull Secret is written too.
  const imagePullAuth = { username: 'bot', password: 'tok', serveraddress: 'registry.example' };
  const opts = { kubeConfig: fake.kubeConfig(), namespaceTemplate: 'portico-{owner}-{project}', stopGraceSeconds: 5, hooks, imagePullAuth };
  let rt = new KubernetesRuntime(opts);
  const spec: EndpointSpec = {
    key: 'acme/mnist/web/v1/predict', owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict',
    replicas: 2, codeDir: '/unused', image: 'registry.example/x:1', command: { kind: 'exec', argv: ['serve'] }, port: 8000,
    env: { API_KEY: 'k-123456' }, secretEnv: ['API_KEY'], specHash: 'h1',
  };
  await rt.ensure(spec);
  const pods = await waitFor(() => {
    const p = fake.list('pods', 'portico-acme-mnist');
    return p.length === 2 ? p : undefined;
  }, { what: 'pods' });
  for (const p of pods) fake.setReady('portico-acme-mnist', p.metadata.name, true);
  fake.appendLog('portico-acme-mnist', pods[0]!.metadata.name, 'hello');
  await waitFor(() => fake.requests.some((r) => r.resource === 'pods/log'), { what: 'log followed' });
  await waitFor(async () => (await rt.list())[0]?.replicas.filter((r) => r.state === 'ready').length === 2, { what: 'ready' });
  await rt.ensure({ ...spec, replicas: 1 });
  await rt.close();
  rt = new KubernetesRuntime(opts);
  await rt.list();
  await rt.remove(spec.key);
  await rt.close();

  const used = new Set<string>();
  for (const r of fake.requests) {
    t.ok(r.status < 400 || r.status === 404, `${r.method} ${r.path} succeeded (${r.status})`);
    used.add(`${r.group}|${r.resource}|${r.verb}`);
    if (r.created) used.add(`${r.group}|${r.resource}|create`);
  }
  const objs = render(join(ROOT, 'overlays', 'production'));
  const granted = new Set<string>();
  const bound = objs.filter((o) => o.kind === 'ClusterRoleBinding' && (o['subjects'] as { name: string }[]).some((s) => s.name === 'portico-controller'));
  for (const b of bound) {
    const role = find(objs, 'ClusterRole', (b['roleRef'] as { name: string }).name)!;
    for (const rule of role['rules'] as { apiGroups: string[]; resources: string[]; verbs: string[] }[]) {
      for (const g of rule.apiGroups) for (const res of rule.resources) for (const v of rule.verbs) granted.add(`${g}|${res}|${v}`);
    }
  }
  t.same([...granted].filter((x) => !used.has(x)).sort(), [], 'nothing granted that the runtime does not use');
  t.same([...used].filter((x) => !granted.has(x)).sort(), [], 'everything the runtime does is granted');
  t.ok(!objs.some((o) => o.kind === 'Role' || o.kind === 'RoleBinding'), 'no other roles');
  const secretRules = bound
    .flatMap((b) => find(objs, 'ClusterRole', (b['roleRef'] as { name: string }).name)!['rules'] as { resources: string[]; verbs: string[]; resourceNames?: string[] }[])
    .filter((r) => r.resources.includes('secrets'));
  t.same(secretRules.map((r) => [r.verbs, r.resourceNames]), [[['create', 'patch', 'delete'], undefined]], 'secrets: applied and deleted, never read or listed');
  const secretCalls = fake.requests.filter((r) => r.resource === 'secrets');
  t.same([...new Set(secretCalls.map((r) => r.name))].sort(), [resourceName(spec.key), 'portico-registry'].sort(), 'the runtime touched the pull Secret and the endpoint\'s env Secret only');
  t.ok(secretCalls.every((r) => r.name !== undefined), 'every Secret call names its Secret (no list, no collection calls)');
  const clusterScopedOnly = (find(objs, 'ClusterRole', 'portico-controller-namespaces')!['rules'] as { resources: string[] }[]).flatMap((r) => r.resources);
  t.same(clusterScopedOnly, ['namespaces'], 'only namespaces are cluster-scoped by nature');
});

t.test('overlays change what they say they change', async (t) => {
  const get = (objs: Obj[], kind: string, name: string, path: string): unknown =>
    path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[/^\d+$/.test(k) ? Number(k) : k], find(objs, kind, name));
  const prod = render(join(ROOT, 'overlays', 'production'));
  const small = render(join(ROOT, 'overlays', 'small'));
  t.same([get(prod, 'HorizontalPodAutoscaler', 'portico-gateway', 'spec.minReplicas'), get(small, 'HorizontalPodAutoscaler', 'portico-gateway', 'spec.minReplicas')], [3, 1]);
  t.same([get(prod, 'StatefulSet', 'portico-redis', 'spec.volumeClaimTemplates.0.spec.resources.requests.storage'), get(small, 'StatefulSet', 'portico-redis', 'spec.volumeClaimTemplates.0.spec.resources.requests.storage')], ['20Gi', '1Gi']);
  const redisEnv = (objs: Obj[]) => podSpec(find(objs, 'StatefulSet', 'portico-redis')!)!.containers[0]!.env;
  t.same([redisEnv(prod), redisEnv(small)], [[{ name: 'REDIS_MAXMEMORY', value: '3gb' }], [{ name: 'REDIS_MAXMEMORY', value: '192mb' }]], 'env merged by name');
  const gw = podSpec(find(prod, 'Deployment', 'portico-gateway')!)!.containers[0]! as Container & { resources: unknown };
  t.same(gw.resources, { requests: { cpu: '1', memory: '512Mi' }, limits: { memory: '1Gi' } }, 'container merged by name');
  t.same(gw.ports?.map((p) => p.name), ['http', 'metrics'], 'the rest of the container kept');
  t.equal(get(prod, 'ConfigMap', 'portico-config', 'data.PORTICO_GATEWAY_URL'), 'https://models.example.com');
  t.equal(get(prod, 'ConfigMap', 'portico-config', 'data.PORTICO_REDIS_URL'), 'redis://portico-redis:6379', 'maps merge');
});

t.test('the checks catch what they are for', async (t) => {
  const objs = render(join(ROOT, 'overlays', 'small'));
  const gw = structuredClone(find(objs, 'Deployment', 'portico-gateway')!);
  (podSpec(gw)!.containers[0] as unknown as Record<string, unknown>)['imagePullPolicyy'] = 'Always';
  t.match(validateManifest(gw), ['unknown field "spec.template.spec.containers[0].imagePullPolicyy"']);
  const svc = structuredClone(find(objs, 'Service', 'portico-gateway')!);
  (svc['spec'] as { ports: { port: unknown }[] }).ports[0]!.port = '80';
  t.match(validateManifest(svc), [/port must be integer/]);
  const weird = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
  t.ok(validateManifest(weird).length >= 1, 'an unknown kind is not silently accepted');

  const dir = mkdtempSync(join(tmpdir(), 'kustomize-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'kustomization.yaml'), 'resources: []\ncommonLabels: {a: b}\n');
  t.throws(() => render(dir), /commonLabels is not supported/, 'an unknown kustomization field fails');
  writeFileSync(join(dir, 'kustomization.yaml'), `resources: [${JSON.stringify(join(ROOT, 'base'))}]\npatches: [{path: p.yaml}]\n`);
  writeFileSync(join(dir, 'p.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope}\n');
  t.throws(() => render(dir), /no Deployment nope to patch/, 'a patch without a target fails, as in kustomize');
});
