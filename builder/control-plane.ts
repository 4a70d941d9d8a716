/**
 * What the controller offers its faces (admin API, web UI, CLI through the API): every operator
 * operation, with results already in the contract's JSON shapes (docs/contract.md). The admin
 * API is a thin HTTP layer over this interface; errors are `PorticoError`s from
 * `builder/errors.ts` (`ControlErrors`).
 */
import type { Readable } from 'node:stream';
import type { MetricCompareQuery, MetricCompareResult, MetricQuery, MetricsResult } from './telemetry/query.ts';
import type { DeploymentStatsView } from './telemetry/stats.ts';

export type * from './telemetry/query.ts';
export type { DeploymentStatsView, EndpointStatsView } from './telemetry/stats.ts';

/** Who acts: the name of the admin token that authenticated the request. */
export type Actor = string;

/** A deployment target (`GET /targets`). */
export interface TargetView {
  readonly name: string;
  readonly kind: 'local' | 'docker' | 'kubernetes';
  /** Public gateway base URL for endpoints on this target. */
  readonly gatewayUrl: string;
}

/** A project's environment; secret values are always `"********"` here. */
export interface EnvironmentView {
  readonly variables: Readonly<Record<string, { readonly value: string; readonly secret: boolean }>>;
}

/** Input of `PUT environment`: the whole set replaces the previous one. */
export type EnvironmentInput = Readonly<Record<string, { readonly value: string; readonly secret?: boolean }>>;

export type AuthMode = 'none' | 'basic';

export interface DeploymentView {
  readonly owner: string;
  readonly project: string;
  readonly name: string;
  readonly target: string;
  readonly auth: AuthMode;
  readonly createdAt: string;
  /** `<gateway>/<owner>/<project>/<deployment>` */
  readonly url: string;
}

export interface CreateDeploymentInput {
  readonly name: string;
  readonly target?: string;
  readonly auth?: AuthMode;
}

export type ReplicaState = 'starting' | 'ready' | 'crashed' | 'stopping';

export interface ReplicaView {
  readonly id: string;
  readonly address: string | null;
  readonly state: ReplicaState;
  readonly restarts: number;
  readonly reason?: string;
}

export type EndpointStatus = 'building' | 'starting' | 'ready' | 'failed' | 'stopped';

export interface EndpointView {
  readonly name: string;
  readonly status: EndpointStatus;
  /** Version URL: `<gateway>/<owner>/<project>/<deployment>/<version>/<endpoint>` */
  readonly url: string;
  readonly enabled: boolean;
  /** Replicas wanted. */
  readonly replicaCount: number;
  readonly replicas: readonly ReplicaView[];
  readonly timeoutSeconds: number | null;
  readonly maxBodyBytes: number | null;
  /** Endpoint-level problem (crash loop, port clash...). */
  readonly error?: string;
  readonly files: readonly { readonly name: string; readonly path: string; readonly sha256: string; readonly size: number }[];
}

export type VersionStatus = 'building' | 'starting' | 'ready' | 'failed' | 'stopped';

export interface VersionView {
  readonly name: string;
  readonly status: VersionStatus;
  readonly reason?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly enabled: boolean;
  readonly createdBy: string;
  readonly source: SourceInput;
  /** Environment names only (values may be secret). */
  readonly environment: readonly string[];
  /** Those of `environment` that came from secret project variables. */
  readonly secretEnvironment: readonly string[];
  readonly endpoints: readonly EndpointView[];
  /** Aliases pointing at this version. */
  readonly aliases: readonly string[];
}

/** Where a version's code comes from. */
export type SourceInput =
  | { readonly path: string }
  | { readonly git: { readonly url: string; readonly ref?: string } }
  | { readonly upload: string };

/** Where an endpoint's declared file comes from. */
export type FileSourceInput = { readonly path: string } | { readonly url: string } | { readonly upload: string };

export interface EndpointInput {
  readonly enabled?: boolean;
  readonly replicas?: number;
  readonly files?: Readonly<Record<string, FileSourceInput>>;
  readonly timeoutSeconds?: number;
  readonly maxBodyBytes?: number;
}

