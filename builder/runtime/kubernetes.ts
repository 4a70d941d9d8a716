import { KubeConfig } from '@kubernetes/client-node';
import type { EndpointSpec, EndpointStatus, RegistryAuth, Runtime, RuntimeHooks } from './runtime.ts';
import { StatusListeners } from './status-listeners.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, KubeApi, describeApiError, statusOf, type Applied, type ObjectMetaView } from './kubernetes/api.ts';
import { PodLogFollower } from './kubernetes/logs.ts';
import {
  ANNOTATIONS,
  CONTAINER,
  DEFAULT_GATEWAY_SELECTOR,
  LABELS,
  MANAGED_SELECTOR,
  NETWORK_POLICY_NAME,
  deploymentManifest,
  envSecretManifest,
  manifestHash,
  namespaceManifest,
  networkPolicyManifest,
  PULL_SECRET_NAME,
  pullSecretManifest,
  pdbManifest,
  publishedSpecHash,
  serviceManifest,
  type GatewaySelector,
  type ListenHost,
  type ManifestOptions,
} from './kubernetes/manifests.ts';
import { endpointId, namespaceFor, resourceName } from './kubernetes/names.ts';
import { endpointStatus, replicaFailure, type DeploymentStatusView, type PodView, type SliceView } from './kubernetes/status.ts';
import { Informer, type KubeObject, type ListResult } from './kubernetes/watch.ts';

export { DEFAULT_GATEWAY_SELECTOR, type GatewaySelector, type ListenHost } from './kubernetes/manifests.ts';

/** Construction options of `KubernetesRuntime`. */
export interface KubernetesRuntimeOptions {
  /** The cluster and credentials (see `loadKubeConfig`). */
  readonly kubeConfig: KubeConfig;
  /** Namespace of a project's replicas, or a template with `{owner}` and `{project}`. */
  readonly namespaceTemplate: string;
  readonly hooks: RuntimeHooks;
  /** SIGTERM to SIGKILL, after the preStop sleep (`terminationGracePeriodSeconds` = both). */
  readonly stopGraceSeconds: number;
  /** Who may reach replica pods (the NetworkPolicy). Default: `DEFAULT_GATEWAY_SELECTOR`. */
  readonly gatewaySelector?: GatewaySelector;
  /**
   * Seconds a stopping pod keeps serving (preStop sleep) before SIGTERM: longer than it takes the
   * runtime to see it terminating and the gateways to acknowledge its removal. Default 10.
   */
  readonly preStopSeconds?: number;
  /** `exec` (`sleep N` in the image, any cluster) or `action` (kubelet sleep, Kubernetes >= 1.30). Default `exec`. */
  readonly preStopSleep?: 'exec' | 'action';
  /** Where images built for `wsgi:` endpoints hold the bundled runner. Default `/opt/portico/wsgi_runner.py`. */
  readonly wsgiRunner?: string;
  /** Restarts in CrashLoopBackOff before the endpoint error says crash loop. Default 3. */
  readonly crashLoopRestarts?: number;
  /** Unchanged objects are applied again this often, repairing edits made behind Portico's back. Default 10 minutes. */
  readonly resyncMs?: number;
  /** A pod chosen for scale-down that Kubernetes keeps running is routed to again after this long. Default 60 s. */
  readonly drainTimeoutMs?: number;
  /** How long `list`/`ensure` wait for the first LIST of pods and slices at start. Default 15 s. */
  readonly startupTimeoutMs?: number;
  /**
   * A watch failing this long leaves the runtime blind: its endpoints' state is `unknown` (their
   * routes are kept) until it works again. Default 30 s.
   */
  readonly staleAfterMs?: number;
  /**
   * How long an API call other than a watch or a log stream may go unanswered before it fails
   * (and with it the `ensure` or `remove` that made it, freeing the reconciler). Default 30 s.
   */
  readonly requestTimeoutMs?: number;
  /** Server-side duration of each watch. Default 25 s. */
  readonly watchTimeoutSeconds?: number;
  /**
   * The name of the target this runtime serves, written on its objects (`portico.io/target`). A
   * runtime given one leaves alone what another target's runtime wrote, even in the same
   * namespaces of the same cluster. Default: none (every Portico object it finds is adopted).
   */
  readonly target?: string;
  /** Failures in the background (watches, adoption, log streams). Default: ignored. */
  readonly onError?: (message: string, err: unknown) => void;
  /**
   * Registry credentials (`PORTICO_REGISTRY_USERNAME`/`_PASSWORD`): each namespace gets an image
   * pull Secret for `serveraddress` and every Deployment names it. Default: none.
   */
  readonly imagePullAuth?: RegistryAuth;
  /**
   * `restricted`: replica pods meet the "restricted" Pod Security Standard (non-root, no privilege
   * escalation, all capabilities dropped, seccomp `RuntimeDefault`), as namespaces enforcing it
   * require. Default: none (pods run as their image says, root included).
   */
  readonly podSecurity?: 'restricted';
  /** With `podSecurity`: the UID replicas run as, for images whose user is root. Default: the image's. */
  readonly runAsUser?: number;
  /**
   * What replicas are told to listen on (`HOST`, and the WSGI runner's address): `::` where pods
   * have IPv6 addresses only. Default `0.0.0.0`.
   */
  readonly listenHost?: ListenHost;
}

