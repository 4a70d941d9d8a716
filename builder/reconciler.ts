import { createHash } from 'node:crypto';
import type { EndpointRecord } from '../gateway/routing/contract.ts';
import type { EndpointSpec, EndpointStatus, Runtime } from './runtime/runtime.ts';
import type { Deployment, Store, Version, VersionEndpoint, VersionStatus } from './store/store.ts';
import type { EndpointDefinition } from './valohai-yaml/index.ts';
import type { Publisher } from './publisher.ts';
import { Limiter } from './limiter.ts';

/** `owner/project/deployment/version/endpoint`: the runtime key of an endpoint's replicas. */
export function endpointRuntimeKey(v: { owner: string; project: string; deployment: string; name: string }, endpoint: string): string {
  return `${v.owner}/${v.project}/${v.deployment}/${v.name}/${endpoint}`;
}

/** The prefix a version's endpoint is served under, as the replica sees it in `VH_DEFAULT_PREFIX`. */
export function versionPrefix(v: { owner: string; project: string; deployment: string; name: string }, endpoint: string): string {
  return `/${endpointRuntimeKey(v, endpoint)}`;
}

/** The runtime spec of one endpoint of a version. */
export function endpointSpec(v: Version, e: VersionEndpoint): EndpointSpec {
  const def = e.definition as EndpointDefinition;
  const env = { ...v.environment, VH_DEFAULT_PREFIX: versionPrefix(v, e.name) };
  const secretEnv = (v.secretEnvironment ?? []).filter((k) => Object.hasOwn(v.environment, k)).sort();
  const image = v.images?.[e.name];
  const base = {
    key: endpointRuntimeKey(v, e.name),
    owner: v.owner,
    project: v.project,
    deployment: v.deployment,
    version: v.name,
    endpoint: e.name,
    codeDir: v.codeDir ?? '',
    command: def.command,
    port: def.port,
    env,
    // Only when there are any: the spec hash of versions without secrets stays what it was.
    ...(secretEnv.length > 0 ? { secretEnv } : {}),
    ...(image !== undefined ? { image } : {}),
    ...(def.resources !== undefined ? { resources: def.resources } : {}),
    ...(def.nodeSelector !== undefined ? { nodeSelector: def.nodeSelector } : {}),
    ...(def.tolerations !== undefined ? { tolerations: def.tolerations } : {}),
  };
  const specHash = createHash('sha256').update(JSON.stringify(base)).digest('hex').slice(0, 16);
  return { ...base, replicas: e.replicas, specHash };
}

/** Whether a version should have replicas running. */
export function versionRuns(v: Version): boolean {
  return v.enabled && v.codeDir !== undefined && v.status !== 'building' && v.status !== 'stopped';
}

/**
 * The routing record of an endpoint given what its runtime observes. While the runtime cannot tell
 * (`status.unknown`), the replicas routed to are `kept` (those already published), not emptied.
 */
export function endpointRecord(v: Version, e: VersionEndpoint, status: EndpointStatus | undefined, kept: EndpointRecord['replicas'] = []): EndpointRecord {
  const live = versionRuns(v) && e.enabled;
  const replicas = !live || !status
    ? []
    : status.unknown !== undefined
      ? kept
      : status.replicas.filter((r) => r.state === 'ready' && r.address !== null).map((r) => ({ id: r.id, address: r.address as string }));
  return {
    owner: v.owner,
    project: v.project,
    deployment: v.deployment,
    version: v.name,
    endpoint: e.name,
    replicas,
    timeoutSeconds: e.timeoutSeconds,
    maxBodyBytes: e.maxBodyBytes,
  };
}

/** A version's status given its endpoints' observed states. */
export function observedStatus(v: Version, statuses: ReadonlyMap<string, EndpointStatus>): { status: VersionStatus; reason?: string } {
  if (!v.enabled) return { status: 'stopped', ...(v.reason !== undefined ? { reason: v.reason } : {}) };
  if (!versionRuns(v)) return { status: v.status, ...(v.reason !== undefined ? { reason: v.reason } : {}) };
  let allReady = true;
  let unknown: string | undefined;
  for (const e of v.endpoints) {
    if (!e.enabled || e.replicas === 0) continue;
    const s = statuses.get(endpointRuntimeKey(v, e.name));
    if (s?.unknown !== undefined) {
      unknown ??= `endpoint ${e.name}: ${s.unknown}`;
      continue;
    }
    const ready = s?.replicas.some((r) => r.state === 'ready') ?? false;
    if (!ready && s?.error) return { status: 'failed', reason: `endpoint ${e.name}: ${s.error}` };
    if (!ready) allReady = false;
  }
  // Replicas nobody can see are not taken for gone: the status stays the last one observed.
  if (unknown !== undefined) return { status: v.status, reason: unknown };
  return { status: allReady ? 'ready' : 'starting' };
}

