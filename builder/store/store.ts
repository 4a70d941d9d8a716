/**
 * The controller's control-plane state: the `Store` interface, its domain types and errors.
 * Two implementations honour it identically (test/builder/store/contract-suite.ts):
 * `EmbeddedStore` (embedded.ts: in memory, journaled under a data directory) and `RedisStore`
 * (redis.ts). The controller is the only user; the admin API maps these types to the
 * contract's JSON shapes, so field names follow docs/contract.md.
 *
 * Every value handed to a store is stored as JSON: what comes back is a fresh copy, equal to the
 * input after a `JSON.stringify`/`JSON.parse` round trip (so `undefined` fields vanish).
 * Timestamps are ISO 8601 strings (UTC) taken from the store's clock.
 */
import type { AliasTarget, AuthMode, DeploymentRef, WeightedVersion } from '../../gateway/routing/contract.ts';

export type { AliasTarget, AuthMode, DeploymentRef, WeightedVersion };

/** One project environment variable. Masking secrets is the API's job, not the store's. */
export interface EnvironmentVariable {
  value: string;
  secret: boolean;
}

/** A project's environment: variable name -> value. */
export type Environment = Record<string, EnvironmentVariable>;

/** A deployment: a named group of versioned endpoints on one target. */
export interface Deployment {
  owner: string;
  project: string;
  name: string;
  target: string;
  auth: AuthMode;
  createdAt: string;
}

/** What `createDeployment` takes (the store sets `createdAt`). */
export type NewDeployment = Omit<Deployment, 'createdAt'>;

/** What `updateDeployment` may change. */
export interface DeploymentPatch {
  target?: string;
  auth?: AuthMode;
}

/** Lifecycle of a version as the API shows it. */
export type VersionStatus = 'building' | 'starting' | 'ready' | 'failed' | 'stopped';

/** One file an endpoint declares, as materialised by the build. */
export interface VersionFile {
  name: string;
  path: string;
  sha256: string;
  size: number;
}

/** One endpoint of a version. */
export interface VersionEndpoint {
  name: string;
  /** The parsed valohai.yaml endpoint: opaque to the store, any JSON value. */
  definition: unknown;
  replicas: number;
  enabled: boolean;
  /** `null`: the gateway default. */
  timeoutSeconds: number | null;
  /** `null`: the gateway default. */
  maxBodyBytes: number | null;
  files: VersionFile[];
}

/** A version of a deployment. */
export interface Version {
  owner: string;
  project: string;
  deployment: string;
  name: string;
  status: VersionStatus;
  /** Why the version failed or stopped. */
  reason?: string;
  createdAt: string;
  /** Set by the store on every change `updateVersion` writes. */
  updatedAt: string;
  /** Name of the token that created the version (the audit trail's actor). */
  createdBy?: string;
  enabled: boolean;
  /** Where the code comes from (`{path}` | `{git}` | `{upload}`): opaque, any JSON value. */
  source: unknown;
  /** The resolved environment the replicas get. */
  environment: Record<string, string>;
  /**
   * Names in `environment` whose values came from secret project variables (absent: none). On
   * kubernetes their values go into a Secret the Deployment refers to, never into the Deployment.
   */
  secretEnvironment?: string[];
  inheritEnvironment: boolean;
  /**
   * The create request's `endpoints` (replicas, the files' sources...), opaque JSON kept while
   * the version builds: a controller restarted meanwhile builds it again with them.
   */
  buildEndpoints?: unknown;
  /**
   * Ids of the uploads the create request named (source, files): kept while the version is, so
   * that they are not cleaned up (absent: a version stored before it, see `blob-cleanup.ts`).
   */
  uploads?: string[];
  endpoints: VersionEndpoint[];
  /** Directory holding the built code and files. */
  codeDir?: string;
  /** Endpoint name -> image (docker and kubernetes targets). */
  images?: Record<string, string>;
}

/** What `createVersion` takes (the store sets `createdAt` and `updatedAt`). */
export type NewVersion = Omit<Version, 'createdAt' | 'updatedAt'>;

/** Identifies a version. */
export interface VersionRef extends DeploymentRef {
  readonly version: string;
}

/**
 * Changes a version inside `updateVersion`: edit `draft` in place and return nothing, or return
 * a replacement. It may run more than once (optimistic retries), so it must not have side
 * effects; identity fields (`owner`, `project`, `deployment`, `name`, `createdAt`) are kept
 * whatever it does. Throwing aborts the update and rejects with that error.
 */
export type VersionMutator = (draft: Version) => Version | void;

/** An alias as listed: its name and what it points at. */
export type Alias = { name: string } & AliasTarget;

