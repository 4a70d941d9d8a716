import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { EndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { parse as parseYaml } from 'yaml';

// ---------------------------------------------------------------------------------------------
// Manifest validation: kubernetes-models (schema) + a strict walk for unknown fields
// ---------------------------------------------------------------------------------------------

type ModelClass = new (data: never) => { validate(): void };

/** kubernetes-models class per `apiVersion/kind` this project writes. */
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace as unknown as ModelClass,
  'v1/Pod': Pod as unknown as ModelClass,
  'v1/Service': Service as unknown as ModelClass,
  'v1/ConfigMap': ConfigMap as unknown as ModelClass,
  'v1/Secret': Secret as unknown as ModelClass,
  'v1/ServiceAccount': ServiceAccount as unknown as ModelClass,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim as unknown as ModelClass,
  'apps/v1/Deployment': Deployment as unknown as ModelClass,
  'apps/v1/StatefulSet': StatefulSet as unknown as ModelClass,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as ModelClass,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as unknown as ModelClass,
  'discovery.k8s.io/v1/EndpointSlice': EndpointSlice as unknown as ModelClass,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler as unknown as ModelClass,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole as unknown as ModelClass,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding as unknown as ModelClass,
  'rbac.authorization.k8s.io/v1/Role': Role as unknown as ModelClass,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding as unknown as ModelClass,
};

type AttributeMap = readonly { name: string; baseName: string; type: string }[];
const MODEL_TYPES = k8s as unknown as Record<string, { getAttributeTypeMap?: () => AttributeMap } | undefined>;
const LEAF_TYPES = new Set(['string', 'number', 'boolean', 'Date', 'any', 'IntOrString', 'object']);

/**
 * Paths of fields the Kubernetes API does not know (what `fieldValidation=Strict` rejects and
 * kubernetes-models, whose schemas allow extra properties, does not). Walks the object against
 * the generated model types of `@kubernetes/client-node` (their wire names). Returns `[]` for an
 * object without unknown fields; a kind without a model type is reported as such.
 */
export function unknownFields(obj: unknown): string[] {
  const o = obj as { apiVersion?: string; kind?: string };
  const version = (o.apiVersion ?? '').split('/').pop() ?? '';
  const type = `${version.charAt(0).toUpperCase()}${version.slice(1)}${o.kind ?? ''}`;
  if (!MODEL_TYPES[type]?.getAttributeTypeMap) return [`(no model type ${type} for ${o.apiVersion}/${o.kind})`];
  const out: string[] = [];
  walk(obj, type, '', out);
  return out;
}

function walk(value: unknown, type: string, path: string, out: string[]): void {
  if (value === undefined || value === null || LEAF_TYPES.has(type)) return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, arr[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  const attrs = MODEL_TYPES[type]?.getAttributeTypeMap?.();
  if (!attrs || typeof value !== 'object' || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const attr = attrs.find((a) => a.baseName === k);
    if (!attr) out.push(`${path}.${k}`.replace(/^\./, ''));
    else walk(v, attr.type, `${path}.${k}`, out);
  }
}

/**
 * Every problem with a manifest: kubernetes-models schema validation (types, required fields,
 * formats) and unknown fields. `[]` means the API server would accept its shape.
 */
export function validateManifest(obj: unknown): string[] {
  const o = obj as { apiVersion?: string; kind?: string };
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  const problems: string[] = [];
  if (!Model) problems.push(`no kubernetes-models class for ${o.apiVersion}/${o.kind}`);
  else {
    try {
      new Model(structuredClone(obj) as never).validate();
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  for (const f of unknownFields(obj)) problems.push(`unknown field "${f}"`);
  return problems;
}

/** A pod spec as far as the Pod Security Standards look at it. */
interface PodSecurityView {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type?: string } };
  containers?: {
    name: string;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type?: string } };
  }[];
}

/**
 * What Pod Security admission says of a pod spec in a namespace enforcing `restricted` (label
 * `pod-security.kubernetes.io/enforce`): the checks of that level that apply to the pods Portico
 * makes (no volumes, host namespaces or privileged containers), in the API server's words; `null`
 * when the pod is allowed.
 */
export function restrictedPodSecurityViolations(podSpec: unknown): string | null {
  const spec = podSpec as PodSecurityView;
  const pod = spec.securityContext ?? {};
  const containers = spec.containers ?? [];
  const names = (cs: typeof containers) => cs.map((c) => `"${c.name}"`).join(', ');
  const which = (cs: typeof containers) => `${cs.length === 1 ? 'container' : 'containers'} ${names(cs)}`;
  const problems: string[] = [];
  const escalating = containers.filter((c) => c.securityContext?.allowPrivilegeEscalation !== false);
  if (escalating.length > 0) problems.push(`allowPrivilegeEscalation != false (${which(escalating)} must set securityContext.allowPrivilegeEscalation=false)`);
  const capable = containers.filter((c) => !(c.securityContext?.capabilities?.drop ?? []).includes('ALL') || (c.securityContext?.capabilities?.add ?? []).some((a) => a !== 'NET_BIND_SERVICE'));
  if (capable.length > 0) problems.push(`unrestricted capabilities (${which(capable)} must set securityContext.capabilities.drop=["ALL"])`);
  const rooted = containers.filter((c) => (c.securityContext?.runAsNonRoot ?? pod.runAsNonRoot) !== true);
  if (rooted.length > 0) problems.push(`runAsNonRoot != true (pod or ${which(rooted)} must set securityContext.runAsNonRoot=true)`);
  if (pod.runAsUser === 0 || containers.some((c) => c.securityContext?.runAsUser === 0)) problems.push('runAsUser=0 (pod and containers must not set runAsUser=0)');
  const allowed = (t: string | undefined) => t === 'RuntimeDefault' || t === 'Localhost';
  const unconfined = containers.filter((c) => !allowed(c.securityContext?.seccompProfile?.type ?? pod.seccompProfile?.type));
  if (unconfined.length > 0) problems.push(`seccompProfile (pod or ${which(unconfined)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`);
  return problems.length > 0 ? `violates PodSecurity "restricted:latest": ${problems.join(', ')}` : null;
}

