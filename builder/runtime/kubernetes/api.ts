import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  NetworkingV1Api,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type KubeConfig,
  Observable,
  type ConfigurationOptions,
  type RequestContext,
  type ResponseContext,
  type V1Deployment,
  type V1Namespace,
  type V1NetworkPolicy,
  type V1PodDisruptionBudget,
  type V1Secret,
  type V1Service,
} from '@kubernetes/client-node';
import type { ListResult } from './watch.ts';
import type { DeploymentStatusView, PodView, SliceView } from './status.ts';

/** Field manager of every server-side apply Portico makes. */
export const FIELD_MANAGER = 'portico';

/** How long an API call (not a watch, nor a log stream) may go unanswered by default. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** An API call that got no answer in time (the server or the network is stuck). */
export class KubeTimeoutError extends Error {
  override readonly name = 'KubeTimeoutError';
}

/** An object the runtime applies. */
export type Applied = V1Deployment | V1Service | V1PodDisruptionBudget | V1NetworkPolicy | V1Secret;

/** What an adoption LIST reads of a Portico object. */
export interface ObjectMetaView {
  readonly namespace: string;
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/** A Deployment as adoption reads it. */
export interface DeploymentView extends ObjectMetaView {
  readonly replicas: number;
  readonly image: string | undefined;
  readonly port: number | undefined;
}

/** HTTP status of a failed API call (`undefined` if it never got one). */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** A one-line description of a failed API call: the API's Status message when there is one. */
export function describeApiError(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as { message?: unknown } | string | undefined;
    let message: unknown = typeof body === 'object' && body !== null ? body.message : undefined;
    if (message === undefined && typeof body === 'string') {
      try {
        message = (JSON.parse(body) as { message?: unknown }).message;
      } catch {
        message = body;
      }
    }
    return `HTTP ${err.code}${message ? `: ${String(message)}` : ''}`;
  }
  const code = statusOf(err); // a WATCH refused: an Error with the HTTP status
  const message = err instanceof Error ? err.message : String(err);
  return code !== undefined ? `HTTP ${code}: ${message}` : message;
}

const meta = (o: { metadata?: { namespace?: string; name?: string; annotations?: Record<string, string> } }): ObjectMetaView => ({
  namespace: o.metadata?.namespace ?? '',
  name: o.metadata?.name ?? '',
  annotations: { ...o.metadata?.annotations },
});

/**
 * The Kubernetes calls the runtime makes, and nothing else (the RBAC rules in
 * `deploy/kubernetes/` grant exactly these; a test derives them from the fake API's log):
 * namespaces get/create; deployments list/watch + server-side apply (patch, create) + delete;
 * services, poddisruptionbudgets list + server-side apply (patch, create) + delete; networkpolicies list + apply; pods list/watch/patch (deletion cost)
 * and pods/log get; endpointslices list/watch.
 */
export class KubeApi {
  readonly #core: CoreV1Api;
  readonly #apps: AppsV1Api;
  readonly #policy: PolicyV1Api;
  readonly #networking: NetworkingV1Api;
  readonly #discovery: DiscoveryV1Api;
  readonly #timeoutMs: number;

  /** `requestTimeoutMs`: how long each call may go unanswered before it fails with `KubeTimeoutError`. */
  constructor(kc: KubeConfig, requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
    this.#timeoutMs = requestTimeoutMs;
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#apps = kc.makeApiClient(AppsV1Api);
    this.#policy = kc.makeApiClient(PolicyV1Api);
    this.#networking = kc.makeApiClient(NetworkingV1Api);
    this.#discovery = kc.makeApiClient(DiscoveryV1Api);
  }

