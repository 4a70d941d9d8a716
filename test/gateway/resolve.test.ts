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
  const ex = exchange('v2');
  await resolveDeployment(src)(ex);
  const r = resolveEndpoint(src, 1234)(ex) as PorticoError;
  t.equal(r.code, 'NO_READY_REPLICA');
  t.equal(ex.maxBodyBytes, 1234);
});

t.test('a weighted alias passes over a version that cannot serve the endpoint, by weight among the rest', async (t) => {
  const up = (v: string) => endpoint(v, [`127.0.0.1:${v.slice(1)}`]);
  const dw = deployment({
    aliases: {
      canary: { versions: [{ version: 'v1', weight: 50 }, { version: 'v2', weight: 50 }] },
      three: { versions: [{ version: 'v2', weight: 40 }, { version: 'v3', weight: 40 }, { version: 'v4', weight: 20 }, { version: 'v5', weight: 0 }] },
      none: { versions: [{ version: 'v2', weight: 50 }, { version: 'v9', weight: 50 }] },
      missing: { versions: [{ version: 'v8', weight: 50 }, { version: 'v9', weight: 50 }] },
    },
  });
  // v1, v4 and v5 serve; v2 has no ready replica; v3, v8 and v9 have no such endpoint.
  const recs = { [deploymentKey(dw)]: dw, [endpointKey(up('v1'))]: up('v1'), [endpointKey(up('v2'))]: endpoint('v2', []), [endpointKey(up('v4'))]: up('v4'), [endpointKey(up('v5'))]: up('v5') };
  for (const cached of [true, false]) {
    const { src } = source(recs, { cached });
    const resolve = async (target: string, r: number[]) => {
      const ex = exchange(target);
      const draws = [...r];
      t.equal(await resolveDeployment(src)(ex), undefined);
      const result = await resolveEndpoint(src, 1234, () => draws.shift() ?? 0)(ex);
      return { ex, result };
    };
    const picked = await resolve('canary', [0.9]);
    t.equal(picked.result, undefined, `${cached ? 'cached' : 'loaded'}: the canary without replicas is passed over`);
    t.equal(picked.ex.version, 'v1', 'the request goes to the version that serves');
    t.equal(picked.ex.endpointKey, endpointKey(up('v1')));
    t.equal((picked.ex.endpointRecord as EndpointRecord).version, 'v1');
    // v2 (no replica), then v3 (no endpoint) picked in turn: v4 is left, never v5 (weight 0).
    const far = await resolve('three', [0.1, 0.1]);
    t.equal(far.result, undefined);
    t.equal(far.ex.version, 'v4');
    const none = await resolve('none', [0.9]);
    t.equal((none.result as PorticoError).code, 'NO_READY_REPLICA', 'no version serves, one has the endpoint: 503');
    t.equal(none.ex.version, 'v2', 'named after the version that has it');
    t.equal((none.result as PorticoError).headers?.['retry-after'], '5');
    const missing = await resolve('missing', [0.1]);
    t.equal((missing.result as PorticoError).code, 'ROUTE_NOT_FOUND', 'no version has the endpoint: 404');
  }
  // The table goes down while a canary is passed over: a version that serves from the cache still
  // does; when none can be read, the outage is the answer.
  const partly: RouteSource = {
    ...source(recs, { cached: true }).src,
    peekEndpoint: (k) => (k === endpointKey(up('v2')) ? (recs[k] as EndpointRecord) : undefined),
    loadEndpoint: () => Promise.reject(new Error('table down')),
  };
  const ex = exchange('canary');
  await resolveDeployment(partly)(ex);
  const r = (await resolveEndpoint(partly, 1234, () => 0.9)(ex)) as PorticoError;
  t.equal(r.code, 'ROUTING_UNAVAILABLE');
});
