import { createHash } from 'node:crypto';
import type {
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1Namespace,
  V1NetworkPolicy,
  V1NetworkPolicyIngressRule,
  V1PodDisruptionBudget,
  V1PodSecurityContext,
  V1ResourceRequirements,
  V1Secret,
  V1SecurityContext,
  V1Service,
  V1Toleration,
} from '@kubernetes/client-node';
import { substituteArgs, substitutePort } from '../local/command.ts';
import type { EndpointSpec, RegistryAuth, Resources } from '../runtime.ts';
import { endpointId, labelValue, resourceName } from './names.ts';

/**
 * The objects the kubernetes runtime writes, as pure functions of an `EndpointSpec` and the
 * runtime's options. Every object carries `portico.io/manifest-hash`, a hash of everything else
 * in it: the runtime skips a write when the live object already carries the same hash.
 */

/** Label and annotation keys Portico sets. */
export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  owner: 'portico.io/owner',
  project: 'portico.io/project',
  deployment: 'portico.io/deployment',
  version: 'portico.io/version',
  endpoint: 'portico.io/endpoint',
  /** Hash of the endpoint key: the selector of its pods (immutable, unlike names that get slugged). */
  endpointId: 'portico.io/endpoint-id',
} as const;

/** Value of `app.kubernetes.io/managed-by` on everything Portico writes. */
export const MANAGED_BY = 'portico';
/** Label selector of everything Portico writes. */
export const MANAGED_SELECTOR = `${LABELS.managedBy}=${MANAGED_BY}`;

export const ANNOTATIONS = {
  /** The full endpoint key `owner/project/deployment/version/endpoint` (labels may be slugged). */
  key: 'portico.io/key',
  /** `publishedSpecHash` of the spec: on the pod template too, so a change rolls the Deployment. */
  specHash: 'portico.io/spec-hash',
  manifestHash: 'portico.io/manifest-hash',
  /** The name of the target whose runtime wrote the object (several may share a cluster). */
  target: 'portico.io/target',
  /** Tells the ReplicaSet controller which pods to remove first on scale-down (lower goes first). */
  deletionCost: 'controller.kubernetes.io/pod-deletion-cost',
} as const;

/** The container name of every replica pod. */
export const CONTAINER = 'app';
/** Name of the per-namespace image pull Secret (when registry credentials are configured). */
export const PULL_SECRET_NAME = 'portico-registry';

/** Name of the per-namespace NetworkPolicy. */
export const NETWORK_POLICY_NAME = 'portico-replicas';
/** Name of the container port (and Service port) of replicas. */
export const PORT_NAME = 'http';

/** Labels selecting Portico's gateway pods: who may reach replicas. */
export interface GatewaySelector {
  /** Labels of the namespace the gateways run in. */
  readonly namespaceLabels: Readonly<Record<string, string>>;
  /** Labels of the gateway pods. */
  readonly podLabels: Readonly<Record<string, string>>;
}

/** The gateway pods of `deploy/kubernetes/` (namespace `portico`). */
export const DEFAULT_GATEWAY_SELECTOR: GatewaySelector = {
  namespaceLabels: { 'kubernetes.io/metadata.name': 'portico' },
  podLabels: { 'app.kubernetes.io/name': 'portico', 'app.kubernetes.io/component': 'gateway' },
};

/** What the manifests depend on besides the spec. */
export interface ManifestOptions {
  readonly namespace: string;
  /** Seconds the preStop hook sleeps: the time gateways have to stop sending to a stopping pod. */
  readonly preStopSeconds: number;
  /** SIGTERM to SIGKILL, after the preStop sleep. */
  readonly stopGraceSeconds: number;
  /** `exec` runs `sleep N` in the container (any image with coreutils/busybox); `action` uses the
   * kubelet's sleep action (Kubernetes >= 1.30, no binary needed). */
  readonly preStopSleep: 'exec' | 'action';
  /** Path of the bundled WSGI runner inside images built for `wsgi:` endpoints. */
  readonly wsgiRunner: string;
  /** Name of the namespace's image pull Secret, when there is one. */
  readonly imagePullSecret?: string;
  /** The target whose objects these are (`portico.io/target`), when the runtime was given one. */
  readonly target?: string;
  /** `restricted`: pods meet the "restricted" Pod Security Standard (see `restrictedSecurity`). Default: no security context. */
  readonly podSecurity?: 'restricted';
  /** With `podSecurity`, the UID the app runs as (for images whose user is root). */
  readonly runAsUser?: number;
  /** The address replicas are told to listen on (`HOST`, the WSGI runner's): `::` for IPv6 pods. Default `0.0.0.0`. */
  readonly listenHost?: ListenHost;
}