/** What `onStoreLost` is told: the store is not the one the controller started on. */
export interface StoreLostReport {
  /** The id the controller started on (`null`: the store was found lost or replaced at start). */
  readonly expected: string | null;
  /** The id the store has now (`null`: none; it was emptied). */
  readonly found: string | null;
  /** Runtime keys the store does not name that were kept running, sorted. */
  readonly kept: readonly string[];
}

/**
 * Brings actual replicas to the desired state, one pass at a time: every version that should run
 * has its endpoints `ensure`d on its deployment's runtime; replicas nobody wants are removed;
 * routing records and version statuses follow what the runtimes observe. Passes are triggered by
 * changes and by a timer, and never overlap.
 *
 * Nothing is removed unless the store still has the id the controller started on (`storeId`),
 * checked after the pass has read the store: an emptied or replaced store wants nothing, and
 * removing what it does not name would stop every replica. Once the id differs, removals stay
 * refused until the controller is restarted; `onStoreLost` hears of it at once and again each
 * time the set of replicas kept for that reason changes.
 */
export class Reconciler {
  private readonly store: Store;
  private readonly runtimes: ReadonlyMap<string, Runtime>;
  private readonly publisher: Publisher;
  private readonly onError: (err: unknown) => void;
  private readonly onStoreLost: (report: StoreLostReport) => void;
  /** The store id removals need; `null` once (or since start) the store is not that store. */
  private storeId: string | null;
  private readonly startedWith: string | null;
  /** The id found instead, and the replicas last reported kept. */
  private lost: { found: string | null; kept: string } | null = null;
  private readonly statuses = new Map<string, EndpointStatus>();
  /** runtime key -> where it belongs, for routing updates on runtime events. */
  private readonly known = new Map<string, { target: string; version: { owner: string; project: string; deployment: string; name: string }; endpoint: string }>();
  private running: Promise<void> | null = null;
  /** Passes, routing refreshes and `exclusive` callers, one at a time (see `exclusive`). */
  private readonly exclusion = new Limiter(1);
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;

  constructor(opts: {
    store: Store;
    runtimes: ReadonlyMap<string, Runtime>;
    publisher: Publisher;
    onError: (err: unknown) => void;
    /** The store's id at start (`Store.getStoreId`); `null`: it was lost or replaced already then. */
    storeId: string | null;
    onStoreLost: (report: StoreLostReport) => void;
  }) {
    this.store = opts.store;
    this.runtimes = opts.runtimes;
    this.publisher = opts.publisher;
    this.onError = opts.onError;
    this.storeId = opts.storeId;
    this.startedWith = opts.storeId;
    this.onStoreLost = opts.onStoreLost;
    for (const rt of this.runtimes.values()) {
      this.unsubscribe.push(rt.onChange((s) => this.observe(s)));
    }
  }

  /**
   * What the runtimes last reported for an endpoint on `target` (default: where the last pass
   * found it); while that runtime cannot tell its replicas' state, a status saying so (`unknown`).
   */
  status(key: string, target = this.known.get(key)?.target): EndpointStatus | undefined {
    const s = this.statuses.get(key);
    if (s?.unknown !== undefined || target === undefined) return s;
    const unknown = this.runtimes.get(target)?.stateUnknown?.();
    return unknown === undefined ? s : { key, replicas: s?.replicas ?? [], error: unknown, unknown };
  }

  /** Reads every runtime's current state (adoption after a restart) without changing anything. */
  async observeAll(): Promise<void> {
    for (const rt of this.runtimes.values()) {
      for (const s of await rt.list()) this.statuses.set(s.key, s);
    }
  }

  /** Starts periodic passes (every `intervalMs`) and runs the first. */
  start(intervalMs: number): Promise<void> {
    this.timer = setInterval(() => void this.trigger(), intervalMs);
    this.timer.unref();
    return this.trigger();
  }