// ---------------------------------------------------------------------------------------------
// What the kubelet makes of a container: `$(VAR)` references expanded, `$$` reduced to `$`
// ---------------------------------------------------------------------------------------------

/**
 * The kubelet's expansion of `$(VAR)` in env values, command and args (Kubernetes'
 * third_party/forked/golang/expansion): `$$` becomes `$`, `$(NAME)` the value of a variable
 * defined so far (left as is when there is none), any other `$` stays.
 */
export function kubeletExpand(input: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const next = input[i + 1]!;
    if (next === '$') {
      out += '$';
      i++;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        out += '$(';
        i++;
      } else {
        const name = input.slice(i + 2, close);
        out += vars.get(name) ?? `$(${name})`;
        i = close;
      }
    } else {
      out += `$${next}`;
      i++;
    }
  }
  return out;
}

/**
 * The environment, command and args the container's process gets: env values expanded in order
 * (each may refer to those before it), then command and args with all of them. A value from a
 * Secret is not expanded; here it reads `<secret:name/key>`.
 */
export function processView(container: { command?: string[]; args?: string[]; env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name?: string; key: string } } }[] }): { command: string[]; args: string[]; env: Record<string, string> } {
  const vars = new Map<string, string>();
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    vars.set(e.name, ref ? `<secret:${ref.name ?? ''}/${ref.key}>` : kubeletExpand(e.value ?? '', vars));
  }
  return {
    command: (container.command ?? []).map((a) => kubeletExpand(a, vars)),
    args: (container.args ?? []).map((a) => kubeletExpand(a, vars)),
    env: Object.fromEntries(vars),
  };
}

// ---------------------------------------------------------------------------------------------
// The fake API server
// ---------------------------------------------------------------------------------------------

/** A resource type the fake serves. */
interface ResourceDef {
  readonly resource: string;
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

const RESOURCES: readonly ResourceDef[] = [
  { resource: 'namespaces', group: '', version: 'v1', kind: 'Namespace', namespaced: false },
  { resource: 'pods', group: '', version: 'v1', kind: 'Pod', namespaced: true },
  { resource: 'services', group: '', version: 'v1', kind: 'Service', namespaced: true },
  { resource: 'secrets', group: '', version: 'v1', kind: 'Secret', namespaced: true },
  { resource: 'deployments', group: 'apps', version: 'v1', kind: 'Deployment', namespaced: true },
  { resource: 'poddisruptionbudgets', group: 'policy', version: 'v1', kind: 'PodDisruptionBudget', namespaced: true },
  { resource: 'networkpolicies', group: 'networking.k8s.io', version: 'v1', kind: 'NetworkPolicy', namespaced: true },
  { resource: 'endpointslices', group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', namespaced: true },
];

/** A resource name the fake serves. */
export type FakeResource = 'namespaces' | 'pods' | 'services' | 'secrets' | 'deployments' | 'poddisruptionbudgets' | 'networkpolicies' | 'endpointslices';

/** One request as the fake saw it, with the RBAC verb it maps to. */
export interface KubeRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly contentType: string | undefined;
  readonly body: unknown;
  /** RBAC verb: get, list, watch, create, update, patch, delete. */
  readonly verb: string;
  /** API group ('' for the core group). */
  readonly group: string;
  /** Resource, with the subresource as `pods/log`. */
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  status: number;
  /** A server-side apply that created the object (RBAC checks `create` for those too). */
  created: boolean;
}

/** A Kubernetes object as the fake stores it. */
export interface KubeObj {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

interface HistoryEvent {
  readonly rv: number;
  readonly resource: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: KubeObj;
}

interface Watcher {
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly selector: string | undefined;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
}

interface LogLine {
  readonly stamp: string;
  readonly line: string;
}

/** What a test sets on a pod's `app` container. */
export interface ContainerSetting {
  readonly ready?: boolean;
  readonly restartCount?: number;
  readonly state?: Record<string, unknown>;
  readonly lastState?: Record<string, unknown>;
}

/** Construction options of `FakeKubeApi`. */
export interface FakeKubeApiOptions {
  /**
   * Simulate the controllers a real cluster runs: the Deployment controller (pods per template,
   * rolling replacement, scale-down honouring `pod-deletion-cost`, garbage collection) and the
   * EndpointSlice controller (one slice per Service with a selector, labels copied from the
   * Service). Default true.
   */
  readonly controllers?: boolean;
}

const clone = <T>(v: T): T => structuredClone(v);

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, sortKeys(x)]));
  }
  return v;
}

/** Matches `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated (all must hold). */
export function matchesSelector(labels: Record<string, string> | undefined, selector: string | undefined): boolean {
  if (!selector) return true;
  const l = labels ?? {};
  for (const raw of selector.split(',')) {
    const term = raw.trim();
    if (term === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^([^!=\s]+)\s*!=\s*(.*)$/.exec(term))) {
      if (l[m[1]!] === m[2]) return false;
    } else if ((m = /^([^!=\s]+)\s*==?\s*(.*)$/.exec(term))) {
      if (l[m[1]!] !== m[2]) return false;
    } else if ((m = /^!\s*(\S+)$/.exec(term))) {
      if (m[1]! in l) return false;
    } else if (!(term in l)) return false;
  }
  return true;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const shortHash = (text: string, n = 10) => createHash('sha256').update(text).digest('hex').slice(0, n);

/**
 * An HTTP server speaking enough of the Kubernetes API for the kubernetes runtime, with the API's
 * semantics: namespaced CRUD with `409 AlreadyExists`, `404 NotFound` (also for a create in a
 * namespace that does not exist), `409 Conflict` on a stale
 * `resourceVersion`, `422 Invalid` for bodies kubernetes-models rejects or that carry unknown
 * fields; server-side apply (field manager required; Portico's previously applied labels,
 * annotations and top-level fields are replaced by the new apply; a no-op apply changes nothing
 * and emits no event); JSON merge patch; LIST with a resourceVersion and label selectors; WATCH
 * (chunked, headers flushed at once) replaying history from a resourceVersion, BOOKMARKs on
 * request, `410 Gone` below the compaction point; pod logs (follow, timestamps, sinceTime); Pod
 * Security admission in namespaces labelled `pod-security.kubernetes.io/enforce: restricted`.
 * Every request is recorded with its RBAC verb. Tests edit pods and slices directly.
 */