/** What replicas may be told to listen on: every IPv4 address, or every IPv6 one (and IPv4 where the app's socket maps it). */
export type ListenHost = '0.0.0.0' | '::';

/**
 * The security contexts of the "restricted" Pod Security Standard: not root (the image's user,
 * or `runAsUser`), no privilege escalation, no capabilities, the runtime's default seccomp
 * profile. An image whose user is root and no `runAsUser` cannot start under them (the kubelet
 * says so, and that is the endpoint error).
 */
function restrictedSecurity(opts: Pick<ManifestOptions, 'runAsUser'>): { pod: V1PodSecurityContext; container: V1SecurityContext } {
  return {
    pod: { runAsNonRoot: true, ...(opts.runAsUser !== undefined ? { runAsUser: opts.runAsUser } : {}), seccompProfile: { type: 'RuntimeDefault' } },
    container: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
  };
}

/** Annotations of an endpoint's objects: its key, and the target they belong to. */
function objectAnnotations(spec: EndpointSpec, opts: Pick<ManifestOptions, 'target'>): Record<string, string> {
  return { [ANNOTATIONS.key]: spec.key, ...(opts.target !== undefined ? { [ANNOTATIONS.target]: opts.target } : {}) };
}

/** Returns `obj` with `portico.io/manifest-hash` set to a hash of the rest of it. */
export function withManifestHash<T extends { metadata?: { annotations?: { [key: string]: string } } }>(obj: T): T {
  const hash = manifestHash(obj);
  return { ...obj, metadata: { ...obj.metadata, annotations: { ...obj.metadata?.annotations, [ANNOTATIONS.manifestHash]: hash } } };
}

/** The hash `withManifestHash` stores (the annotation itself left out). */
export function manifestHash(obj: { metadata?: { annotations?: { [key: string]: string } } }): string {
  const annotations = { ...obj.metadata?.annotations };
  delete annotations[ANNOTATIONS.manifestHash];
  const copy = { ...obj, metadata: { ...obj.metadata, annotations } };
  return createHash('sha256').update(stableJson(copy)).digest('hex').slice(0, 16);
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Labels of every object of one endpoint (and of its pods). */
export function endpointLabels(spec: Pick<EndpointSpec, 'key' | 'owner' | 'project' | 'deployment' | 'version' | 'endpoint'>): Record<string, string> {
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.owner]: labelValue(spec.owner),
    [LABELS.project]: labelValue(spec.project),
    [LABELS.deployment]: labelValue(spec.deployment),
    [LABELS.version]: labelValue(spec.version),
    [LABELS.endpoint]: labelValue(spec.endpoint),
    [LABELS.endpointId]: endpointId(spec.key),
  };
}

/** A project namespace, labelled as Portico's. */
export function namespaceManifest(name: string, owner: string, project: string): V1Namespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.owner]: labelValue(owner), [LABELS.project]: labelValue(project) },
    },
  };
}

/**
 * The namespace's image pull Secret (`kubernetes.io/dockerconfigjson`) for the registry's host.
 * It carries no manifest hash: a hash of the credentials is not written anywhere.
 */
export function pullSecretManifest(namespace: string, auth: RegistryAuth): V1Secret {
  const config = { auths: { [auth.serveraddress]: { username: auth.username, password: auth.password, auth: Buffer.from(`${auth.username}:${auth.password}`).toString('base64') } } };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: PULL_SECRET_NAME, namespace, labels: { [LABELS.managedBy]: MANAGED_BY } },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from(JSON.stringify(config)).toString('base64') },
  };
}