  /** Asks for a pass; resolves when a pass that started after this call has finished. */
  trigger(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.exclusive(() => this.pass());
        } catch (err) {
          this.onError(err);
        }
      } while (this.again && !this.closed);
      this.running = null;
    })();
    return this.running;
  }

  /**
   * Runs `fn` while no pass or routing refresh runs, and starts none until it is done. A version
   * or deployment is deleted under it: a pass that read it before the delete would otherwise
   * start its replicas again and publish its routes after the delete took them away.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusion.run(fn);
  }

  private async pass(): Promise<void> {
    const desired = new Map<string, { target: string; spec: EndpointSpec }>();
    const versions: { dep: Deployment; v: Version }[] = [];
    for (const dep of await this.store.listAllDeployments()) {
      for (const v of await this.store.listVersions({ owner: dep.owner, project: dep.project, deployment: dep.name })) {
        versions.push({ dep, v });
        if (!versionRuns(v)) continue;
        for (const e of v.endpoints) {
          if (!e.enabled) continue;
          const spec = endpointSpec(v, e);
          desired.set(spec.key, { target: dep.target, spec });
          this.known.set(spec.key, { target: dep.target, version: v, endpoint: e.name });
        }
      }
    }
    const unwanted: { rt: Runtime; key: string }[] = [];
    for (const [target, rt] of this.runtimes) {
      for (const s of await rt.list()) {
        this.statuses.set(s.key, s);
        const want = desired.get(s.key);
        if (!want || want.target !== target) unwanted.push({ rt, key: s.key });
      }
    }
    // After every read of this pass: a store emptied while it read looks like a store that wants
    // nothing, and only its id tells.
    if (await this.sameStore()) {
      // One endpoint the runtime refuses (an admission webhook, a quota, a namespace being deleted)
      // is reported and tried again next pass; it must not hold up every endpoint after it.
      for (const { rt, key } of unwanted) {
        try {
          await rt.remove(key);
          this.statuses.delete(key);
        } catch (err) {
          this.onError(err);
        }
      }
    } else {
      const kept = unwanted.map((u) => u.key).sort();
      if (this.lost && this.lost.kept !== kept.join('\n')) {
        this.lost.kept = kept.join('\n');
        this.onStoreLost({ expected: this.startedWith, found: this.lost.found, kept });
      }
    }
    for (const { target, spec } of desired.values()) {
      const rt = this.runtimes.get(target);
      if (rt) await rt.ensure(spec).catch(this.onError);
    }
    for (const { dep, v } of versions) await this.settle(dep, v);
  }

  /**
   * Whether the store is still the one the controller started on. The first time it is not, it
   * never is again for this controller (a store that comes back is not trusted without a restart),
   * and `onStoreLost` hears of it.
   */
  async sameStore(): Promise<boolean> {
    if (this.storeId !== null) {
      const found = await this.store.getStoreId();
      if (found === this.storeId) return true;
      this.storeId = null;
      this.lost = { found, kept: '' };
      this.onStoreLost({ expected: this.startedWith, found, kept: [] });
    }
    this.lost ??= { found: await this.store.getStoreId(), kept: '' };
    return false;
  }

  /** Whether removals are refused because the store is not the one the controller started on. */
  storeLost(): boolean {
    return this.storeId === null;
  }

  /** Publishes a version's endpoint records and records its observed status. */
  private async settle(dep: Deployment, v: Version): Promise<void> {
    if (v.status === 'building' || v.codeDir === undefined) return;
    const statuses = new Map<string, EndpointStatus>();
    for (const e of v.endpoints) {
      const key = endpointRuntimeKey(v, e.name);
      const s = this.status(key, dep.target);
      if (s) statuses.set(key, s);
      const kept = this.publisher.current({ owner: v.owner, project: v.project, deployment: v.deployment, version: v.name, endpoint: e.name })?.replicas;
      await this.publisher.putEndpoint(endpointRecord(v, e, s, kept));
    }
    const next = observedStatus(v, statuses);
    if (next.status !== v.status || next.reason !== v.reason) {
      await this.store.updateVersion({ owner: dep.owner, project: dep.project, deployment: dep.name, version: v.name }, (draft) => {
        if (draft.status === 'building' || !draft.enabled) return;
        draft.status = next.status;
        if (next.reason !== undefined) draft.reason = next.reason;
        else delete draft.reason;
      });
    }
  }

  /** A runtime reported a change: route to ready replicas at once, then let a pass settle the rest. */
  private observe(s: EndpointStatus): void {
    this.statuses.set(s.key, s);
    void this.refresh(s.key).catch(this.onError);
  }

  private refresh(key: string): Promise<void> {
    return this.exclusive(async () => {
      const where = this.known.get(key);
      if (!where) return;
      const ref = { owner: where.version.owner, project: where.version.project, deployment: where.version.deployment, version: where.version.name };
      const v = await this.store.getVersion(ref);
      const dep = await this.store.getDeployment(ref);
      if (!v || !dep) return;
      await this.settle(dep, v);
    });
  }

  /** Stops passes and listening; the runtimes themselves are closed by their owner. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    await this.running;
  }
}
