import { PorticoError } from '../common/errors.ts';
import { GatewayErrors, RETRY_AFTER_SECONDS } from './errors.ts';
import type { Exchange, Stage, StageResult } from './exchange.ts';
import {
  deploymentKey,
  endpointKey,
  type AliasTarget,
  type DeploymentRecord,
  type EndpointRecord,
} from './routing/contract.ts';

/**
 * What resolution reads: the routing cache (`routing/cache.ts` `RouteCache` has this shape).
 * `peek*` answers from memory (`undefined`: must load); `load*` rejects when the table is down.
 */
export interface RouteSource {
  peekDeployment(key: string): DeploymentRecord | null | undefined;
  peekEndpoint(key: string): EndpointRecord | null | undefined;
  loadDeployment(key: string): Promise<DeploymentRecord | null>;
  loadEndpoint(key: string): Promise<EndpointRecord | null>;
}

const notFound = () => new PorticoError(GatewayErrors.ROUTE_NOT_FOUND);

function unavailable(cause: unknown): PorticoError {
  return new PorticoError(GatewayErrors.ROUTING_UNAVAILABLE, undefined, {
    cause,
    headers: { 'retry-after': String(RETRY_AFTER_SECONDS.ROUTING_UNAVAILABLE) },
  });
}

/**
 * Picks the version an alias sends this request to: its one version, or one of its weighted
 * versions with probability weight / total weight.
 */
export function pickVersion(alias: AliasTarget, random: () => number = Math.random): string | undefined {
  if ('version' in alias) return alias.version;
  const versions = alias.versions;
  let total = 0;
  for (const v of versions) if (v.weight > 0) total += v.weight;
  if (total <= 0) return versions[0]?.version;
  let x = random() * total;
  for (const v of versions) {
    if (v.weight <= 0) continue;
    x -= v.weight;
    if (x < 0) return v.version;
  }
  // Rounding left x at ~0: the last weighted version.
  for (let i = versions.length - 1; i >= 0; i--) if ((versions[i]?.weight ?? 0) > 0) return versions[i]?.version;
  return undefined;
}

function applyDeployment(ex: Exchange, d: DeploymentRecord | null): StageResult {
  if (d === null) return notFound();
  ex.deploymentRecord = d;
  return undefined;
}

// The keys of the last request, reused while requests name the same route: one string object
// per route, whose hash the routing cache's Map computes once, instead of a new concatenation
// (flattened and hashed again) per request.
interface KeyMemo {
  a: string;
  b: string;
  c: string;
  key: string;
}
const lastDeployment: KeyMemo = { a: '', b: '', c: '', key: '' };
const lastEndpoint: KeyMemo = { a: '', b: '', c: '', key: '' };

/** `build(ex)`, or the key last built from the same three names. */
function memoKey(m: KeyMemo, a: string, b: string, c: string, ex: Exchange, build: (ex: Exchange) => string): string {
  if (a !== m.a || b !== m.b || c !== m.c || m.key === '') {
    m.a = a;
    m.b = b;
    m.c = c;
    m.key = build(ex);
  }
  return m.key;
}

/** Stage: the deployment record of the path (404 if none; 503 if the table is down and it is not cached). */
export function resolveDeployment(routes: RouteSource): Stage {
  return (ex) => {
    ex.deploymentKey = memoKey(lastDeployment, ex.owner, ex.project, ex.deployment, ex, deploymentKey);
    const d = routes.peekDeployment(ex.deploymentKey);
    if (d !== undefined) return applyDeployment(ex, d);
    return routes.loadDeployment(ex.deploymentKey).then((rec) => applyDeployment(ex, rec), unavailable);
  };
}