  /**
   * Makes one call with `options` (and `extra`'s) that abort it after the request timeout: a
   * stuck server or connection then fails the call with a `KubeTimeoutError` naming it, instead
   * of holding its caller (and the reconciler's turn) for undici's five minutes.
   */
  async #call<T>(fn: (options: ConfigurationOptions) => Promise<T>, extra?: ConfigurationOptions): Promise<T> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let what = 'request';
    const timeout = {
      pre: (ctx: RequestContext) => {
        what = `${ctx.getHttpMethod()} ${new URL(ctx.getUrl()).pathname}`;
        ctx.setSignal(signal);
        return new Observable(Promise.resolve(ctx));
      },
      post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
    };
    try {
      return await fn({ ...extra, middleware: [...(extra?.middleware ?? []), timeout], middlewareMergeStrategy: 'append' });
    } catch (err) {
      if (!signal.aborted) throw err;
      throw new KubeTimeoutError(`the API server did not answer within ${this.#timeoutMs / 1000} s: ${what}`, { cause: err });
    }
  }

  /** Whether the namespace exists. */
  async namespaceExists(name: string): Promise<boolean> {
    try {
      await this.#call((o) => this.#core.readNamespace({ name }, o));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Creates the namespace; one that appeared meanwhile (409) is fine. */
  async createNamespace(body: V1Namespace): Promise<void> {
    try {
      await this.#call((o) => this.#core.createNamespace({ body }, o));
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
    }
  }

  /**
   * Server-side apply (`PATCH application/apply-patch+yaml`, field manager `portico`, `force`,
   * strict field validation): creates the object or makes the fields Portico manages equal the
   * manifest; fields Portico stopped setting are removed; fields others own are left alone.
   */
  async apply(obj: Applied): Promise<void> {
    const name = obj.metadata?.name ?? '';
    const namespace = obj.metadata?.namespace ?? '';
    const params = { name, namespace, body: obj, fieldManager: FIELD_MANAGER, force: true, fieldValidation: 'Strict' };
    const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
    switch (obj.kind) {
      case 'Deployment':
        await this.#call((o) => this.#apps.patchNamespacedDeployment(params, o), ssa);
        return;
      case 'Service':
        await this.#call((o) => this.#core.patchNamespacedService(params, o), ssa);
        return;
      case 'PodDisruptionBudget':
        await this.#call((o) => this.#policy.patchNamespacedPodDisruptionBudget(params, o), ssa);
        return;
      case 'NetworkPolicy':
        await this.#call((o) => this.#networking.patchNamespacedNetworkPolicy(params, o), ssa);
        return;
      case 'Secret':
        await this.#call((o) => this.#core.patchNamespacedSecret(params, o), ssa);
        return;
      default:
        throw new Error(`cannot apply kind ${String(obj.kind)}`);
    }
  }

  /** Deletes one object; false if it was already gone. Dependents (ReplicaSets, pods) go in the background. */
  async delete(kind: 'Deployment' | 'Service' | 'PodDisruptionBudget' | 'Secret', namespace: string, name: string): Promise<boolean> {
    try {
      if (kind === 'Deployment') await this.#call((o) => this.#apps.deleteNamespacedDeployment({ name, namespace, propagationPolicy: 'Background' }, o));
      else if (kind === 'Service') await this.#call((o) => this.#core.deleteNamespacedService({ name, namespace }, o));
      else if (kind === 'Secret') await this.#call((o) => this.#core.deleteNamespacedSecret({ name, namespace }, o));
      else await this.#call((o) => this.#policy.deleteNamespacedPodDisruptionBudget({ name, namespace }, o));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Merges annotations into a pod (JSON merge patch); false if the pod is gone. */
  async annotatePod(namespace: string, name: string, annotations: Record<string, string>): Promise<boolean> {
    try {
      await this.#call((o) => this.#core.patchNamespacedPod({ name, namespace, body: { metadata: { annotations } } }, o), setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Deployments matching `labelSelector` in every namespace. */
  async listDeployments(labelSelector: string): Promise<DeploymentView[]> {
    const list = await this.#call((o) => this.#apps.listDeploymentForAllNamespaces({ labelSelector }, o));
    return list.items.map((d) => {
      const c = d.spec?.template.spec?.containers[0];
      return { ...meta(d), replicas: d.spec?.replicas ?? 1, image: c?.image, port: c?.ports?.[0]?.containerPort };
    });
  }

  /** Deployments matching `labelSelector` in every namespace, as watched (conditions), with the list's resourceVersion. */
  async listDeploymentStatuses(labelSelector: string): Promise<ListResult<DeploymentStatusView>> {
    const list = await this.#call((o) => this.#apps.listDeploymentForAllNamespaces({ labelSelector }, o));
    return { items: list.items as DeploymentStatusView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** Services matching `labelSelector` in every namespace. */
  async listServices(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#call((o) => this.#core.listServiceForAllNamespaces({ labelSelector }, o))).items.map(meta);
  }

  /** PodDisruptionBudgets matching `labelSelector` in every namespace. */
  async listPodDisruptionBudgets(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#call((o) => this.#policy.listPodDisruptionBudgetForAllNamespaces({ labelSelector }, o))).items.map(meta);
  }

  /** NetworkPolicies matching `labelSelector` in every namespace. */
  async listNetworkPolicies(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#call((o) => this.#networking.listNetworkPolicyForAllNamespaces({ labelSelector }, o))).items.map(meta);
  }

  /** Pods matching `labelSelector` in every namespace, with the list's resourceVersion. */
  async listPods(labelSelector: string): Promise<ListResult<PodView>> {
    const list = await this.#call((o) => this.#core.listPodForAllNamespaces({ labelSelector }, o));
    return { items: list.items as PodView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** EndpointSlices matching `labelSelector` in every namespace, with the list's resourceVersion. */
  async listEndpointSlices(labelSelector: string): Promise<ListResult<SliceView>> {
    const list = await this.#call((o) => this.#discovery.listEndpointSliceForAllNamespaces({ labelSelector }, o));
    return { items: list.items as SliceView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }
}
