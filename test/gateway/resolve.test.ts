import t from 'tap';
import { PorticoError } from '../../common/errors.ts';
import { Exchange, HANDLED, type StageResult } from '../../gateway/exchange.ts';
import { pickVersion, resolveDeployment, resolveEndpoint, type RouteSource } from '../../gateway/resolve.ts';
import { deploymentKey, endpointKey, type DeploymentRecord, type EndpointRecord } from '../../gateway/routing/contract.ts';
import { deployment, endpoint } from './fixtures.ts';
import type { IncomingMessage } from 'node:http';

t.test('pickVersion: single target, weights by share, zero weights never picked', async (t) => {
  t.equal(pickVersion({ version: 'v1' }), 'v1');
  const alias = { versions: [{ version: 'a', weight: 10 }, { version: 'b', weight: 0 }, { version: 'c', weight: 90 }] };
  // Deterministic: sweep the random source over [0, 1).
  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const v = pickVersion(alias, () => i / 1000) as string;
    counts[v] = (counts[v] ?? 0) + 1;
  }
  t.same(counts, { a: 100, c: 900 });
  t.equal(pickVersion(alias, () => 0.9999999999), 'c');
  t.equal(pickVersion({ versions: [] }), undefined);
  t.equal(pickVersion({ versions: [{ version: 'x', weight: 0 }] }), 'x', 'all-zero weights fall back to the first');
});

/** A route source over a map; `down` makes loads reject; counts loads. */
function source(records: Record<string, DeploymentRecord | EndpointRecord>, opts: { cached?: boolean; down?: boolean } = {}) {
  const loads: string[] = [];
  const src: RouteSource = {
    peekDeployment: (k) => (opts.cached ? ((records[k] as DeploymentRecord) ?? null) : undefined),
    peekEndpoint: (k) => (opts.cached ? ((records[k] as EndpointRecord) ?? null) : undefined),
    loadDeployment: async (k) => {
      loads.push(k);
      if (opts.down) throw new Error('table down');
      return (records[k] as DeploymentRecord) ?? null;
    },
    loadEndpoint: async (k) => {
      loads.push(k);
      if (opts.down) throw new Error('table down');
      return (records[k] as EndpointRecord) ?? null;
    },
  };
  return { src, loads };
}

function exchange(target: string): Exchange {
  const ex = new Exchange({ url: '/', method: 'GET', rawHeaders: [] } as unknown as IncomingMessage, null, null, null);
  Object.assign(ex, { owner: 'acme', project: 'mnist', deployment: 'web', target, endpoint: 'predict' });
  return ex;
}

async function runBoth(src: RouteSource, ex: Exchange): Promise<StageResult> {
  const a = await resolveDeployment(src)(ex);
  if (a !== undefined) return a;
  return resolveEndpoint(src, 1234)(ex);
}

const d = deployment({ aliases: { production: { version: 'v1' }, canary: { versions: [{ version: 'v1', weight: 50 }, { version: 'v2', weight: 50 }] } } });
const records = {
  [deploymentKey(d)]: d,
  [endpointKey(endpoint('v1', ['127.0.0.1:1']))]: endpoint('v1', ['127.0.0.1:1'], { maxBodyBytes: 10 }),
  [endpointKey(endpoint('v2', []))]: endpoint('v2', []),
};

t.test('alias, version and unknown names resolve (cached: synchronously)', async (t) => {
  const { src, loads } = source(records, { cached: true });
  const ex = exchange('production');
  t.equal(resolveDeployment(src)(ex), undefined, 'synchronous when cached');
  t.equal(resolveEndpoint(src, 1234)(ex), undefined);
  t.equal(ex.version, 'v1');
  t.equal(ex.maxBodyBytes, 10, 'the endpoint limit wins');
  t.equal(loads.length, 0);

  const byVersion = exchange('v1');
  t.equal(await runBoth(src, byVersion), undefined);
  t.equal(byVersion.version, 'v1');

  for (const [target, code] of [['v9', 'ROUTE_NOT_FOUND'], ['__proto__', 'ROUTE_NOT_FOUND'], ['constructor', 'ROUTE_NOT_FOUND'], ['v2', 'NO_READY_REPLICA']] as const) {
    const r = await runBoth(src, exchange(target));
    t.ok(r instanceof PorticoError && r.code === code, `${target}: ${code}`);
  }
  const noDeployment = exchange('v1');
  noDeployment.deployment = 'nope';
  const r = await runBoth(src, noDeployment);
  t.ok(r instanceof PorticoError && r.code === 'ROUTE_NOT_FOUND');
  const noReplica = await runBoth(src, exchange('v2'));
  t.equal((noReplica as PorticoError).headers?.['retry-after'], '5');
  t.not(noReplica, HANDLED);
});

t.test('uncached routes load; a table that is down is 503 ROUTING_UNAVAILABLE with Retry-After', async (t) => {
  const { src, loads } = source(records);
  const ex = exchange('production');
  t.equal(await runBoth(src, ex), undefined);
  t.same(loads, [deploymentKey(d), endpointKey(endpoint('v1', []))]);
  t.equal(ex.maxBodyBytes, 10);
  const down = source(records, { down: true });
  const r = (await runBoth(down.src, exchange('production'))) as PorticoError;
  t.equal(r.code, 'ROUTING_UNAVAILABLE');
  t.equal(r.statusCode, 503);
  t.equal(r.headers?.['retry-after'], '1');
});

t.test('keys are right whatever the previous request named (the last keys are reused)', async (t) => {
  const { src, loads } = source(records);
  const names: [string, string, string, string][] = [
    ['acme', 'mnist', 'web', 'v1'],
    ['acme', 'mnist', 'web', 'v2'],
    ['acme', 'mnist', 'api', 'v1'],
    ['acme', 'other', 'web', 'v1'],
    ['zeta', 'mnist', 'web', 'v1'],
    ['acme', 'mnist', 'web', 'v1'],
  ];
  for (const [owner, project, deployment, target] of [...names, ...names.reverse()]) {
    const ex = exchange(target);
    Object.assign(ex, { owner, project, deployment });
    loads.length = 0;
    await runBoth(src, ex);
    t.equal(ex.deploymentKey, deploymentKey({ owner, project, deployment }), `${owner}/${project}/${deployment}`);
    t.equal(loads[0], ex.deploymentKey, 'and that key was read');
    if (ex.endpointKey !== '') t.equal(ex.endpointKey, endpointKey({ owner, project, deployment, version: ex.version, endpoint: 'predict' }));
  }
});

t.test('the default body limit applies when the endpoint sets none', async (t) => {
  const { src } = source(records, { cached: true });
  const ex = exchange('canary');
  // canary picks v1 or v2; force v1 through the random source.
  await resolveDeployment(src)(ex);
  t.equal(resolveEndpoint(src, 1234, () => 0.1)(ex), undefined);
  t.equal(ex.version, 'v1');
  const other = exchange('canary');
  await resolveDeployment(src)(other);
  const r = resolveEndpoint(src, 1234, () => 0.9)(other) as PorticoError;
  t.equal(other.version, 'v2');
  t.equal(r.code, 'NO_READY_REPLICA');
  t.equal(other.maxBodyBytes, 1234);
});
