import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import type { Config } from '../common/config.ts';
import { PorticoError } from '../common/errors.ts';
import { hashPassword } from '../gateway/auth/password.ts';
import { deploymentKey, endpointKey, type AckResult, type DeploymentRecord, type EndpointStatsBucket, type RoutingWriter } from '../gateway/routing/contract.ts';
import { BlobCleaner, uploadIdsOf, uploadRefsOf } from './build/blob-cleanup.ts';
import { TooLargeError, type BlobStore } from './build/blobs.ts';
import { buildVersion } from './build/build-version.ts';
import { BuildError, redactSource } from './build/source.ts';
import type * as CP from './control-plane.ts';
import { ControlErrors } from './errors.ts';
import type { Publisher } from './publisher.ts';
import { endpointRuntimeKey, type Reconciler } from './reconciler.ts';
import type { EndpointDefinition } from './valohai-yaml/index.ts';
import {
  StoreConflictError,
  StoreNotFoundError,
  targetVersions,
  type AliasTarget,
  type Deployment,
  type DeploymentRef,
  type Store,
  type Version,
  type VersionEndpoint,
  type VersionRef,
} from './store/store.ts';
import { keyFileNameBytes, MAX_FILE_NAME_BYTES } from './telemetry/key-files.ts';
import type { LogStore } from './telemetry/logs.ts';
import { maskedReads } from './telemetry/collect.ts';
import type { MetricStore } from './telemetry/metric-store.ts';
import { compareMetrics, endpointMetrics } from './telemetry/query.ts';
import { summarizeStats } from './telemetry/stats.ts';
import { Limiter } from './limiter.ts';
import type { Target } from './targets.ts';
import { buildVersionImages, removeVersionImages } from './build/image.ts';
import Dockerode from 'dockerode';

/** Names of deployments, versions, aliases and tokens. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Basic-auth user names: names that may also hold `@` and `+` (e-mail addresses), as the API takes them. */
export const USER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$/;
/**
 * Environment variable names: letters, digits and _, not starting with a digit. `__proto__` is
 * refused: environments travel as plain objects (store, reconciler, runtimes), where assigning
 * it sets the prototype and the variable silently disappears.
 */
const ENV_NAME_PATTERN = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_NAME_RULE = 'a variable name is letters, digits and _, not starting with a digit, and not __proto__';
const MASK = '********';
/** Actors the audit log names besides tokens (PORTICO_ADMIN_TOKEN, routes without auth): no token may be named so. */
const RESERVED_ACTORS = ['env', 'anonymous'];
/**
 * Whether the build left the endpoint out, as it does an endpoint disabled then: its declared
 * files are not placed and its image (docker, kubernetes) is not built, so it cannot run.
 */
function leftOutOfBuild(v: Version, e: VersionEndpoint): boolean {
  const declared = (e.definition as EndpointDefinition).files?.length ?? 0;
  return e.files.length < declared || (v.images !== undefined && v.images[e.name] === undefined);
}

/** A path segment that URLs resolve as `.` or `..` (`%2e` being a dot too). */
const DOT_SEGMENT = /^(\.|%2e){1,2}$/i;
/** How much of an endpoint's reply the test console returns (the API documents 16 MiB). */
export const TEST_REPLY_MAX_BYTES = 16 * 1024 * 1024;

function notFound(what: string): PorticoError {
  return new PorticoError(ControlErrors.NOT_FOUND, `${what} does not exist`);
}