/** Lets only the gateway pods reach replica pods of the namespace (any port). */
export function networkPolicyManifest(namespace: string, gateway: GatewaySelector): V1NetworkPolicy {
  return withManifestHash<V1NetworkPolicy>({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: NETWORK_POLICY_NAME, namespace, labels: { [LABELS.managedBy]: MANAGED_BY }, annotations: {} },
    spec: {
      podSelector: { matchLabels: { [LABELS.managedBy]: MANAGED_BY } },
      policyTypes: ['Ingress'],
      // Wire name `from` (client-node's model calls it `_from`): manifests are sent as plain JSON.
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ...gateway.namespaceLabels } }, podSelector: { matchLabels: { ...gateway.podLabels } } }] } as V1NetworkPolicyIngressRule],
    },
  });
}

/**
 * The headless Service of an endpoint. Nothing connects through it: it exists so the EndpointSlice
 * controller publishes the pods' readiness (`conditions.ready/serving/terminating`), which is what
 * the runtime routes by. Its labels are copied onto those EndpointSlices.
 */
export function serviceManifest(spec: EndpointSpec, opts: Pick<ManifestOptions, 'namespace' | 'target'>): V1Service {
  return withManifestHash<V1Service>({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: resourceName(spec.key), namespace: opts.namespace, labels: endpointLabels(spec), annotations: objectAnnotations(spec, opts) },
    spec: {
      clusterIP: 'None',
      selector: { [LABELS.endpointId]: endpointId(spec.key) },
      ports: [{ name: PORT_NAME, port: spec.port, targetPort: spec.port, protocol: 'TCP' }],
      publishNotReadyAddresses: false,
    },
  });
}

/**
 * At most one replica down at a time for voluntary disruptions (node drains): `maxUnavailable: 1`
 * for one replica (a single replica must not block drains forever), `minAvailable: replicas - 1`
 * above that.
 */
export function pdbManifest(spec: EndpointSpec, opts: Pick<ManifestOptions, 'namespace' | 'target'>): V1PodDisruptionBudget {
  const budget = spec.replicas > 1 ? { minAvailable: spec.replicas - 1 } : { maxUnavailable: 1 };
  return withManifestHash<V1PodDisruptionBudget>({
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: resourceName(spec.key), namespace: opts.namespace, labels: endpointLabels(spec), annotations: objectAnnotations(spec, opts) },
    spec: { selector: { matchLabels: { [LABELS.endpointId]: endpointId(spec.key) } }, ...budget },
  });
}

/** Kubernetes CPU quantity for cores (`0.5` -> `500m`, `2` -> `2`). */
export function cpuQuantity(cores: number): string {
  return Number.isInteger(cores) ? String(cores) : `${Math.max(1, Math.round(cores * 1000))}m`;
}

/** Kubernetes memory quantity for megabytes as Valohai (and Docker's `--memory 512m`) mean them: MiB. */
export function mebibytes(mb: number): string {
  return Number.isInteger(mb) ? `${mb}Mi` : `${Math.max(1, Math.round(mb * 1024))}Ki`;
}

