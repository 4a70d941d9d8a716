import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { x as untar } from 'tar';
import { parse as parseYaml } from 'yaml';
import { PorticoError } from '../../common/errors.ts';
import { ControlErrors } from '../../builder/errors.ts';
import type { EndpointStatsBucket } from '../../gateway/routing/contract.ts';
import type { MetricKeyInfo, MetricKind, MetricPoint, MetricRange, MetricRow, MetricStore } from '../../builder/telemetry/metric-store.ts';
import { compareMetrics, endpointMetrics } from '../../builder/telemetry/query.ts';
import { summarizeStats } from '../../builder/telemetry/stats.ts';
import type {
  Actor,
  AliasHistoryItem,
  AliasSetResult,
  AliasTargetInput,
  AliasView,
  AuditItem,
  AuthMode,
  ControlPlane,
  CreateDeploymentInput,
  CreateVersionInput,
  DeploymentRef,
  DeploymentView,
  EndpointStatus,
  EndpointView,
  EnvironmentInput,
  EnvironmentView,
  LogLine,
  LogQuery,
  DeploymentStatsView,
  MetricCompareQuery,
  MetricCompareResult,
  MetricQuery,
  MetricsResult,
  PatchVersionInput,
  ProjectRef,
  ReplicaView,
  TargetView,
  TestRequestInput,
  TestResponseView,
  TokenView,
  VersionRef,
  VersionStatus,
  VersionView,
} from '../../builder/control-plane.ts';

/** Options of the fake. */
export interface FakeControlPlaneOptions {
  /** Admin tokens by name (default `{ admin: 'test-token' }`). */
  readonly tokens?: Readonly<Record<string, string>>;
  /** Gateway base URL of target `local` (default `http://127.0.0.1:8080`). */
  readonly gatewayUrl?: string;
  /** Extra targets besides `local`. */
  readonly targets?: readonly TargetView[];
  /** Live gateways that acknowledge alias changes (default `['gateway-1']`). */
  readonly gateways?: readonly string[];
  /** Live gateways that never acknowledge (named in `missing`). */
  readonly silentGateways?: readonly string[];
  /** Pause between build steps (default 5 ms). */
  readonly buildStepMs?: number;
  /** Awaited before a version builds: tests hold a build in `building` with it. */
  readonly beforeBuild?: (ref: VersionRef) => Promise<void> | void;
  /** Largest upload stored (default unlimited). */
  readonly maxUploadBytes?: number;
}

interface EndpointRec {
  name: string;
  enabled: boolean;
  replicaCount: number;
  timeoutSeconds: number | null;
  maxBodyBytes: number | null;
  files: { name: string; path: string; sha256: string; size: number }[];
}

interface VersionRec {
  name: string;
  status: VersionStatus;
  reason?: string;
  createdAt: string;
  updatedAt: string;
  enabled: boolean;
  createdBy: string;
  input: CreateVersionInput;
  endpoints: EndpointRec[];
  buildLog: LogLine[];
  logs: Map<string, LogLine[]>;
}

interface DeploymentRec {
  view: { owner: string; project: string; name: string; target: string; auth: AuthMode; createdAt: string };
  versions: VersionRec[];
  aliases: Map<string, AliasTargetInput>;
  history: Map<string, AliasHistoryItem[]>;
  users: Map<string, string>;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();
const now = () => new Date().toISOString();

function notFound(what: string): PorticoError {
  return new PorticoError(ControlErrors.NOT_FOUND, `${what} not found.`);
}

/**
 * An in-memory `ControlPlane` for API and CLI tests, and the reference of the interface's
 * semantics: names are unique, versions build in the background (`building` -> `starting` ->
 * `ready`, or `failed` with a reason) from the `valohai.yaml` of a path or uploaded `.tar.gz`,
 * aliases refuse versions that are not ready unless forced, a version an alias points at cannot
 * be deleted, the last token cannot be revoked (the fake has no PORTICO_ADMIN_TOKEN), every
 * change lands in the audit log under the acting token's name.
 */
export class FakeControlPlane implements ControlPlane {
  /** Every call made, in order (operation name and arguments). */
  readonly calls: { op: string; args: unknown[] }[] = [];
  /** Uploaded bodies by id. */
  readonly uploads = new Map<string, Buffer>();
  /** Followed log streams currently open. */
  followers = 0;

  readonly #opts: FakeControlPlaneOptions;
  readonly #gatewayUrl: string;
  readonly #tokens = new Map<string, { hash: Buffer; createdAt: string }>();
  readonly #env = new Map<string, Record<string, { value: string; secret: boolean }>>();
  readonly #deployments = new Map<string, DeploymentRec>();
  readonly #audit: (AuditItem & { id: string })[] = [];
  readonly #events = new EventEmitter();
  readonly #failures = new Map<string, unknown>();
  readonly #builds = new Set<Promise<void>>();

