/**
 * The Redis `Store` (ioredis). Every operation that touches more than one key, or reads before
 * it writes, is one Lua script, so it is atomic; `updateVersion` runs the caller's mutator in
 * Node and writes with compare-and-set, retrying until no one wrote in between. Scripts build
 * a few key names from a prefix passed in ARGV (alias history lists): fine on a single Redis,
 * not meant for Redis Cluster.
 *
 * Keys (all under `prefix`, names URI-encoded so no name can forge another key):
 *   projects                     set     {owner}/{project} with an environment or deployments
 *   p:{owner}/{project}:env      string  Environment JSON
 *   p:{owner}/{project}:deps     hash    deployment name -> Deployment JSON
 *   d:{o}/{p}/{d}:users          hash    user -> password hash
 *   d:{o}/{p}/{d}:vers           hash    version name -> Version JSON
 *   d:{o}/{p}/{d}:vorder         zset    version name, scored by creation
 *   d:{o}/{p}/{d}:vcount         hash    YYYYMMDD -> names handed out (kept after delete)
 *   d:{o}/{p}/{d}:aliases        hash    alias -> target JSON
 *   d:{o}/{p}/{d}:ahists         set     aliases with history
 *   d:{o}/{p}/{d}:ahist:{alias}  list    history item JSON, newest first
 *   vseq, auditseq               string  counters
 *   audit                        zset    entry JSON scored by id
 *   tokens, tokenhash            hash    name -> token JSON; hash -> name
 *   uploads                      hash    id -> upload JSON
 *   kv:{ns}                      hash    key -> JSON
 *   id                           string  the store's identity (`initStoreId`)
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { closeRedisClient, redisClient } from '../../common/redis.ts';
import {
  STORE_DEFAULTS,
  StoreConflictError,
  StoreNotFoundError,
  StoreUnavailableError,
  applyVersionMutator,
  auditPageLimit,
  compareDeployments,
  compareStrings,
  deploymentLabel,
  jsonCopy,
  normaliseTarget,
  patchDeployment,
  targetVersions,
  versionDay,
  type AdminToken,
  type Alias,
  type AliasHistoryItem,
  type AliasTarget,
  type AuditEntry,
  type AuditPage,
  type Deployment,
  type DeploymentPatch,
  type DeploymentRef,
  type Environment,
  type NewAuditEntry,
  type NewDeployment,
  type NewUpload,
  type NewVersion,
  type Store,
  type StoreOptions,
  type Upload,
  type Version,
  type VersionMutator,
  type VersionRef,
} from './store.ts';

/** Options of `RedisStore`. */
export interface RedisStoreOptions extends StoreOptions {
  /** A `PORTICO_REDIS_URL` (`redis://`, `rediss://` or `redis+sentinel://`). */
  readonly url: string;
  /** Prefix of every key (tests use a fresh one each). Default `portico:store:`. */
  readonly prefix?: string;
  /** Passed to ioredis as they are. */
  readonly redisOptions?: RedisOptions;
}

interface Lua {
  readonly lua: string;
  readonly sha: string;
}

function lua(source: string): Lua {
  return { lua: source, sha: createHash('sha1').update(source).digest('hex') };
}

/** Compare-and-set of a hash field: 1 written, 0 changed meanwhile, -1 gone. */
const HCAS = lua(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`);

/** KEYS deps projects; ARGV name, json, project member. */
const CREATE_DEPLOYMENT = lua(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
return 1`);

/**
 * KEYS deps users vers vorder aliases ahists projects env; ARGV name, history key prefix,
 * project member. The project leaves the index with its last deployment unless it has an environment.
 */
const DELETE_DEPLOYMENT = lua(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, a in ipairs(redis.call('SMEMBERS', KEYS[6])) do redis.call('DEL', ARGV[2] .. a) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
if redis.call('HLEN', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[8]) == 0 then redis.call('SREM', KEYS[7], ARGV[3]) end
return 1`);

/** KEYS deps users; ARGV deployment, user, hash. */
const PUT_USER = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`);