/** One change of an alias. `from`/`to` are the previous/new target, `null` when there was none. */
export interface AliasHistoryItem {
  at: string;
  /** Who changed it (the acting token's name). */
  by: string;
  from: AliasTarget | null;
  to: AliasTarget | null;
}

/** One audit log entry. `id` is the paging cursor: ids grow with every append. */
export interface AuditEntry {
  id: string;
  at: string;
  actor: string;
  action: string;
  target: string;
  details: Record<string, unknown>;
}

/** What `appendAudit` takes (the store sets `id` and `at`). */
export type NewAuditEntry = Omit<AuditEntry, 'id' | 'at'>;

/** One page of the audit log, newest first; pass `next` as `before` for the following page. */
export interface AuditPage {
  items: AuditEntry[];
  /** `null` when there is nothing older. */
  next: string | null;
}

/** An admin API token. Only the SHA-256 (hex) of the token is ever stored. */
export interface AdminToken {
  name: string;
  hash: string;
  createdAt: string;
}

/** An uploaded blob's metadata; the blob itself is a file the controller writes at `path`. */
export interface Upload {
  id: string;
  size: number;
  sha256: string;
  createdAt: string;
  path: string;
}

/** What `createUpload` takes (the store sets `createdAt`). */
export type NewUpload = Omit<Upload, 'createdAt'>;

/** Options both implementations take. */
export interface StoreOptions {
  /** Audit entries kept (the oldest are dropped beyond it). Default 10,000. */
  readonly auditLimit?: number;
  /** History items kept per alias (the oldest are dropped beyond it). Default 1,000. */
  readonly aliasHistoryLimit?: number;
  /** Source of every timestamp the store writes. Default: the system clock. */
  readonly clock?: () => Date;
}

/** Defaults of `StoreOptions`. */
export const STORE_DEFAULTS = Object.freeze({ auditLimit: 10_000, aliasHistoryLimit: 1_000 });

/** Largest `limit` `listAudit` honours, and its default. */
export const AUDIT_PAGE_MAX = 1_000;
export const AUDIT_PAGE_DEFAULT = 100;

/** What a store holds, keyed by kind: used by the errors to say what was missing or present. */
export type StoreEntity = 'deployment' | 'version' | 'alias' | 'token' | 'upload';

/**
 * The request conflicts with what is stored: `exists` (create of something already there,
 * including a token whose hash another token has), `in-use` (deleting a version an alias
 * points at; `usedBy` names the alias), `last` (deleting the only token with `keepLast`) or
 * `name-taken` (a version named like an alias of its deployment, or the other way round: the
 * alias would take the version's URLs).
 */
export class StoreConflictError extends Error {
  readonly code = 'STORE_CONFLICT';
  readonly entity: StoreEntity;
  readonly key: string;
  readonly reason: 'exists' | 'in-use' | 'last' | 'name-taken';
  readonly usedBy: string | undefined;
  constructor(entity: StoreEntity, key: string, reason: 'exists' | 'in-use' | 'last' | 'name-taken' = 'exists', usedBy?: string) {
    super(
      reason === 'exists' ? `${entity} ${key} exists already`
      : reason === 'last' ? `${entity} ${key} is the last one`
      : reason === 'name-taken' ? `${entity} ${key}: ${entity === 'alias' ? 'a version' : 'an alias'} has that name`
      : `${entity} ${key} is in use by alias ${usedBy ?? '?'}`,
    );
    this.name = 'StoreConflictError';
    this.entity = entity;
    this.key = key;
    this.reason = reason;
    this.usedBy = usedBy;
  }
}

/** Something the operation needs does not exist (e.g. the deployment of a new version). */
export class StoreNotFoundError extends Error {
  readonly code = 'STORE_NOT_FOUND';
  readonly entity: StoreEntity;
  readonly key: string;
  constructor(entity: StoreEntity, key: string) {
    super(`${entity} ${key} does not exist`);
    this.name = 'StoreNotFoundError';
    this.entity = entity;
    this.key = key;
  }
}

/**
 * The store cannot go on: closed, or (embedded) a write to disk failed, after which it refuses
 * every operation until it is reopened, since memory may hold what the disk does not.
 */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  /** True when only reopening the store (restarting the controller) ends it: a failed disk write. */
  readonly needsRestart: boolean;
  constructor(message: string, options?: { cause?: unknown; needsRestart?: boolean }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
    this.needsRestart = options?.needsRestart ?? false;
  }
}