export class FakeKubeApi {
  readonly #server: Server;
  readonly #objects = new Map<string, Map<string, KubeObj>>();
  readonly #history: HistoryEvent[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly #logs = new Map<string, { lines: LogLine[]; streams: Set<ServerResponse> }>();
  readonly #applied = new Map<string, { top: Set<string>; labels: Set<string>; annotations: Set<string> }>();
  readonly #sockets = new Set<Socket>();
  readonly #controllers: boolean;
  readonly #failWatches = new Map<string, number[]>();
  readonly #failNext: { verb: string; resource: string; status: number }[] = [];
  #outage: number | 'hang' | null = null;
  #podRefusal: string | null = null;
  readonly #held = new Set<ServerResponse>();
  #rv = 1;
  #compactedRv = 0;
  #nextIp = 2;
  #stampSeq = 0;
  #lastCreated = 0;
  #syncQueued = false;
  /** Every request, in order. */
  readonly requests: KubeRequest[] = [];
  url = '';

  private constructor(opts: FakeKubeApiOptions) {
    this.#controllers = opts.controllers ?? true;
    for (const r of RESOURCES) this.#objects.set(r.resource, new Map());
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  /** Starts a fake on 127.0.0.1 and a free port. */
  static async start(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const fake = new FakeKubeApi(opts);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`;
    return fake;
  }

  /** A KubeConfig pointing at this fake (bearer token auth). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'portico', token: 'fake-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'portico' }],
      currentContext: 'fake',
    });
    return kc;
  }

  /** Ends every watch and log stream and stops the server. */
  async close(): Promise<void> {
    for (const w of this.#watchers) w.res.destroy();
    this.#watchers.clear();
    for (const res of this.#held) res.destroy();
    this.#held.clear();
    for (const l of this.#logs.values()) for (const s of l.streams) s.destroy();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // --- test-side access ------------------------------------------------------------------------

  /** The current resourceVersion (of the last change). */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Requests that changed something (POST, PUT, PATCH, DELETE). */
  writes(): KubeRequest[] {
    return this.requests.filter((r) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method));
  }

  /** One object, or undefined. */
  get(resource: FakeResource, namespace: string | undefined, name: string): KubeObj | undefined {
    const o = this.#objects.get(resource)!.get(`${namespace ?? ''}/${name}`);
    return o ? clone(o) : undefined;
  }

  /** Objects of a resource, optionally in one namespace and matching a label selector. */
  list(resource: FakeResource, namespace?: string, selector?: string): KubeObj[] {
    return [...this.#objects.get(resource)!.values()]
      .filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && matchesSelector(o.metadata.labels, selector))
      .map(clone);
  }

  /** Creates or replaces an object as a controller would (validated; bumps resourceVersion; notifies watches). */
  put(resource: FakeResource, obj: KubeObj): KubeObj {
    const def = RESOURCES.find((r) => r.resource === resource)!;
    const full = { apiVersion: def.group ? `${def.group}/${def.version}` : def.version, kind: def.kind, ...clone(obj) } as KubeObj;
    const problems = validateManifest(full);
    if (problems.length > 0) throw new Error(`fake: invalid ${def.kind} ${full.metadata.name}: ${problems.join('; ')}`);
    const key = `${full.metadata.namespace ?? ''}/${full.metadata.name}`;
    const before = this.#objects.get(resource)!.get(key);
    const stored = this.#store(resource, full, before);
    this.#queueSync();
    return clone(stored);
  }

  /** Removes an object at once (no grace period); false if absent. */
  remove(resource: FakeResource, namespace: string | undefined, name: string): boolean {
    const key = `${namespace ?? ''}/${name}`;
    const before = this.#objects.get(resource)!.get(key);
    if (!before) return false;
    this.#delete(resource, key, before);
    this.#queueSync();
    return true;
  }

  /** Deletes a namespace and everything in it at once (as `kubectl delete namespace` ends). */
  removeNamespace(name: string): void {
    for (const r of RESOURCES) {
      if (!r.namespaced) continue;
      for (const [key, o] of [...this.#objects.get(r.resource)!]) if (o.metadata.namespace === name) this.#delete(r.resource, key, o);
    }
    this.remove('namespaces', undefined, name);
  }

  /** Edits a pod's container status (and Ready condition): readiness, crashes, image pull errors. */
  setContainer(namespace: string, pod: string, setting: ContainerSetting): KubeObj {
    const obj = this.get('pods', namespace, pod);
    if (!obj) throw new Error(`fake: no pod ${namespace}/${pod}`);
    const status = (obj['status'] ?? {}) as { containerStatuses?: Record<string, unknown>[]; conditions?: Record<string, unknown>[]; phase?: string };
    const cs = status.containerStatuses?.[0] ?? {};
    const next = { ...cs };
    if (setting.ready !== undefined) next['ready'] = setting.ready;
    if (setting.restartCount !== undefined) next['restartCount'] = setting.restartCount;
    if (setting.state !== undefined) next['state'] = setting.state;
    if (setting.lastState !== undefined) next['lastState'] = setting.lastState;
    if (setting.ready === true && setting.state === undefined) next['state'] = { running: { startedAt: new Date().toISOString() } };
    next['started'] = (next['state'] as { running?: unknown } | undefined)?.running !== undefined;
    status.containerStatuses = [next];
    const ready = next['ready'] === true;
    status.conditions = [
      { type: 'PodScheduled', status: 'True' },
      { type: 'Ready', status: ready ? 'True' : 'False' },
      { type: 'ContainersReady', status: ready ? 'True' : 'False' },
    ];
    status.phase = 'Running';
    obj['status'] = status;
    return this.put('pods', obj);
  }

  /** Shorthand: the pod's container becomes (un)ready. */
  setReady(namespace: string, pod: string, ready: boolean): KubeObj {
    return this.setContainer(namespace, pod, { ready, state: { running: { startedAt: new Date().toISOString() } } });
  }

  /** Finishes the termination of every terminating pod (as the kubelet would after the grace period). */
  reap(): string[] {
    const gone: string[] = [];
    for (const pod of this.list('pods')) {
      if (pod.metadata.deletionTimestamp === undefined) continue;
      this.remove('pods', pod.metadata.namespace, pod.metadata.name);
      gone.push(pod.metadata.name);
    }
    return gone;
  }

  /** Appends a line to a pod's log (followers receive it at once). */
  appendLog(namespace: string, pod: string, line: string): void {
    const l = this.#logOf(namespace, pod);
    const entry = { stamp: this.#stamp(), line };
    l.lines.push(entry);
    for (const s of l.streams) s.write(`${(s as ServerResponse & { timestamps?: boolean }).timestamps ? `${entry.stamp} ` : ''}${line}\n`);
  }

  /** Ends a pod's open log streams (as when its container exits). */
  endLogStreams(namespace: string, pod: string): void {
    const l = this.#logs.get(`${namespace}/${pod}`);
    if (!l) return;
    for (const s of l.streams) s.end();
    l.streams.clear();
  }

  /** Ends open watches: cleanly (the server closed them) or by resetting the connection. */
  dropWatches(how: 'end' | 'reset' = 'end', resource?: FakeResource): number {
    let n = 0;
    for (const w of [...this.#watchers]) {
      if (resource && w.resource !== resource) continue;
      this.#watchers.delete(w);
      if (how === 'reset') w.res.socket?.destroy();
      else w.res.end();
      n++;
    }
    return n;
  }

  /** Forgets history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history.splice(0, this.#history.length);
  }

  /** Sends a BOOKMARK with the current resourceVersion on every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      const def = RESOURCES.find((r) => r.resource === w.resource)!;
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: def.kind, apiVersion: def.group ? `${def.group}/${def.version}` : def.version, metadata: { resourceVersion: String(this.#rv) } } }) + '\n');
    }
  }

  /** The next request with this RBAC verb on `resource` (e.g. `delete`, `deployments`) fails with `status`. */
  failNext(verb: string, resource: string, status: number): void {
    this.#failNext.push({ verb, resource, status });
  }

  /**
   * An API server that is down or stuck: from now on every request (recorded as usual) gets this
   * HTTP status (503: unavailable), or no answer at all (`'hang'`) until the client gives up;
   * `null` ends it. Open watches are not touched: drop them with `dropWatches`.
   */
  outage(mode: number | 'hang' | null): void {
    this.#outage = mode;
    if (mode === null) {
      for (const res of this.#held) res.destroy();
      this.#held.clear();
    }
  }

  /**
   * Pods cannot be created (a ResourceQuota exceeded, PodSecurity admission): the simulated
   * ReplicaSet controller creates none and, like the real ones, each Deployment needing pods gets
   * condition `ReplicaFailure` (reason FailedCreate) with the refusal in its message; `null` lets
   * them be created again (the condition goes).
   */
  refusePods(message: string | null): void {
    this.#podRefusal = message;
    this.#queueSync();
  }

  /** The next watch requests of `resource` get these HTTP statuses instead of a stream. */
  failNextWatches(resource: FakeResource, ...statuses: number[]): void {
    this.#failWatches.set(resource, [...(this.#failWatches.get(resource) ?? []), ...statuses]);
  }

  /** Open watches (per resource), for tests waiting on reconnects. */
  watchCount(resource?: FakeResource): number {
    return [...this.#watchers].filter((w) => !resource || w.resource === resource).length;
  }

  /** Open log streams of a pod. */
  logStreamCount(namespace: string, pod: string): number {
    return this.#logs.get(`${namespace}/${pod}`)?.streams.size ?? 0;
  }

  // --- storage -----------------------------------------------------------------------------------

  #store(resource: string, obj: KubeObj, before: KubeObj | undefined): KubeObj {
    const rv = ++this.#rv;
    obj.metadata.resourceVersion = String(rv);
    obj.metadata.uid = before?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    obj.metadata.creationTimestamp = before?.metadata.creationTimestamp ?? obj.metadata.creationTimestamp ?? this.#creationTime();
    if (resource === 'deployments') {
      const specChanged = !before || !deepEqual(before['spec'], obj['spec']);
      obj.metadata.generation = (before?.metadata.generation ?? 0) + (specChanged ? 1 : 0);
    }
    this.#objects.get(resource)!.set(`${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, obj);
    this.#publish({ rv, resource, type: before ? 'MODIFIED' : 'ADDED', object: clone(obj) });
    return obj;
  }

  #delete(resource: string, key: string, before: KubeObj): void {
    this.#objects.get(resource)!.delete(key);
    this.#applied.delete(`${resource}/${key}`);
    const rv = ++this.#rv;
    const gone = clone(before);
    gone.metadata.resourceVersion = String(rv);
    this.#publish({ rv, resource, type: 'DELETED', object: gone });
    if (resource === 'pods') {
      const l = this.#logs.get(key);
      if (l) {
        for (const s of l.streams) s.end();
        this.#logs.delete(key);
      }
    }
  }