/** Loads a kubeconfig file (`PORTICO_KUBECONFIG`) and selects `context` (`PORTICO_KUBE_CONTEXT`) if given. */
export function loadKubeConfig(path: string, context?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  if (context !== undefined) {
    if (!kc.getContexts().some((c) => c.name === context)) throw new Error(`kubeconfig ${path} has no context ${JSON.stringify(context)}`);
    kc.setCurrentContext(context);
  }
  return kc;
}

type ObjectKind = 'Deployment' | 'Service' | 'PodDisruptionBudget' | 'Secret';

/** What one informer has done: LISTs, WATCH requests, 410s, and the last resourceVersion seen. */
export interface WatchStats {
  readonly lists: number;
  readonly watches: number;
  readonly expired: number;
  readonly resourceVersion: string;
}

interface Endpoint {
  readonly key: string;
  readonly id: string;
  readonly namespace: string;
  readonly name: string;
  spec: EndpointSpec | undefined;
  image: string | undefined;
  port: number;
  /** Replicas and (published) spec hash of the Deployment as last applied (or adopted). */
  appliedReplicas: number | undefined;
  appliedSpecHash: string | undefined;
  /** Manifest hash and time of the last apply (or adoption) per kind. */
  readonly applied: Map<ObjectKind, { hash: string; at: number }>;
  /** Pods chosen for scale-down (announced, not yet terminating) -> when to give up on them. */
  readonly draining: Map<string, number>;
  /** Pods `beforeStop` was called for. */
  readonly announced: Set<string>;
  removed: boolean;
  runtimeError: string | undefined;
  chain: Promise<void>;
  readonly stops: Set<Promise<void>>;
  lastEmitted: string;
  drainTimer: NodeJS.Timeout | null;
}

const DEFAULTS = {
  preStopSeconds: 10,
  crashLoopRestarts: 3,
  resyncMs: 600_000,
  drainTimeoutMs: 60_000,
  startupTimeoutMs: 15_000,
  staleAfterMs: 30_000,
  wsgiRunner: '/opt/portico/wsgi_runner.py',
};

function keyParts(key: string): { owner: string; project: string } {
  const [owner = '', project = ''] = key.split('/');
  return { owner, project };
}

const labelOf = (o: { metadata?: { labels?: Record<string, string> } } | undefined, label: string) => o?.metadata?.labels?.[label];
const isTerminating = (pod: PodView) => pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null;

/**
 * Runs replicas as pods of a Kubernetes cluster (target `kubernetes`).
 *
 * Per endpoint, in the project's namespace (created if missing): a Deployment (the built image,
 * TCP readiness on the port, preStop sleep + grace period), a headless Service (so the
 * EndpointSlice controller publishes pod readiness), a PodDisruptionBudget; per namespace a
 * NetworkPolicy letting only the gateway pods in. Writes are server-side applies, skipped when
 * the live object already carries the manifest's hash (so repeated `ensure`s write nothing).
 *
 * Routing follows EndpointSlices (list + watch with resourceVersion bookkeeping): a replica is
 * `ready` at `podIP:port` when its slice endpoint is ready. Pods (also watched) explain the
 * others: crash loops, image pull failures, unschedulable pods; Deployments (watched too) say
 * when pods cannot be created at all (`ReplicaFailure`: a quota, admission). Logs are followed per pod.
 *
 * No request reaches a stopping pod: on scale-down the runtime picks the pods to remove, marks
 * them with a low `pod-deletion-cost` so the ReplicaSet controller removes those, calls
 * `beforeStop` for them and reports them `stopping` before it lowers `replicas`. Any other pod
 * Kubernetes stops (rolling update, eviction, drain, a different choice) shows up as terminating
 * in the watched Pod/EndpointSlice within the watch latency; the runtime reports it `stopping`
 * and calls `beforeStop`, while the pod's preStop sleep (`preStopSeconds`) keeps it serving
 * in-flight and late requests until well after the gateways have dropped it.
 *
 * A new runtime adopts what a previous controller left: it lists Portico's objects by label.
 */