function applyEndpoint(ex: Exchange, e: EndpointRecord | null, defaultMaxBody: number): StageResult {
  if (e === null) return notFound();
  ex.endpointRecord = e;
  ex.maxBodyBytes = e.maxBodyBytes ?? defaultMaxBody;
  if (e.replicas.length === 0) {
    return new PorticoError(GatewayErrors.NO_READY_REPLICA, undefined, {
      headers: { 'retry-after': String(RETRY_AFTER_SECONDS.NO_READY_REPLICA) },
    });
  }
  return undefined;
}

type WeightedAlias = Extract<AliasTarget, { versions: readonly unknown[] }>;

/** Whether `e` can serve: it exists and has a ready replica. */
function serves(e: EndpointRecord | null): e is EndpointRecord {
  return e !== null && e.replicas.length > 0;
}

/**
 * The weighted version picked cannot serve this endpoint (no such endpoint in it, or no ready
 * replica): the request goes to another of the alias's versions, picked by weight among those
 * not tried yet, that can. A canary that crashed or lacks an endpoint never fails the share of
 * traffic it was given while another version serves. When none can, the answer is that of the
 * first version having the endpoint (503 `NO_READY_REPLICA`), else 404.
 */
async function fallBack(routes: RouteSource, ex: Exchange, alias: WeightedAlias, first: EndpointRecord | null, defaultMaxBody: number, random: () => number): Promise<StageResult> {
  let answer: { version: string; key: string; record: EndpointRecord | null } = { version: ex.version, key: ex.endpointKey, record: first };
  let rest = alias.versions.filter((v) => v.weight > 0 && v.version !== ex.version);
  let failure: unknown;
  while (rest.length > 0) {
    const version = pickVersion({ versions: rest }, random) as string;
    rest = rest.filter((v) => v.version !== version);
    const key = endpointKey({ owner: ex.owner, project: ex.project, deployment: ex.deployment, version, endpoint: ex.endpoint });
    let e: EndpointRecord | null;
    try {
      e = routes.peekEndpoint(key) ?? (await routes.loadEndpoint(key));
    } catch (err) {
      failure = err;
      continue;
    }
    if (serves(e) || (answer.record === null && e !== null)) answer = { version, key, record: e };
    if (serves(e)) break;
  }
  // Nothing served and a version could not be read: the table's outage is the answer.
  if (!serves(answer.record) && failure !== undefined) return unavailable(failure);
  ex.version = answer.version;
  ex.endpointKey = answer.key;
  return applyEndpoint(ex, answer.record, defaultMaxBody);
}

/**
 * Stage: resolves the version-or-alias segment (an alias of the deployment, else a version
 * name; a weighted alias picks per request, passing over versions that cannot serve) and loads
 * that version's endpoint record. 404 when unknown, 503 `NO_READY_REPLICA` when it has no ready
 * replica.
 */
export function resolveEndpoint(routes: RouteSource, defaultMaxBody: number, random: () => number = Math.random): Stage {
  const settle = (ex: Exchange, alias: AliasTarget | undefined, e: EndpointRecord | null): StageResult | Promise<StageResult> =>
    alias !== undefined && 'versions' in alias && !serves(e) && alias.versions.length > 1
      ? fallBack(routes, ex, alias, e, defaultMaxBody, random)
      : applyEndpoint(ex, e, defaultMaxBody);
  return (ex) => {
    const d = ex.deploymentRecord as DeploymentRecord;
    let alias: AliasTarget | undefined;
    if (Object.hasOwn(d.aliases, ex.target)) {
      alias = d.aliases[ex.target] as AliasTarget;
      const v = pickVersion(alias, random);
      if (v === undefined) return notFound();
      ex.version = v;
    } else {
      ex.version = ex.target;
    }
    ex.endpointKey = memoKey(lastEndpoint, ex.deploymentKey, ex.version, ex.endpoint, ex, endpointKey);
    const e = routes.peekEndpoint(ex.endpointKey);
    if (e !== undefined) return settle(ex, alias, e);
    return routes.loadEndpoint(ex.endpointKey).then((rec) => settle(ex, alias, rec), unavailable);
  };
}
