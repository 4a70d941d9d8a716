// Contender (e): `portico gateway` as operators run it, on a real redis-server, with routing
// records written through RedisRoutingTable.apply (as the controller's publisher does), basic
// auth on (a user hashed by hashPassword at the production cost), metrics served, access log
// to a file.
import { join } from 'node:path';
import { hashPassword } from '../gateway/auth/password.ts';
import type { DeploymentRecord, EndpointRecord } from '../gateway/routing/contract.ts';
import { RedisRoutingTable } from '../gateway/routing/redis.ts';
import { NODE, PORTICO, ROOT } from '../test/helpers/portico.ts';
import type { Proc, Procs } from './procs.ts';

/** The basic-auth user every benchmark deployment has. */
export const USER = 'bench';
const PASSWORD = 'bench-password-0123';
/** The `Authorization` header every load run sends (to every contender, so requests are alike). */
export const AUTH_HEADERS: Readonly<Record<string, string>> = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
/** The five-segment alias URL path of the proxy comparison. */
export const ROUTE_PATH = '/bench/models/web/production/predict';

/** The stored hash of the benchmark user's password (production scrypt cost). */
export function benchUserHash(): Promise<string> {
  return hashPassword(PASSWORD);
}

function deployment(owner: string, project: string, name: string, userHash: string): DeploymentRecord {
  return { owner, project, deployment: name, auth: 'basic', users: { [USER]: userHash }, aliases: { production: { version: 'v1' } } };
}

function endpoint(owner: string, project: string, dep: string, name: string, upstream: string): EndpointRecord {
  return { owner, project, deployment: dep, version: 'v1', endpoint: name, replicas: [{ id: `${dep}-${name}-0`, address: upstream }], timeoutSeconds: null, maxBodyBytes: null };
}

/** Writes the route of `ROUTE_PATH` (alias `production` -> `v1`, basic auth) pointing at `upstream`. */
export async function writeBenchRoute(redisUrl: string, upstream: string, userHash: string): Promise<void> {
  const table = new RedisRoutingTable({ url: redisUrl, commandTimeoutMs: 10_000 });
  try {
    await table.whenAvailable(10_000);
    await table.apply({ putDeployments: [deployment('bench', 'models', 'web', userHash)], putEndpoints: [endpoint('bench', 'models', 'web', 'predict', upstream)] });
  } finally {
    await table.close();
  }
}

/**
 * Writes `deployments` x `endpoints` routes `/mem/p/dNNN/production/eNNNN` (what bench/wrk/bench.lua's
 * `routes=mem/p/...` requests), in changes of one deployment each. Returns the endpoint count.
 */
export async function writeManyRoutes(redisUrl: string, upstream: string, userHash: string, deployments: number, endpoints: number): Promise<number> {
  const table = new RedisRoutingTable({ url: redisUrl, commandTimeoutMs: 30_000 });
  try {
    await table.whenAvailable(10_000);
    for (let d = 0; d < deployments; d++) {
      const dep = `d${String(d).padStart(3, '0')}`;
      const eps: EndpointRecord[] = [];
      for (let e = 0; e < endpoints; e++) eps.push(endpoint('mem', 'p', dep, `e${String(e).padStart(4, '0')}`, upstream));
      await table.apply({ putDeployments: [deployment('mem', 'p', dep, userHash)], putEndpoints: eps });
    }
  } finally {
    await table.close();
  }
  return deployments * endpoints;
}

/** How `startGatewayProcess` runs `portico gateway`. */
export interface GatewayProcessOptions {
  readonly redisUrl: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly accessLog: string;
  readonly workers?: number;
  readonly cacheSize?: number;
  readonly cpus?: string;
  /** Extra Node flags (e.g. `--cpu-prof`). */
  readonly nodeFlags?: readonly string[];
  /** Another copy of the repository to run the gateway from (default this one): before/after comparisons. */
  readonly root?: string;
  /**
   * Run `node bin/portico.ts gateway` as the container image does: Node flags only from
   * `NODE_OPTIONS` (the script's first line, with its own flags, is not used).
   */
  readonly direct?: boolean;
  /** A script to run instead of `bin/portico.ts gateway` (experiments). */
  readonly entry?: string;
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts `node bin/portico.ts gateway` with only the given configuration in its environment. */
export function startGatewayProcess(procs: Procs, o: GatewayProcessOptions): Proc {
  const env: NodeJS.ProcessEnv = {
    PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? '/root',
    PORTICO_REDIS_URL: o.redisUrl,
    PORTICO_GATEWAY_PORT: String(o.port),
    PORTICO_METRICS_PORT: String(o.metricsPort),
    PORTICO_ACCESS_LOG: o.accessLog,
    PORTICO_GATEWAY_WORKERS: String(o.workers ?? 1),
    PORTICO_CACHE_SIZE: String(o.cacheSize ?? 10_000),
    PORTICO_DRAIN_SECONDS: '5',
    PORTICO_LOG_LEVEL: 'warn',
    ...o.env,
  };
  const name = `portico gateway (${o.workers ?? 1} worker${(o.workers ?? 1) > 1 ? 's' : ''})`;
  const script = o.root === undefined ? PORTICO : join(o.root, 'bin', 'portico.ts');
  // As shipped: the script itself, so its first line (`env -S ... node <flags>`) applies.
  if (o.entry === undefined && (o.nodeFlags ?? []).length === 0 && o.direct !== true) return procs.start(name, script, ['gateway'], { cpus: o.cpus, env });
  const args = o.entry !== undefined ? [o.entry] : [script, 'gateway'];
  return procs.start(name, NODE, [...(o.nodeFlags ?? []), ...args], { cpus: o.cpus, env });
}