/** KEYS deps vers vorder vseq aliases; ARGV deployment, version, json. -1 no deployment, -2 an alias has the name, 0 exists, 1 created. */
const CREATE_VERSION = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then return -2 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[2])
return 1`);

/** KEYS vers vorder aliases; ARGV version. Returns 0 missing, 1 deleted, or the alias using it. */
const DELETE_VERSION = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local all = redis.call('HGETALL', KEYS[3])
local using = nil
for i = 1, #all, 2 do
  local t = cjson.decode(all[i + 1])
  local hit = t.version == ARGV[1]
  if type(t.versions) == 'table' then
    for _, w in ipairs(t.versions) do if w.version == ARGV[1] then hit = true end end
  end
  if hit and (using == nil or all[i] < using) then using = all[i] end
end
if using then return using end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`);

/** KEYS deps vcount vers; ARGV deployment, day. Returns the name, or nil without the deployment. */
const ALLOCATE_NAME = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
while true do
  local name = ARGV[2] .. '.' .. string.format('%d', redis.call('HINCRBY', KEYS[2], ARGV[2], 1) - 1)
  if redis.call('HEXISTS', KEYS[3], name) == 0 then return name end
end`);

/**
 * KEYS deps aliases vers ahists ahist; ARGV deployment, alias, encoded alias, target JSON
 * (or '' to delete), at JSON, by JSON, history limit, version names...
 * Returns {'ok', item} | {'nodep'} | {'clash'} (a version has the alias's name) | {'nover', version} | {'missing'}.
 */
const SET_ALIAS = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nodep'} end
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return {'clash'} end
for i = 8, #ARGV do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then return {'nover', ARGV[i]} end
end
local old = redis.call('HGET', KEYS[2], ARGV[2])
local to = ARGV[4]
-- The target it has already: not a change, so no history item.
local changed = old ~= to
if to == '' then
  if not old then return {'missing'} end
  redis.call('HDEL', KEYS[2], ARGV[2])
  to = 'null'
elseif changed then
  redis.call('HSET', KEYS[2], ARGV[2], to)
end
if not old then old = 'null' end
local item = '{"at":' .. ARGV[5] .. ',"by":' .. ARGV[6] .. ',"from":' .. old .. ',"to":' .. to .. '}'
if changed then
  redis.call('LPUSH', KEYS[5], item)
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[7]) - 1)
  redis.call('SADD', KEYS[4], ARGV[3])
end
return {'ok', item}`);

/** KEYS audit auditseq; ARGV entry JSON without its opening brace, limit. Returns the id. */
const APPEND_AUDIT = lua(`
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], id, '{"id":"' .. string.format('%d', id) .. '",' .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
return id`);

