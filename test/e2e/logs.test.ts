// Logs through the real controller: a replica printing a project secret shows `********`
// everywhere (lines, search, vh_metadata strings), filters, NDJSON follow, a build log followed
// until the build ends, and `portico logs -f` in a terminal.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { request } from 'undici';
import { waitFor } from '../helpers/poll.ts';
import { NODE, PORTICO, ROOT, removeDataDir, startPortico, type PorticoProcess } from '../helpers/portico.ts';

const PROBE = join(ROOT, 'test', 'fixtures', 'apps', 'telemetry');
const D = '/projects/acme/nlp/deployments/web';
const SECRET = 's3cr3t-Value-42';

interface Line {
  at: number;
  replica?: string;
  stream: string;
  line: string;
}

async function ready(p: PorticoProcess, name: string): Promise<void> {
  await waitFor(async () => {
    const v = await p.api('GET', `${D}/versions/${name}`);
    if (v.body.status === 'failed') throw new Error(`version failed: ${v.body.reason}`);
    return v.body.status === 'ready';
  }, { timeoutMs: 30_000, what: `version ${name} ready` });
}

/** Follows an NDJSON stream of the admin API, collecting lines until `signal` aborts. */
function follow(p: PorticoProcess, path: string, signal: AbortSignal): { lines: Line[]; done: Promise<void> } {
  const lines: Line[] = [];
  const done = (async () => {
    const res = await request(`${p.adminUrl}/api/v1${path}`, { headers: { authorization: `Bearer ${p.token}` }, signal });
    if (res.statusCode !== 200) throw new Error(`follow: ${res.statusCode} ${await res.body.text()}`);
    t.match(res.headers['content-type'], /^application\/x-ndjson/);
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += chunk.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) !== -1) {
          const text = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (text) lines.push(JSON.parse(text) as Line);
        }
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  })();
  return { lines, done };
}