export class KubernetesRuntime implements Runtime {
  readonly kind = 'kubernetes' as const;
  readonly #api: KubeApi;
  readonly #opts: Required<Omit<KubernetesRuntimeOptions, 'onError' | 'gatewaySelector' | 'imagePullAuth' | 'target' | 'podSecurity' | 'runAsUser' | 'listenHost'>> & { gatewaySelector: GatewaySelector };
  readonly #target: string | undefined;
  readonly #pullAuth: KubernetesRuntimeOptions['imagePullAuth'];
  readonly #podOptions: Pick<ManifestOptions, 'podSecurity' | 'runAsUser' | 'listenHost'>;
  readonly #onError: (message: string, err: unknown) => void;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #byId = new Map<string, Endpoint>();
  readonly #podsById = new Map<string, Map<string, PodView>>();
  readonly #slicesById = new Map<string, Map<string, SliceView>>();
  /** Informer key -> endpoint id it was indexed under (to unindex on change or delete). */
  readonly #podIndex = new Map<string, string>();
  readonly #sliceIndex = new Map<string, string>();
  readonly #deploymentsById = new Map<string, Map<string, DeploymentStatusView>>();
  readonly #deploymentIndex = new Map<string, string>();
  readonly #followers = new Map<string, { follower: PodLogFollower; restarts: number }>();
  readonly #namespaces = new Set<string>();
  readonly #policies = new Map<string, { hash: string; at: number }>();
  /** Namespace -> when its pull Secret was last applied. */
  readonly #pullSecrets = new Map<string, number>();
  readonly #listeners = new StatusListeners();
  readonly #pods: Informer<PodView>;
  readonly #slices: Informer<SliceView>;
  /** Deployments, for their `ReplicaFailure` condition (pods that cannot be created). */
  readonly #deployments: Informer<DeploymentStatusView>;
  readonly #ready: Promise<void>;
  #closed = false;
  #adopted = false;
  /** Why the last adoption LIST failed (while not adopted). */
  #adoptError: unknown = undefined;
  #adoptTimer: NodeJS.Timeout | null = null;
  /** Fires when a failing watch has been failing `staleAfterMs`: the endpoints' state becomes unknown. */
  #staleTimer: NodeJS.Timeout | null = null;