/** `POST versions` body. */
export interface CreateVersionInput {
  readonly name?: string;
  readonly source: SourceInput;
  readonly endpoints?: Readonly<Record<string, EndpointInput>>;
  readonly environment?: Readonly<Record<string, string>>;
  readonly inheritEnvironment?: boolean;
}

/** `PATCH version` body: stop/start/rescale without a rebuild. */
export interface PatchVersionInput {
  readonly enabled?: boolean;
  /** `null` for `timeoutSeconds` or `maxBodyBytes` puts the gateway default back. */
  readonly endpoints?: Readonly<Record<string, { readonly replicas?: number; readonly timeoutSeconds?: number | null; readonly maxBodyBytes?: number | null; readonly enabled?: boolean }>>;
}

export interface WeightedVersion {
  readonly version: string;
  readonly weight: number;
}

export type AliasTargetInput = { readonly version: string } | { readonly versions: readonly WeightedVersion[] };

export type AliasView = { readonly name: string; readonly version: string } | { readonly name: string; readonly versions: readonly WeightedVersion[] };

/** Result of `PUT alias`: the alias, and which live gateways acknowledged it in time. */
export type AliasSetResult = AliasView & {
  readonly acknowledged: readonly string[];
  /** Gateways that did not acknowledge within PORTICO_FLIP_ACK_MS (empty when all did). */
  readonly missing: readonly string[];
};

export interface AliasHistoryItem {
  readonly at: string;
  readonly by: string;
  readonly from: AliasTargetInput | null;
  readonly to: AliasTargetInput | null;
}

export interface AuditItem {
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: Readonly<Record<string, unknown>>;
}

export interface TokenView {
  readonly name: string;
  readonly createdAt: string;
}

/** `POST test` body (the web UI's test console). */
export interface TestRequestInput {
  readonly target: string;
  readonly endpoint: string;
  readonly method: string;
  readonly path?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly bodyBase64?: string;
  readonly username?: string;
  readonly password?: string;
}

export interface TestResponseView {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** At most the first 16 MiB of the body. */
  readonly bodyBase64: string;
  readonly durationMs: number;
  /** Present only when the body was longer than 16 MiB and was cut there. */
  readonly truncated?: true;
}

export interface LogQuery {
  readonly tail?: number;
  readonly follow?: boolean;
  readonly replica?: string;
  readonly since?: number;
  readonly until?: number;
  readonly contains?: string;
}

export interface LogLine {
  readonly at: number;
  readonly replica?: string;
  readonly stream: 'stdout' | 'stderr' | 'build';
  readonly line: string;
}

/** A version, endpoint or deployment address in the API's path. */
export interface ProjectRef {
  readonly owner: string;
  readonly project: string;
}
export interface DeploymentRef extends ProjectRef {
  readonly deployment: string;
}
export interface VersionRef extends DeploymentRef {
  readonly version: string;
}

/** Every operator operation. Implemented by `Controller` (builder/controller.ts). */
export interface ControlPlane {
  /**
   * `lost`: the store is not the one the controller started on or last ran on (emptied, replaced),
   * so it removes no replica and no route on its own until restarted (docs/operations.md, section 4).
   * `failed`: the embedded store failed a disk write and refuses every operation until restarted.
   */
  storeStatus(): 'ok' | 'lost' | 'failed';

  targets(): Promise<TargetView[]>;

  getEnvironment(ref: ProjectRef): Promise<EnvironmentView>;
  putEnvironment(ref: ProjectRef, variables: EnvironmentInput, actor: Actor): Promise<EnvironmentView>;

  listDeployments(ref: ProjectRef): Promise<DeploymentView[]>;
  createDeployment(ref: ProjectRef, input: CreateDeploymentInput, actor: Actor): Promise<DeploymentView>;
  getDeployment(ref: DeploymentRef): Promise<DeploymentView>;
  patchDeployment(ref: DeploymentRef, patch: { readonly auth?: AuthMode }, actor: Actor): Promise<DeploymentView>;
  /** Stops every version's replicas and removes the deployment with everything it holds. */
  deleteDeployment(ref: DeploymentRef, actor: Actor): Promise<void>;