/** KEYS tokens tokenhash; ARGV name, hash, json. 1 created, 0 name taken, -1 hash taken. */
const CREATE_TOKEN = lua(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1`);

/** KEYS tokens tokenhash; ARGV name, keepLast ('1' or '0'). 1 deleted, 0 no such token, -1 the last one kept. */
const DELETE_TOKEN = lua(`
local j = redis.call('HGET', KEYS[1], ARGV[1])
if not j then return 0 end
if ARGV[2] == '1' and redis.call('HLEN', KEYS[1]) == 1 then return -1 end
redis.call('HDEL', KEYS[2], cjson.decode(j).hash)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1`);

const enc = encodeURIComponent;

/**
 * Longest one store command may take, queued while Redis reconnects included. Every write is
 * one script or transaction, so a command that times out was applied whole or not at all (a
 * stalled server may still apply it once it resumes: the caller was told 503, not that it failed).
 */
export const STORE_COMMAND_TIMEOUT_MS = 5000;

/** The Redis `Store`. */
export class RedisStore implements Store {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly clock: () => Date;
  private readonly auditLimit: number;
  private readonly aliasHistoryLimit: number;
  private closed = false;

  /**
   * Connects to `opts.url` (ioredis reconnects by itself; commands wait while it does, for at
   * most `STORE_COMMAND_TIMEOUT_MS` each: an unresponsive Redis fails an admin call rather than
   * hanging it).
   */
  constructor(opts: RedisStoreOptions) {
    this.redis = redisClient(opts.url, { commandTimeout: STORE_COMMAND_TIMEOUT_MS, ...opts.redisOptions });
    // Failures are seen through rejected calls; without a listener ioredis would print every
    // reconnection attempt while Redis is away.
    this.redis.on('error', () => {});
    this.prefix = opts.prefix ?? 'portico:store:';
    this.clock = opts.clock ?? (() => new Date());
    this.auditLimit = opts.auditLimit ?? STORE_DEFAULTS.auditLimit;
    this.aliasHistoryLimit = opts.aliasHistoryLimit ?? STORE_DEFAULTS.aliasHistoryLimit;
  }

  private check(): void {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
  }

  private async run(script: Lua, keys: string[], args: (string | number)[]): Promise<unknown> {
    this.check();
    try {
      return await this.redis.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return await this.redis.eval(script.lua, keys.length, ...keys, ...args);
    }
  }

  private now(): string {
    return this.clock().toISOString();
  }

  private project(owner: string, project: string): string {
    return `${this.prefix}p:${enc(owner)}/${enc(project)}`;
  }

  private deps(ref: { owner: string; project: string }): string {
    return `${this.project(ref.owner, ref.project)}:deps`;
  }

  private dep(ref: DeploymentRef, part: 'users' | 'vers' | 'vorder' | 'vcount' | 'aliases' | 'ahists' | 'ahist:'): string {
    return `${this.prefix}d:${enc(ref.owner)}/${enc(ref.project)}/${enc(ref.deployment)}:${part}`;
  }

  private g(name: string): string {
    return this.prefix + name;
  }

  async getEnvironment(owner: string, project: string): Promise<Environment> {
    this.check();
    const raw = await this.redis.get(`${this.project(owner, project)}:env`);
    return raw === null ? {} : (JSON.parse(raw) as Environment);
  }

  async putEnvironment(owner: string, project: string, vars: Environment): Promise<void> {
    this.check();
    const res = await this.redis
      .multi()
      .set(`${this.project(owner, project)}:env`, JSON.stringify(vars))
      .sadd(this.g('projects'), projectMember(owner, project))
      .exec();
    const err = res?.find(([e]) => e !== null)?.[0];
    if (err) throw err;
  }

  async listProjects(): Promise<{ owner: string; project: string }[]> {
    this.check();
    return (await this.redis.smembers(this.g('projects')))
      .map((m) => {
        const [owner = '', project = ''] = m.split('/').map(decodeURIComponent);
        return { owner, project };
      })
      .sort((a, b) => compareStrings(a.owner, b.owner) || compareStrings(a.project, b.project));
  }

  async listAllDeployments(): Promise<Deployment[]> {
    const projects = await this.listProjects();
    if (projects.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const p of projects) pipeline.hvals(this.deps(p));
    const res = (await pipeline.exec()) ?? [];
    const out: Deployment[] = [];
    for (const [err, values] of res) {
      if (err) throw err;
      for (const v of values as string[]) out.push(JSON.parse(v) as Deployment);
    }
    return out.sort(compareDeployments);
  }

  async listDeployments(owner: string, project: string): Promise<Deployment[]> {
    this.check();
    const all = await this.redis.hgetall(this.deps({ owner, project }));
    return Object.keys(all)
      .sort()
      .map((name) => JSON.parse(all[name]!) as Deployment);
  }

  async getDeployment(ref: DeploymentRef): Promise<Deployment | null> {
    this.check();
    return parse<Deployment>(await this.redis.hget(this.deps(ref), ref.deployment));
  }

  async createDeployment(input: NewDeployment): Promise<Deployment> {
    this.check();
    const d: Deployment = jsonCopy({ owner: input.owner, project: input.project, name: input.name, target: input.target, auth: input.auth, createdAt: this.now() });
    const ok = await this.run(CREATE_DEPLOYMENT, [this.deps(d), this.g('projects')], [d.name, JSON.stringify(d), projectMember(d.owner, d.project)]);
    if (ok === 0) throw new StoreConflictError('deployment', deploymentLabel({ ...d, deployment: d.name }));
    return d;
  }

  async updateDeployment(ref: DeploymentRef, patch: DeploymentPatch): Promise<Deployment> {
    for (;;) {
      this.check();
      const raw = await this.redis.hget(this.deps(ref), ref.deployment);
      if (raw === null) throw new StoreNotFoundError('deployment', deploymentLabel(ref));
      const next = patchDeployment(JSON.parse(raw) as Deployment, patch);
      const r = await this.run(HCAS, [this.deps(ref)], [ref.deployment, raw, JSON.stringify(next)]);
      if (r === 1) return next;
      if (r === -1) throw new StoreNotFoundError('deployment', deploymentLabel(ref));
    }
  }

  async deleteDeployment(ref: DeploymentRef): Promise<boolean> {
    const keys = [
      this.deps(ref),
      this.dep(ref, 'users'),
      this.dep(ref, 'vers'),
      this.dep(ref, 'vorder'),
      this.dep(ref, 'aliases'),
      this.dep(ref, 'ahists'),
      this.g('projects'),
      `${this.project(ref.owner, ref.project)}:env`,
    ];
    return (await this.run(DELETE_DEPLOYMENT, keys, [ref.deployment, this.dep(ref, 'ahist:'), projectMember(ref.owner, ref.project)])) === 1;
  }

  async listUsers(ref: DeploymentRef): Promise<string[]> {
    this.check();
    return (await this.redis.hkeys(this.dep(ref, 'users'))).sort();
  }

  async getUserHashes(ref: DeploymentRef): Promise<Record<string, string>> {
    this.check();
    const all = await this.redis.hgetall(this.dep(ref, 'users'));
    return Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]!]));
  }

  async putUser(ref: DeploymentRef, name: string, passwordHash: string): Promise<void> {
    const ok = await this.run(PUT_USER, [this.deps(ref), this.dep(ref, 'users')], [ref.deployment, name, passwordHash]);
    if (ok !== 1) throw new StoreNotFoundError('deployment', deploymentLabel(ref));
  }

  async deleteUser(ref: DeploymentRef, name: string): Promise<boolean> {
    this.check();
    return (await this.redis.hdel(this.dep(ref, 'users'), name)) === 1;
  }

  async listVersions(ref: DeploymentRef): Promise<Version[]> {
    this.check();
    const res = await this.redis.multi().zrange(this.dep(ref, 'vorder'), '0', '-1').hgetall(this.dep(ref, 'vers')).exec();
    const [order, all] = [res?.[0]?.[1] as string[] | undefined, res?.[1]?.[1] as Record<string, string> | undefined];
    const errors = res?.map(([err]) => err).filter((e) => e !== null) ?? [];
    if (!order || !all || errors.length > 0) throw errors[0] ?? new StoreUnavailableError('listVersions: no reply from Redis');
    return order.filter((name) => all[name] !== undefined).map((name) => JSON.parse(all[name]!) as Version);
  }

  async getVersion(ref: VersionRef): Promise<Version | null> {
    this.check();
    return parse<Version>(await this.redis.hget(this.dep(ref, 'vers'), ref.version));
  }

  async createVersion(input: NewVersion): Promise<Version> {
    const ref = { owner: input.owner, project: input.project, deployment: input.deployment };
    const now = this.now();
    const v: Version = jsonCopy({ ...input, createdAt: now, updatedAt: now });
    const keys = [this.deps(ref), this.dep(ref, 'vers'), this.dep(ref, 'vorder'), this.g('vseq'), this.dep(ref, 'aliases')];
    const r = await this.run(CREATE_VERSION, keys, [ref.deployment, v.name, JSON.stringify(v)]);
    if (r === -1) throw new StoreNotFoundError('deployment', deploymentLabel(ref));
    if (r === -2) throw new StoreConflictError('version', `${deploymentLabel(ref)}/${v.name}`, 'name-taken');
    if (r === 0) throw new StoreConflictError('version', `${deploymentLabel(ref)}/${v.name}`);
    return v;
  }

  async updateVersion(ref: VersionRef, mutator: VersionMutator): Promise<Version> {
    const key = this.dep(ref, 'vers');
    for (;;) {
      this.check();
      const raw = await this.redis.hget(key, ref.version);
      if (raw === null) throw new StoreNotFoundError('version', `${deploymentLabel(ref)}/${ref.version}`);
      const current = JSON.parse(raw) as Version;
      const next = applyVersionMutator(current, mutator, this.clock());
      if (next === null) return current;
      const r = await this.run(HCAS, [key], [ref.version, raw, JSON.stringify(next)]);
      if (r === 1) return next;
      if (r === -1) throw new StoreNotFoundError('version', `${deploymentLabel(ref)}/${ref.version}`);
    }
  }

  async deleteVersion(ref: VersionRef): Promise<boolean> {
    const r = await this.run(DELETE_VERSION, [this.dep(ref, 'vers'), this.dep(ref, 'vorder'), this.dep(ref, 'aliases')], [ref.version]);
    if (typeof r === 'string') throw new StoreConflictError('version', `${deploymentLabel(ref)}/${ref.version}`, 'in-use', r);
    return r === 1;
  }

  async allocateVersionName(owner: string, project: string, deployment: string, date: Date): Promise<string> {
    const ref = { owner, project, deployment };
    const r = await this.run(ALLOCATE_NAME, [this.deps(ref), this.dep(ref, 'vcount'), this.dep(ref, 'vers')], [deployment, versionDay(date)]);
    if (typeof r !== 'string') throw new StoreNotFoundError('deployment', deploymentLabel(ref));
    return r;
  }

  async listAliases(ref: DeploymentRef): Promise<Alias[]> {
    this.check();
    const all = await this.redis.hgetall(this.dep(ref, 'aliases'));
    return Object.keys(all)
      .sort()
      .map((name) => ({ name, ...(JSON.parse(all[name]!) as AliasTarget) }));
  }

  async getAlias(ref: DeploymentRef, alias: string): Promise<Alias | null> {
    this.check();
    const target = parse<AliasTarget>(await this.redis.hget(this.dep(ref, 'aliases'), alias));
    return target === null ? null : { name: alias, ...target };
  }

  private async writeAlias(ref: DeploymentRef, alias: string, target: AliasTarget | null, by: string): Promise<AliasHistoryItem | null> {
    const keys = [this.deps(ref), this.dep(ref, 'aliases'), this.dep(ref, 'vers'), this.dep(ref, 'ahists'), this.dep(ref, 'ahist:') + enc(alias)];
    const args = [
      ref.deployment,
      alias,
      enc(alias),
      target === null ? '' : JSON.stringify(target),
      JSON.stringify(this.now()),
      JSON.stringify(by),
      this.aliasHistoryLimit,
      ...(target === null ? [] : targetVersions(target)),
    ];
    const [status, detail] = (await this.run(SET_ALIAS, keys, args)) as [string, string | undefined];
    if (status === 'ok') return JSON.parse(detail!) as AliasHistoryItem;
    if (status === 'missing') return null;
    if (status === 'clash') throw new StoreConflictError('alias', `${deploymentLabel(ref)}/${alias}`, 'name-taken');
    if (target === null) return null; // no deployment: nothing to delete
    if (status === 'nover') throw new StoreNotFoundError('version', `${deploymentLabel(ref)}/${detail}`);
    throw new StoreNotFoundError('deployment', deploymentLabel(ref));
  }

  async setAlias(ref: DeploymentRef, alias: string, target: AliasTarget, by: string): Promise<AliasHistoryItem> {
    return (await this.writeAlias(ref, alias, normaliseTarget(target), by))!;
  }

  deleteAlias(ref: DeploymentRef, alias: string, by: string): Promise<AliasHistoryItem | null> {
    return this.writeAlias(ref, alias, null, by);
  }

  async aliasHistory(ref: DeploymentRef, alias: string): Promise<AliasHistoryItem[]> {
    this.check();
    const items = await this.redis.lrange(this.dep(ref, 'ahist:') + enc(alias), 0, -1);
    return items.map((s) => JSON.parse(s) as AliasHistoryItem);
  }

  async appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    const body = jsonCopy({ at: this.now(), actor: entry.actor, action: entry.action, target: entry.target, details: entry.details });
    const json = JSON.stringify(body);
    const id = await this.run(APPEND_AUDIT, [this.g('audit'), this.g('auditseq')], [json.slice(1), this.auditLimit]);
    return { id: String(id), ...body };
  }

  async listAudit(query: { limit?: number; before?: string } = {}): Promise<AuditPage> {
    this.check();
    const limit = auditPageLimit(query.limit);
    if (query.before !== undefined && !/^\d{1,15}$/.test(query.before)) return { items: [], next: null };
    const max = query.before === undefined ? '+inf' : `(${query.before}`;
    const raw = await this.redis.zrevrangebyscore(this.g('audit'), max, '-inf', 'LIMIT', '0', String(limit + 1));
    const items = raw.slice(0, limit).map((s) => JSON.parse(s) as AuditEntry);
    return { items, next: raw.length > limit ? items.at(-1)!.id : null };
  }

  async listTokens(): Promise<AdminToken[]> {
    this.check();
    const all = await this.redis.hgetall(this.g('tokens'));
    return Object.keys(all)
      .sort()
      .map((k) => JSON.parse(all[k]!) as AdminToken);
  }

  async createToken(input: { name: string; hash: string }): Promise<AdminToken> {
    const token: AdminToken = { name: input.name, hash: input.hash, createdAt: this.now() };
    const r = await this.run(CREATE_TOKEN, [this.g('tokens'), this.g('tokenhash')], [token.name, token.hash, JSON.stringify(token)]);
    if (r === 0) throw new StoreConflictError('token', input.name);
    if (r === -1) throw new StoreConflictError('token', 'with this hash');
    return token;
  }

  async deleteToken(name: string, opts: { readonly keepLast?: boolean } = {}): Promise<boolean> {
    const r = await this.run(DELETE_TOKEN, [this.g('tokens'), this.g('tokenhash')], [name, opts.keepLast ? '1' : '0']);
    if (r === -1) throw new StoreConflictError('token', name, 'last');
    return r === 1;
  }

  async findTokenByHash(hash: string): Promise<AdminToken | null> {
    this.check();
    const name = await this.redis.hget(this.g('tokenhash'), hash);
    if (name === null) return null;
    const token = parse<AdminToken>(await this.redis.hget(this.g('tokens'), name));
    return token?.hash === hash ? token : null;
  }

  async createUpload(input: NewUpload): Promise<Upload> {
    this.check();
    const u: Upload = jsonCopy({ id: input.id, size: input.size, sha256: input.sha256, createdAt: this.now(), path: input.path });
    if ((await this.redis.hsetnx(this.g('uploads'), u.id, JSON.stringify(u))) === 0) throw new StoreConflictError('upload', u.id);
    return u;
  }

  async getUpload(id: string): Promise<Upload | null> {
    this.check();
    return parse<Upload>(await this.redis.hget(this.g('uploads'), id));
  }

  async listUploads(): Promise<Upload[]> {
    this.check();
    const all = await this.redis.hgetall(this.g('uploads'));
    return Object.keys(all)
      .sort()
      .map((k) => JSON.parse(all[k]!) as Upload);
  }

  async deleteUpload(id: string): Promise<boolean> {
    this.check();
    return (await this.redis.hdel(this.g('uploads'), id)) === 1;
  }

  async getState(ns: string, key: string): Promise<unknown> {
    this.check();
    const raw = await this.redis.hget(this.g(`kv:${enc(ns)}`), key);
    return raw === null ? undefined : (JSON.parse(raw) as unknown);
  }

  async putState(ns: string, key: string, value: unknown): Promise<void> {
    this.check();
    if (value === undefined) throw new TypeError('putState: undefined is not a JSON value (use deleteState)');
    await this.redis.hset(this.g(`kv:${enc(ns)}`), key, JSON.stringify(value));
  }

  async deleteState(ns: string, key: string): Promise<boolean> {
    this.check();
    return (await this.redis.hdel(this.g(`kv:${enc(ns)}`), key)) === 1;
  }

  async listState(ns: string): Promise<Record<string, unknown>> {
    this.check();
    const all = await this.redis.hgetall(this.g(`kv:${enc(ns)}`));
    return Object.fromEntries(
      Object.keys(all)
        .sort()
        .map((k) => [k, JSON.parse(all[k]!) as unknown]),
    );
  }

  async getStoreId(): Promise<string | null> {
    this.check();
    return await this.redis.get(this.g('id'));
  }

  async initStoreId(): Promise<string> {
    this.check();
    await this.redis.set(this.g('id'), randomUUID(), 'NX');
    const id = await this.redis.get(this.g('id'));
    // Gone between the two calls: the store was emptied right now; that is not an id.
    if (id === null) throw new StoreUnavailableError('the store lost its id while it was being written');
    return id;
  }

  failure(): null {
    return null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await closeRedisClient(this.redis);
  }
}

function projectMember(owner: string, project: string): string {
  return `${enc(owner)}/${enc(project)}`;
}

function parse<T>(raw: string | null): T | null {
  return raw === null ? null : (JSON.parse(raw) as T);
}
