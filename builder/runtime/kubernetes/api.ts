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

  constructor(kc: KubeConfig) {
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#apps = kc.makeApiClient(AppsV1Api);
    this.#policy = kc.makeApiClient(PolicyV1Api);
    this.#networking = kc.makeApiClient(NetworkingV1Api);
    this.#discovery = kc.makeApiClient(DiscoveryV1Api);
  }

  /** Whether the namespace exists. */
  async namespaceExists(name: string): Promise<boolean> {
    try {
      await this.#core.readNamespace({ name });
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Creates the namespace; one that appeared meanwhile (409) is fine. */
  async createNamespace(body: V1Namespace): Promise<void> {
    try {
      await this.#core.createNamespace({ body });
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
        await this.#apps.patchNamespacedDeployment(params, ssa);
        return;
      case 'Service':
        await this.#core.patchNamespacedService(params, ssa);
        return;
      case 'PodDisruptionBudget':
        await this.#policy.patchNamespacedPodDisruptionBudget(params, ssa);
        return;
      case 'NetworkPolicy':
        await this.#networking.patchNamespacedNetworkPolicy(params, ssa);
        return;
      case 'Secret':
        await this.#core.patchNamespacedSecret(params, ssa);
        return;
      default:
        throw new Error(`cannot apply kind ${String(obj.kind)}`);
    }
  }

  /** Deletes one object; false if it was already gone. Dependents (ReplicaSets, pods) go in the background. */
  async delete(kind: 'Deployment' | 'Service' | 'PodDisruptionBudget' | 'Secret', namespace: string, name: string): Promise<boolean> {
    try {
      if (kind === 'Deployment') await this.#apps.deleteNamespacedDeployment({ name, namespace, propagationPolicy: 'Background' });
      else if (kind === 'Service') await this.#core.deleteNamespacedService({ name, namespace });
      else if (kind === 'Secret') await this.#core.deleteNamespacedSecret({ name, namespace });
      else await this.#policy.deleteNamespacedPodDisruptionBudget({ name, namespace });
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Merges annotations into a pod (JSON merge patch); false if the pod is gone. */
  async annotatePod(namespace: string, name: string, annotations: Record<string, string>): Promise<boolean> {
    try {
      await this.#core.patchNamespacedPod({ name, namespace, body: { metadata: { annotations } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw err;
    }
  }

  /** Deployments matching `labelSelector` in every namespace. */
  async listDeployments(labelSelector: string): Promise<DeploymentView[]> {
    const list = await this.#apps.listDeploymentForAllNamespaces({ labelSelector });
    return list.items.map((d) => {
      const c = d.spec?.template.spec?.containers[0];
      return { ...meta(d), replicas: d.spec?.replicas ?? 1, image: c?.image, port: c?.ports?.[0]?.containerPort };
    });
  }

  /** Deployments matching `labelSelector` in every namespace, as watched (conditions), with the list's resourceVersion. */
  async listDeploymentStatuses(labelSelector: string): Promise<ListResult<DeploymentStatusView>> {
    const list = await this.#apps.listDeploymentForAllNamespaces({ labelSelector });
    return { items: list.items as DeploymentStatusView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** Services matching `labelSelector` in every namespace. */
  async listServices(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#core.listServiceForAllNamespaces({ labelSelector })).items.map(meta);
  }

  /** PodDisruptionBudgets matching `labelSelector` in every namespace. */
  async listPodDisruptionBudgets(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#policy.listPodDisruptionBudgetForAllNamespaces({ labelSelector })).items.map(meta);
  }

  /** NetworkPolicies matching `labelSelector` in every namespace. */
  async listNetworkPolicies(labelSelector: string): Promise<ObjectMetaView[]> {
    return (await this.#networking.listNetworkPolicyForAllNamespaces({ labelSelector })).items.map(meta);
  }

  /** Pods matching `labelSelector` in every namespace, with the list's resourceVersion. */
  async listPods(labelSelector: string): Promise<ListResult<PodView>> {
    const list = await this.#core.listPodForAllNamespaces({ labelSelector });
    return { items: list.items as PodView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** EndpointSlices matching `labelSelector` in every namespace, with the list's resourceVersion. */
  async listEndpointSlices(labelSelector: string): Promise<ListResult<SliceView>> {
    const list = await this.#discovery.listEndpointSliceForAllNamespaces({ labelSelector });
    return { items: list.items as SliceView[], resourceVersion: list.metadata?.resourceVersion ?? '' };
  }
}
