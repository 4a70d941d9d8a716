// The README's quick start, for real: `portico start`, both examples deployed through the admin
// API, called through version and alias URLs with basic auth, an alias flipped under load.
import t from 'tap';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir, startPortico, type PorticoProcess } from '../helpers/portico.ts';

const NODE_EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const PY_EXAMPLE = join(ROOT, 'examples', 'python-iris');
const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;

async function deployVersion(p: PorticoProcess, deployment: string, body: object): Promise<string> {
  const created = await p.api('POST', `/projects/acme/mnist/deployments/${deployment}/versions`, body);
  if (created.status !== 202) throw new Error(`POST versions: ${created.status} ${JSON.stringify(created.body)}`);
  const name = created.body.name as string;
  const v = await waitFor(
    async () => {
      const r = await p.api('GET', `/projects/acme/mnist/deployments/${deployment}/versions/${name}`);
      if (r.body.status === 'failed') throw new Error(`version failed: ${r.body.reason}`);
      return r.body.status === 'ready' ? r.body : undefined;
    },
    { timeoutMs: 30_000, what: `version ${name} ready` },
  );
  return v.name as string;
}

t.test('deploy, call, alias and flip under load', async (t) => {
  const p = await startPortico();
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });

  // A deployment protected by basic auth, with one user.
  t.equal((await p.api('POST', '/projects/acme/mnist/deployments', { name: 'web', auth: 'basic' })).status, 201);
  t.equal((await p.api('PUT', '/projects/acme/mnist/deployments/web/users/alice', { password: 'correct horse' })).status, 200);
  const auth = basic('alice', 'correct horse');

  const v1 = await deployVersion(p, 'web', { source: { path: NODE_EXAMPLE }, endpoints: { sentiment: { replicas: 2 } } });
  const v2 = await deployVersion(p, 'web', { source: { path: NODE_EXAMPLE } });
  t.not(v1, v2);
  t.match(v1, /^\d{8}\.\d+$/);

  // Version URL, with and without credentials.
  const url = `${p.gatewayUrl}/acme/mnist/web/${v1}/sentiment`;
  const denied = await request(url);
  t.equal(denied.statusCode, 401);
  t.match(denied.headers['www-authenticate'], /^Basic realm=/);
  t.equal((await denied.body.json() as { code: string }).code, 'AUTH_REQUIRED');
  const wrong = await request(url, { headers: { authorization: basic('alice', 'nope') } });
  t.equal(wrong.statusCode, 401);
  await wrong.body.dump();
  const ok = await request(url, { method: 'POST', headers: { authorization: auth }, body: JSON.stringify({ text: 'great and fast' }) });
  t.equal(ok.statusCode, 200);
  t.equal(ok.headers['x-portico-version'], v1);
  t.match(ok.headers['x-request-id'], /\S/);
  t.same(await ok.body.json(), { score: 3, label: 'positive', words: 3, prefix: `/acme/mnist/web/${v1}/sentiment` });

  // Alias URL: the replica sees the canonical path and the client's prefix.
  const put = await p.api('PUT', '/projects/acme/mnist/deployments/web/aliases/production', { version: v1 });
  t.equal(put.status, 200);
  t.same(put.body.missing, []);
  const viaAlias = await request(`${p.gatewayUrl}/acme/mnist/web/production/sentiment/x?y=1`, { headers: { authorization: auth } });
  t.equal(viaAlias.statusCode, 200);
  t.equal(viaAlias.headers['x-portico-version'], v1);
  const info = (await viaAlias.body.json()) as { path: string; clientPrefix: string };
  t.equal(info.path, `/acme/mnist/web/${v1}/sentiment/x?y=1`);
  t.equal(info.clientPrefix, '/acme/mnist/web/production/sentiment');

  // The Python WSGI example in the same deployment.
  const py = await deployVersion(p, 'web', { source: { path: PY_EXAMPLE } });
  const iris = await request(`${p.gatewayUrl}/acme/mnist/web/${py}/iris`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ sepal_length: 6.7, sepal_width: 3.0, petal_length: 5.6, petal_width: 2.1 }),
  });
  t.equal(iris.statusCode, 200);
  t.equal(((await iris.body.json()) as { class: string }).class, 'virginica');
  const irisInfo = await request(`${p.gatewayUrl}/acme/mnist/web/${py}/iris/about`, { headers: { authorization: auth } });
  t.match(await irisInfo.body.json(), { script_name: `/acme/mnist/web/${py}/iris`, path_info: '/about' });

  // Flip the alias 4 times under load from 50 connections: no failure, each response from
  // exactly one version (header and body agree), none from the old version after a PUT returned.
  const agent = new Agent({ connections: 50 });
  t.teardown(() => agent.close());
  const seen = new Map<string, number>();
  const failures: string[] = [];
  const records: { sent: number; received: number; version: string }[] = [];
  let stop = false;
  const worker = async () => {
    while (!stop) {
      const sent = performance.now();
      try {
        const res = await request(`${p.gatewayUrl}/acme/mnist/web/production/sentiment`, {
          dispatcher: agent,
          method: 'POST',
          headers: { authorization: auth },
          body: '{"text":"good"}',
        });
        const body = (await res.body.json()) as { prefix?: string };
        const version = String(res.headers['x-portico-version']);
        if (res.statusCode !== 200) failures.push(`status ${res.statusCode}`);
        else if (body.prefix !== `/acme/mnist/web/${version}/sentiment`) failures.push(`header ${version} but body ${body.prefix}`);
        seen.set(version, (seen.get(version) ?? 0) + 1);
        records.push({ sent, received: performance.now(), version });
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const workers = Array.from({ length: 50 }, worker);
  const flips: { started: number; returned: number; version: string }[] = [];
  for (const target of [v2, v1, v2, v1]) {
    const before = records.length;
    await waitFor(() => records.length >= before + 100, { what: 'traffic between flips' });
    const started = performance.now();
    const r = await p.api('PUT', '/projects/acme/mnist/deployments/web/aliases/production', { version: target });
    const returned = performance.now();
    t.equal(r.status, 200);
    t.same(r.body.missing, [], 'every gateway acknowledged');
    flips.push({ started, returned, version: target });
  }
  const last = records.length;
  await waitFor(() => records.length >= last + 100, { what: 'traffic after the last flip' });
  stop = true;
  await Promise.all(workers);

  t.same(failures, [], 'no failed request');
  t.ok((seen.get(v1) ?? 0) > 0 && (seen.get(v2) ?? 0) > 0, `both versions served: ${JSON.stringify([...seen])}`);
  t.same([...seen.keys()].sort(), [v1, v2].sort(), 'only the two versions');
  // A request sent after PUT i returned must see version i, unless PUT i+1 had already started
  // before its response came back (then either version is right).
  let stale = 0;
  let checked = 0;
  for (const r of records) {
    const i = flips.findLastIndex((f) => f.returned <= r.sent);
    if (i === -1) continue;
    const next = flips[i + 1];
    if (next && next.started <= r.received) continue;
    checked++;
    if (r.version !== flips[i]?.version) stale++;
  }
  t.ok(checked > 200, `enough requests checked (${checked})`);
  t.equal(stale, 0, `no request sent after a PUT returned reached the old version (of ${records.length})`);

  // History keeps every change, newest first, with who did it.
  const history = await p.api('GET', '/projects/acme/mnist/deployments/web/aliases/production/history');
  t.equal(history.body.items.length, 5);
  t.same(history.body.items[0].to, { version: v1 });
  t.same(history.body.items[0].from, { version: v2 });
  t.equal(history.body.items[0].by, 'admin');

  // A weighted alias (canary): 80/20 split per request, both versions answer.
  const canary = await p.api('PUT', '/projects/acme/mnist/deployments/web/aliases/canary', { versions: [{ version: v1, weight: 80 }, { version: v2, weight: 20 }] });
  t.equal(canary.status, 200);
  t.same(canary.body.versions, [{ version: v1, weight: 80 }, { version: v2, weight: 20 }]);
  const split = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const res = await request(`${p.gatewayUrl}/acme/mnist/web/canary/sentiment`, { dispatcher: agent, headers: { authorization: auth } });
    await res.body.dump();
    const v = String(res.headers['x-portico-version']);
    split.set(v, (split.get(v) ?? 0) + 1);
  }
  const share = (split.get(v2) ?? 0) / 300;
  t.ok(share > 0.1 && share < 0.3, `about 20% to ${v2}: ${Math.round(share * 100)}%`);
  const badWeights = await p.api('PUT', '/projects/acme/mnist/deployments/web/aliases/canary', { versions: [{ version: v1, weight: 80 }, { version: v2, weight: 30 }] });
  t.equal(badWeights.status, 400);
});