  constructor(opts: KubernetesRuntimeOptions) {
    this.#pullAuth = opts.imagePullAuth;
    this.#target = opts.target;
    this.#podOptions = {
      ...(opts.podSecurity === 'restricted' ? { podSecurity: 'restricted', ...(opts.runAsUser !== undefined ? { runAsUser: opts.runAsUser } : {}) } : {}),
      ...(opts.listenHost !== undefined ? { listenHost: opts.listenHost } : {}),
    };
    this.#opts = {
      kubeConfig: opts.kubeConfig,
      namespaceTemplate: opts.namespaceTemplate,
      hooks: opts.hooks,
      stopGraceSeconds: opts.stopGraceSeconds,
      gatewaySelector: opts.gatewaySelector ?? DEFAULT_GATEWAY_SELECTOR,
      preStopSeconds: opts.preStopSeconds ?? DEFAULTS.preStopSeconds,
      preStopSleep: opts.preStopSleep ?? 'exec',
      wsgiRunner: opts.wsgiRunner ?? DEFAULTS.wsgiRunner,
      crashLoopRestarts: opts.crashLoopRestarts ?? DEFAULTS.crashLoopRestarts,
      resyncMs: opts.resyncMs ?? DEFAULTS.resyncMs,
      drainTimeoutMs: opts.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs,
      startupTimeoutMs: opts.startupTimeoutMs ?? DEFAULTS.startupTimeoutMs,
      staleAfterMs: opts.staleAfterMs ?? DEFAULTS.staleAfterMs,
      requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      watchTimeoutSeconds: opts.watchTimeoutSeconds ?? 25,
    };
    this.#onError = opts.onError ?? (() => {});
    this.#api = new KubeApi(opts.kubeConfig, this.#opts.requestTimeoutMs);
    const common = { kubeConfig: opts.kubeConfig, labelSelector: MANAGED_SELECTOR, watchTimeoutSeconds: this.#opts.watchTimeoutSeconds };
    const informer = <T extends KubeObject>(path: string, what: string, list: () => Promise<ListResult<T>>, onChange: (key: string, obj: T | undefined) => void) =>
      new Informer<T>({
        ...common,
        path,
        list,
        onChange,
        onError: (err) => this.#onWatchError(`kubernetes runtime: ${what} watch failed`, err),
        onRecover: () => this.#onWatchRecover(),
      });
    this.#pods = informer('/api/v1/pods', 'pod', () => this.#api.listPods(MANAGED_SELECTOR), (key, pod) => this.#onPod(key, pod));
    this.#slices = informer('/apis/discovery.k8s.io/v1/endpointslices', 'EndpointSlice', () => this.#api.listEndpointSlices(MANAGED_SELECTOR), (key, slice) => this.#onSlice(key, slice));
    this.#deployments = informer('/apis/apps/v1/deployments', 'Deployment', () => this.#api.listDeploymentStatuses(MANAGED_SELECTOR), (key, d) => this.#onDeployment(key, d));
    this.#ready = this.#start();
  }

  /** The namespace replicas of `owner/project` run in. */
  namespaceOf(owner: string, project: string): string {
    return namespaceFor(this.#opts.namespaceTemplate, owner, project);
  }

  async ensure(spec: EndpointSpec): Promise<void> {
    await this.#ready;
    if (this.#closed) throw new Error('kubernetes runtime is closed');
    const ep = this.#endpoint(spec.key);
    ep.spec = spec;
    ep.removed = false;
    if (spec.image !== undefined) ep.image = spec.image;
    ep.port = spec.port;
    try {
      await this.#serial(ep, () => this.#apply(ep, spec));
    } finally {
      this.#emit(ep);
    }
  }

  async remove(key: string): Promise<void> {
    await this.#ready;
    if (this.#closed) throw new Error('kubernetes runtime is closed');
    const ep = this.#endpoint(key);
    ep.removed = true;
    try {
      await this.#serial(ep, async () => {
        if (!ep.removed) return; // ensured again while queued
        const ids = this.#livePods(ep).map((p) => p.metadata!.name!);
        for (const id of ids) {
          ep.draining.set(id, Number.POSITIVE_INFINITY);
          ep.announced.add(id);
        }
        await this.#beforeStop(ep, ids);
        this.#emit(ep);
        await this.#api.delete('Deployment', ep.namespace, ep.name);
        await this.#api.delete('PodDisruptionBudget', ep.namespace, ep.name);
        await this.#api.delete('Service', ep.namespace, ep.name);
        // Whether there is one is not known after a restart (Secrets are never listed): 404 is fine.
        await this.#api.delete('Secret', ep.namespace, ep.name);
      });
    } catch (err) {
      this.#emit(ep);
      throw err;
    }
    if (!ep.removed) return;
    await Promise.all([...ep.stops]);
    this.#forget(ep);
    this.#listeners.emit({ key, replicas: [] });
  }

  async list(): Promise<EndpointStatus[]> {
    await this.#ready;
    return [...this.#endpoints.values()].map((ep) => this.#status(ep));
  }

  onChange(listener: (status: EndpointStatus) => void): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * Why the replicas' state cannot be told: the cluster has not answered the first LISTs since
   * this runtime started, or a watch has been failing for `staleAfterMs`.
   */
  stateUnknown(): string | undefined {
    if (this.#closed) return undefined;
    const informers = this.#informers();
    const failure = informers.find((i) => i.failure)?.failure;
    if (!this.#adopted || informers.some((i) => !i.listed)) {
      const err = this.#adoptError ?? failure?.error;
      return `kubernetes API unreachable: ${err === undefined ? 'no answer since the controller started' : describeApiError(err)}`;
    }
    const stale = informers.map((i) => i.failure).find((f) => f !== null && Date.now() - f.since >= this.#opts.staleAfterMs);
    // The time it started, not how long ago: the text stays the same (a version's reason is not rewritten every pass).
    if (stale) return `kubernetes API unreachable since ${new Date(stale.since).toISOString()} (replicas not watched): ${describeApiError(stale.error)}`;
    return undefined;
  }

  async close(): Promise<void> {
    await this.#ready;
    if (this.#closed) return;
    for (const ep of this.#endpoints.values()) {
      await ep.chain;
      await Promise.all([...ep.stops]);
    }
    this.#closed = true;
    if (this.#adoptTimer) clearTimeout(this.#adoptTimer);
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    for (const ep of this.#endpoints.values()) if (ep.drainTimer) clearTimeout(ep.drainTimer);
    await Promise.all([...this.#informers().map((i) => i.stop()), ...[...this.#followers.values()].map((f) => f.follower.stop())]);
    this.#followers.clear();
    this.#listeners.clear();
  }

  /** Watch counters (LISTs, WATCHes, 410s) and last resourceVersion of the pod, EndpointSlice and Deployment informers, for diagnostics. */
  get watchStats(): { pods: WatchStats; slices: WatchStats; deployments: WatchStats } {
    const of = (i: Informer<PodView> | Informer<SliceView> | Informer<DeploymentStatusView>): WatchStats => ({ ...i.stats, resourceVersion: i.resourceVersion });
    return { pods: of(this.#pods), slices: of(this.#slices), deployments: of(this.#deployments) };
  }

  // --- start and adoption -------------------------------------------------------------------

  async #start(): Promise<void> {
    await this.#adopt();
    const synced = Promise.all(this.#informers().map((i) => i.start()));
    // Listed late (after the startup timeout, or without a failure to recover from): known now.
    void synced.then(() => this.#emitAll());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#opts.startupTimeoutMs);
      timer.unref();
    });
    await Promise.race([synced, timeout]);
    clearTimeout(timer);
  }

  /** Lists Portico's objects by label; retried in the background until it succeeds. */
  async #adopt(): Promise<void> {
    try {
      const [deployments, services, pdbs, policies] = await Promise.all([
        this.#api.listDeployments(MANAGED_SELECTOR),
        this.#api.listServices(MANAGED_SELECTOR),
        this.#api.listPodDisruptionBudgets(MANAGED_SELECTOR),
        this.#api.listNetworkPolicies(MANAGED_SELECTOR),
      ]);
      const now = Date.now();
      const note = (kind: ObjectKind, o: ObjectMetaView): Endpoint | undefined => {
        const key = o.annotations[ANNOTATIONS.key];
        if (!key) return undefined;
        // Another target's (objects written before targets were named carry none: adopted).
        const target = o.annotations[ANNOTATIONS.target];
        if (target !== undefined && this.#target !== undefined && target !== this.#target) return undefined;
        this.#namespaces.add(o.namespace);
        if (!this.#placedHere(key, o.namespace) || resourceName(key) !== o.name) {
          // Written under another namespace template (PORTICO_KUBE_NAMESPACE changed): not ours to manage.
          this.#onError(`kubernetes runtime: ${kind} ${o.namespace}/${o.name} of ${key} is not where this runtime puts it; left alone`, undefined);
          return undefined;
        }
        const ep = this.#endpoint(key);
        const hash = o.annotations[ANNOTATIONS.manifestHash];
        if (hash && !ep.applied.has(kind)) ep.applied.set(kind, { hash, at: now });
        return ep;
      };
      for (const d of deployments) {
        const ep = note('Deployment', d);
        if (!ep || ep.spec) continue;
        ep.appliedReplicas = d.replicas;
        ep.appliedSpecHash = d.annotations[ANNOTATIONS.specHash];
        ep.image = d.image;
        if (d.port !== undefined) ep.port = d.port;
      }
      for (const s of services) note('Service', s);
      for (const p of pdbs) note('PodDisruptionBudget', p);
      for (const p of policies) {
        this.#namespaces.add(p.namespace);
        const hash = p.annotations[ANNOTATIONS.manifestHash];
        if (p.name === NETWORK_POLICY_NAME && hash && !this.#policies.has(p.namespace)) this.#policies.set(p.namespace, { hash, at: now });
      }
      this.#adopted = true;
      this.#adoptError = undefined;
      for (const ep of this.#endpoints.values()) this.#emit(ep);
    } catch (err) {
      this.#adoptError = err;
      this.#onError('kubernetes runtime: listing existing objects failed; retrying', err);
      if (!this.#closed) {
        this.#adoptTimer = setTimeout(() => void this.#adopt(), 5000);
        this.#adoptTimer.unref();
      }
    }
  }

  /**
   * Whether objects of endpoint `key` in `namespace` are this runtime's: another kubernetes target
   * (or installation) on the same cluster with another namespace template has its own.
   */
  #placedHere(key: string, namespace: string): boolean {
    const { owner, project } = keyParts(key);
    return this.namespaceOf(owner, project) === namespace;
  }

  #endpoint(key: string): Endpoint {
    let ep = this.#endpoints.get(key);
    if (ep) return ep;
    const { owner, project } = keyParts(key);
    ep = {
      key,
      id: endpointId(key),
      namespace: this.namespaceOf(owner, project),
      name: resourceName(key),
      spec: undefined,
      image: undefined,
      port: 8000,
      appliedReplicas: undefined,
      appliedSpecHash: undefined,
      applied: new Map(),
      draining: new Map(),
      announced: new Set(),
      removed: false,
      runtimeError: undefined,
      chain: Promise.resolve(),
      stops: new Set(),
      lastEmitted: '',
      drainTimer: null,
    };
    this.#endpoints.set(key, ep);
    this.#byId.set(ep.id, ep);
    return ep;
  }

  #forget(ep: Endpoint): void {
    if (ep.drainTimer) clearTimeout(ep.drainTimer);
    this.#endpoints.delete(ep.key);
    if (this.#byId.get(ep.id) === ep) this.#byId.delete(ep.id);
  }

  // --- writes -------------------------------------------------------------------------------

  /** Runs `fn` after the endpoint's earlier operations; a failure becomes the endpoint error. */
  #serial(ep: Endpoint, fn: () => Promise<void>): Promise<void> {
    const run = ep.chain.then(fn);
    ep.chain = run.then(
      () => {
        ep.runtimeError = undefined;
      },
      (err: unknown) => {
        ep.runtimeError = `kubernetes: ${describeApiError(err)}`;
      },
    );
    return run;
  }

  #manifestOptions(namespace: string): ManifestOptions {
    return {
      namespace,
      preStopSeconds: this.#opts.preStopSeconds,
      stopGraceSeconds: this.#opts.stopGraceSeconds,
      preStopSleep: this.#opts.preStopSleep,
      wsgiRunner: this.#opts.wsgiRunner,
      ...(this.#pullAuth ? { imagePullSecret: PULL_SECRET_NAME } : {}),
      ...(this.#target !== undefined ? { target: this.#target } : {}),
      ...this.#podOptions,
    };
  }

  async #apply(ep: Endpoint, spec: EndpointSpec): Promise<void> {
    try {
      await this.#applyAll(ep, spec);
    } catch (err) {
      // A server-side apply is a 404 only when the namespace is gone (deleted behind Portico's
      // back): forget what was written there, so the next ensure creates it all again.
      if (statusOf(err) === 404) this.#forgetNamespace(ep.namespace);
      throw err;
    }
  }

  #forgetNamespace(namespace: string): void {
    this.#namespaces.delete(namespace);
    this.#policies.delete(namespace);
    this.#pullSecrets.delete(namespace);
    for (const ep of this.#endpoints.values()) if (ep.namespace === namespace) ep.applied.clear();
  }

  async #applyAll(ep: Endpoint, spec: EndpointSpec): Promise<void> {
    // A remove that failed half-way left its pods announced; wanted again, they may serve again.
    for (const [name, deadline] of ep.draining) {
      if (deadline !== Number.POSITIVE_INFINITY) continue;
      ep.draining.delete(name);
      ep.announced.delete(name);
    }
    const opts = this.#manifestOptions(ep.namespace);
    const deployment = deploymentManifest(spec, opts); // throws before any write if the spec cannot run here
    await this.#ensureNamespace(ep.namespace, spec.owner, spec.project);
    await this.#applyPolicy(ep.namespace);
    await this.#applyPullSecret(ep.namespace);
    await this.#applyIfChanged(ep, 'Service', serviceManifest(spec, opts));
    const specHash = publishedSpecHash(spec);
    const scalingDown = ep.appliedSpecHash === specHash && ep.appliedReplicas !== undefined && spec.replicas < ep.appliedReplicas;
    if (scalingDown) await this.#drainSurplus(ep, spec);
    // Before the Deployment: its pods read their secret environment from it when they start.
    const envSecret = envSecretManifest(spec, opts);
    if (envSecret !== null) await this.#applyIfChanged(ep, 'Secret', envSecret, manifestHash(envSecret));
    await this.#applyIfChanged(ep, 'Deployment', deployment);
    ep.appliedReplicas = spec.replicas;
    ep.appliedSpecHash = specHash;
    await this.#applyIfChanged(ep, 'PodDisruptionBudget', pdbManifest(spec, opts));
  }

  async #ensureNamespace(namespace: string, owner: string, project: string): Promise<void> {
    if (this.#namespaces.has(namespace)) return;
    if (!(await this.#api.namespaceExists(namespace))) await this.#api.createNamespace(namespaceManifest(namespace, owner, project));
    this.#namespaces.add(namespace);
  }

  async #applyPolicy(namespace: string): Promise<void> {
    const policy = networkPolicyManifest(namespace, this.#opts.gatewaySelector);
    const hash = policy.metadata!.annotations![ANNOTATIONS.manifestHash]!;
    const last = this.#policies.get(namespace);
    if (last && last.hash === hash && Date.now() - last.at < this.#opts.resyncMs) return;
    await this.#api.apply(policy);
    this.#policies.set(namespace, { hash, at: Date.now() });
  }

  async #applyPullSecret(namespace: string): Promise<void> {
    const auth = this.#pullAuth;
    if (!auth) return;
    const at = this.#pullSecrets.get(namespace);
    if (at !== undefined && Date.now() - at < this.#opts.resyncMs) return;
    await this.#api.apply(pullSecretManifest(namespace, auth));
    this.#pullSecrets.set(namespace, Date.now());
  }

  /** `hash` defaults to the manifest's hash annotation (a Secret's is kept in memory only). */
  async #applyIfChanged(ep: Endpoint, kind: ObjectKind, obj: Applied, hash = obj.metadata!.annotations![ANNOTATIONS.manifestHash]!): Promise<void> {
    const last = ep.applied.get(kind);
    if (last && last.hash === hash && Date.now() - last.at < this.#opts.resyncMs) return;
    await this.#api.apply(obj);
    ep.applied.set(kind, { hash, at: Date.now() });
  }

  /**
   * Before `replicas` goes down: picks the pods to remove (not ready first, then newest), gives
   * them the lowest deletion cost so the ReplicaSet controller removes exactly those, reports them
   * `stopping` and awaits `beforeStop` for them.
   */
  async #drainSurplus(ep: Endpoint, spec: EndpointSpec): Promise<void> {
    const live = this.#livePods(ep).filter((p) => !ep.draining.has(p.metadata!.name!));
    const surplus = live.length - Math.max(0, spec.replicas);
    if (surplus <= 0) return;
    const ready = this.#readyPodNames(ep);
    const created = (p: PodView) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
    const name = (p: PodView) => p.metadata!.name!;
    // Creation times have second precision: ties are broken by name, arbitrarily but stably.
    const victims = [...live]
      .sort((a, b) => Number(ready.has(name(a))) - Number(ready.has(name(b))) || created(b) - created(a) || (name(a) < name(b) ? 1 : -1))
      .slice(0, surplus)
      .map((p) => p.metadata!.name!);
    for (const name of victims) {
      try {
        await this.#api.annotatePod(ep.namespace, name, { [ANNOTATIONS.deletionCost]: '-1000' });
      } catch (err) {
        // Without the hint Kubernetes may pick another pod: that one is caught as it terminates.
        this.#onError(`kubernetes runtime: could not mark pod ${name} for removal`, err);
      }
    }
    const deadline = Date.now() + this.#opts.drainTimeoutMs;
    for (const name of victims) {
      ep.draining.set(name, deadline);
      ep.announced.add(name);
    }
    await this.#beforeStop(ep, victims);
    this.#emit(ep);
    this.#scheduleDrainCheck(ep);
  }

  /** Pods Kubernetes kept despite being chosen (it may choose others) become routable again. */
  #scheduleDrainCheck(ep: Endpoint): void {
    if (ep.drainTimer) clearTimeout(ep.drainTimer);
    const next = Math.min(...ep.draining.values());
    if (!Number.isFinite(next)) return;
    ep.drainTimer = setTimeout(() => {
      ep.drainTimer = null;
      const now = Date.now();
      let changed = false;
      for (const [name, deadline] of ep.draining) {
        if (deadline > now) continue;
        ep.draining.delete(name);
        ep.announced.delete(name);
        changed = true;
      }
      if (changed) this.#emit(ep);
      this.#scheduleDrainCheck(ep);
    }, Math.max(0, next - Date.now()));
    ep.drainTimer.unref();
  }

  /** Calls `beforeStop` (its failure must not keep pods running: they stop regardless). */
  async #beforeStop(ep: Endpoint, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const p = this.#opts.hooks.beforeStop(ep.key, ids).catch((err: unknown) => {
      this.#onError(`kubernetes runtime: beforeStop failed for ${ep.key}`, err);
    });
    ep.stops.add(p);
    try {
      await p;
    } finally {
      ep.stops.delete(p);
    }
  }

  // --- observation --------------------------------------------------------------------------

  #livePods(ep: Endpoint): PodView[] {
    return [...(this.#podsById.get(ep.id)?.values() ?? [])].filter((p) => !isTerminating(p) && p.metadata?.name);
  }

  #readyPodNames(ep: Endpoint): Set<string> {
    const out = new Set<string>();
    for (const s of this.#slicesById.get(ep.id)?.values() ?? []) {
      for (const e of s.endpoints ?? []) {
        if (e.targetRef?.name && e.conditions?.ready !== false && e.conditions?.terminating !== true) out.add(e.targetRef.name);
      }
    }
    return out;
  }

  #reindex<T>(index: Map<string, string>, byId: Map<string, Map<string, T>>, key: string, id: string | undefined, obj: T | undefined): string | undefined {
    const before = index.get(key);
    if (before !== undefined && (before !== id || obj === undefined)) {
      byId.get(before)?.delete(key);
      if (byId.get(before)?.size === 0) byId.delete(before);
      index.delete(key);
    }
    if (obj !== undefined && id !== undefined) {
      let m = byId.get(id);
      if (!m) byId.set(id, (m = new Map()));
      m.set(key, obj);
      index.set(key, id);
    }
    return before;
  }

  #onPod(key: string, pod: PodView | undefined): void {
    const id = labelOf(pod, LABELS.endpointId);
    const before = this.#reindex(this.#podIndex, this.#podsById, key, id, pod);
    this.#followLogs(key, pod);
    for (const which of new Set([before, id])) {
      const ep = which === undefined ? undefined : this.#byId.get(which);
      if (!ep) continue;
      const name = key.slice(key.indexOf('/') + 1);
      if (pod === undefined) {
        ep.draining.delete(name);
        ep.announced.delete(name);
      } else if (isTerminating(pod)) {
        this.#announceTerminating(ep, [name]);
      }
      this.#emit(ep);
    }
  }

  #onSlice(key: string, slice: SliceView | undefined): void {
    const id = labelOf(slice, LABELS.endpointId);
    const before = this.#reindex(this.#sliceIndex, this.#slicesById, key, id, slice);
    for (const which of new Set([before, id])) {
      const ep = which === undefined ? undefined : this.#byId.get(which);
      if (!ep) continue;
      const terminating = (slice?.endpoints ?? []).filter((e) => e.conditions?.terminating === true && e.targetRef?.name).map((e) => e.targetRef!.name!);
      this.#announceTerminating(ep, terminating);
      this.#emit(ep);
    }
  }

  #onDeployment(key: string, d: DeploymentStatusView | undefined): void {
    const id = labelOf(d, LABELS.endpointId);
    const before = this.#reindex(this.#deploymentIndex, this.#deploymentsById, key, id, d);
    for (const which of new Set([before, id])) {
      const ep = which === undefined ? undefined : this.#byId.get(which);
      if (ep) this.#emit(ep);
    }
  }

  /** A pod Kubernetes is stopping that nobody announced: out of routing now, before its preStop ends. */
  #announceTerminating(ep: Endpoint, names: readonly string[]): void {
    const fresh = names.filter((n) => !ep.announced.has(n));
    if (fresh.length === 0 || this.#closed) return;
    for (const n of fresh) ep.announced.add(n);
    void this.#beforeStop(ep, fresh);
  }

  /** Follows a pod's log once its container has started (if the pod is this runtime's); stops when the pod is gone. */
  #followLogs(key: string, pod: PodView | undefined): void {
    const current = this.#followers.get(key);
    if (pod === undefined) {
      if (current) {
        this.#followers.delete(key);
        void current.follower.stop();
      }
      return;
    }
    const endpointKey = pod.metadata?.annotations?.[ANNOTATIONS.key];
    const cs = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER);
    const started = cs !== undefined && (cs.state?.running !== undefined || cs.state?.terminated !== undefined || (cs.restartCount ?? 0) > 0);
    if (!endpointKey || !started || this.#closed || !this.#placedHere(endpointKey, pod.metadata?.namespace ?? '')) return;
    const restarts = cs.restartCount ?? 0;
    if (current) {
      if (restarts !== current.restarts || cs.state?.running !== undefined) current.follower.nudge();
      current.restarts = restarts;
      return;
    }
    const name = pod.metadata?.name ?? '';
    const follower = new PodLogFollower({
      kubeConfig: this.#opts.kubeConfig,
      namespace: pod.metadata?.namespace ?? '',
      pod: name,
      container: CONTAINER,
      onLine: (line, at) => {
        try {
          this.#opts.hooks.logs.write({ key: endpointKey, replica: name, stream: 'stdout', line, at });
        } catch (err) {
          this.#onError('kubernetes runtime: log sink failed', err);
        }
      },
    });
    this.#followers.set(key, { follower, restarts });
  }

  // --- status -------------------------------------------------------------------------------

  /** A watch failed: once it has failed `staleAfterMs`, every endpoint's state becomes unknown. */
  #onWatchError(message: string, err: unknown): void {
    this.#onError(message, err);
    if (!this.#staleTimer) this.#scheduleStale(this.#opts.staleAfterMs);
  }

  #scheduleStale(ms: number): void {
    if (this.#closed) return;
    this.#staleTimer = setTimeout(() => {
      this.#staleTimer = null;
      this.#emitAll();
      // One watch came back meanwhile and the other failed later: its turn comes later.
      const since = Math.min(...this.#informers().map((i) => i.failure?.since ?? Number.POSITIVE_INFINITY));
      if (Number.isFinite(since) && this.stateUnknown() === undefined) this.#scheduleStale(Math.max(0, since + this.#opts.staleAfterMs - Date.now()));
    }, ms);
    this.#staleTimer.unref();
  }

  #onWatchRecover(): void {
    if (this.#informers().some((i) => i.failure)) return;
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    this.#staleTimer = null;
    this.#emitAll();
  }

  #informers(): (Informer<PodView> | Informer<SliceView> | Informer<DeploymentStatusView>)[] {
    return [this.#pods, this.#slices, this.#deployments];
  }

  #emitAll(): void {
    for (const ep of this.#endpoints.values()) this.#emit(ep);
  }

  #status(ep: Endpoint): EndpointStatus {
    const unknown = this.stateUnknown();
    const status = endpointStatus({
      key: ep.key,
      image: ep.image,
      port: ep.port,
      pods: this.#podsById.get(ep.id)?.values() ?? [],
      slices: this.#slicesById.get(ep.id)?.values() ?? [],
      draining: new Set(ep.draining.keys()),
      crashLoopRestarts: this.#opts.crashLoopRestarts,
      // The failure of a write while the API is unreachable is the same story, told once.
      runtimeError: unknown !== undefined ? unknown : ep.runtimeError,
      replicaFailures: [...(this.#deploymentsById.get(ep.id)?.values() ?? [])].map(replicaFailure).filter((f) => f !== undefined),
    });
    return unknown !== undefined ? { ...status, unknown } : status;
  }

  #emit(ep: Endpoint): void {
    if (this.#closed || this.#endpoints.get(ep.key) !== ep) return;
    const status = this.#status(ep);
    const text = JSON.stringify(status);
    if (text === ep.lastEmitted) return;
    ep.lastEmitted = text;
    this.#listeners.emit(status);
  }
}
