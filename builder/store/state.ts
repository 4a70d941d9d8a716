/**
 * The embedded store's state in memory, and the operations (`Op`) that change it. Every change
 * is an `Op`: applied live, written to the journal, and applied again on replay, so `apply` is
 * deterministic (timestamps and ids travel inside the op).
 */
import type {
  AdminToken,
  AliasHistoryItem,
  AliasTarget,
  AuditEntry,
  Deployment,
  DeploymentRef,
  Environment,
  Upload,
  Version,
  VersionRef,
} from './store.ts';

/** One change of the embedded state. */
export type Op =
  | { t: 'env.put'; owner: string; project: string; vars: Environment }
  | { t: 'dep.put'; d: Deployment }
  | { t: 'dep.del'; ref: DeploymentRef }
  | { t: 'user.put'; ref: DeploymentRef; name: string; hash: string }
  | { t: 'user.del'; ref: DeploymentRef; name: string }
  | { t: 'ver.put'; v: Version }
  | { t: 'ver.del'; ref: VersionRef }
  | { t: 'vname'; ref: DeploymentRef; day: string; next: number }
  | { t: 'alias.put'; ref: DeploymentRef; alias: string; target: AliasTarget | null; item: AliasHistoryItem }
  | { t: 'audit'; e: AuditEntry }
  | { t: 'token.put'; token: AdminToken }
  | { t: 'token.del'; name: string }
  | { t: 'upload.put'; u: Upload }
  | { t: 'upload.del'; id: string }
  | { t: 'kv.put'; ns: string; key: string; value: unknown }
  | { t: 'kv.del'; ns: string; key: string }
  | { t: 'id'; id: string };

/** Everything one deployment holds. */
export interface DeploymentData {
  deployment: Deployment;
  users: Map<string, string>;
  /** In creation order. */
  versions: Map<string, Version>;
  aliases: Map<string, AliasTarget>;
  /** Alias -> history, oldest first. */
  history: Map<string, AliasHistoryItem[]>;
}

/** The snapshot's JSON form of the state (maps as entry arrays, order kept). */
export interface StateJSON {
  env: [string, Environment][];
  deployments: {
    deployment: Deployment;
    users: [string, string][];
    versions: Version[];
    aliases: [string, AliasTarget][];
    history: [string, AliasHistoryItem[]][];
  }[];
  counters: [string, [string, number][]][];
  audit: AuditEntry[];
  auditSeq: number;
  tokens: AdminToken[];
  uploads: Upload[];
  kv: [string, [string, unknown][]][];
  /** The store's identity (absent in snapshots written before it existed, and before it was set). */
  id?: string;
}

const enc = encodeURIComponent;

/** Map key of a project. */
export function projectKey(owner: string, project: string): string {
  return `${enc(owner)}/${enc(project)}`;
}

/** Map key of a deployment. */
export function depKey(ref: DeploymentRef): string {
  return `${enc(ref.owner)}/${enc(ref.project)}/${enc(ref.deployment)}`;
}

/** The state and its `apply`. Limits are applied on every apply, replay included. */
export class MemoryState {
  readonly env = new Map<string, Environment>();
  readonly deployments = new Map<string, DeploymentData>();
  /** Deployment key -> day -> next N. Kept after the deployment is deleted, so names never repeat. */
  readonly counters = new Map<string, Map<string, number>>();
  /** Oldest first; ids increase. */
  audit: AuditEntry[] = [];
  auditSeq = 0;
  readonly tokens = new Map<string, AdminToken>();
  readonly tokenByHash = new Map<string, string>();
  readonly uploads = new Map<string, Upload>();
  readonly kv = new Map<string, Map<string, unknown>>();
  /** The store's identity (`Store.initStoreId`); `null` until it is set. */
  id: string | null = null;
  private readonly auditLimit: number;
  private readonly aliasHistoryLimit: number;

  constructor(limits: { auditLimit: number; aliasHistoryLimit: number }) {
    this.auditLimit = limits.auditLimit;
    this.aliasHistoryLimit = limits.aliasHistoryLimit;
  }