function depLabel(ref: DeploymentRef): string {
  return `${ref.owner}/${ref.project}/${ref.deployment}`;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The operations of the control plane (see `ControlPlane`), over a store, runtimes and the publisher. */
export class Controller implements CP.ControlPlane {
  private readonly config: Config;
  private readonly store: Store;
  private readonly routing: RoutingWriter;
  private readonly publisher: Publisher;
  private readonly reconciler: Reconciler;
  private readonly targetsByName: ReadonlyMap<string, Target>;
  private readonly blobs: BlobStore;
  /** Frees blobs and uploads no version uses; uploads, version creates and builds hold it. */
  private readonly blobCleaner: BlobCleaner;
  private readonly logs: LogStore;
  private readonly metrics: MetricStore | null;
  private readonly builds: Limiter;
  private readonly envTokenHash: Buffer | null;
  private readonly secrets = new Set<string>();
  private readonly log: (msg: string, extra?: Record<string, unknown>) => void;
  private readonly pipArgs: readonly string[];
  /** Deployment records read and handed to the publisher, one after another (`putDeploymentRecord`). */
  private readonly recordOrder = new Limiter(1);
  /** Builds under way, by version (`owner/project/deployment/name@createdAt`): deleting the version stops its build. */
  private readonly buildsUnderWay = new Map<string, AbortController>();

  constructor(opts: {
    config: Config;
    store: Store;
    routing: RoutingWriter;
    publisher: Publisher;
    reconciler: Reconciler;
    targets: readonly Target[];
    blobs: BlobStore;
    logs: LogStore;
    /** `vh_metadata` metrics (none: the metrics API answers no keys). */
    metrics?: MetricStore;
    log: (msg: string, extra?: Record<string, unknown>) => void;
    pipArgs?: readonly string[];
    /** The clock uploads expire by (tests move it on). Default `Date.now`. */
    now?: () => number;
  }) {
    this.config = opts.config;
    this.store = opts.store;
    this.routing = opts.routing;
    this.publisher = opts.publisher;
    this.reconciler = opts.reconciler;
    this.targetsByName = new Map(opts.targets.map((t) => [t.name, t]));
    this.blobs = opts.blobs;
    this.blobCleaner = new BlobCleaner({
      store: opts.store,
      blobs: opts.blobs,
      graceMs: opts.config.uploadGraceSeconds * 1000,
      now: opts.now ?? Date.now,
      storeIsOurs: () => this.reconciler.sameStore(),
      log: opts.log,
    });
    this.logs = opts.logs;
    this.metrics = opts.metrics ? maskedReads(opts.metrics, (s) => this.maskSecrets(s)) : null;
    this.log = opts.log;
    this.pipArgs = opts.pipArgs ?? [];
    this.builds = new Limiter(opts.config.buildConcurrency);
    this.envTokenHash = opts.config.adminToken ? sha256(opts.config.adminToken) : null;
  }

  // ---- helpers -------------------------------------------------------------------------

  /** Replaces every known secret value in `line` by the mask (logs never show secrets). */
  maskSecrets(line: string): string {
    let out = line;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join(MASK);
    return out;
  }

  private noteSecrets(env: Record<string, { value: string; secret: boolean }>): void {
    for (const v of Object.values(env)) if (v.secret && v.value.length >= 4) this.secrets.add(v.value);
  }

  /** Notes the secret values a version's replicas get (the project's may have changed since). */
  private noteVersionSecrets(v: Pick<Version, 'environment' | 'secretEnvironment'>): void {
    for (const k of v.secretEnvironment ?? []) {
      const value = v.environment[k];
      if (value !== undefined) this.noteSecrets({ [k]: { value, secret: true } });
    }
  }

  /** Loads what the controller keeps in memory (secret values for masking). */
  async loadSecrets(): Promise<void> {
    for (const d of await this.store.listAllDeployments()) {
      this.noteSecrets(await this.store.getEnvironment(d.owner, d.project));
      for (const v of await this.store.listVersions({ owner: d.owner, project: d.project, deployment: d.name })) this.noteVersionSecrets(v);
    }
  }

  private async deploymentOr404(ref: DeploymentRef): Promise<Deployment> {
    const d = await this.store.getDeployment(ref);
    if (!d) throw notFound(`deployment ${depLabel(ref)}`);
    return d;
  }

  private async versionOr404(ref: VersionRef): Promise<Version> {
    const v = await this.store.getVersion(ref);
    if (!v) throw notFound(`version ${ref.version} of ${depLabel(ref)}`);
    return v;
  }

  private target(name: string): Target {
    const t = this.targetsByName.get(name);
    if (!t) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `target ${JSON.stringify(name)} does not exist (targets: ${[...this.targetsByName.keys()].join(', ')})`);
    return t;
  }

  private gatewayUrlOf(d: Deployment): string {
    return this.targetsByName.get(d.target)?.gatewayUrl ?? this.config.gatewayUrl;
  }

  private async record(actor: CP.Actor, action: string, target: string, details: Record<string, unknown> = {}): Promise<void> {
    await this.store.appendAudit({ actor, action, target, details });
  }

  /** The deployment's routing record, from the store. */
  async deploymentRecord(ref: DeploymentRef): Promise<DeploymentRecord | null> {
    const d = await this.store.getDeployment(ref);
    if (!d) return null;
    const aliases: Record<string, AliasTarget> = {};
    for (const a of await this.store.listAliases(ref)) {
      aliases[a.name] = 'versions' in a ? { versions: a.versions } : { version: a.version };
    }
    return { owner: d.owner, project: d.project, deployment: d.name, auth: d.auth, users: await this.store.getUserHashes(ref), aliases };
  }

  /**
   * Reads the deployment's record and hands it to the publisher after every earlier such read was
   * handed on, so a record read before a change is never written after one read since (two alias
   * PUTs at once would otherwise leave the gateways with the older). Resolves with the gateways'
   * acknowledgements, null when the deployment is gone.
   */
  private putDeploymentRecord(ref: DeploymentRef): Promise<AckResult | null> {
    return this.recordOrder.run(async () => {
      const record = await this.deploymentRecord(ref);
      // Wrapped: the queue goes on once the write is queued, not when the gateways acknowledge it.
      return { acks: record ? this.publisher.putDeployment(record) : null };
    }).then((h) => h.acks);
  }

  private async publishDeployment(ref: DeploymentRef): Promise<CP.AliasSetResult['missing']> {
    return (await this.putDeploymentRecord(ref))?.missing ?? [];
  }

  private deploymentView(d: Deployment): CP.DeploymentView {
    return { owner: d.owner, project: d.project, name: d.name, target: d.target, auth: d.auth, createdAt: d.createdAt, url: `${this.gatewayUrlOf(d)}/${d.owner}/${d.project}/${d.name}` };
  }

  private versionView(d: Deployment, v: Version, aliases: readonly { name: string; target: AliasTarget }[]): CP.VersionView {
    const base = `${this.gatewayUrlOf(d)}/${d.owner}/${d.project}/${d.name}/${v.name}`;
    const endpoints: CP.EndpointView[] = v.endpoints.map((e) => {
      const s = this.reconciler.status(endpointRuntimeKey(v, e.name), d.target);
      const replicas = (s?.replicas ?? []).map((r) => ({
        id: r.id,
        address: r.address,
        state: r.state,
        restarts: r.restarts,
        // A crash's reason quotes the replica's last stderr lines: its secrets too.
        ...(r.reason !== undefined ? { reason: this.maskSecrets(r.reason) } : {}),
      }));
      let status: CP.EndpointStatus;
      if (v.status === 'building' || v.status === 'failed' && v.codeDir === undefined) status = v.status;
      else if (!v.enabled || !e.enabled || e.replicas === 0) status = 'stopped';
      // Replicas nobody can see: ready while the gateways still route to some (see `error`).
      else if (s?.unknown !== undefined) status = (this.publisher.current({ owner: v.owner, project: v.project, deployment: v.deployment, version: v.name, endpoint: e.name })?.replicas.length ?? 0) > 0 ? 'ready' : 'starting';
      else if (replicas.some((r) => r.state === 'ready')) status = 'ready';
      else if (s?.error) status = 'failed';
      else status = 'starting';
      return {
        name: e.name,
        status,
        url: `${base}/${e.name}`,
        enabled: e.enabled,
        replicaCount: e.replicas,
        replicas,
        timeoutSeconds: e.timeoutSeconds,
        maxBodyBytes: e.maxBodyBytes,
        ...(s?.error !== undefined ? { error: this.maskSecrets(s.error) } : {}),
        files: e.files,
      };
    });
    return {
      name: v.name,
      status: v.status,
      ...(v.reason !== undefined ? { reason: this.maskSecrets(v.reason) } : {}),
      createdAt: v.createdAt,
      updatedAt: v.updatedAt,
      enabled: v.enabled,
      createdBy: v.createdBy ?? '',
      source: redactSource(v.source as CP.SourceInput),
      environment: Object.keys(v.environment).sort(),
      secretEnvironment: [...(v.secretEnvironment ?? [])].sort(),
      endpoints,
      aliases: aliases.filter((a) => targetVersions(a.target).includes(v.name)).map((a) => a.name),
    };
  }

  private async aliasTargets(ref: DeploymentRef): Promise<{ name: string; target: AliasTarget }[]> {
    return (await this.store.listAliases(ref)).map((a) => ({ name: a.name, target: 'versions' in a ? { versions: a.versions } : { version: a.version } }));
  }

  storeStatus(): 'ok' | 'lost' | 'failed' {
    if (this.store.failure() !== null) return 'failed';
    return this.reconciler.storeLost() ? 'lost' : 'ok';
  }

  // ---- targets, environment ------------------------------------------------------------

  async targets(): Promise<CP.TargetView[]> {
    return [...this.targetsByName.values()].map((t) => ({ name: t.name, kind: t.kind, gatewayUrl: t.gatewayUrl }));
  }

  async getEnvironment(ref: CP.ProjectRef): Promise<CP.EnvironmentView> {
    const env = await this.store.getEnvironment(ref.owner, ref.project);
    const variables: Record<string, { value: string; secret: boolean }> = {};
    for (const [k, v] of Object.entries(env)) variables[k] = { value: v.secret ? MASK : v.value, secret: v.secret };
    return { variables };
  }

  async putEnvironment(ref: CP.ProjectRef, variables: CP.EnvironmentInput, actor: CP.Actor): Promise<CP.EnvironmentView> {
    const previous = await this.store.getEnvironment(ref.owner, ref.project);
    const env: Record<string, { value: string; secret: boolean }> = {};
    for (const [k, v] of Object.entries(variables)) {
      if (!ENV_NAME_PATTERN.test(k)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `variables.${k}: ${ENV_NAME_RULE}`);
      // A secret sent back masked keeps its stored value (the UI never sees it), and stays
      // secret: else a PUT without "secret": true would make its value readable.
      const keep = v.value === MASK && previous[k]?.secret;
      env[k] = keep ? { value: (previous[k] as { value: string }).value, secret: true } : { value: v.value, secret: v.secret ?? false };
    }
    await this.store.putEnvironment(ref.owner, ref.project, env);
    this.noteSecrets(env);
    await this.record(actor, 'environment.put', `${ref.owner}/${ref.project}`, { variables: Object.keys(env).sort() });
    return this.getEnvironment(ref);
  }

  // ---- deployments -----------------------------------------------------------------------

  async listDeployments(ref: CP.ProjectRef): Promise<CP.DeploymentView[]> {
    return (await this.store.listDeployments(ref.owner, ref.project)).map((d) => this.deploymentView(d));
  }

  async createDeployment(ref: CP.ProjectRef, input: CP.CreateDeploymentInput, actor: CP.Actor): Promise<CP.DeploymentView> {
    if (!NAME_PATTERN.test(input.name)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${JSON.stringify(input.name)} must match ${NAME_PATTERN.source}`);
    // Room for its versions' build logs, with the automatic version names (`20261207.0`).
    const tooLong = checkKeyFits(this.buildLogKey({ ...ref, deployment: input.name, version: '20000101.0' }), 'deployment');
    if (tooLong) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${tooLong}`);
    const target = this.target(input.target ?? 'local');
    let d: Deployment;
    try {
      d = await this.store.createDeployment({ owner: ref.owner, project: ref.project, name: input.name, target: target.name, auth: input.auth ?? 'none' });
    } catch (err) {
      if (err instanceof StoreConflictError) throw new PorticoError(ControlErrors.ALREADY_EXISTS, `deployment ${ref.owner}/${ref.project}/${input.name} exists already`);
      throw err;
    }
    await this.publishDeployment({ ...ref, deployment: d.name });
    await this.record(actor, 'deployment.create', `${ref.owner}/${ref.project}/${d.name}`, { target: d.target, auth: d.auth });
    return this.deploymentView(d);
  }

  async getDeployment(ref: DeploymentRef): Promise<CP.DeploymentView> {
    return this.deploymentView(await this.deploymentOr404(ref));
  }

  async patchDeployment(ref: DeploymentRef, patch: { readonly auth?: CP.AuthMode }, actor: CP.Actor): Promise<CP.DeploymentView> {
    await this.deploymentOr404(ref);
    const d = await this.store.updateDeployment(ref, patch.auth !== undefined ? { auth: patch.auth } : {});
    await this.publishDeployment(ref);
    await this.record(actor, 'deployment.update', depLabel(ref), { ...patch });
    return this.deploymentView(d);
  }

  async deleteDeployment(ref: DeploymentRef, actor: CP.Actor): Promise<void> {
    const d = await this.deploymentOr404(ref);
    // Not while a reconciler pass runs: one that read the deployment before would bring back its
    // replicas and routes. Its versions are read here, with every build finished so far.
    const versions = await this.reconciler.exclusive(async () => {
      const versions = await this.store.listVersions(ref);
      const keys = [deploymentKey(ref)];
      for (const v of versions) for (const e of v.endpoints) keys.push(endpointKey({ ...ref, version: v.name, endpoint: e.name }));
      await this.store.deleteDeployment(ref);
      for (const v of versions) this.buildsUnderWay.get(buildId({ ...ref, version: v.name }, v.createdAt))?.abort(new BuildError('the deployment was deleted'));
      // After every record read before the delete is handed on (an alias PUT under way would
      // otherwise route the deployment again); those read since find it gone.
      await (await this.recordOrder.run(async () => ({ acks: this.publisher.remove(keys) }))).acks;
      await this.removeReplicas(d.target, versions.flatMap((v) => v.endpoints.map((e) => endpointRuntimeKey(v, e.name))));
      return versions;
    });
    await rm(this.deploymentDir(ref), { recursive: true, force: true });
    for (const v of versions) this.blobCleaner.release(v);
    await this.blobCleaner.clean({ orLater: true });
    const docker = this.targetsByName.get(d.target)?.docker;
    if (docker) {
      const engine = new Dockerode({ socketPath: docker.socket });
      for (const v of versions) await removeVersionImages(engine, { ...ref, version: v.name }).catch(() => []);
    }
    await this.forgetTelemetry(depLabel(ref));
    await this.record(actor, 'deployment.delete', depLabel(ref), { versions: versions.map((v) => v.name) });
  }

  // ---- users -----------------------------------------------------------------------------

  async listUsers(ref: DeploymentRef): Promise<{ name: string }[]> {
    await this.deploymentOr404(ref);
    return (await this.store.listUsers(ref)).map((name) => ({ name }));
  }

  async putUser(ref: DeploymentRef, user: string, password: string, actor: CP.Actor): Promise<{ name: string }> {
    await this.deploymentOr404(ref);
    if (!USER_PATTERN.test(user)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `user: ${JSON.stringify(user)} must match ${USER_PATTERN.source}`);
    if (password.length < 8) throw new PorticoError(ControlErrors.VALIDATION_FAILED, 'password: at least 8 characters');
    await this.store.putUser(ref, user, await hashPassword(password));
    await this.publishDeployment(ref);
    await this.record(actor, 'user.put', `${depLabel(ref)}/users/${user}`);
    return { name: user };
  }

  async deleteUser(ref: DeploymentRef, user: string, actor: CP.Actor): Promise<void> {
    await this.deploymentOr404(ref);
    if (!(await this.store.deleteUser(ref, user))) throw notFound(`user ${user} of ${depLabel(ref)}`);
    await this.publishDeployment(ref);
    await this.record(actor, 'user.delete', `${depLabel(ref)}/users/${user}`);
  }

  // ---- versions ----------------------------------------------------------------------------

  private deploymentDir(ref: DeploymentRef): string {
    return join(this.config.dataDir, 'versions', ref.owner, ref.project, ref.deployment);
  }

  private versionDir(ref: VersionRef): string {
    return join(this.deploymentDir(ref), ref.version);
  }

  private buildLogKey(ref: VersionRef): string {
    return `build/${ref.owner}/${ref.project}/${ref.deployment}/${ref.version}`;
  }

  async listVersions(ref: DeploymentRef): Promise<CP.VersionView[]> {
    const d = await this.deploymentOr404(ref);
    const aliases = await this.aliasTargets(ref);
    return (await this.store.listVersions(ref)).map((v) => this.versionView(d, v, aliases));
  }

  async getVersion(ref: VersionRef): Promise<CP.VersionView> {
    const d = await this.deploymentOr404(ref);
    return this.versionView(d, await this.versionOr404(ref), await this.aliasTargets(ref));
  }

  async createVersion(ref: DeploymentRef, input: CP.CreateVersionInput, actor: CP.Actor): Promise<CP.VersionView> {
    const d = await this.deploymentOr404(ref);
    if (input.name !== undefined && (!NAME_PATTERN.test(input.name) || input.name === '.' || input.name === '..')) {
      throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${JSON.stringify(input.name)} must match ${NAME_PATTERN.source}`);
    }
    for (const k of Object.keys(input.environment ?? {})) {
      if (!ENV_NAME_PATTERN.test(k)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `environment.${k}: ${ENV_NAME_RULE}`);
    }
    const inherit = input.inheritEnvironment ?? true;
    const environment: Record<string, string> = {};
    const secret = new Set<string>();
    if (inherit) {
      for (const [k, v] of Object.entries(await this.store.getEnvironment(ref.owner, ref.project))) {
        environment[k] = v.value;
        if (v.secret) secret.add(k);
      }
    }
    // A value given for this version replaces the project's (and is not a secret of the project's).
    for (const [k, v] of Object.entries(input.environment ?? {})) {
      environment[k] = v;
      secret.delete(k);
    }
    // Known already unless the controller started since the project's environment was set: it
    // loads the secrets of projects that have deployments.
    this.noteVersionSecrets({ environment, secretEnvironment: [...secret] });
    if (input.name !== undefined) {
      const tooLong = checkKeyFits(this.buildLogKey({ ...ref, version: input.name }), 'version');
      if (tooLong) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${tooLong}`);
    }
    // Held until its build holds the store itself: a clean between would take its uploads for
    // unused (or remove one after the check below).
    return this.blobCleaner.hold(async () => {
      // Before a name is used up: one that does not exist is refused where it is named.
      for (const { at, id } of uploadRefsOf(input.source, input.endpoints)) {
        if ((await this.store.getUpload(id)) === null) {
          throw new PorticoError(ControlErrors.VALIDATION_FAILED, `${at}: no upload ${JSON.stringify(id)} (an upload no version uses goes after PORTICO_UPLOAD_GRACE_SECONDS, and one a version used goes with the last such version)`);
        }
      }
      let name = input.name ?? (await this.store.allocateVersionName(ref.owner, ref.project, ref.deployment, new Date()));
      // An automatic name an alias has taken (an alias named like a date) is passed over.
      while (input.name === undefined && (await this.store.getAlias(ref, name))) name = await this.store.allocateVersionName(ref.owner, ref.project, ref.deployment, new Date());
      return this.storeVersion(ref, d, name, input, { environment, secret, inherit }, actor);
    });
  }

  private async storeVersion(
    ref: DeploymentRef,
    d: Deployment,
    name: string,
    input: CP.CreateVersionInput,
    env: { environment: Record<string, string>; secret: ReadonlySet<string>; inherit: boolean },
    actor: CP.Actor,
  ): Promise<CP.VersionView> {
    const { environment, secret, inherit } = env;
    const uploads = uploadIdsOf(input.source, input.endpoints);
    let v: Version;
    try {
      v = await this.store.createVersion({
        owner: ref.owner,
        project: ref.project,
        deployment: ref.deployment,
        name,
        status: 'building',
        createdBy: actor,
        enabled: true,
        source: input.source,
        environment,
        ...(secret.size > 0 ? { secretEnvironment: [...secret].sort() } : {}),
        inheritEnvironment: inherit,
        ...(input.endpoints !== undefined ? { buildEndpoints: input.endpoints } : {}),
        ...(uploads.length > 0 ? { uploads } : {}),
        endpoints: [],
      });
    } catch (err) {
      // An alias takes the URLs of a version of the same name (`/{deployment}/{name}/...`): such a
      // version could not be reached, and the alias could no longer be moved (`setAlias`). The
      // store checks it with the write, so an alias PUT at the same moment cannot slip between.
      if (err instanceof StoreConflictError && err.reason === 'name-taken') {
        throw new PorticoError(ControlErrors.CONFLICT, `name: alias ${name} of ${depLabel(ref)} exists, and a version of the same name could not be reached through its URLs; pick another name`);
      }
      if (err instanceof StoreConflictError) throw new PorticoError(ControlErrors.ALREADY_EXISTS, `version ${name} of ${depLabel(ref)} exists already`);
      throw err;
    }
    // Stored: it builds even if its audit entry cannot be written (the request then fails with
    // 503), rather than stay `building` until the controller restarts.
    void this.build({ ...ref, version: name }, input, d, v.createdAt);
    await this.record(actor, 'version.create', `${depLabel(ref)}/${name}`, { source: redactSource(input.source) });
    return this.versionView(d, v, []);
  }

  /**
   * Builds a recorded version in the background (also after a controller restart). `createdAt`
   * tells it from a version of the same name created after it was deleted: the build writes to
   * that one neither its outcome nor its failure.
   */
  private async build(ref: VersionRef, input: CP.CreateVersionInput, d: Deployment, createdAt: string): Promise<void> {
    // Held from now (its caller holds too) until its outcome is stored: the blobs it writes are no version's before.
    const built = await this.blobCleaner.hold(() => this.runBuild(ref, input, d, createdAt));
    if (built) await this.reconciler.trigger();
  }

  /** The build itself: resolves true once the built version is stored (its replicas are then to start). */
  private async runBuild(ref: VersionRef, input: CP.CreateVersionInput, d: Deployment, createdAt: string): Promise<boolean> {
    const key = this.buildLogKey(ref);
    const own = (draft: Version): void => {
      if (draft.createdAt !== createdAt) throw new StoreNotFoundError('version', `${depLabel(ref)}/${ref.version} of ${createdAt}`);
    };
    const log = (line: string) => this.logs.append(key, { at: Date.now(), stream: 'build', line });
    const target = this.targetsByName.get(d.target);
    const underWay = buildId(ref, createdAt);
    const stop = new AbortController();
    this.buildsUnderWay.set(underWay, stop);
    try {
      log(`queued (target ${d.target})`);
      // PORTICO_BUILD_TIMEOUT_SECONDS bounds the whole build: the image build gets what the code
      // build left of it (the wait for a build slot in between is not counted).
      let codeBuildMs = 0;
      const built = await this.builds.run(async () => {
        stop.signal.throwIfAborted();
        log('build started');
        const began = Date.now();
        return withTimeout(
          stop.signal,
          (signal) => buildVersion({
            input,
            versionDir: this.versionDir(ref),
            blobs: this.blobs,
            uploads: (id) => this.uploadBlob(id),
            log,
            timeoutMs: this.config.buildTimeoutSeconds * 1000,
            maxFileBytes: Number.MAX_SAFE_INTEGER,
            installDeps: target?.kind === 'local',
            pipArgs: this.pipArgs,
            signal,
          }),
          this.config.buildTimeoutSeconds * 1000,
        ).finally(() => {
          codeBuildMs = Date.now() - began;
        });
      });
      for (const e of built.endpoints) {
        const tooLong = checkKeyFits(endpointRuntimeKey({ ...ref, name: ref.version }, e.name), 'endpoint');
        if (tooLong) throw new BuildError(tooLong);
      }
      let images: Record<string, string> | undefined;
      if (target?.docker) {
        const docker = target.docker;
        images = await this.builds.run(() =>
          buildVersionImages({
            docker: new Dockerode({ socketPath: docker.socket }),
            version: { owner: ref.owner, project: ref.project, deployment: ref.deployment, name: ref.version },
            endpoints: built.endpoints.map((e) => ({ name: e.name, enabled: e.enabled, definition: e.definition as EndpointDefinition })),
            codeDir: built.codeDir,
            ...(docker.registry ? { registry: docker.registry } : {}),
            ...(docker.registryAuth ? { registryAuth: { username: docker.registryAuth.username, password: docker.registryAuth.password } } : {}),
            ...(docker.buildNetwork ? { networkMode: docker.buildNetwork } : {}),
            log,
            timeoutMs: Math.max(1, this.config.buildTimeoutSeconds * 1000 - codeBuildMs),
            signal: stop.signal,
          }),
        );
      }
      const v = await this.store.updateVersion(ref, (draft) => {
        own(draft);
        draft.endpoints = built.endpoints;
        draft.codeDir = built.codeDir;
        if (images) draft.images = images;
        if (draft.status === 'building') draft.status = draft.enabled ? 'starting' : 'stopped';
        delete draft.reason;
        delete draft.buildEndpoints;
      });
      log(`build finished; starting ${v.endpoints.filter((e) => e.enabled).map((e) => `${e.name} x${e.replicas}`).join(', ')}`);
      return true;
    } catch (err) {
      const reason = err instanceof BuildError ? err.message : `internal error: ${(err as Error).message}`;
      // Recorded only on the version this build is for; that version gone (deleted while it
      // built, its name perhaps taken again since), the write finds none.
      const deleted = await this.store
        .updateVersion(ref, (draft) => {
          own(draft);
          draft.status = 'failed';
          draft.reason = reason;
          delete draft.buildEndpoints;
        })
        .then(() => false, (e: unknown) => e instanceof StoreNotFoundError);
      if (deleted) {
        // Nothing of it outlives the version (a later version of the same name would show its
        // log); what a version of the same name created since has there is that one's.
        if (await this.store.getVersion(ref).then((v) => v === null, () => false)) {
          await rm(this.versionDir(ref), { recursive: true, force: true }).catch(() => {});
          await this.logs.remove(key).catch(() => {});
          // The delete removed the images there were then; this build may have made some since.
          if (target?.docker) await removeVersionImages(new Dockerode({ socketPath: target.docker.socket }), ref).catch(() => []);
        }
        return false;
      }
      if (!(err instanceof BuildError)) this.log('build failed unexpectedly', { version: ref, error: String((err as Error).stack ?? err) });
      log(`build failed: ${reason}`);
      await rm(join(this.versionDir(ref), 'code'), { recursive: true, force: true }).catch(() => {});
      return false;
    } finally {
      if (this.buildsUnderWay.get(underWay) === stop) this.buildsUnderWay.delete(underWay);
      this.logs.end(key); // followers of the build log stop here
    }
  }

  /** Restarts builds that a previous controller process left unfinished. */
  async resumeBuilds(): Promise<void> {
    for (const d of await this.store.listAllDeployments()) {
      const ref = { owner: d.owner, project: d.project, deployment: d.name };
      for (const v of await this.store.listVersions(ref)) {
        if (v.status !== 'building') continue;
        this.logs.append(this.buildLogKey({ ...ref, version: v.name }), { at: Date.now(), stream: 'build', line: 'controller restarted: building again' });
        const endpoints = v.buildEndpoints as CP.CreateVersionInput['endpoints'];
        void this.build({ ...ref, version: v.name }, { source: v.source as CP.SourceInput, ...(endpoints !== undefined ? { endpoints } : {}) }, d, v.createdAt);
      }
    }
  }

  async patchVersion(ref: VersionRef, patch: CP.PatchVersionInput, actor: CP.Actor): Promise<CP.VersionView> {
    const d = await this.deploymentOr404(ref);
    const before = await this.versionOr404(ref);
    for (const [name, p] of Object.entries(patch.endpoints ?? {})) {
      const e = before.endpoints.find((x) => x.name === name);
      if (!e) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `endpoints.${name}: version ${ref.version} has no such endpoint`);
      if (p.enabled === true && !e.enabled && leftOutOfBuild(before, e)) {
        throw new PorticoError(ControlErrors.CONFLICT, `endpoints.${name}: it was disabled when version ${ref.version} was built, so its files were not placed (nor its image built): build a new version with it enabled`);
      }
    }
    await this.store.updateVersion(ref, (draft) => {
      if (patch.enabled !== undefined) {
        draft.enabled = patch.enabled;
        // A version stopped while it builds stays `building` until its build ends (so that a
        // start does not take it for failed, and a restarted controller resumes the build).
        if (!patch.enabled) {
          if (draft.status !== 'building') draft.status = 'stopped';
        }
        else if (draft.status === 'stopped') draft.status = draft.codeDir ? 'starting' : 'failed';
      }
      for (const e of draft.endpoints) {
        const p = patch.endpoints?.[e.name];
        if (!p) continue;
        if (p.replicas !== undefined) e.replicas = p.replicas;
        if (p.enabled !== undefined) e.enabled = p.enabled;
        if (p.timeoutSeconds !== undefined) e.timeoutSeconds = p.timeoutSeconds;
        if (p.maxBodyBytes !== undefined) e.maxBodyBytes = p.maxBodyBytes;
      }
    });
    await this.record(actor, 'version.update', `${depLabel(ref)}/${ref.version}`, { ...patch });
    await this.reconciler.trigger();
    return this.versionView(d, await this.versionOr404(ref), await this.aliasTargets(ref));
  }

  async deleteVersion(ref: VersionRef, actor: CP.Actor): Promise<void> {
    const d = await this.deploymentOr404(ref);
    const before = await this.versionOr404(ref);
    const aliases = (await this.aliasTargets(ref)).filter((a) => targetVersions(a.target).includes(before.name));
    if (aliases.length > 0) {
      throw new PorticoError(ControlErrors.ALIAS_IN_USE, `version ${before.name} is the target of alias ${aliases.map((a) => a.name).join(', ')}: point it elsewhere first`);
    }
    // Not while a reconciler pass runs: one that read the version before would bring back its
    // replicas and routes.
    const v = await this.reconciler.exclusive(async () => {
      // Read again: a build that finished since the check above gave it endpoints a pass may
      // have started and routed.
      const v = (await this.store.getVersion(ref)) ?? before;
      try {
        await this.store.deleteVersion(ref);
      } catch (err) {
        if (err instanceof StoreConflictError) throw new PorticoError(ControlErrors.ALIAS_IN_USE, `version ${v.name} is the target of alias ${err.usedBy ?? ''}`);
        throw err;
      }
      this.buildsUnderWay.get(buildId(ref, v.createdAt))?.abort(new BuildError('the version was deleted'));
      await this.publisher.remove(v.endpoints.map((e) => endpointKey({ ...ref, endpoint: e.name })));
      await this.removeReplicas(d.target, v.endpoints.map((e) => endpointRuntimeKey(v, e.name)));
      return v;
    });
    await rm(this.versionDir(ref), { recursive: true, force: true });
    this.blobCleaner.release(v);
    await this.blobCleaner.clean({ orLater: true });
    const docker = this.targetsByName.get(d.target)?.docker;
    if (docker) {
      const kept = await removeVersionImages(new Dockerode({ socketPath: docker.socket }), ref).catch(() => []);
      if (kept.length > 0) this.log('images of a deleted version are still in use', { version: ref, images: kept });
    }
    await this.forgetTelemetry(`${depLabel(ref)}/${v.name}`);
    await this.record(actor, 'version.delete', `${depLabel(ref)}/${v.name}`);
  }

  /**
   * Stops the replicas of endpoints whose records are already deleted. A runtime that does not
   * answer (docker engine or cluster down) does not fail the delete, which has happened: the
   * reconciler removes what is left of them once the runtime answers (they are in no record).
   */
  private async removeReplicas(target: string, keys: readonly string[]): Promise<void> {
    const rt = this.targetsByName.get(target)?.runtime;
    if (rt === undefined) return;
    for (const key of keys) {
      try {
        await rt.remove(key);
      } catch (err) {
        this.log('replicas of a deleted endpoint not stopped yet: the runtime does not answer; the reconciler stops them once it does', { endpoint: key, target, error: (err as Error).message });
      }
    }
  }

  async buildLog(ref: VersionRef): Promise<CP.LogLine[]> {
    await this.versionOr404(ref);
    return (await this.logs.query(this.buildLogKey(ref))).map((l) => ({ at: l.at, stream: l.stream, line: l.line }));
  }

  async *endpointLogs(ref: VersionRef, endpoint: string, query: CP.LogQuery, signal?: AbortSignal): AsyncIterable<CP.LogLine> {
    const v = await this.versionOr404(ref);
    if (!v.endpoints.some((e) => e.name === endpoint)) throw notFound(`endpoint ${endpoint} of version ${v.name}`);
    yield* this.logs.read(endpointRuntimeKey(v, endpoint), logFilter(query, 200), { follow: query.follow === true, ...(signal ? { signal } : {}) });
    if (query.follow !== true || signal?.aborted) return;
    // A follow ends without its client leaving when the version is deleted (or the controller stops).
    const now = await this.store.getVersion(ref).catch(() => v);
    if (now?.createdAt !== v.createdAt) throw new PorticoError(ControlErrors.NOT_FOUND, `version ${v.name} of ${depLabel(ref)} was deleted while its logs were followed`);
  }

  // ---- telemetry: build log following, metrics, stats ------------------------------------

  async *buildLogStream(ref: VersionRef, query: CP.LogQuery, signal?: AbortSignal): AsyncIterable<CP.LogLine> {
    const v = await this.versionOr404(ref);
    // A build that ends after this check ends the follow too (`end` is remembered for late readers).
    const follow = query.follow === true && v.status === 'building';
    for await (const l of this.logs.read(this.buildLogKey(ref), logFilter(query), { follow, ...(signal ? { signal } : {}) })) {
      yield { at: l.at, stream: l.stream, line: l.line };
    }
  }

  async endpointMetrics(ref: VersionRef, endpoint: string, query: CP.MetricQuery): Promise<CP.MetricsResult> {
    const v = await this.versionOr404(ref);
    if (!v.endpoints.some((e) => e.name === endpoint)) throw notFound(`endpoint ${endpoint} of version ${v.name}`);
    if (!this.metrics) return query.key === undefined ? { keys: [] } : Promise.reject(notFound(`metric ${query.key}`));
    return endpointMetrics(this.metrics, endpointRuntimeKey(v, endpoint), query);
  }

  async compareMetrics(ref: DeploymentRef, query: CP.MetricCompareQuery): Promise<CP.MetricCompareResult> {
    await this.deploymentOr404(ref);
    const versions: Version[] = [];
    for (const name of query.versions) versions.push(await this.versionOr404({ ...ref, version: name }));
    if (!versions.some((v) => v.endpoints.some((e) => e.name === query.endpoint))) {
      throw notFound(`endpoint ${query.endpoint} in versions ${query.versions.join(', ')}`);
    }
    if (!this.metrics) return { endpoint: query.endpoint, versions: versions.map((v) => ({ version: v.name, keys: [] })) };
    return compareMetrics(this.metrics, versions.map((v) => ({ version: v.name, endpoint: endpointRuntimeKey(v, query.endpoint) })), query);
  }

  async deploymentStats(ref: DeploymentRef, query: { readonly window: number }): Promise<CP.DeploymentStatsView> {
    await this.deploymentOr404(ref);
    const include = (await this.store.listVersions(ref)).flatMap((v) => v.endpoints.map((e) => ({ version: v.name, endpoint: e.name })));
    let read: { now: number; buckets: EndpointStatsBucket[] } = { now: Date.now(), buckets: [] };
    try {
      if (this.routing.readStats) read = await this.routing.readStats(ref, query.window * 1000);
    } catch (err) {
      throw new PorticoError(ControlErrors.STORE_UNAVAILABLE, 'the gateways\' stats cannot be read now (routing table unreachable)', { cause: err });
    }
    const known = new Set(include.map((e) => `${e.version}/${e.endpoint}`));
    // Deleted versions' buckets expire with the rest; they are not shown.
    const buckets = read.buckets.filter((b) => known.has(`${b.version}/${b.endpoint}`));
    return summarizeStats(buckets, { now: read.now, windowSeconds: query.window, include });
  }

  /** Forgets the logs and metrics of a deleted version or deployment (`o/p/d[/v]`). */
  private async forgetTelemetry(label: string): Promise<void> {
    await this.logs.remove(label);
    await this.logs.remove(`build/${label}`);
    await this.metrics?.remove(`${label}/`).catch((err: unknown) => this.log('metrics not removed', { label, error: String(err) }));
  }

  // ---- aliases -----------------------------------------------------------------------------

  async listAliases(ref: DeploymentRef): Promise<CP.AliasView[]> {
    await this.deploymentOr404(ref);
    return (await this.aliasTargets(ref)).map((a) => ({ name: a.name, ...a.target }));
  }

  async setAlias(ref: DeploymentRef, alias: string, target: CP.AliasTargetInput, opts: { readonly force?: boolean }, actor: CP.Actor): Promise<CP.AliasSetResult> {
    await this.deploymentOr404(ref);
    if (!NAME_PATTERN.test(alias)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `alias: ${JSON.stringify(alias)} must match ${NAME_PATTERN.source}`);
    const names = targetVersions(target);
    if ('versions' in target) {
      const sum = target.versions.reduce((s, w) => s + w.weight, 0);
      if (target.versions.length === 0 || sum !== 100 || target.versions.some((w) => !Number.isInteger(w.weight) || w.weight < 0)) {
        throw new PorticoError(ControlErrors.VALIDATION_FAILED, 'versions: weights are whole numbers summing to 100');
      }
      if (new Set(names).size !== names.length) throw new PorticoError(ControlErrors.VALIDATION_FAILED, 'versions: each version at most once');
    }
    for (const name of names) {
      const v = await this.store.getVersion({ ...ref, version: name });
      if (!v) throw notFound(`version ${name} of ${depLabel(ref)}`);
      if (v.status !== 'ready' && !opts.force) {
        throw new PorticoError(ControlErrors.VERSION_NOT_READY, `version ${name} is ${v.status}${v.reason ? ` (${this.maskSecrets(v.reason)})` : ''}; only a ready version can take an alias unless "force": true`);
      }
    }
    const stored: AliasTarget = 'versions' in target ? { versions: target.versions.map((w) => ({ version: w.version, weight: w.weight })) } : { version: target.version };
    let item;
    try {
      item = await this.store.setAlias(ref, alias, stored, actor);
    } catch (err) {
      if (err instanceof StoreNotFoundError) throw notFound(err.message);
      // Checked by the store with the write (see `createVersion`).
      if (err instanceof StoreConflictError && err.reason === 'name-taken') {
        throw new PorticoError(ControlErrors.CONFLICT, `alias ${alias} would hide the version of the same name`);
      }
      throw err;
    }
    // The audit entry is written while the gateways acknowledge: the flip's latency is the slower
    // of the two, not their sum.
    const [acks] = await Promise.all([
      this.putDeploymentRecord(ref).then((a) => a ?? { seq: 0, acknowledged: [], missing: [] }),
      this.record(actor, 'alias.set', `${depLabel(ref)}/aliases/${alias}`, { from: item.from, to: item.to, force: opts.force ?? false }),
    ]);
    if (acks.missing.length > 0) this.log('alias change not acknowledged by every gateway in time', { alias: `${depLabel(ref)}/${alias}`, missing: acks.missing });
    return { name: alias, ...stored, acknowledged: acks.acknowledged, missing: acks.missing } as CP.AliasSetResult;
  }

  async deleteAlias(ref: DeploymentRef, alias: string, actor: CP.Actor): Promise<void> {
    await this.deploymentOr404(ref);
    const item = await this.store.deleteAlias(ref, alias, actor);
    if (!item) throw notFound(`alias ${alias} of ${depLabel(ref)}`);
    await this.publishDeployment(ref);
    await this.record(actor, 'alias.delete', `${depLabel(ref)}/aliases/${alias}`, { from: item.from });
  }

  async aliasHistory(ref: DeploymentRef, alias: string): Promise<CP.AliasHistoryItem[]> {
    await this.deploymentOr404(ref);
    const items = await this.store.aliasHistory(ref, alias);
    // Kept after the alias is deleted; none at all: a name that never was an alias (a typo).
    if (items.length === 0 && !(await this.store.getAlias(ref, alias))) throw notFound(`alias ${alias} of ${depLabel(ref)}`);
    return items;
  }

  // ---- test console --------------------------------------------------------------------------

  async test(ref: DeploymentRef, input: CP.TestRequestInput): Promise<CP.TestResponseView> {
    const d = await this.deploymentOr404(ref);
    const live = await this.routing.liveGateways();
    const gw = live.find((g) => g.url === this.gatewayUrlOf(d)) ?? live[0];
    if (!gw) throw new PorticoError(ControlErrors.GATEWAY_UNAVAILABLE);
    const rest = input.path ? (input.path.startsWith('/') || input.path.startsWith('?') ? input.path : `/${input.path}`) : '';
    // The URL the request is sent to resolves dot segments (also %2e ones, and between `\`,
    // which counts as `/`): `/../../v2/other` would reach another version's endpoint, where
    // the gateway answers such a path 400 BAD_PATH.
    if (rest.split('?', 1)[0]!.split(/[/\\]/).some((segment) => DOT_SEGMENT.test(segment))) {
      throw new PorticoError(ControlErrors.VALIDATION_FAILED, `path: ${JSON.stringify(input.path)} has a . or .. segment; the gateway refuses such paths (400 BAD_PATH)`);
    }
    const url = `${gw.url}/${ref.owner}/${ref.project}/${ref.deployment}/${input.target}/${input.endpoint}${rest}`;
    const headers: Record<string, string> = { ...(input.headers ?? {}) };
    if (input.username !== undefined) {
      headers.authorization = `Basic ${Buffer.from(`${input.username}:${input.password ?? ''}`).toString('base64')}`;
    }
    const body = input.bodyBase64 !== undefined ? Buffer.from(input.bodyBase64, 'base64') : input.body;
    const started = performance.now();
    let res;
    try {
      res = await request(url, { method: input.method.toUpperCase() as 'GET', headers, ...(body !== undefined ? { body } : {}), headersTimeout: 120_000, bodyTimeout: 120_000 });
    } catch (err) {
      // undici refuses, before sending anything, a request HTTP cannot carry (a header it does
      // not send, such as transfer-encoding or expect): the input's fault, not the gateway's.
      const code = (err as { code?: unknown }).code;
      if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
        throw new PorticoError(ControlErrors.VALIDATION_FAILED, `body: cannot be sent as an HTTP request: ${(err as Error).message}`, { cause: err });
      }
      throw new PorticoError(ControlErrors.GATEWAY_UNAVAILABLE, `gateway ${gw.url} did not answer: ${(err as Error).message}`, { cause: err });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (size + chunk.length > TEST_REPLY_MAX_BYTES) {
        // Keep exactly the first TEST_REPLY_MAX_BYTES, and say so: a cut body must not pass for the whole.
        chunks.push(chunk.subarray(0, TEST_REPLY_MAX_BYTES - size));
        truncated = true;
        res.body.destroy();
        break;
      }
      size += chunk.length;
      chunks.push(chunk);
    }
    const durationMs = Math.round((performance.now() - started) * 100) / 100;
    const outHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) outHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
    return { status: res.statusCode, headers: outHeaders, bodyBase64: Buffer.concat(chunks).toString('base64'), durationMs, ...(truncated ? { truncated: true } : {}) };
  }

  // ---- audit, tokens, uploads ------------------------------------------------------------------

  async audit(query: { readonly limit?: number; readonly before?: string }): Promise<CP.AuditItem[]> {
    return (await this.store.listAudit(query)).items;
  }

  async listTokens(): Promise<CP.TokenView[]> {
    return (await this.store.listTokens()).map((t) => ({ name: t.name, createdAt: t.createdAt }));
  }

  async createToken(name: string, actor: CP.Actor): Promise<{ name: string; token: string }> {
    if (!NAME_PATTERN.test(name)) throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${JSON.stringify(name)} must match ${NAME_PATTERN.source}`);
    if (RESERVED_ACTORS.includes(name)) {
      throw new PorticoError(ControlErrors.VALIDATION_FAILED, `name: ${JSON.stringify(name)} is reserved: the audit log names PORTICO_ADMIN_TOKEN "env" and requests without a token "anonymous"`);
    }
    const token = `ptk_${randomBytes(32).toString('base64url')}`;
    try {
      await this.store.createToken({ name, hash: sha256(token).toString('hex') });
    } catch (err) {
      if (err instanceof StoreConflictError) throw new PorticoError(ControlErrors.ALREADY_EXISTS, `token ${name} exists already`);
      throw err;
    }
    await this.record(actor, 'token.create', `tokens/${name}`);
    return { name, token };
  }

  async deleteToken(name: string, actor: CP.Actor): Promise<void> {
    // Without PORTICO_ADMIN_TOKEN the stored tokens are the only way in: revoking the last one
    // would lock everyone out of the API until a restart created a new `admin` token.
    let deleted;
    try {
      deleted = await this.store.deleteToken(name, { keepLast: this.envTokenHash === null });
    } catch (err) {
      if (err instanceof StoreConflictError && err.reason === 'last') {
        throw new PorticoError(ControlErrors.CONFLICT, `token ${name} is the last admin token: revoking it would lock everyone out of the API; create another token first`, { cause: err });
      }
      throw err;
    }
    if (!deleted) throw notFound(`token ${name}`);
    await this.record(actor, 'token.delete', `tokens/${name}`);
  }

  async authenticate(token: string): Promise<string | null> {
    const digest = sha256(token);
    if (this.envTokenHash && timingSafeEqual(digest, this.envTokenHash)) return 'env';
    // Looked up by the token's sha256: the lookup's timing says nothing about the token itself.
    const found = await this.store.findTokenByHash(digest.toString('hex'));
    return found ? found.name : null;
  }

  async createUpload(body: Readable, actor: CP.Actor): Promise<{ id: string; size: number; sha256: string }> {
    const id = `up_${randomBytes(12).toString('base64url')}`;
    // Held from the file's write to its record's: a clean between would take the file for unused.
    const blob = await this.blobCleaner.hold(async () => {
      let stored;
      try {
        stored = await this.blobs.put(body, this.config.maxUploadBytes);
      } catch (err) {
        if (err instanceof TooLargeError) throw new PorticoError(ControlErrors.PAYLOAD_TOO_LARGE, `upload larger than ${err.limit} bytes`);
        throw err;
      }
      return this.store.createUpload({ id, size: stored.size, sha256: stored.sha256, path: stored.path }).then(
        () => stored,
        (err: unknown) => ({ failed: err }),
      );
    });
    if ('failed' in blob) {
      // The file of an upload without a record goes (unless another upload or version has it).
      await this.blobCleaner.clean({ orLater: true });
      throw blob.failed;
    }
    await this.record(actor, 'upload.create', `uploads/${id}`, { size: blob.size, sha256: blob.sha256 });
    return { id, size: blob.size, sha256: blob.sha256 };
  }

  /**
   * Frees what no version uses (see `BlobCleaner.clean`), once no build or upload is under way.
   * `startController` runs it every so often for the uploads that expire.
   */
  cleanBlobs(opts: { orLater?: boolean } = {}): Promise<void> {
    return this.blobCleaner.clean(opts);
  }

  /** Waits for a clean of the blob store under way; none starts after. */
  async close(): Promise<void> {
    await this.blobCleaner.close();
  }

  private async uploadBlob(id: string) {
    const u = await this.store.getUpload(id);
    return u ? this.blobs.get(u.sha256) : null;
  }

  /**
   * Creates the first admin token when none is configured and none is stored; returns it once
   * (or null). Only then: an `admin` token revoked after a rotation stays revoked across restarts.
   */
  async bootstrapToken(): Promise<string | null> {
    if (this.config.adminToken) return null;
    if ((await this.store.listTokens()).length > 0) return null;
    const { token } = await this.createToken('admin', 'portico');
    return token;
  }
}

/** The store's filter of a log query (`tail` defaults to `defaultTail` when given). */
function logFilter(query: CP.LogQuery, defaultTail?: number): { tail?: number; replica?: string; since?: number; until?: number; contains?: string } {
  const tail = query.tail ?? defaultTail;
  return {
    ...(tail !== undefined ? { tail } : {}),
    ...(query.replica !== undefined ? { replica: query.replica } : {}),
    ...(query.since !== undefined ? { since: query.since } : {}),
    ...(query.until !== undefined ? { until: query.until } : {}),
    ...(query.contains !== undefined ? { contains: query.contains } : {}),
  };
}

/**
 * Refuses names that together make `key` too long for the file names its logs and metrics take
 * (each name may have 100 characters; five of them joined may not fit): otherwise its files cannot
 * be created and its lines are lost without a word.
 */
function checkKeyFits(key: string, what: string): string | null {
  const bytes = keyFileNameBytes(key);
  if (bytes <= MAX_FILE_NAME_BYTES) return null;
  return `${what} ${key} makes file names of ${bytes} bytes, over the ${MAX_FILE_NAME_BYTES} the file system takes: use shorter names (dots count 3)`;
}

/** Names a build under way: a version of the same name created again is another. */
function buildId(ref: VersionRef, createdAt: string): string {
  return `${depLabel(ref)}/${ref.version}@${createdAt}`;
}

/** How long an aborted build may take to stop before it is given up on (a step that cannot be aborted). */
const BUILD_STOP_GRACE_MS = 10_000;

/**
 * Runs `task`, aborting its signal when `stop` aborts or it takes longer than `ms`; then
 * rejects with the reason (a BuildError) once the task has stopped (its processes killed), so
 * nothing of it runs on, or after `BUILD_STOP_GRACE_MS` if it does not stop.
 */
async function withTimeout<T>(stop: AbortSignal, task: (signal: AbortSignal) => Promise<T>, ms: number): Promise<T> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new BuildError(`build timed out after ${Math.round(ms / 1000)} s`)), ms);
  timer.unref();
  const signal = AbortSignal.any([stop, timeout.signal]);
  const givenUp = new Promise<never>((_, reject) => {
    signal.addEventListener('abort', () => setTimeout(() => reject(signal.reason), BUILD_STOP_GRACE_MS).unref(), { once: true });
  });
  try {
    const result = await Promise.race([task(signal), givenUp]);
    signal.throwIfAborted();
    return result;
  } catch (err) {
    signal.throwIfAborted();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