  listUsers(ref: DeploymentRef): Promise<{ name: string }[]>;
  putUser(ref: DeploymentRef, user: string, password: string, actor: Actor): Promise<{ name: string }>;
  deleteUser(ref: DeploymentRef, user: string, actor: Actor): Promise<void>;

  listVersions(ref: DeploymentRef): Promise<VersionView[]>;
  /** Validates the input, records the version as `building` and builds it in the background. */
  createVersion(ref: DeploymentRef, input: CreateVersionInput, actor: Actor): Promise<VersionView>;
  getVersion(ref: VersionRef): Promise<VersionView>;
  patchVersion(ref: VersionRef, patch: PatchVersionInput, actor: Actor): Promise<VersionView>;
  /** Refused (ALIAS_IN_USE, 409) while an alias points at the version. */
  deleteVersion(ref: VersionRef, actor: Actor): Promise<void>;
  buildLog(ref: VersionRef): Promise<LogLine[]>;
  /** Lines of one endpoint's replicas; with `follow`, the iterator continues until `signal` aborts. */
  endpointLogs(ref: VersionRef, endpoint: string, query: LogQuery, signal?: AbortSignal): AsyncIterable<LogLine>;

  listAliases(ref: DeploymentRef): Promise<AliasView[]>;
  /**
   * Points the alias; refused (VERSION_NOT_READY) unless every version is ready or `force`.
   * Returns after every live gateway acknowledged, or PORTICO_FLIP_ACK_MS passed (named in `missing`).
   */
  setAlias(ref: DeploymentRef, alias: string, target: AliasTargetInput, opts: { readonly force?: boolean }, actor: Actor): Promise<AliasSetResult>;
  deleteAlias(ref: DeploymentRef, alias: string, actor: Actor): Promise<void>;
  /** Newest first, kept after the alias is deleted; NOT_FOUND for a name that never was an alias. */
  aliasHistory(ref: DeploymentRef, alias: string): Promise<AliasHistoryItem[]>;

  /** Sends a request through a live gateway (the test console). */
  test(ref: DeploymentRef, input: TestRequestInput): Promise<TestResponseView>;

  audit(query: { readonly limit?: number; readonly before?: string }): Promise<AuditItem[]>;

  listTokens(): Promise<TokenView[]>;
  /** The token is returned once and stored only hashed. */
  createToken(name: string, actor: Actor): Promise<{ name: string; token: string }>;
  /**
   * Refused (CONFLICT, 409) for the last token unless PORTICO_ADMIN_TOKEN is set: nobody could
   * sign in any more. The PORTICO_ADMIN_TOKEN token itself is not stored and cannot be revoked.
   */
  deleteToken(name: string, actor: Actor): Promise<void>;
  /** The token's name, or null; constant-time with respect to the token's content. */
  authenticate(token: string): Promise<string | null>;

  /** Stores a raw body (streamed to disk, limited in size) and returns its id. */
  createUpload(body: Readable, actor: Actor): Promise<{ id: string; size: number; sha256: string }>;

  // ---- telemetry: build log following, vh_metadata metrics, gateway stats ----------------

  /**
   * Build log lines (filtered as endpoint logs); with `follow`, new lines while the version
   * builds: the iterator ends when the build ends (at once if it is not building) or `signal` aborts.
   */
  buildLogStream(ref: VersionRef, query: LogQuery, signal?: AbortSignal): AsyncIterable<LogLine>;
  /** The `vh_metadata` metrics of an endpoint of a version: its keys, or one key's series or histogram. */
  endpointMetrics(ref: VersionRef, endpoint: string, query: MetricQuery): Promise<MetricsResult>;
  /** One metric query over several versions of a deployment's endpoint, with shared ranges and bins. */
  compareMetrics(ref: DeploymentRef, query: MetricCompareQuery): Promise<MetricCompareResult>;
  /** Request stats the gateways reported over the last `window` seconds, per version and endpoint. */
  deploymentStats(ref: DeploymentRef, query: { readonly window: number }): Promise<DeploymentStatsView>;
}