  constructor(opts: FakeControlPlaneOptions = {}) {
    this.#opts = opts;
    this.#gatewayUrl = opts.gatewayUrl ?? 'http://127.0.0.1:8080';
    for (const [name, token] of Object.entries(opts.tokens ?? { admin: 'test-token' })) {
      this.#tokens.set(name, { hash: sha256(token), createdAt: now() });
    }
    this.#events.setMaxListeners(0);
  }

  // ---- test controls -------------------------------------------------------------------

  /** The next call of `op` throws `err` (a plain Error tests the 500 path). */
  failNext(op: keyof ControlPlane, err: unknown): void {
    this.#failures.set(op, err);
  }

  /** Appends a replica log line to an endpoint of a version (followers get it at once). */
  appendLog(ref: VersionRef, endpoint: string, line: string, opts: { replica?: string; stream?: 'stdout' | 'stderr'; at?: number } = {}): void {
    const rec = this.#version(ref);
    const entry: LogLine = { at: opts.at ?? Date.now(), replica: opts.replica ?? `${endpoint}-0`, stream: opts.stream ?? 'stdout', line };
    let lines = rec.logs.get(endpoint);
    if (!lines) rec.logs.set(endpoint, (lines = []));
    lines.push(entry);
    this.#events.emit(`log:${key(ref)}/${rec.name}/${endpoint}`, entry);
  }

  /** A project's stored environment, secrets in clear (what its versions inherit). */
  storedEnvironment(ref: ProjectRef): Record<string, { value: string; secret: boolean }> {
    return structuredClone(this.#env.get(`${ref.owner}/${ref.project}`) ?? {});
  }

  /** Ends every followed replica log stream, as the controller's `close` does when it stops. */
  endFollows(): void {
    this.#events.emit('end-follows');
  }

  /** Resolves when every build started so far has finished. */
  async settled(): Promise<void> {
    while (this.#builds.size > 0) await Promise.allSettled([...this.#builds]);
  }

  /** Forces a version's status (e.g. back to `starting`). */
  setStatus(ref: VersionRef, status: VersionStatus, reason?: string): void {
    const rec = this.#version(ref);
    rec.status = status;
    if (reason === undefined) delete rec.reason;
    else rec.reason = reason;
    rec.updatedAt = now();
  }

  #enter(op: keyof ControlPlane, ...args: unknown[]): void {
    this.calls.push({ op, args });
    if (this.#failures.has(op)) {
      const err = this.#failures.get(op);
      this.#failures.delete(op);
      throw err;
    }
  }

  #record(actor: Actor, action: string, target: string, details: Record<string, unknown> = {}): void {
    this.#audit.push({ id: String(this.#audit.length + 1), at: now(), actor, action, target, details });
  }

  /** What `storeStatus` answers (a test sets them). */
  storeLost = false;
  storeFailed = false;

  storeStatus(): 'ok' | 'lost' | 'failed' {
    return this.storeFailed ? 'failed' : this.storeLost ? 'lost' : 'ok';
  }

  // ---- targets and environment ---------------------------------------------------------

  async targets(): Promise<TargetView[]> {
    this.#enter('targets');
    return [{ name: 'local', kind: 'local', gatewayUrl: this.#gatewayUrl }, ...(this.#opts.targets ?? [])];
  }

  async getEnvironment(ref: ProjectRef): Promise<EnvironmentView> {
    this.#enter('getEnvironment', ref);
    return this.#envView(ref);
  }

  async putEnvironment(ref: ProjectRef, variables: EnvironmentInput, actor: Actor): Promise<EnvironmentView> {
    this.#enter('putEnvironment', ref, variables, actor);
    const previous = this.#env.get(`${ref.owner}/${ref.project}`) ?? {};
    // As the controller: a secret sent back as its mask keeps its value and stays secret.
    this.#env.set(`${ref.owner}/${ref.project}`, Object.fromEntries(Object.entries(variables).map(([k, v]) =>
      [k, v.value === '********' && previous[k]?.secret ? { ...previous[k] } : { value: v.value, secret: v.secret === true }])));
    this.#record(actor, 'environment.put', `${ref.owner}/${ref.project}`, { names: Object.keys(variables) });
    return this.#envView(ref);
  }

