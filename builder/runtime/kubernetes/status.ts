import type { EndpointStatus, ReplicaState, ReplicaStatus } from '../runtime.ts';
import { CONTAINER, PORT_NAME } from './manifests.ts';

/**
 * Replica and endpoint status from what the cluster reports: EndpointSlices say which pod
 * addresses are ready (the routing truth), Pods say why the others are not.
 */

/** The fields of a Pod the runtime reads (LIST gives Date objects where WATCH gives strings). */
export interface PodView {
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    creationTimestamp?: Date | string;
    deletionTimestamp?: Date | string;
  };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    podIP?: string;
    startTime?: Date | string;
    conditions?: readonly { type?: string; status?: string; reason?: string; message?: string }[];
    containerStatuses?: readonly ContainerStatusView[];
  };
}

/** A container's state as the kubelet reports it. */
export interface ContainerStateView {
  waiting?: { reason?: string; message?: string };
  running?: { startedAt?: Date | string };
  terminated?: { exitCode?: number; signal?: number; reason?: string; message?: string };
}

/** One entry of `status.containerStatuses`. */
export interface ContainerStatusView {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: ContainerStateView;
  lastState?: ContainerStateView;
}

/** The fields of an EndpointSlice the runtime reads. */
export interface SliceView {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  addressType?: string;
  endpoints?: readonly {
    addresses?: readonly string[];
    conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
    targetRef?: { kind?: string; name?: string; namespace?: string };
  }[];
  ports?: readonly { name?: string | null; port?: number | null }[];
}

/** The fields of a Deployment the runtime watches: its conditions. */
export interface DeploymentStatusView {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  status?: { conditions?: readonly { type?: string; status?: string; reason?: string; message?: string }[] };
}

/**
 * Why the Deployment's pods cannot be created (a ResourceQuota exceeded, PodSecurity admission
 * refusing them): its `ReplicaFailure` condition, which the Deployment controller copies from
 * the ReplicaSet's; `undefined` when there is none.
 */
export function replicaFailure(d: DeploymentStatusView): string | undefined {
  const c = d.status?.conditions?.find((x) => x.type === 'ReplicaFailure' && x.status === 'True');
  if (!c) return undefined;
  return `pods cannot be created${c.reason ? ` (${c.reason})` : ''}${c.message ? `: ${c.message}` : ''}`;
}

/** Waiting reasons that mean the image cannot be had. */
const IMAGE_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull', 'RegistryUnavailable']);
/** Waiting reasons that mean the container cannot be created or started. */
const START_REASONS = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError', 'PreCreateHookError', 'PreStartHookError']);

/** What `endpointStatus` needs about one endpoint. */
export interface StatusInput {
  readonly key: string;
  readonly image: string | undefined;
  readonly port: number;
  readonly pods: Iterable<PodView>;
  readonly slices: Iterable<SliceView>;
  /** Pods announced to `beforeStop` that Kubernetes has not marked terminating yet. */
  readonly draining: ReadonlySet<string>;
  /** This many restarts while in CrashLoopBackOff make the endpoint error a crash loop. */
  readonly crashLoopRestarts: number;
  readonly runtimeError?: string | undefined;
  /** The Deployments' `replicaFailure`s. */
  readonly replicaFailures?: readonly string[];
}

const time = (t: Date | string | undefined): number | undefined => {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
};

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function describeTermination(t: NonNullable<ContainerStateView['terminated']>): string {
  const how = t.exitCode !== undefined ? `exited with code ${t.exitCode}` : t.signal !== undefined ? `killed by signal ${t.signal}` : 'exited';
  return t.reason && t.reason !== 'Error' && t.reason !== 'Completed' ? `${how} (${t.reason})` : how;
}

/** The last few lines of a termination message (the app's, or its last output). */
function lastLines(message: string | undefined): string {
  if (!message) return '';
  const lines = message.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length > 0 ? `; last output: ${lines.slice(-5).join(' | ')}` : '';
}

interface PodFinding {
  state: ReplicaState;
  reason?: string;
  issue?: string;
}