/** requests = min, limits = max; devices (e.g. `nvidia.com/gpu`) are limits (requests default to them). */
export function resourceRequirements(resources: Resources | undefined): V1ResourceRequirements | undefined {
  if (!resources) return undefined;
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  const pairs = [
    ['cpu', resources.cpu, cpuQuantity],
    ['memory', resources.memory, mebibytes],
    ['ephemeral-storage', resources['ephemeral-storage'], mebibytes],
  ] as const;
  for (const [name, range, format] of pairs) {
    if (range?.min !== undefined) requests[name] = format(range.min);
    if (range?.max !== undefined) limits[name] = format(range.max);
  }
  for (const [device, count] of Object.entries(resources.devices ?? {})) limits[device] = String(count);
  const out: V1ResourceRequirements = {};
  if (Object.keys(requests).length > 0) out.requests = requests;
  if (Object.keys(limits).length > 0) out.limits = limits;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** `key=value[,key=value...]` from valohai.yaml `node-selector`. */
export function parseNodeSelector(text: string | undefined): Record<string, string> | undefined {
  if (text === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const at = part.indexOf('=');
    if (at <= 0) continue;
    out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function tolerations(spec: EndpointSpec): V1Toleration[] | undefined {
  if (!spec.tolerations || spec.tolerations.length === 0) return undefined;
  return spec.tolerations.map((t) => ({
    ...(t.key !== undefined ? { key: t.key } : {}),
    ...(t.operator !== undefined ? { operator: t.operator } : {}),
    ...(t.value !== undefined ? { value: t.value } : {}),
    ...(t.effect !== undefined ? { effect: t.effect } : {}),
  }));
}

/**
 * `text` as the kubelet must be given it to pass it on unchanged: it expands `$(VAR)` in env
 * values, command and args and reduces `$$` to `$`, which the local and docker runtimes do not.
 */
function literal(text: string): string {
  return text.replaceAll('$', () => '$$');
}

/**
 * Command and arguments of the replica container; `$PORT`/`${PORT}` replaced by the port (and in
 * a list `$HOST` and `$VH_DEFAULT_PREFIX` by theirs, see `substituteArgs`).
 */
function commandOf(spec: EndpointSpec, wsgiRunner: string, host: ListenHost): Pick<V1Container, 'command' | 'args'> {
  const cmd = spec.command;
  switch (cmd.kind) {
    case 'shell':
      return { command: ['/bin/sh', '-c', literal(substitutePort(cmd.command, spec.port))] };
    case 'exec': {
      const [file, ...args] = substituteArgs(cmd.argv, { ...spec.env, ...runtimeEnv(spec, host) }).map(literal);
      if (file === undefined || file === '') throw new Error('server-command is an empty list');
      return { command: [file], ...(args.length > 0 ? { args } : {}) };
    }
    case 'wsgi':
      return { command: ['python3', wsgiRunner, '--host', host, '--port', String(spec.port), literal(cmd.module)] };
  }
}

// Set by the runtime itself: a secret of the same name is overridden, so it is not a secret here.
function runtimeEnv(spec: EndpointSpec, host: ListenHost = '0.0.0.0'): Record<string, string> {
  return { PORT: String(spec.port), HOST: host, ...(spec.command.kind === 'wsgi' ? { SCRIPT_NAME: spec.env['VH_DEFAULT_PREFIX'] ?? '' } : {}) };
}

/** The names of `spec.env` whose values go through the endpoint's env Secret, sorted. */
export function secretEnvNames(spec: EndpointSpec): string[] {
  const runtime = runtimeEnv(spec);
  // Own keys only: `in` would find a secret named constructor or toString on Object.prototype
  // and write its value into the Deployment instead of the Secret.
  return (spec.secretEnv ?? []).filter((name) => Object.hasOwn(spec.env, name) && !Object.hasOwn(runtime, name)).sort();
}

/**
 * The spec's environment plus `PORT`, `HOST` (`0.0.0.0`, or `::`) and `SCRIPT_NAME` for wsgi,
 * sorted; the secret ones as references to the endpoint's env Secret (`envSecretManifest`), not
 * values; the others escaped so the kubelet's `$(VAR)` expansion leaves them as they are.
 */
function envOf(spec: EndpointSpec, host: ListenHost): V1EnvVar[] {
  const env: Record<string, string> = { PYTHONUNBUFFERED: '1', ...spec.env, ...runtimeEnv(spec, host) };
  const secret = new Set(secretEnvNames(spec));
  const secretName = resourceName(spec.key);
  return Object.keys(env).sort().map((name) => (secret.has(name) ? { name, valueFrom: { secretKeyRef: { name: secretName, key: name } } } : { name, value: literal(env[name] ?? '') }));
}

/**
 * The spec hash written on a Deployment and its pod template: `spec.specHash`, except for a spec
 * with secret values, which that hash covers (anyone who may read Deployments could test guesses
 * of a value against it). For those, a hash of the spec with the secret values left out. A
 * version's values never change, and the Secret is what carries them to the pods.
 */
export function publishedSpecHash(spec: EndpointSpec): string {
  const secret = (spec.secretEnv ?? []).filter((name) => Object.hasOwn(spec.env, name));
  if (secret.length === 0) return spec.specHash;
  const env: Record<string, string> = { ...spec.env };
  for (const name of secret) env[name] = '';
  return createHash('sha256').update(stableJson({ ...spec, env, replicas: undefined, specHash: undefined })).digest('hex').slice(0, 16);
}

/**
 * The Secret holding an endpoint's secret environment values (named like its Deployment), or
 * `null` when it has none. Like the image pull Secret it carries no manifest hash: no hash of
 * the values is written anywhere.
 */
export function envSecretManifest(spec: EndpointSpec, opts: Pick<ManifestOptions, 'namespace' | 'target'>): V1Secret | null {
  const names = secretEnvNames(spec);
  if (names.length === 0) return null;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: resourceName(spec.key), namespace: opts.namespace, labels: endpointLabels(spec), annotations: objectAnnotations(spec, opts) },
    type: 'Opaque',
    data: Object.fromEntries(names.map((name) => [name, Buffer.from(spec.env[name] ?? '').toString('base64')])),
  };
}

/**
 * The Deployment of an endpoint. Rolling updates never take capacity away (`maxUnavailable: 0`,
 * `maxSurge: 1`); a pod is ready when its port accepts TCP; a stopping pod first sleeps
 * `preStopSeconds` (still serving what it has) so the gateways stop sending to it before it gets
 * SIGTERM, then has `stopGraceSeconds` to exit.
 */
export function deploymentManifest(spec: EndpointSpec, opts: ManifestOptions): V1Deployment {
  if (spec.image === undefined || spec.image === '') throw new Error(`endpoint ${spec.key} has no image: the kubernetes runtime runs built images only`);
  const labels = endpointLabels(spec);
  const specHash = publishedSpecHash(spec);
  const resources = resourceRequirements(spec.resources);
  const nodeSelector = parseNodeSelector(spec.nodeSelector);
  const tol = tolerations(spec);
  const security = opts.podSecurity === 'restricted' ? restrictedSecurity(opts) : undefined;
  const preStop = opts.preStopSleep === 'action'
    ? { sleep: { seconds: opts.preStopSeconds } }
    : { exec: { command: ['sleep', String(opts.preStopSeconds)] } };
  const container: V1Container = {
    name: CONTAINER,
    image: spec.image,
    ...commandOf(spec, opts.wsgiRunner, opts.listenHost ?? '0.0.0.0'),
    env: envOf(spec, opts.listenHost ?? '0.0.0.0'),
    ports: [{ name: PORT_NAME, containerPort: spec.port, protocol: 'TCP' }],
    readinessProbe: { tcpSocket: { port: spec.port }, periodSeconds: 2, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 2 },
    ...(opts.preStopSeconds > 0 ? { lifecycle: { preStop } } : {}),
    ...(resources ? { resources } : {}),
    ...(security ? { securityContext: security.container } : {}),
    // The last lines of output become the termination message of a crashed container: the
    // crash-loop error shows them.
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  return withManifestHash<V1Deployment>({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: resourceName(spec.key),
      namespace: opts.namespace,
      labels,
      annotations: { ...objectAnnotations(spec, opts), [ANNOTATIONS.specHash]: specHash },
    },
    spec: {
      replicas: Math.max(0, spec.replicas),
      selector: { matchLabels: { [LABELS.endpointId]: endpointId(spec.key) } },
      revisionHistoryLimit: 2,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels, annotations: { [ANNOTATIONS.key]: spec.key, [ANNOTATIONS.specHash]: specHash } },
        spec: {
          containers: [container],
          terminationGracePeriodSeconds: opts.preStopSeconds + opts.stopGraceSeconds,
          // Replicas are not API clients, and a namespace full of Services must not flood their env.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(security ? { securityContext: security.pod } : {}),
          ...(nodeSelector ? { nodeSelector } : {}),
          ...(tol ? { tolerations: tol } : {}),
          ...(opts.imagePullSecret ? { imagePullSecrets: [{ name: opts.imagePullSecret }] } : {}),
        },
      },
    },
  });
}