  #envView(ref: ProjectRef): EnvironmentView {
    const vars = this.#env.get(`${ref.owner}/${ref.project}`) ?? {};
    return { variables: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, { value: v.secret ? '********' : v.value, secret: v.secret }])) };
  }

  // ---- deployments ---------------------------------------------------------------------

  #deployment(ref: DeploymentRef): DeploymentRec {
    const d = this.#deployments.get(key(ref));
    if (!d) throw notFound(`Deployment ${key(ref)}`);
    return d;
  }

  #deploymentView(d: DeploymentRec): DeploymentView {
    const v = d.view;
    return { ...v, url: `${this.#gatewayUrl}/${v.owner}/${v.project}/${v.name}` };
  }

  async listDeployments(ref: ProjectRef): Promise<DeploymentView[]> {
    this.#enter('listDeployments', ref);
    return [...this.#deployments.values()]
      .filter((d) => d.view.owner === ref.owner && d.view.project === ref.project)
      .map((d) => this.#deploymentView(d));
  }

  async createDeployment(ref: ProjectRef, input: CreateDeploymentInput, actor: Actor): Promise<DeploymentView> {
    this.#enter('createDeployment', ref, input, actor);
    const dref = { ...ref, deployment: input.name };
    if (this.#deployments.has(key(dref))) throw new PorticoError(ControlErrors.ALREADY_EXISTS, `Deployment ${key(dref)} exists already.`);
    const target = input.target ?? 'local';
    if (!(await this.targets()).some((t) => t.name === target)) {
      throw new PorticoError(ControlErrors.VALIDATION_FAILED, `body.target: no target named ${JSON.stringify(target)} (see GET /api/v1/targets).`);
    }
    const d: DeploymentRec = {
      view: { owner: ref.owner, project: ref.project, name: input.name, target, auth: input.auth ?? 'none', createdAt: now() },
      versions: [],
      aliases: new Map(),
      history: new Map(),
      users: new Map(),
    };
    this.#deployments.set(key(dref), d);
    this.#record(actor, 'deployment.create', key(dref), { target, auth: d.view.auth });
    return this.#deploymentView(d);
  }

  async getDeployment(ref: DeploymentRef): Promise<DeploymentView> {
    this.#enter('getDeployment', ref);
    return this.#deploymentView(this.#deployment(ref));
  }

  async patchDeployment(ref: DeploymentRef, patch: { readonly auth?: AuthMode }, actor: Actor): Promise<DeploymentView> {
    this.#enter('patchDeployment', ref, patch, actor);
    const d = this.#deployment(ref);
    if (patch.auth !== undefined) d.view.auth = patch.auth;
    this.#record(actor, 'deployment.patch', key(ref), { ...patch });
    return this.#deploymentView(d);
  }

  async deleteDeployment(ref: DeploymentRef, actor: Actor): Promise<void> {
    this.#enter('deleteDeployment', ref, actor);
    this.#deployment(ref);
    this.#deployments.delete(key(ref));
    this.#record(actor, 'deployment.delete', key(ref));
  }

  // ---- users ---------------------------------------------------------------------------

  async listUsers(ref: DeploymentRef): Promise<{ name: string }[]> {
    this.#enter('listUsers', ref);
    return [...this.#deployment(ref).users.keys()].sort().map((name) => ({ name }));
  }

  async putUser(ref: DeploymentRef, user: string, password: string, actor: Actor): Promise<{ name: string }> {
    this.#enter('putUser', ref, user, '<password>', actor);
    const d = this.#deployment(ref);
    d.users.set(user, sha256(password).toString('hex'));
    this.#record(actor, 'user.put', `${key(ref)}/users/${user}`);
    return { name: user };
  }

  async deleteUser(ref: DeploymentRef, user: string, actor: Actor): Promise<void> {
    this.#enter('deleteUser', ref, user, actor);
    const d = this.#deployment(ref);
    if (!d.users.delete(user)) throw notFound(`User ${user} of ${key(ref)}`);
    this.#record(actor, 'user.delete', `${key(ref)}/users/${user}`);
  }

  // ---- versions ------------------------------------------------------------------------

  #version(ref: VersionRef): VersionRec {
    const v = this.#deployment(ref).versions.find((x) => x.name === ref.version);
    if (!v) throw notFound(`Version ${key(ref)}/${ref.version}`);
    return v;
  }

  #versionView(ref: DeploymentRef, rec: VersionRec): VersionView {
    const d = this.#deployment(ref);
    const aliases = [...d.aliases].filter(([, t]) => targetVersions(t).includes(rec.name)).map(([a]) => a).sort();
    const env = { ...(rec.input.inheritEnvironment === false ? {} : this.#env.get(`${ref.owner}/${ref.project}`) ?? {}), ...rec.input.environment };
    return {
      name: rec.name,
      status: rec.status,
      ...(rec.reason !== undefined ? { reason: rec.reason } : {}),
      createdAt: rec.createdAt,
      updatedAt: rec.updatedAt,
      enabled: rec.enabled,
      createdBy: rec.createdBy,
      source: rec.input.source,
      environment: Object.keys(env).sort(),
      secretEnvironment: Object.keys(env).filter((k) => { const x = env[k]; return typeof x === 'object' && x.secret && !Object.hasOwn(rec.input.environment ?? {}, k); }).sort(),
      endpoints: rec.endpoints.map((e) => this.#endpointView(ref, rec, e)),
      aliases,
    };
  }

  #endpointView(ref: DeploymentRef, rec: VersionRec, e: EndpointRec): EndpointView {
    let status: EndpointStatus;
    if (rec.status === 'building' || rec.status === 'failed') status = rec.status;
    else if (!rec.enabled || !e.enabled || rec.status === 'stopped') status = 'stopped';
    else status = rec.status;
    const replicas: ReplicaView[] = status === 'ready' || status === 'starting'
      ? Array.from({ length: e.replicaCount }, (_, i) => ({
          id: `${e.name}-${i}`,
          // As the controller: only a ready replica has an address (the gateways' target).
          address: status === 'ready' ? `127.0.0.1:${20000 + i}` : null,
          state: status === 'ready' ? 'ready' : 'starting',
          restarts: 0,
        }))
      : [];
    return {
      name: e.name,
      status,
      url: `${this.#gatewayUrl}/${ref.owner}/${ref.project}/${ref.deployment}/${rec.name}/${e.name}`,
      enabled: e.enabled,
      replicaCount: e.replicaCount,
      replicas,
      timeoutSeconds: e.timeoutSeconds,
      maxBodyBytes: e.maxBodyBytes,
      files: e.files,
    };
  }

  async listVersions(ref: DeploymentRef): Promise<VersionView[]> {
    this.#enter('listVersions', ref);
    return this.#deployment(ref).versions.map((v) => this.#versionView(ref, v));
  }

  async createVersion(ref: DeploymentRef, input: CreateVersionInput, actor: Actor): Promise<VersionView> {
    this.#enter('createVersion', ref, input, actor);
    const d = this.#deployment(ref);
    if ('upload' in input.source && !this.uploads.has(input.source.upload)) {
      throw new PorticoError(ControlErrors.VALIDATION_FAILED, `body.source.upload: no upload ${JSON.stringify(input.source.upload)}.`);
    }
    let name = input.name;
    if (name === undefined) {
      const day = new Date().toISOString().slice(0, 10).replaceAll('-', '');
      let n = d.versions.filter((v) => v.name.startsWith(`${day}.`)).length;
      while (d.versions.some((v) => v.name === `${day}.${n}`)) n++;
      name = `${day}.${n}`;
    } else if (d.versions.some((v) => v.name === name)) {
      throw new PorticoError(ControlErrors.ALREADY_EXISTS, `Version ${name} exists already in ${key(ref)}.`);
    }
    if (d.aliases.has(name)) throw new PorticoError(ControlErrors.CONFLICT, `${name} is an alias of ${key(ref)}; a version cannot share its name.`);
    const rec: VersionRec = {
      name,
      status: 'building',
      createdAt: now(),
      updatedAt: now(),
      enabled: true,
      createdBy: actor,
      input,
      endpoints: [],
      buildLog: [],
      logs: new Map(),
    };
    d.versions.push(rec);
    this.#record(actor, 'version.create', `${key(ref)}/${name}`, { source: input.source });
    const build = this.#build({ ...ref, version: name }, d, rec).finally(() => this.#builds.delete(build));
    this.#builds.add(build);
    return this.#versionView(ref, rec);
  }

  async #build(ref: VersionRef, d: DeploymentRec, rec: VersionRec): Promise<void> {
    const step = () => delay(this.#opts.buildStepMs ?? 5);
    const log = (line: string) => {
      const entry: LogLine = { at: Date.now(), stream: 'build', line };
      rec.buildLog.push(entry);
      rec.updatedAt = now();
      this.#events.emit(`build:${key(ref)}/${rec.name}`, entry);
    };
    const alive = () => this.#deployments.get(key(ref)) === d && d.versions.includes(rec);
    try {
      await this.#opts.beforeBuild?.(ref);
      log(`fetching source ${JSON.stringify(rec.input.source)}`);
      await step();
      const declared = await this.#declaredEndpoints(rec.input);
      if (!alive()) return;
      log(`valohai.yaml declares ${declared.map((e) => e.name).join(', ')}`);
      for (const name of Object.keys(rec.input.endpoints ?? {})) {
        if (!declared.some((e) => e.name === name)) throw new Error(`endpoint ${JSON.stringify(name)} is not declared in valohai.yaml`);
      }
      rec.endpoints = declared.map((e) => {
        const input = rec.input.endpoints?.[e.name];
        return {
          name: e.name,
          enabled: input?.enabled ?? true,
          replicaCount: input?.replicas ?? 1,
          timeoutSeconds: input?.timeoutSeconds ?? null,
          maxBodyBytes: input?.maxBodyBytes ?? null,
          files: e.files.map((f) => ({ ...f, sha256: sha256(f.name).toString('hex'), size: 0 })),
        };
      });
      await step();
      log('build finished');
      rec.status = 'starting';
      rec.updatedAt = now();
      await step();
      if (!alive()) return;
      if (rec.status === 'starting') rec.status = rec.enabled ? 'ready' : 'stopped';
      rec.updatedAt = now();
    } catch (err) {
      rec.status = 'failed';
      rec.reason = (err as Error).message;
      log(`build failed: ${rec.reason}`);
    } finally {
      this.#events.emit(`build-end:${key(ref)}/${rec.name}`);
    }
  }

  async #declaredEndpoints(input: CreateVersionInput): Promise<{ name: string; files: { name: string; path: string }[] }[]> {
    const source = input.source;
    let text: string;
    if ('path' in source) {
      text = await readFile(join(source.path, 'valohai.yaml'), 'utf8').catch(() => {
        throw new Error(`no valohai.yaml in ${source.path}`);
      });
    } else if ('upload' in source) {
      const dir = await mkdtemp(join(tmpdir(), 'portico-fake-'));
      try {
        const archive = join(dir, 'source.tar.gz');
        await writeFile(archive, this.uploads.get(source.upload) ?? Buffer.alloc(0));
        await untar({ file: archive, cwd: dir }).catch((err: Error) => {
          throw new Error(`upload ${source.upload} is not a .tar.gz: ${err.message}`);
        });
        text = await readFile(join(dir, 'valohai.yaml'), 'utf8').catch(() => {
          throw new Error('no valohai.yaml at the top of the uploaded archive');
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } else {
      // No git in the fake: the endpoints the input names, or one `predict`.
      const names = Object.keys(input.endpoints ?? {});
      return (names.length > 0 ? names : ['predict']).map((name) => ({ name, files: [] }));
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new Error(`valohai.yaml: ${(err as Error).message.split('\n')[0]}`);
    }
    const endpoints = (Array.isArray(doc) ? doc : [])
      .map((item: unknown) => (item && typeof item === 'object' ? (item as Record<string, unknown>).endpoint : undefined))
      .filter((e): e is Record<string, unknown> => !!e && typeof e === 'object' && typeof (e as Record<string, unknown>).name === 'string')
      .map((e) => ({
        name: e.name as string,
        files: (Array.isArray(e.files) ? e.files : []).map((f: Record<string, unknown>) => ({ name: String(f.name), path: String(f.path) })),
      }));
    if (endpoints.length === 0) throw new Error('valohai.yaml declares no endpoint');
    return endpoints;
  }

  async getVersion(ref: VersionRef): Promise<VersionView> {
    this.#enter('getVersion', ref);
    return this.#versionView(ref, this.#version(ref));
  }

  async patchVersion(ref: VersionRef, patch: PatchVersionInput, actor: Actor): Promise<VersionView> {
    this.#enter('patchVersion', ref, patch, actor);
    const rec = this.#version(ref);
    for (const name of Object.keys(patch.endpoints ?? {})) {
      if (!rec.endpoints.some((e) => e.name === name)) {
        throw new PorticoError(ControlErrors.VALIDATION_FAILED, `body.endpoints.${name}: version ${rec.name} has no such endpoint.`);
      }
    }
    for (const e of rec.endpoints) {
      const p = patch.endpoints?.[e.name];
      if (!p) continue;
      if (p.replicas !== undefined) e.replicaCount = p.replicas;
      if (p.enabled !== undefined) e.enabled = p.enabled;
      if (p.timeoutSeconds !== undefined) e.timeoutSeconds = p.timeoutSeconds;
      if (p.maxBodyBytes !== undefined) e.maxBodyBytes = p.maxBodyBytes;
    }
    if (patch.enabled !== undefined && patch.enabled !== rec.enabled) {
      rec.enabled = patch.enabled;
      if (rec.status === 'ready' || rec.status === 'starting' || rec.status === 'stopped') rec.status = rec.enabled ? 'ready' : 'stopped';
    }
    rec.updatedAt = now();
    this.#record(actor, 'version.patch', `${key(ref)}/${rec.name}`, { ...patch });
    return this.#versionView(ref, rec);
  }

  async deleteVersion(ref: VersionRef, actor: Actor): Promise<void> {
    this.#enter('deleteVersion', ref, actor);
    const d = this.#deployment(ref);
    const rec = this.#version(ref);
    const users = [...d.aliases].filter(([, t]) => targetVersions(t).includes(rec.name)).map(([a]) => a);
    if (users.length > 0) {
      throw new PorticoError(ControlErrors.ALIAS_IN_USE, `Version ${rec.name} is what ${users.join(', ')} point${users.length === 1 ? 's' : ''} at; move the alias first.`);
    }
    d.versions = d.versions.filter((v) => v !== rec);
    this.#record(actor, 'version.delete', `${key(ref)}/${rec.name}`);
  }

  async buildLog(ref: VersionRef): Promise<LogLine[]> {
    this.#enter('buildLog', ref);
    return [...this.#version(ref).buildLog];
  }

  async *endpointLogs(ref: VersionRef, endpoint: string, query: LogQuery, signal?: AbortSignal): AsyncIterable<LogLine> {
    this.#enter('endpointLogs', ref, endpoint, query);
    const rec = this.#version(ref);
    if (!rec.endpoints.some((e) => e.name === endpoint)) throw notFound(`Endpoint ${endpoint} of ${rec.name}`);
    const keep = (l: LogLine) =>
      (query.replica === undefined || l.replica === query.replica) &&
      (query.since === undefined || l.at >= query.since) &&
      (query.until === undefined || l.at < query.until) &&
      (query.contains === undefined || l.line.includes(query.contains));
    const queue: LogLine[] = [];
    let wake: (() => void) | undefined;
    const event = `log:${key(ref)}/${rec.name}/${endpoint}`;
    const onLine = (l: LogLine) => {
      if (!keep(l)) return;
      queue.push(l);
      wake?.();
    };
    let ended = false;
    const onEnd = () => {
      ended = true;
      wake?.();
    };
    // Subscribe before reading the backlog so no line falls between the two.
    if (query.follow) {
      this.#events.on(event, onLine);
      this.#events.on('end-follows', onEnd);
    }
    try {
      const backlog = (rec.logs.get(endpoint) ?? []).filter(keep);
      const tail = query.tail === undefined ? backlog : query.tail === 0 ? [] : backlog.slice(-query.tail);
      yield* tail;
      if (!query.follow) return;
      this.followers++;
      try {
        const onAbort = () => wake?.();
        signal?.addEventListener('abort', onAbort);
        try {
          while (!signal?.aborted) {
            const next = queue.shift();
            if (next) {
              yield next;
              continue;
            }
            if (ended) return;
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
        } finally {
          signal?.removeEventListener('abort', onAbort);
        }
      } finally {
        this.followers--;
      }
    } finally {
      this.#events.off(event, onLine);
      this.#events.off('end-follows', onEnd);
    }
  }

  // ---- aliases -------------------------------------------------------------------------

  async listAliases(ref: DeploymentRef): Promise<AliasView[]> {
    this.#enter('listAliases', ref);
    return [...this.#deployment(ref).aliases].sort(([a], [b]) => a.localeCompare(b)).map(([name, t]) => ({ name, ...t }) as AliasView);
  }

  async setAlias(ref: DeploymentRef, alias: string, target: AliasTargetInput, opts: { readonly force?: boolean }, actor: Actor): Promise<AliasSetResult> {
    this.#enter('setAlias', ref, alias, target, opts, actor);
    const d = this.#deployment(ref);
    if (d.versions.some((v) => v.name === alias)) {
      throw new PorticoError(ControlErrors.CONFLICT, `${alias} is a version of ${key(ref)}; an alias cannot share its name.`);
    }
    for (const name of targetVersions(target)) {
      const v = d.versions.find((x) => x.name === name);
      if (!v) throw notFound(`Version ${key(ref)}/${name}`);
      if (v.status !== 'ready' && !opts.force) {
        throw new PorticoError(ControlErrors.VERSION_NOT_READY, `version ${name} is ${v.status}; only a ready version can take an alias unless "force": true`);
      }
    }
    const from = d.aliases.get(alias) ?? null;
    d.aliases.set(alias, target);
    const history = d.history.get(alias) ?? [];
    history.push({ at: now(), by: actor, from, to: target });
    d.history.set(alias, history);
    this.#record(actor, 'alias.set', `${key(ref)}/aliases/${alias}`, { from, to: target, force: opts.force === true });
    return { name: alias, ...target, acknowledged: [...(this.#opts.gateways ?? ['gateway-1'])], missing: [...(this.#opts.silentGateways ?? [])] } as AliasSetResult;
  }

  async deleteAlias(ref: DeploymentRef, alias: string, actor: Actor): Promise<void> {
    this.#enter('deleteAlias', ref, alias, actor);
    const d = this.#deployment(ref);
    const from = d.aliases.get(alias);
    if (!from) throw notFound(`Alias ${alias} of ${key(ref)}`);
    d.aliases.delete(alias);
    d.history.get(alias)?.push({ at: now(), by: actor, from, to: null });
    this.#record(actor, 'alias.delete', `${key(ref)}/aliases/${alias}`, { from });
  }

  async aliasHistory(ref: DeploymentRef, alias: string): Promise<AliasHistoryItem[]> {
    this.#enter('aliasHistory', ref, alias);
    const history = this.#deployment(ref).history.get(alias);
    if (!history) throw notFound(`Alias ${alias} of ${key(ref)}`);
    return [...history].reverse(); // newest first, as the store gives it
  }

  // ---- test console --------------------------------------------------------------------

  async test(ref: DeploymentRef, input: TestRequestInput): Promise<TestResponseView> {
    this.#enter('test', ref, { ...input, password: input.password === undefined ? undefined : '<password>' });
    const d = this.#deployment(ref);
    if ((this.#opts.gateways ?? ['gateway-1']).length === 0) throw new PorticoError(ControlErrors.GATEWAY_UNAVAILABLE);
    const alias = d.aliases.get(input.target);
    const versionName = alias ? targetVersions(alias)[0]! : input.target;
    const rec = d.versions.find((v) => v.name === versionName);
    if (!rec) throw notFound(`Version or alias ${input.target} of ${key(ref)}`);
    if (!rec.endpoints.some((e) => e.name === input.endpoint)) throw notFound(`Endpoint ${input.endpoint} of ${rec.name}`);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): TestResponseView => ({
      status,
      headers: { 'content-type': 'application/json', 'x-portico-version': rec.name, ...headers },
      bodyBase64: Buffer.from(JSON.stringify(body)).toString('base64'),
      durationMs: 1,
    });
    if (d.view.auth === 'basic') {
      const hash = input.username === undefined ? undefined : d.users.get(input.username);
      if (hash === undefined || hash !== sha256(input.password ?? '').toString('hex')) {
        return json(401, { statusCode: 401, code: 'AUTH_REQUIRED', error: 'Unauthorized', message: 'Basic auth required.' }, { 'www-authenticate': 'Basic realm="portico"' });
      }
    }
    const body = input.bodyBase64 !== undefined ? Buffer.from(input.bodyBase64, 'base64').toString('utf8') : input.body ?? '';
    return json(200, {
      method: input.method,
      path: `/${ref.owner}/${ref.project}/${ref.deployment}/${rec.name}/${input.endpoint}${input.path ?? ''}`,
      headers: input.headers ?? {},
      body,
    });
  }

  // ---- audit and tokens ----------------------------------------------------------------

  async audit(query: { readonly limit?: number; readonly before?: string }): Promise<AuditItem[]> {
    this.#enter('audit', query);
    return this.#audit
      // `before` is the id of the last item of the previous page (ids increase).
      .filter((a) => query.before === undefined || Number(a.id) < Number(query.before))
      .reverse()
      .slice(0, query.limit ?? 100);
  }

  async listTokens(): Promise<TokenView[]> {
    this.#enter('listTokens');
    return [...this.#tokens].map(([name, t]) => ({ name, createdAt: t.createdAt })).sort((a, b) => a.name.localeCompare(b.name));
  }

  async createToken(name: string, actor: Actor): Promise<{ name: string; token: string }> {
    this.#enter('createToken', name, actor);
    if (this.#tokens.has(name)) throw new PorticoError(ControlErrors.ALREADY_EXISTS, `Token ${name} exists already.`);
    const token = randomBytes(32).toString('base64url');
    this.#tokens.set(name, { hash: sha256(token), createdAt: now() });
    this.#record(actor, 'token.create', `tokens/${name}`);
    return { name, token };
  }

  async deleteToken(name: string, actor: Actor): Promise<void> {
    this.#enter('deleteToken', name, actor);
    if (!this.#tokens.has(name)) throw notFound(`Token ${name}`);
    if (this.#tokens.size === 1) throw new PorticoError(ControlErrors.CONFLICT, `Token ${name} is the last admin token; create another token first.`);
    this.#tokens.delete(name);
    this.#record(actor, 'token.delete', `tokens/${name}`);
  }

  async authenticate(token: string): Promise<string | null> {
    this.#enter('authenticate', '<token>');
    const hash = sha256(token);
    let found: string | null = null;
    // Compare against every token (no early exit), each comparison constant-time.
    for (const [name, t] of this.#tokens) if (timingSafeEqual(t.hash, hash)) found = name;
    return found;
  }

  // ---- uploads -------------------------------------------------------------------------

  async createUpload(body: Readable, actor: Actor): Promise<{ id: string; size: number; sha256: string }> {
    this.#enter('createUpload', '<stream>', actor);
    const chunks: Buffer[] = [];
    let size = 0;
    const max = this.#opts.maxUploadBytes ?? Number.POSITIVE_INFINITY;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) {
        body.destroy();
        throw new PorticoError(ControlErrors.PAYLOAD_TOO_LARGE, `The upload is larger than ${max} bytes.`);
      }
      chunks.push(chunk);
    }
    const data = Buffer.concat(chunks);
    const id = `u_${randomBytes(8).toString('hex')}`;
    this.uploads.set(id, data);
    const digest = sha256(data).toString('hex');
    this.#record(actor, 'upload.create', `uploads/${id}`, { size, sha256: digest });
    return { id, size, sha256: digest };
  }

  // ---- telemetry: build log following, metrics, stats -------------------------------------

  /** The fake's metric store (the real query code runs over it). */
  readonly metrics = new MemoryMetricStore();
  readonly #stats: EndpointStatsBucket[] = [];

  /** Records a `vh_metadata` line of an endpoint of a version, as a replica printing it would. */
  appendMetric(ref: VersionRef, endpoint: string, values: Record<string, number | string>, opts: { replica?: string; at?: number } = {}): void {
    this.#version(ref);
    this.metrics.add(`${key(ref)}/${ref.version}/${endpoint}`, { at: opts.at ?? Date.now(), replica: opts.replica ?? `${endpoint}-0`, values: Object.entries(values) });
  }

  /** Adds gateway stats buckets (summed with what is there) for `deploymentStats`. */
  addStats(buckets: readonly EndpointStatsBucket[]): void {
    this.#stats.push(...buckets);
  }

  async *buildLogStream(ref: VersionRef, query: LogQuery, signal?: AbortSignal): AsyncIterable<LogLine> {
    this.#enter('buildLogStream', ref, query);
    const rec = this.#version(ref);
    const keep = (l: LogLine) =>
      (query.since === undefined || l.at >= query.since) &&
      (query.until === undefined || l.at < query.until) &&
      (query.contains === undefined || l.line.includes(query.contains));
    const queue: LogLine[] = [];
    let ended = rec.status !== 'building';
    let wake: (() => void) | undefined;
    const onLine = (l: LogLine) => {
      if (keep(l)) queue.push(l);
      wake?.();
    };
    const onEnd = () => {
      ended = true;
      wake?.();
    };
    const follow = query.follow === true && !ended;
    if (follow) {
      this.#events.on(`build:${key(ref)}/${rec.name}`, onLine);
      this.#events.once(`build-end:${key(ref)}/${rec.name}`, onEnd);
    }
    const onAbort = () => wake?.();
    signal?.addEventListener('abort', onAbort);
    try {
      const backlog = rec.buildLog.filter(keep);
      yield* query.tail === undefined ? backlog : query.tail === 0 ? [] : backlog.slice(-query.tail);
      if (!follow) return;
      this.followers++;
      try {
        while (!signal?.aborted) {
          const next = queue.shift();
          if (next) {
            yield next;
            continue;
          }
          if (ended) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        this.followers--;
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#events.off(`build:${key(ref)}/${rec.name}`, onLine);
      this.#events.off(`build-end:${key(ref)}/${rec.name}`, onEnd);
    }
  }

  async endpointMetrics(ref: VersionRef, endpoint: string, query: MetricQuery): Promise<MetricsResult> {
    this.#enter('endpointMetrics', ref, endpoint, query);
    const rec = this.#version(ref);
    if (!rec.endpoints.some((e) => e.name === endpoint)) throw notFound(`Endpoint ${endpoint} of ${rec.name}`);
    return endpointMetrics(this.metrics, `${key(ref)}/${rec.name}/${endpoint}`, query);
  }

  async compareMetrics(ref: DeploymentRef, query: MetricCompareQuery): Promise<MetricCompareResult> {
    this.#enter('compareMetrics', ref, query);
    const recs = query.versions.map((version) => this.#version({ ...ref, version }));
    if (!recs.some((r) => r.endpoints.some((e) => e.name === query.endpoint))) throw notFound(`Endpoint ${query.endpoint}`);
    return compareMetrics(this.metrics, recs.map((r) => ({ version: r.name, endpoint: `${key(ref)}/${r.name}/${query.endpoint}` })), query);
  }

  async deploymentStats(ref: DeploymentRef, query: { readonly window: number }): Promise<DeploymentStatsView> {
    this.#enter('deploymentStats', ref, query);
    const d = this.#deployment(ref);
    const include = d.versions.flatMap((v) => v.endpoints.map((e) => ({ version: v.name, endpoint: e.name })));
    const mine = this.#stats.filter((b) => key(b) === key(ref));
    return summarizeStats(mine, { now: Date.now(), windowSeconds: query.window, include });
  }
}

function key(ref: DeploymentRef): string {
  return `${ref.owner}/${ref.project}/${ref.deployment}`;
}

function targetVersions(t: AliasTargetInput): string[] {
  return 'version' in t ? [t.version] : t.versions.map((v) => v.version);
}

/** A `MetricStore` in plain arrays, unbounded: the fake's (bounds are the real stores' tests). */
class MemoryMetricStore implements MetricStore {
  readonly counters = { added: 0, dropped: 0 };
  readonly #series = new Map<string, Map<string, { kind: MetricKind; points: MetricPoint[] }>>();

  add(endpoint: string, row: MetricRow): void {
    let ep = this.#series.get(endpoint);
    if (!ep) this.#series.set(endpoint, (ep = new Map()));
    for (const [name, value] of row.values) {
      const kind: MetricKind = typeof value === 'number' ? 'number' : 'string';
      let s = ep.get(name);
      if (!s) ep.set(name, (s = { kind, points: [] }));
      if (s.kind !== kind) {
        this.counters.dropped++;
        continue;
      }
      s.points.push({ at: row.at, value, replica: row.replica });
      this.counters.added++;
    }
  }

  async keys(endpoint: string): Promise<MetricKeyInfo[]> {
    return [...(this.#series.get(endpoint) ?? [])].map(([name, s]) => ({ name, kind: s.kind, count: s.points.length })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async points(endpoint: string, name: string, range: MetricRange = {}): Promise<{ kind: MetricKind; points: MetricPoint[] } | null> {
    const s = this.#series.get(endpoint)?.get(name);
    if (!s) return null;
    const points = s.points.filter((p) => (range.from === undefined || p.at >= range.from) && (range.to === undefined || p.at < range.to) && (range.replica === undefined || p.replica === range.replica));
    return { kind: s.kind, points: points.sort((a, b) => a.at - b.at) };
  }

  async remove(prefix: string): Promise<void> {
    for (const k of this.#series.keys()) if (k.startsWith(prefix)) this.#series.delete(k);
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