/**
 * The control-plane store. Every operation is atomic; every promise resolves only once what it
 * wrote (and, for the embedded store, what it read) is durable. Lists are sorted: deployments,
 * users, aliases, tokens, uploads and state keys by name; versions by creation (oldest first);
 * alias history and audit newest first.
 */
export interface Store {
  /** The project's variables (`{}` when none were set). */
  getEnvironment(owner: string, project: string): Promise<Environment>;
  /** Replaces the project's whole set of variables. */
  putEnvironment(owner: string, project: string, vars: Environment): Promise<void>;

  /** Projects that have an environment (even an empty one) or at least one deployment, sorted. */
  listProjects(): Promise<{ owner: string; project: string }[]>;

  listDeployments(owner: string, project: string): Promise<Deployment[]>;
  /** Every deployment of every project, sorted by owner, project, name (reconciler, resync). */
  listAllDeployments(): Promise<Deployment[]>;
  getDeployment(ref: DeploymentRef): Promise<Deployment | null>;
  /** Throws `StoreConflictError` if it exists. */
  createDeployment(input: NewDeployment): Promise<Deployment>;
  /** Throws `StoreNotFoundError` if it does not exist. */
  updateDeployment(ref: DeploymentRef, patch: DeploymentPatch): Promise<Deployment>;
  /** Removes it with its versions, aliases, alias history and users; false if it did not exist. */
  deleteDeployment(ref: DeploymentRef): Promise<boolean>;

  /** Basic-auth user names of the deployment (`[]` if it does not exist). */
  listUsers(ref: DeploymentRef): Promise<string[]>;
  /** Basic-auth users: name -> password hash (for the routing record). */
  getUserHashes(ref: DeploymentRef): Promise<Record<string, string>>;
  /** Creates or replaces a user. Throws `StoreNotFoundError` without the deployment. */
  putUser(ref: DeploymentRef, name: string, passwordHash: string): Promise<void>;
  deleteUser(ref: DeploymentRef, name: string): Promise<boolean>;

  /** Oldest first (`[]` if the deployment does not exist). */
  listVersions(ref: DeploymentRef): Promise<Version[]>;
  getVersion(ref: VersionRef): Promise<Version | null>;
  /**
   * Throws `StoreConflictError` on a duplicate name (reason `name-taken` when an alias of the
   * deployment has it, checked atomically with the write), `StoreNotFoundError` without the
   * deployment.
   */
  createVersion(input: NewVersion): Promise<Version>;
  /**
   * Read-modify-write without lost updates: concurrent updates of one version are applied one
   * after the other, each mutator seeing the previous one's result. `updatedAt` is set when the
   * result differs. Throws `StoreNotFoundError` if the version does not exist.
   */
  updateVersion(ref: VersionRef, mutator: VersionMutator): Promise<Version>;
  /**
   * False if it did not exist. Throws `StoreConflictError` (`in-use`) while an alias points at
   * it, checked atomically with the delete.
   */
  deleteVersion(ref: VersionRef): Promise<boolean>;
  /**
   * The next free automatic version name `YYYYMMDD.N` (UTC day of `date`, N from 0 per deployment
   * per day). Atomic; a name is never handed out twice, even after its version was deleted, and
   * names already taken by explicitly named versions are skipped. Throws `StoreNotFoundError`
   * without the deployment.
   */
  allocateVersionName(owner: string, project: string, deployment: string, date: Date): Promise<string>;

  /** Sorted by alias name. */
  listAliases(ref: DeploymentRef): Promise<Alias[]>;
  getAlias(ref: DeploymentRef, alias: string): Promise<Alias | null>;
  /**
   * Points the alias at `target` and records the change in its history, atomically; returns the
   * history item (not recorded when the alias has that target already: nothing changed). Throws `StoreNotFoundError` without the deployment or if a target version
   * does not exist, `StoreConflictError` (reason `name-taken`) if a version has the alias's name
   * (both checked atomically with the write).
   */
  setAlias(ref: DeploymentRef, alias: string, target: AliasTarget, by: string): Promise<AliasHistoryItem>;
  /** Removes the alias and records it (`to: null`); `null` (and no history) if it did not exist. */
  deleteAlias(ref: DeploymentRef, alias: string, by: string): Promise<AliasHistoryItem | null>;
  /** Newest first; kept after the alias is deleted, removed with the deployment. */
  aliasHistory(ref: DeploymentRef, alias: string): Promise<AliasHistoryItem[]>;

  /** Appends an entry; only the newest `auditLimit` entries are kept. */
  appendAudit(entry: NewAuditEntry): Promise<AuditEntry>;
  /** Newest first, at most `limit` (default 100, at most 1,000) entries older than `before`. */
  listAudit(query?: { limit?: number; before?: string }): Promise<AuditPage>;