t.test('logs: secrets masked, filters, follow, build log follow, portico logs -f', async (t) => {
  const p = await startPortico();
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });
  t.equal((await p.api('PUT', '/projects/acme/nlp/environment', { variables: { SECRET_TOKEN: { value: SECRET, secret: true } } })).status, 200);
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);

  // The build log, followed from the moment the version is created: it ends with the build.
  const created = await p.api('POST', `${D}/versions`, { source: { path: PROBE }, endpoints: { probe: { replicas: 2 } } });
  t.equal(created.status, 202);
  const v = created.body.name as string;
  const build = await request(`${p.adminUrl}/api/v1${D}/versions/${v}/build-log?follow=true`, { headers: { authorization: `Bearer ${p.token}` } });
  t.equal(build.statusCode, 200);
  const buildLines = (await build.body.text()).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
  t.ok(buildLines.some((l) => /^build finished/.test(l.line)), 'the followed build log ran to the end of the build');
  t.ok(buildLines.every((l) => l.stream === 'build'));
  await ready(p, v);
  const view = (await p.api('GET', `${D}/versions/${v}`)).body;
  t.same([view.environment, view.secretEnvironment], [['SECRET_TOKEN'], ['SECRET_TOKEN']], 'the version knows its inherited variable is a secret (kubernetes passes it through a Secret)');
  const own = await p.api('POST', `${D}/versions`, { source: { path: PROBE }, environment: { SECRET_TOKEN: 'given-for-this-version' }, endpoints: { probe: { replicas: 0 } } });
  t.equal(own.status, 202);
  t.same([own.body.environment, own.body.secretEnvironment], [['SECRET_TOKEN'], []], 'a value given for the version itself is not the project\'s secret');
  const done = await p.api('GET', `${D}/versions/${v}/build-log?follow=true&tail=1`);
  t.equal(done.status, 200, 'following a finished build answers its lines and ends');
  t.match(done.body, { stream: 'build', line: /^build finished/ }, 'one NDJSON line: the last');

  const L = (q = '') => p.api('GET', `${D}/versions/${v}/endpoints/probe/logs${q}`);
  const url = `${p.gatewayUrl}/acme/nlp/web/${v}/probe`;
  const started = await waitFor(async () => {
    const items = (await L('?contains=starting')).body.items as Line[];
    return items.length === 2 ? items : undefined;
  }, { what: 'both replicas\' start lines' });
  t.same(started.map((l) => l.line), ['starting with token ********', 'starting with token ********'], 'the secret is masked');
  for (let i = 0; i < 6; i++) t.equal((await request(`${url}?say=hello-${i}&token=1&label=x`)).statusCode, 200);
  const all = await waitFor(async () => {
    const items = (await L('?tail=1000')).body.items as Line[];
    return items.filter((l) => l.line.startsWith('hello-')).length === 6 ? items : undefined;
  }, { what: 'the request lines' });
  t.notOk(JSON.stringify(all).includes(SECRET), 'the secret appears nowhere in the logs');
  t.ok(all.some((l) => l.line === '{"vh_metadata":{"status":200,"label":"x","token":"********"}}'), 'nor in vh_metadata lines');
  t.same((await L(`?contains=${encodeURIComponent(SECRET)}`)).body.items, [], 'searching for the secret finds nothing');
  const tokens = await waitFor(async () => {
    const r = await p.api('GET', `${D}/versions/${v}/endpoints/probe/metrics?key=token&mode=histogram`);
    return r.body.count === 6 ? r.body : undefined;
  }, { what: 'token metrics' });
  t.same(tokens.categories, [{ value: '********', count: 6 }], 'metric strings are masked');

  // Filters.
  const replicas = [...new Set(all.map((l) => l.replica))].sort();
  t.equal(replicas.length, 2);
  const one = (await L(`?replica=${replicas[0]}&tail=1000`)).body.items as Line[];
  t.ok(one.length > 0 && one.every((l) => l.replica === replicas[0]), 'one replica');
  const hellos = all.filter((l) => l.line.startsWith('hello-'));
  const since = (await L(`?since=${hellos[3]!.at}&contains=hello-`)).body.items as Line[];
  t.ok(since.length >= 3 && since.every((l) => l.at >= hellos[3]!.at), 'since');
  const until = (await L(`?until=${hellos[0]!.at}&contains=hello-`)).body.items as Line[];
  t.ok(until.every((l) => l.at < hellos[0]!.at), 'until is exclusive');
  // Lines of two replicas arrive in the order the controller reads them, not always printed order.
  t.same(((await L('?contains=hello-&tail=2')).body.items as Line[]).map((l) => l.line), hellos.slice(-2).map((l) => l.line), 'tail of the matches');

  // Follow over HTTP: new lines arrive until the client leaves.
  const ac = new AbortController();
  const f = follow(p, `${D}/versions/${v}/endpoints/probe/logs?follow=true&tail=0&contains=followed`, ac.signal);
  await waitFor(async () => {
    await request(`${url}?say=followed-line`).then((r) => r.body.dump());
    return f.lines.length > 0;
  }, { what: 'a followed line' });
  t.equal(f.lines[0]!.line, 'followed-line');
  ac.abort();
  await f.done;

  // portico logs -f in a terminal, against the real controller.
  const cli = spawn(NODE, [PORTICO, 'logs', '-f', v, 'probe', '--owner', 'acme', '--project', 'nlp', '--deployment', 'web', '--tail', '2'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', PORTICO_URL: p.adminUrl, PORTICO_ADMIN_TOKEN: p.token },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
  cli.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (cli.exitCode === null) cli.kill('SIGKILL');
  });
  await waitFor(() => out.split('\n').filter((l) => l !== '').length >= 2, { what: 'the CLI printing the last lines' });
  await waitFor(async () => {
    await request(`${url}?say=seen-by-the-cli`).then((r) => r.body.dump());
    return out.includes('seen-by-the-cli');
  }, { what: 'the CLI following a new line' });
  t.match(out, new RegExp(`\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z ${v.replace('.', '\\.')}|\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\S+ seen-by-the-cli`), 'time, replica, line');
  t.notMatch(out, SECRET);
  cli.kill('SIGINT');
  t.equal(await exited, 0, 'Ctrl-C ends it cleanly');
});