  #publish(ev: HistoryEvent): void {
    this.#history.push(ev);
    for (const w of this.#watchers) {
      if (w.resource !== ev.resource) continue;
      if (w.namespace !== undefined && ev.object.metadata.namespace !== w.namespace) continue;
      if (!matchesSelector(ev.object.metadata.labels, w.selector)) continue;
      w.res.write(JSON.stringify({ type: ev.type, object: ev.object }) + '\n');
    }
  }

  #logOf(namespace: string, pod: string): { lines: LogLine[]; streams: Set<ServerResponse> } {
    const key = `${namespace}/${pod}`;
    let l = this.#logs.get(key);
    if (!l) this.#logs.set(key, (l = { lines: [], streams: new Set() }));
    return l;
  }

  /** Creation times strictly increase (milliseconds; the real API has seconds, ties broken by name). */
  #creationTime(): string {
    this.#lastCreated = Math.max(Date.now(), this.#lastCreated + 1);
    return new Date(this.#lastCreated).toISOString();
  }

  /** RFC 3339 with nanoseconds, strictly increasing. */
  #stamp(): string {
    const seq = String(++this.#stampSeq % 1_000_000).padStart(6, '0');
    return new Date().toISOString().replace('Z', `${seq}Z`);
  }

  // --- HTTP ----------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const contentType = req.headers['content-type']?.split(';')[0]?.trim();
    let body: unknown;
    if (raw !== '') {
      try {
        body = contentType === 'application/apply-patch+yaml' ? parseYaml(raw) : JSON.parse(raw);
      } catch (err) {
        body = undefined;
        const r = this.#record(req.method ?? 'GET', url.pathname, query, contentType, raw, undefined);
        return this.#status(res, r, 400, 'BadRequest', `cannot parse body: ${(err as Error).message}`);
      }
    }
    const route = parseRoute(url.pathname);
    const r = this.#record(req.method ?? 'GET', url.pathname, query, contentType, body, route, query['watch'] === 'true' || query['watch'] === '1');
    if (this.#outage === 'hang') {
      this.#held.add(res);
      res.on('close', () => this.#held.delete(res));
      return;
    }
    if (this.#outage !== null) return this.#status(res, r, this.#outage, 'ServiceUnavailable', 'the server is currently unable to handle the request');
    if (!route) return this.#status(res, r, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    if (!req.headers.authorization) return this.#status(res, r, 401, 'Unauthorized', 'Unauthorized');
    const injected = this.#failNext.findIndex((f) => f.verb === r.verb && f.resource === r.resource);
    if (injected >= 0) {
      const f = this.#failNext.splice(injected, 1)[0]!;
      return this.#status(res, r, f.status, f.status === 403 ? 'Forbidden' : 'InternalError', `injected failure: ${r.verb} ${r.resource} ${f.status}`);
    }
    const def = route.def;
    const objKey = `${route.namespace ?? ''}/${route.name ?? ''}`;
    const store = this.#objects.get(def.resource)!;
    try {
      if (route.subresource === 'log') return this.#serveLog(req, res, r, route.namespace ?? '', route.name ?? '', query);
      if (route.subresource) return this.#status(res, r, 404, 'NotFound', `subresource ${route.subresource} not served`);
      switch (req.method) {
        case 'GET': {
          if (route.name !== undefined) {
            const o = store.get(objKey);
            if (!o) return this.#status(res, r, 404, 'NotFound', `${def.resource} "${route.name}" not found`);
            return this.#json(res, r, 200, o);
          }
          if (r.verb === 'watch') return this.#serveWatch(req, res, r, def, route.namespace, query);
          const items = [...store.values()].filter((o) => (route.namespace === undefined || o.metadata.namespace === route.namespace) && matchesSelector(o.metadata.labels, query['labelSelector']));
          return this.#json(res, r, 200, {
            apiVersion: apiVersionOf(def),
            kind: `${def.kind}List`,
            metadata: { resourceVersion: String(this.#rv) },
            items,
          });
        }
        case 'POST': {
          if (route.name !== undefined) return this.#status(res, r, 405, 'MethodNotAllowed', 'POST to an object');
          const obj = this.#checkBody(res, r, def, body, route.namespace);
          if (!obj) return;
          const key = `${def.namespaced ? route.namespace : ''}/${obj.metadata.name}`;
          if (store.has(key)) return this.#status(res, r, 409, 'AlreadyExists', `${def.resource} "${obj.metadata.name}" already exists`);
          if (!this.#namespaceExists(def, route.namespace)) return this.#status(res, r, 404, 'NotFound', `namespaces "${route.namespace}" not found`);
          delete obj.metadata.resourceVersion;
          const stored = this.#store(def.resource, obj, undefined);
          this.#queueSync();
          return this.#json(res, r, 201, stored);
        }
        case 'PUT': {
          const before = store.get(objKey);
          if (!before) return this.#status(res, r, 404, 'NotFound', `${def.resource} "${route.name}" not found`);
          const obj = this.#checkBody(res, r, def, body, route.namespace, route.name);
          if (!obj) return;
          if (obj.metadata.resourceVersion !== undefined && obj.metadata.resourceVersion !== before.metadata.resourceVersion) {
            return this.#status(res, r, 409, 'Conflict', `Operation cannot be fulfilled on ${def.resource} "${route.name}": the object has been modified; please apply your changes to the latest version and try again`);
          }
          const stored = this.#store(def.resource, obj, before);
          this.#queueSync();
          return this.#json(res, r, 200, stored);
        }
        case 'PATCH':
          return this.#patch(res, r, def, route.namespace, route.name, contentType, body, query);
        case 'DELETE': {
          const before = store.get(objKey);
          if (!before) return this.#status(res, r, 404, 'NotFound', `${def.resource} "${route.name}" not found`);
          this.#delete(def.resource, objKey, before);
          if (def.resource === 'deployments') this.#collectGarbage(before);
          this.#queueSync();
          return this.#json(res, r, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: route.name, kind: def.resource } });
        }
        default:
          return this.#status(res, r, 405, 'MethodNotAllowed', `${req.method} not allowed`);
      }
    } catch (err) {
      return this.#status(res, r, 500, 'InternalError', `fake: ${(err as Error).stack ?? String(err)}`);
    }
  }

  /** Whether an object of `def` may be created in `namespace` (the API refuses one in a namespace that does not exist). */
  #namespaceExists(def: ResourceDef, namespace: string | undefined): boolean {
    return !def.namespaced || this.#objects.get('namespaces')!.has(`/${namespace ?? ''}`);
  }

  #record(method: string, path: string, query: Record<string, string>, contentType: string | undefined, body: unknown, route: Route | undefined, watch = false): KubeRequest {
    const verbs: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
    const verb = method === 'GET' ? (watch ? 'watch' : route?.name !== undefined ? 'get' : 'list') : (verbs[method] ?? method.toLowerCase());
    const r: KubeRequest = {
      method,
      path,
      query,
      contentType,
      body,
      verb,
      group: route?.def.group ?? '',
      resource: route ? `${route.def.resource}${route.subresource ? `/${route.subresource}` : ''}` : path,
      namespace: route?.namespace,
      name: route?.name,
      status: 0,
      created: false,
    };
    this.requests.push(r);
    return r;
  }

  /** Validates a create/replace body: kind, names, schema, unknown fields. Sends the error itself. */
  #checkBody(res: ServerResponse, r: KubeRequest, def: ResourceDef, body: unknown, namespace: string | undefined, name?: string): KubeObj | undefined {
    const obj = clone(body) as KubeObj | undefined;
    if (!obj || typeof obj !== 'object' || !obj.metadata || typeof obj.metadata.name !== 'string') {
      this.#status(res, r, 422, 'Invalid', `${def.kind}: metadata.name: Required value`);
      return undefined;
    }
    // Like the API server, a body without apiVersion/kind gets the URL's; a different one is refused.
    obj.apiVersion ??= apiVersionOf(def);
    obj.kind ??= def.kind;
    if (obj.apiVersion !== apiVersionOf(def) || obj.kind !== def.kind) {
      this.#status(res, r, 400, 'BadRequest', `the body is ${obj.apiVersion}/${obj.kind}, the URL is ${apiVersionOf(def)}/${def.kind}`);
      return undefined;
    }
    if (name !== undefined && obj.metadata.name !== name) {
      this.#status(res, r, 400, 'BadRequest', `the name of the object (${obj.metadata.name}) does not match the name in the URL (${name})`);
      return undefined;
    }
    if (def.namespaced) {
      if (obj.metadata.namespace !== undefined && obj.metadata.namespace !== namespace) {
        this.#status(res, r, 400, 'BadRequest', `the namespace of the object (${obj.metadata.namespace}) does not match the namespace in the URL (${namespace})`);
        return undefined;
      }
      obj.metadata.namespace = namespace;
    }
    const problems = validateManifest(obj);
    if (problems.length > 0) {
      this.#status(res, r, 422, 'Invalid', `${def.kind} "${obj.metadata.name}" is invalid: ${problems.join('; ')}`);
      return undefined;
    }
    return obj;
  }

  #patch(res: ServerResponse, r: KubeRequest, def: ResourceDef, namespace: string | undefined, name: string | undefined, contentType: string | undefined, body: unknown, query: Record<string, string>): void {
    if (name === undefined) return this.#status(res, r, 405, 'MethodNotAllowed', 'PATCH a collection');
    const key = `${namespace ?? ''}/${name}`;
    const before = this.#objects.get(def.resource)!.get(key);
    if (contentType === 'application/apply-patch+yaml') {
      if (!query['fieldManager']) return this.#status(res, r, 400, 'BadRequest', 'PATCH with apply requires fieldManager');
      const applied = this.#checkBody(res, r, def, body, namespace, name);
      if (!applied) return;
      const owner = `${def.resource}/${key}`;
      if (!before) {
        if (!this.#namespaceExists(def, namespace)) return this.#status(res, r, 404, 'NotFound', `namespaces "${namespace}" not found`);
        r.created = true;
        this.#applied.set(owner, ownership(applied));
        const stored = this.#store(def.resource, applied, undefined);
        this.#queueSync();
        return this.#json(res, r, 201, stored);
      }
      const next = applyOnto(before, applied, this.#applied.get(owner));
      this.#applied.set(owner, ownership(applied));
      if (deepEqual(withoutVolatile(next), withoutVolatile(before))) return this.#json(res, r, 200, before);
      const stored = this.#store(def.resource, next, before);
      this.#queueSync();
      return this.#json(res, r, 200, stored);
    }
    if (contentType === 'application/merge-patch+json' || contentType === 'application/strategic-merge-patch+json') {
      if (!before) return this.#status(res, r, 404, 'NotFound', `${def.resource} "${name}" not found`);
      const next = mergePatch(before, body) as KubeObj;
      const problems = validateManifest(next);
      if (problems.length > 0) return this.#status(res, r, 422, 'Invalid', `${def.kind} "${name}" is invalid: ${problems.join('; ')}`);
      if (deepEqual(next, before)) return this.#json(res, r, 200, before);
      const stored = this.#store(def.resource, next, before);
      this.#queueSync();
      return this.#json(res, r, 200, stored);
    }
    return this.#status(res, r, 415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
  }

  #serveWatch(req: IncomingMessage, res: ServerResponse, r: KubeRequest, def: ResourceDef, namespace: string | undefined, query: Record<string, string>): void {
    const failures = this.#failWatches.get(def.resource);
    const fail = failures?.shift();
    if (fail !== undefined) return this.#status(res, r, fail, fail === 410 ? 'Expired' : 'InternalError', `injected watch failure ${fail}`);
    r.status = 200;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
    res.flushHeaders();
    const from = query['resourceVersion'] ? Number(query['resourceVersion']) : this.#rv;
    if (from < this.#compactedRv) {
      res.end(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.#compactedRv})`, reason: 'Expired', code: 410 } }) + '\n');
      return;
    }
    const w: Watcher = { resource: def.resource, namespace, selector: query['labelSelector'], bookmarks: query['allowWatchBookmarks'] === 'true', res };
    for (const ev of this.#history) {
      if (ev.rv <= from || ev.resource !== def.resource) continue;
      if (namespace !== undefined && ev.object.metadata.namespace !== namespace) continue;
      if (!matchesSelector(ev.object.metadata.labels, w.selector)) continue;
      res.write(JSON.stringify({ type: ev.type, object: ev.object }) + '\n');
    }
    this.#watchers.add(w);
    const timeout = Number(query['timeoutSeconds'] ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = () => {
      clearTimeout(timer);
      this.#watchers.delete(w);
    };
    req.on('close', done);
    res.on('close', done);
  }

  #serveLog(req: IncomingMessage, res: ServerResponse, r: KubeRequest, namespace: string, name: string, query: Record<string, string>): void {
    const pod = this.#objects.get('pods')!.get(`${namespace}/${name}`);
    if (!pod) return this.#status(res, r, 404, 'NotFound', `pods "${name}" not found`);
    const container = query['container'] ?? 'app';
    const containers = ((pod['spec'] as { containers?: { name: string }[] } | undefined)?.containers ?? []).map((c) => c.name);
    if (!containers.includes(container)) return this.#status(res, r, 400, 'BadRequest', `container ${container} is not valid for pod ${name}`);
    const cs = (pod['status'] as { containerStatuses?: { restartCount?: number; state?: { waiting?: { reason?: string } } }[] } | undefined)?.containerStatuses?.[0];
    if (cs?.state?.waiting && (cs.restartCount ?? 0) === 0) {
      return this.#status(res, r, 400, 'BadRequest', `container "${container}" in pod "${name}" is waiting to start: ${cs.state.waiting.reason ?? 'unknown'}`);
    }
    r.status = 200;
    res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const timestamps = query['timestamps'] === 'true';
    const since = query['sinceTime'] ? Date.parse(query['sinceTime']) : undefined;
    const l = this.#logOf(namespace, name);
    for (const e of l.lines) {
      // The kubelet compares sinceTime at second precision: lines of that second come again.
      if (since !== undefined && Math.floor(Date.parse(e.stamp) / 1000) * 1000 < since) continue;
      res.write(`${timestamps ? `${e.stamp} ` : ''}${e.line}\n`);
    }
    if (query['follow'] !== 'true') {
      res.end();
      return;
    }
    (res as ServerResponse & { timestamps?: boolean }).timestamps = timestamps;
    l.streams.add(res);
    const done = () => l.streams.delete(res);
    req.on('close', done);
    res.on('close', done);
  }

  #json(res: ServerResponse, r: KubeRequest, status: number, body: unknown): void {
    r.status = status;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #status(res: ServerResponse, r: KubeRequest, code: number, reason: string, message: string): void {
    this.#json(res, r, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  }

  // --- simulated controllers -----------------------------------------------------------------

  #queueSync(): void {
    if (!this.#controllers || this.#syncQueued) return;
    this.#syncQueued = true;
    setImmediate(() => {
      this.#syncQueued = false;
      this.#syncControllers();
    });
  }

  /** Deployment controller, then EndpointSlice controller, until nothing changes. */
  #syncControllers(): void {
    for (let round = 0; round < 5; round++) {
      const before = this.#rv;
      for (const d of this.#objects.get('deployments')!.values()) this.#syncDeployment(d);
      this.#syncSlices();
      if (this.#rv === before) return;
    }
  }

  #podsOf(d: KubeObj): KubeObj[] {
    return [...this.#objects.get('pods')!.values()].filter((p) => p.metadata.namespace === d.metadata.namespace && p.metadata.ownerReferences?.some((o) => o.kind === 'ReplicaSet' && o.name.startsWith(`${d.metadata.name}-`) && o.uid === d.metadata.uid));
  }

  #syncDeployment(d: KubeObj): void {
    const spec = d['spec'] as { replicas?: number; template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> } };
    const want = spec.replicas ?? 1;
    const hash = shortHash(JSON.stringify(sortKeys(spec.template)));
    // Like the ReplicaSet controller, terminating and finished (Failed, Succeeded) pods are not counted.
    const finished = (p: KubeObj) => ['Failed', 'Succeeded'].includes((p['status'] as { phase?: string } | undefined)?.phase ?? '');
    const pods = this.#podsOf(d).filter((p) => p.metadata.deletionTimestamp === undefined && !finished(p));
    const current = pods.filter((p) => p.metadata.labels?.['pod-template-hash'] === hash);
    const old = pods.filter((p) => p.metadata.labels?.['pod-template-hash'] !== hash);
    const refusal = this.#podRefusal ?? this.#podSecurityRefusal(d.metadata.namespace, spec.template.spec);
    const refused = refusal !== null && current.length < want;
    if (!refused) for (let i = current.length; i < want; i++) this.#createPod(d, spec.template, hash);
    this.#setReplicaFailure(d, refused ? `pods "${d.metadata.name}-${hash}-${shortHash(randomUUID(), 5)}" is forbidden: ${refusal}` : null);
    const isReady = (p: KubeObj) => (p['status'] as { conditions?: { type: string; status: string }[] } | undefined)?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
    const cost = (p: KubeObj) => Number(p.metadata.annotations?.['controller.kubernetes.io/pod-deletion-cost'] ?? 0);
    const created = (p: KubeObj) => Date.parse(p.metadata.creationTimestamp ?? '') || 0;
    const rank = (a: KubeObj, b: KubeObj) => Number(isReady(a)) - Number(isReady(b)) || cost(a) - cost(b) || created(b) - created(a);
    if (current.length > want) for (const p of [...current].sort(rank).slice(0, current.length - want)) this.#terminate(p);
    const readyCurrent = current.filter(isReady).length;
    const keepOld = Math.max(0, want - readyCurrent);
    for (const p of [...old].sort(rank).slice(0, Math.max(0, old.length - keepOld))) this.#terminate(p);
  }

  /** Pod Security admission: the refusal of a pod in `namespace`, if it enforces `restricted`. */
  #podSecurityRefusal(namespace: string | undefined, podSpec: unknown): string | null {
    const ns = this.#objects.get('namespaces')!.get(`/${namespace ?? ''}`);
    return ns?.metadata.labels?.['pod-security.kubernetes.io/enforce'] === 'restricted' ? restrictedPodSecurityViolations(podSpec) : null;
  }

  /** Sets (a message) or clears (`null`) the Deployment's `ReplicaFailure` condition. */
  #setReplicaFailure(d: KubeObj, message: string | null): void {
    type Condition = { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string; lastUpdateTime?: string };
    const status = (d['status'] ?? {}) as { conditions?: Condition[] };
    const others = (status.conditions ?? []).filter((c) => c.type !== 'ReplicaFailure');
    const had = (status.conditions ?? []).some((c) => c.type === 'ReplicaFailure');
    if (message === null ? !had : had) return;
    const now = new Date().toISOString();
    const conditions = message === null ? others : [...others, { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message, lastTransitionTime: now, lastUpdateTime: now }];
    const next = clone(d);
    next['status'] = { ...status, conditions };
    this.#store('deployments', next, d);
  }

  #createPod(d: KubeObj, template: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> }, hash: string): void {
    const rs = `${d.metadata.name}-${hash}`;
    const name = `${rs}-${shortHash(randomUUID(), 5)}`;
    const ip = `10.0.${Math.floor(this.#nextIp / 250)}.${(this.#nextIp++ % 250) + 1}`;
    const containers = (template.spec['containers'] as { name: string; image?: string }[]) ?? [];
    this.put('pods', {
      metadata: {
        name,
        namespace: d.metadata.namespace,
        labels: { ...template.metadata?.labels, 'pod-template-hash': hash },
        annotations: { ...template.metadata?.annotations },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs, uid: d.metadata.uid ?? '', controller: true }],
      },
      spec: clone(template.spec),
      status: {
        phase: 'Running',
        podIP: ip,
        podIPs: [{ ip }],
        startTime: new Date().toISOString(),
        conditions: [{ type: 'PodScheduled', status: 'True' }, { type: 'Ready', status: 'False' }],
        containerStatuses: containers.map((c) => ({
          name: c.name, image: c.image ?? '', imageID: '', ready: false, restartCount: 0, started: true,
          state: { running: { startedAt: new Date().toISOString() } },
        })),
      },
    });
  }

  #terminate(p: KubeObj): void {
    const next = clone(p);
    next.metadata.deletionTimestamp = new Date().toISOString();
    next.metadata.deletionGracePeriodSeconds = Number((p['spec'] as { terminationGracePeriodSeconds?: number }).terminationGracePeriodSeconds ?? 30);
    this.#store('pods', next, p);
  }

  #collectGarbage(d: KubeObj): void {
    for (const p of this.#podsOf(d)) if (p.metadata.deletionTimestamp === undefined) this.#terminate(p);
  }

  #syncSlices(): void {
    const slices = this.#objects.get('endpointslices')!;
    const wanted = new Set<string>();
    for (const svc of this.#objects.get('services')!.values()) {
      const spec = svc['spec'] as { selector?: Record<string, string>; ports?: { name?: string; port: number; targetPort?: number | string; protocol?: string }[] };
      if (!spec.selector) continue;
      const ns = svc.metadata.namespace ?? '';
      const name = `${svc.metadata.name}-${shortHash(svc.metadata.name, 5)}`;
      wanted.add(`${ns}/${name}`);
      const pods = [...this.#objects.get('pods')!.values()]
        .filter((p) => p.metadata.namespace === ns && matchesSelector(p.metadata.labels, Object.entries(spec.selector!).map(([k, v]) => `${k}=${v}`).join(',')))
        .filter((p) => (p['status'] as { podIP?: string } | undefined)?.podIP)
        .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
      const endpoints = pods.map((p) => {
        const ready = (p['status'] as { conditions?: { type: string; status: string }[] }).conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
        const terminating = p.metadata.deletionTimestamp !== undefined;
        return {
          addresses: [(p['status'] as { podIP: string }).podIP],
          conditions: { ready: ready && !terminating, serving: ready, terminating },
          targetRef: { kind: 'Pod', name: p.metadata.name, namespace: ns, uid: p.metadata.uid },
        };
      });
      const labels: Record<string, string> = { ...svc.metadata.labels, 'kubernetes.io/service-name': svc.metadata.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' };
      if ((svc['spec'] as { clusterIP?: string }).clusterIP === 'None') labels['service.kubernetes.io/headless'] = '';
      const body = {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name, namespace: ns, labels, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid ?? '', controller: true }] },
        addressType: 'IPv4',
        endpoints,
        ports: (spec.ports ?? []).map((p) => ({ name: p.name ?? '', port: typeof p.targetPort === 'number' ? p.targetPort : p.port, protocol: p.protocol ?? 'TCP' })),
      };
      const before = slices.get(`${ns}/${name}`);
      if (before && deepEqual(withoutVolatile(before), withoutVolatile({ ...body, metadata: { ...before.metadata, ...body.metadata } }))) continue;
      const stored = { ...body, metadata: { ...(before?.metadata ?? {}), ...body.metadata } } as KubeObj;
      const problems = validateManifest(stored);
      if (problems.length > 0) throw new Error(`fake: invalid EndpointSlice ${name}: ${problems.join('; ')}`);
      this.#store('endpointslices', stored, before);
    }
    for (const [key, s] of [...slices]) {
      const managed = s.metadata.labels?.['endpointslice.kubernetes.io/managed-by'] === 'endpointslice-controller.k8s.io';
      if (managed && !wanted.has(key)) this.#delete('endpointslices', key, s);
    }
  }
}