  listTokens(): Promise<AdminToken[]>;
  /** Throws `StoreConflictError` if the name, or the hash, is taken. */
  createToken(input: { name: string; hash: string }): Promise<AdminToken>;
  /**
   * `false` if there is no such token. With `keepLast`, the only token left is not deleted
   * (`StoreConflictError`, reason `last`), checked in the same step as the delete so that two
   * concurrent deletes cannot remove the last two.
   */
  deleteToken(name: string, opts?: { readonly keepLast?: boolean }): Promise<boolean>;
  findTokenByHash(hash: string): Promise<AdminToken | null>;

  /** Throws `StoreConflictError` if the id is taken. */
  createUpload(input: NewUpload): Promise<Upload>;
  getUpload(id: string): Promise<Upload | null>;
  listUploads(): Promise<Upload[]>;
  deleteUpload(id: string): Promise<boolean>;

  /** Runtime bookkeeping (e.g. local replicas' pids): any JSON value; `undefined` if absent. */
  getState(ns: string, key: string): Promise<unknown>;
  putState(ns: string, key: string, value: unknown): Promise<void>;
  deleteState(ns: string, key: string): Promise<boolean>;
  /** Every key of the namespace with its value. */
  listState(ns: string): Promise<Record<string, unknown>>;

  /**
   * The store's identity: a random id `initStoreId` wrote when the store was first initialised,
   * or `null` in a store that never had one (new, emptied, or another one). The controller
   * compares it with the id it started on before it removes replicas the store does not name:
   * an empty store must not read as "no replica is wanted" (docs/operations.md, section 4).
   */
  getStoreId(): Promise<string | null>;
  /** The store's id, written now if it has none (atomically: concurrent calls get one id). */
  initStoreId(): Promise<string>;

  /**
   * The error every operation fails with until the store is reopened (the embedded store after a
   * failed disk write), else null. Redis being unreachable is not such a failure: it passes.
   */
  failure(): StoreUnavailableError | null;

  /** Waits for pending writes, then releases the store (the embedded store's lock too). */
  close(): Promise<void>;
}

/** `YYYYMMDD` of `date` in UTC: the day part of automatic version names. */
export function versionDay(date: Date): string {
  return date.toISOString().slice(0, 10).replaceAll('-', '');
}

/** Orders deployments by owner, project, name. */
export function compareDeployments(a: Deployment, b: Deployment): number {
  return compareStrings(a.owner, b.owner) || compareStrings(a.project, b.project) || compareStrings(a.name, b.name);
}

/** Code-unit order (what `Array.prototype.sort` uses), as a comparator. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `owner/project/deployment` for messages. */
export function deploymentLabel(ref: DeploymentRef): string {
  return `${ref.owner}/${ref.project}/${ref.deployment}`;
}

/** A JSON round trip: what every store hands back for a value it was given. */
export function jsonCopy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Keeps only the fields of an alias target (the store must not record anything else). */
export function normaliseTarget(target: AliasTarget): AliasTarget {
  if ('versions' in target) {
    return { versions: target.versions.map((w) => ({ version: w.version, weight: w.weight })) };
  }
  return { version: target.version };
}

/** The version names an alias target points at. */
export function targetVersions(target: AliasTarget): string[] {
  return 'versions' in target ? target.versions.map((w) => w.version) : [target.version];
}

/** The `listAudit` limit actually used for a requested one. */
export function auditPageLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return AUDIT_PAGE_DEFAULT;
  return Math.max(1, Math.min(AUDIT_PAGE_MAX, Math.floor(limit)));
}

/** `patch` applied to `d`, keeping only the fields a patch may change. */
export function patchDeployment(d: Deployment, patch: DeploymentPatch): Deployment {
  return {
    ...d,
    ...(patch.target !== undefined ? { target: patch.target } : {}),
    ...(patch.auth !== undefined ? { auth: patch.auth } : {}),
  };
}

/**
 * Runs a mutator on a copy of `current` and returns the version to store, or `null` when
 * nothing changed. Shared by both implementations so they behave the same.
 */
export function applyVersionMutator(current: Version, mutator: VersionMutator, now: Date): Version | null {
  const draft = jsonCopy(current);
  const result = mutator(draft) ?? draft;
  const next: Version = jsonCopy({
    ...result,
    owner: current.owner,
    project: current.project,
    deployment: current.deployment,
    name: current.name,
    createdAt: current.createdAt,
    updatedAt: current.updatedAt,
  });
  if (JSON.stringify(next) === JSON.stringify(current)) return null;
  next.updatedAt = now.toISOString();
  return next;
}