/** State, reason and endpoint-level issue of a pod that is not ready. */
function inspectPod(pod: PodView, id: string, image: string | undefined, crashLoopRestarts: number): PodFinding {
  const cs = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER) ?? pod.status?.containerStatuses?.[0];
  const waiting = cs?.state?.waiting;
  const restarts = cs?.restartCount ?? 0;
  if (pod.status?.phase === 'Failed') {
    const why = [pod.status.reason, pod.status.message].filter(Boolean).join(': ') || 'pod failed';
    return { state: 'crashed', reason: why, issue: `replica ${id} failed: ${why}` };
  }
  if (waiting?.reason && IMAGE_REASONS.has(waiting.reason)) {
    const why = `image ${image ?? '(unknown)'} cannot be pulled (${waiting.reason})${waiting.message ? `: ${waiting.message}` : ''}`;
    return { state: 'starting', reason: why, issue: why };
  }
  if (waiting?.reason && START_REASONS.has(waiting.reason)) {
    const why = `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
    return { state: 'starting', reason: why, issue: `replica ${id} cannot start: ${why}` };
  }
  if (waiting?.reason === 'CrashLoopBackOff' || cs?.state?.terminated) {
    const last = cs?.state?.terminated ?? cs?.lastState?.terminated;
    const what = last ? describeTermination(last) : 'exited';
    const output = lastLines(last?.message);
    const reason = `${what}${output}; restarted ${restarts} time${restarts === 1 ? '' : 's'}`;
    const issue = waiting?.reason === 'CrashLoopBackOff' && restarts >= crashLoopRestarts
      ? `crash loop: replica ${id} restarted ${restarts} times, last ${what}${output}`
      : undefined;
    return { state: 'crashed', reason, ...(issue ? { issue } : {}) };
  }
  const unschedulable = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable');
  if (unschedulable) {
    const why = `cannot be scheduled: ${unschedulable.message ?? 'no node fits'}`;
    return { state: 'starting', reason: why, issue: `replica ${id} ${why}` };
  }
  if (waiting?.reason && waiting.reason !== 'ContainerCreating' && waiting.reason !== 'PodInitializing') {
    return { state: 'starting', reason: `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}` };
  }
  return { state: 'starting' };
}

/**
 * The endpoint's replicas: one per pod (and per slice endpoint whose pod is not known yet), in
 * creation order. A replica is
 * - `stopping` when its pod is terminating (deletionTimestamp, or the slice's `terminating`), or it
 *   was announced to `beforeStop` for a scale-down; it has no address, so it is never routed to;
 * - `ready` at `podIP:port` when the EndpointSlice says `ready` (absent counts as ready, per the API);
 * - `crashed` when its container is in CrashLoopBackOff or has just exited, or the pod failed (a
 *   failed pod, which its ReplicaSet has replaced, is left out once any replica is ready);
 * - `starting` otherwise (with the reason when the kubelet gives one).
 * The endpoint error lists image pull failures, crash loops (`crashLoopRestarts` restarts in
 * CrashLoopBackOff, with the exit and the last output lines), containers that cannot start,
 * unschedulable pods, pods that cannot be created (the Deployment's `ReplicaFailure`), and the
 * runtime's own last failure.
 */
export function endpointStatus(input: StatusInput): EndpointStatus {
  const byPod = new Map<string, { address: string; ready: boolean; terminating: boolean }>();
  const loose: { id: string; address: string; ready: boolean; terminating: boolean }[] = [];
  for (const slice of input.slices) {
    const port = slice.ports?.find((p) => p.name === PORT_NAME)?.port ?? slice.ports?.[0]?.port ?? input.port;
    for (const e of slice.endpoints ?? []) {
      const address = e.addresses?.[0];
      if (!address) continue;
      const ready = e.conditions?.ready !== false && e.conditions?.terminating !== true;
      const terminating = e.conditions?.terminating === true;
      const entry = { address: hostPort(address, port), ready, terminating };
      if (e.targetRef?.kind === 'Pod' && e.targetRef.name) byPod.set(e.targetRef.name, entry);
      else loose.push({ id: address, ...entry });
    }
  }
  const rows: { order: number; replica: ReplicaStatus; issue?: string; terminal?: boolean }[] = [];
  const issues: string[] = [];
  const seen = new Set<string>();
  for (const pod of input.pods) {
    const id = pod.metadata?.name;
    if (!id) continue;
    seen.add(id);
    const slot = byPod.get(id);
    const cs = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER) ?? pod.status?.containerStatuses?.[0];
    const startedAt = time(pod.status?.startTime);
    const base = { id, restarts: cs?.restartCount ?? 0, ...(startedAt !== undefined ? { startedAt } : {}) };
    const order = time(pod.metadata?.creationTimestamp) ?? 0;
    if (pod.metadata?.deletionTimestamp !== undefined || slot?.terminating || input.draining.has(id)) {
      rows.push({ order, replica: { ...base, address: null, state: 'stopping' } });
    } else if (slot?.ready) {
      rows.push({ order, replica: { ...base, address: slot.address, state: 'ready' } });
    } else {
      const f = inspectPod(pod, id, input.image, input.crashLoopRestarts);
      const terminal = pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded';
      rows.push({ order, replica: { ...base, address: null, state: f.state, ...(f.reason ? { reason: f.reason } : {}) }, ...(f.issue ? { issue: f.issue } : {}), terminal });
    }
  }
  // Slice entries whose Pod has not arrived yet (the two watches are not ordered).
  for (const [id, slot] of byPod) {
    if (seen.has(id)) continue;
    const state: ReplicaState = slot.terminating || input.draining.has(id) ? 'stopping' : slot.ready ? 'ready' : 'starting';
    rows.push({ order: Number.MAX_SAFE_INTEGER, replica: { id, address: state === 'ready' ? slot.address : null, state, restarts: 0 } });
  }
  for (const l of loose) {
    const state: ReplicaState = l.terminating ? 'stopping' : l.ready ? 'ready' : 'starting';
    rows.push({ order: Number.MAX_SAFE_INTEGER, replica: { id: l.id, address: state === 'ready' ? l.address : null, state, restarts: 0 } });
  }
  // A Failed pod (evicted, say) stays in the API long after its ReplicaSet replaced it: it only
  // explains why nothing is ready, and is dropped once something is.
  const shown = rows.some((r) => r.replica.state === 'ready') ? rows.filter((r) => !r.terminal) : rows;
  shown.sort((a, b) => a.order - b.order || (a.replica.id < b.replica.id ? -1 : a.replica.id > b.replica.id ? 1 : 0));
  if (input.runtimeError) issues.push(input.runtimeError);
  for (const f of input.replicaFailures ?? []) if (!issues.includes(f)) issues.push(f);
  for (const r of shown) if (r.issue && !issues.includes(r.issue)) issues.push(r.issue);
  return { key: input.key, replicas: shown.map((r) => r.replica), ...(issues.length > 0 ? { error: issues.join('; ') } : {}) };
}