  apply(op: Op): void {
    switch (op.t) {
      case 'env.put':
        this.env.set(projectKey(op.owner, op.project), op.vars);
        return;
      case 'dep.put': {
        const key = depKey({ owner: op.d.owner, project: op.d.project, deployment: op.d.name });
        const data = this.deployments.get(key);
        if (data) data.deployment = op.d;
        else this.deployments.set(key, { deployment: op.d, users: new Map(), versions: new Map(), aliases: new Map(), history: new Map() });
        return;
      }
      case 'dep.del':
        this.deployments.delete(depKey(op.ref));
        return;
      case 'user.put':
        this.deployments.get(depKey(op.ref))?.users.set(op.name, op.hash);
        return;
      case 'user.del':
        this.deployments.get(depKey(op.ref))?.users.delete(op.name);
        return;
      case 'ver.put':
        this.deployments.get(depKey(op.v))?.versions.set(op.v.name, op.v);
        return;
      case 'ver.del':
        this.deployments.get(depKey(op.ref))?.versions.delete(op.ref.version);
        return;
      case 'vname': {
        const key = depKey(op.ref);
        let days = this.counters.get(key);
        if (!days) this.counters.set(key, (days = new Map()));
        days.set(op.day, op.next);
        return;
      }
      case 'alias.put': {
        const data = this.deployments.get(depKey(op.ref));
        if (!data) return;
        if (op.target === null) data.aliases.delete(op.alias);
        else data.aliases.set(op.alias, op.target);
        let items = data.history.get(op.alias);
        if (!items) data.history.set(op.alias, (items = []));
        items.push(op.item);
        if (items.length > this.aliasHistoryLimit) items.splice(0, items.length - this.aliasHistoryLimit);
        return;
      }
      case 'audit':
        this.audit.push(op.e);
        this.auditSeq = Math.max(this.auditSeq, Number(op.e.id));
        if (this.audit.length > this.auditLimit) this.audit.splice(0, this.audit.length - this.auditLimit);
        return;
      case 'token.put':
        this.tokens.set(op.token.name, op.token);
        this.tokenByHash.set(op.token.hash, op.token.name);
        return;
      case 'token.del': {
        const token = this.tokens.get(op.name);
        if (token) this.tokenByHash.delete(token.hash);
        this.tokens.delete(op.name);
        return;
      }
      case 'upload.put':
        this.uploads.set(op.u.id, op.u);
        return;
      case 'upload.del':
        this.uploads.delete(op.id);
        return;
      case 'kv.put': {
        let ns = this.kv.get(op.ns);
        if (!ns) this.kv.set(op.ns, (ns = new Map()));
        ns.set(op.key, op.value);
        return;
      }
      case 'kv.del': {
        const ns = this.kv.get(op.ns);
        ns?.delete(op.key);
        if (ns?.size === 0) this.kv.delete(op.ns);
        return;
      }
      case 'id':
        this.id = op.id;
        return;
    }
  }

  toJSON(): StateJSON {
    return {
      env: [...this.env],
      deployments: [...this.deployments.values()].map((d) => ({
        deployment: d.deployment,
        users: [...d.users],
        versions: [...d.versions.values()],
        aliases: [...d.aliases],
        history: [...d.history],
      })),
      counters: [...this.counters].map(([k, days]) => [k, [...days]]),
      audit: this.audit,
      auditSeq: this.auditSeq,
      tokens: [...this.tokens.values()],
      uploads: [...this.uploads.values()],
      kv: [...this.kv].map(([ns, m]) => [ns, [...m]]),
      ...(this.id !== null ? { id: this.id } : {}),
    };
  }

  /** Rebuilds the state a snapshot holds (limits applied as configured now). */
  static fromJSON(json: StateJSON, limits: { auditLimit: number; aliasHistoryLimit: number }): MemoryState {
    const s = new MemoryState(limits);
    for (const [k, v] of json.env) s.env.set(k, v);
    for (const d of json.deployments) {
      const key = depKey({ owner: d.deployment.owner, project: d.deployment.project, deployment: d.deployment.name });
      s.deployments.set(key, {
        deployment: d.deployment,
        users: new Map(d.users),
        versions: new Map(d.versions.map((v) => [v.name, v])),
        aliases: new Map(d.aliases),
        history: new Map(d.history.map(([a, items]) => [a, items.slice(-limits.aliasHistoryLimit)])),
      });
    }
    for (const [k, days] of json.counters) s.counters.set(k, new Map(days));
    s.audit = json.audit.slice(-limits.auditLimit);
    s.auditSeq = json.auditSeq;
    for (const t of json.tokens) {
      s.tokens.set(t.name, t);
      s.tokenByHash.set(t.hash, t.name);
    }
    for (const u of json.uploads) s.uploads.set(u.id, u);
    for (const [ns, entries] of json.kv) s.kv.set(ns, new Map(entries));
    s.id = json.id ?? null;
    return s;
  }
}
