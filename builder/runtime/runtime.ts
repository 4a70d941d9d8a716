/**
 * The Runtime interface: where replicas run (local child processes, docker containers,
 * kubernetes pods). The reconciler is its only caller. A runtime works per endpoint of a
 * version: `ensure` makes N replicas of a spec run, `remove` stops them all.
 */

/** How a replica's server is started. */
export type ServerCommand =
  | { readonly kind: 'shell'; readonly command: string }
  | { readonly kind: 'exec'; readonly argv: readonly string[] }
  | { readonly kind: 'wsgi'; readonly module: string };

/** Compute resources from valohai.yaml `resources` (min = request, max = limit). */
/** Registry credentials as the engine takes them (`PORTICO_REGISTRY_USERNAME`/`_PASSWORD`). */
export interface RegistryAuth {
  readonly username: string;
  readonly password: string;
  /** The registry's host: the credentials are sent there only. */
  readonly serveraddress: string;
}

export interface Resources {
  readonly cpu?: { readonly min?: number; readonly max?: number };
  readonly memory?: { readonly min?: number; readonly max?: number };
  readonly 'ephemeral-storage'?: { readonly min?: number; readonly max?: number };
  readonly devices?: Readonly<Record<string, number>>;
}

/** A valohai.yaml toleration. */
export interface Toleration {
  readonly key?: string;
  readonly operator?: 'Exists' | 'Equal';
  readonly value?: string;
  readonly effect?: 'PreferNoSchedule' | 'NoSchedule' | 'NoExecute';
}

/** Everything a runtime needs to run one endpoint of one version. */
export interface EndpointSpec {
  /** `owner/project/deployment/version/endpoint`: stable identity of the endpoint's replicas. */
  readonly key: string;
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly version: string;
  readonly endpoint: string;
  /** Replicas wanted (0 stops them all but keeps the endpoint known). */
  readonly replicas: number;
  /** Directory holding the version's code and the endpoint's files (local runtime; build input). */
  readonly codeDir: string;
  /** Image built for this endpoint (docker and kubernetes runtimes). */
  readonly image?: string;
  readonly command: ServerCommand;
  /** Port the app listens on as declared in valohai.yaml (default 8000). */
  readonly port: number;
  /** The version's environment, plus `VH_DEFAULT_PREFIX`; runtimes add `PORT`/`HOST`. */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Names in `env` whose values are secret, sorted (absent: none). The kubernetes runtime passes
   * them through a Secret; the local and docker runtimes pass them like the rest.
   */
  readonly secretEnv?: readonly string[];
  readonly resources?: Resources;
  readonly nodeSelector?: string;
  readonly tolerations?: readonly Toleration[];
  /** Changes whenever anything above that needs a restart changes. */
  readonly specHash: string;
}

/** Replica lifecycle as the API shows it. */
export type ReplicaState = 'starting' | 'ready' | 'crashed' | 'stopping';

/** One replica as observed by its runtime. */
export interface ReplicaStatus {
  readonly id: string;
  /** `host:port` the gateway reaches it at; `null` before it has one. */
  readonly address: string | null;
  readonly state: ReplicaState;
  readonly restarts: number;
  /** Why it is crashed or not starting (exit code, port clash, image error...). */
  readonly reason?: string;
  readonly startedAt?: number;
}

/** The observed state of one endpoint. */
export interface EndpointStatus {
  readonly key: string;
  readonly replicas: readonly ReplicaStatus[];
  /** An endpoint-level problem: crash loop, port already in use, image missing. */
  readonly error?: string;
  /**
   * Set while the runtime cannot tell the replicas' state (its cluster has not answered since it
   * started, or its watch has been down too long), saying why; `error` says it too. `replicas`
   * is then not the truth: the routes already published for the endpoint are kept as they are.
   */
  readonly unknown?: string;
}

/** Where replica output goes (the telemetry log store implements it). */
export interface ReplicaLogSink {
  write(entry: {
    readonly key: string;
    readonly replica: string;
    readonly stream: 'stdout' | 'stderr';
    readonly line: string;
    readonly at: number;
  }): void;
}

/** Construction-time hooks every runtime receives from the controller. */
export interface RuntimeHooks {
  /**
   * Called before replicas are stopped (scale-down, remove, replace): resolves once they are out
   * of the routing table and every gateway has acknowledged, so no request is sent to a replica
   * that is stopping.
   */
  beforeStop(key: string, replicaIds: readonly string[]): Promise<void>;
  /** Receives every line the replicas print. */
  readonly logs: ReplicaLogSink;
}

/** A place replicas run. */
export interface Runtime {
  readonly kind: 'local' | 'docker' | 'kubernetes';
  /**
   * Makes `spec.replicas` replicas of the spec run. Idempotent; replicas of an older `specHash`
   * are replaced. Resolves once the change is under way, not when replicas are ready.
   */
  ensure(spec: EndpointSpec): Promise<void>;
  /** Stops every replica of the endpoint (SIGTERM, then SIGKILL after the grace period) and forgets it. */
  remove(key: string): Promise<void>;
  /** Every endpoint the runtime knows of, including replicas adopted after a controller restart. */
  list(): Promise<EndpointStatus[]>;
  /**
   * Why the runtime cannot tell the state of its replicas right now (see `EndpointStatus.unknown`),
   * also of endpoints `list` does not return; `undefined` when it can. Absent: it always can.
   */
  stateUnknown?(): string | undefined;
  /** Registers a listener for every change of an endpoint's status; returns the unsubscribe. */
  onChange(listener: (status: EndpointStatus) => void): () => void;
  /** Stops watching. Replicas keep running, so a restarted controller can adopt them. */
  close(): Promise<void>;
}