interface Route {
  readonly def: ResourceDef;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly subresource: string | undefined;
}

function apiVersionOf(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

/** `/api/v1/...` and `/apis/<group>/<version>/...` paths of the resources above. */
function parseRoute(pathname: string): Route | undefined {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') {
    group = '';
    version = 'v1';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1]!;
    version = parts[2]!;
    rest = parts.slice(3);
  } else return undefined;
  const find = (resource: string | undefined) => RESOURCES.find((r) => r.resource === resource && r.group === group && r.version === version);
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const def = find(rest[2]);
    if (!def || !def.namespaced) return undefined;
    return { def, namespace: rest[1], name: rest[3], subresource: rest[4] };
  }
  const def = find(rest[0]);
  if (!def) return undefined;
  return { def, namespace: undefined, name: rest[1], subresource: rest[2] };
}

function ownership(applied: KubeObj): { top: Set<string>; labels: Set<string>; annotations: Set<string> } {
  return {
    top: new Set(Object.keys(applied).filter((k) => !['apiVersion', 'kind', 'metadata', 'status'].includes(k))),
    labels: new Set(Object.keys(applied.metadata.labels ?? {})),
    annotations: new Set(Object.keys(applied.metadata.annotations ?? {})),
  };
}

/**
 * Server-side apply, simplified to what Portico relies on: the applied top-level fields (spec...)
 * replace the live ones; labels and annotations merge, and those the manager applied before but
 * not now are removed (others' keys stay).
 */
function applyOnto(live: KubeObj, applied: KubeObj, owned: { top: Set<string>; labels: Set<string>; annotations: Set<string> } | undefined): KubeObj {
  const next = clone(live);
  for (const k of owned?.top ?? []) if (!(k in applied)) delete next[k];
  for (const [k, v] of Object.entries(applied)) if (!['apiVersion', 'kind', 'metadata', 'status'].includes(k)) next[k] = clone(v);
  for (const field of ['labels', 'annotations'] as const) {
    const merged: Record<string, string> = { ...live.metadata[field] };
    for (const k of owned?.[field] ?? []) if (!(k in (applied.metadata[field] ?? {}))) delete merged[k];
    Object.assign(merged, applied.metadata[field]);
    if (Object.keys(merged).length > 0) next.metadata[field] = merged;
    else delete next.metadata[field];
  }
  return next;
}

function withoutVolatile(o: KubeObj): unknown {
  const c = clone(o);
  delete c.metadata.resourceVersion;
  delete c.metadata.generation;
  return c;
}
