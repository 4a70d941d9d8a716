// The README's own start command under a supervisor or a terminal: `npm start` stopped with
// SIGTERM sent to npm (what a process manager does), or with Ctrl-C (SIGINT to the whole
// process group, which npm also passes on), drains Portico, stops its replicas and exits 0.
// With a shell between npm and Portico, a SIGTERM to npm killed only the shell and left Portico
// running, orphaned; with the shell gone, the copy npm passed on of a Ctrl-C killed Portico in
// the middle of its stop and left its replicas running.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, waitFor } from '../helpers/poll.ts';
import { ROOT, callApi, killReplicas, removeDataDir } from '../helpers/portico.ts';
import type { Tap } from '../gateway/fixtures.ts';

interface NpmStart {
  readonly npm: ChildProcess;
  readonly ports: readonly number[];
  readonly adminUrl: string;
  readonly dataDir: string;
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function answers(url: string): Promise<boolean> {
  const res = await request(url).catch(() => null);
  if (res === null) return false;
  await res.body.dump();
  return res.statusCode === 200;
}

async function refused(url: string): Promise<string | undefined> {
  return request(url).then(
    async (res) => {
      await res.body.dump();
      return undefined;
    },
    (e: NodeJS.ErrnoException) => e.code,
  );
}

/** `npm start` in the repository, in a process group of its own, ready. */
async function npmStart(t: Tap): Promise<NpmStart> {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-npm-start-'));
  t.teardown(async () => {
    killReplicas(dataDir);
    await removeDataDir(dataDir);
  });
  const [gateway, admin, metrics] = [await freePort(), await freePort(), await freePort()];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTICO_') && !k.startsWith('npm_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    PORTICO_DATA_DIR: dataDir,
    PORTICO_GATEWAY_PORT: String(gateway),
    PORTICO_ADMIN_PORT: String(admin),
    PORTICO_METRICS_PORT: String(metrics),
    PORTICO_ACCESS_LOG: 'off',
    PORTICO_DRAIN_SECONDS: '5',
    PORTICO_STOP_GRACE_SECONDS: '3',
  });
  const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  npm.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => npm.once('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    try {
      if (npm.pid !== undefined) process.kill(-npm.pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
  });
  const adminUrl = `http://127.0.0.1:${admin}`;
  await waitFor(async () => {
    if (npm.exitCode !== null) throw new Error(`npm start exited with ${npm.exitCode}:\n${out}`);
    return (await answers(`http://127.0.0.1:${gateway}/readyz`)) && (await answers(`${adminUrl}/healthz`));
  }, { timeoutMs: 30_000, what: 'npm start to be ready' });
  return { npm, ports: [gateway, admin, metrics], adminUrl, dataDir, output: () => out, exited };
}

t.test('npm start stopped with SIGTERM to npm: Portico drains and exits, npm exits 0', async (t) => {
  const s = await npmStart(t);
  s.npm.kill('SIGTERM');
  const { code, signal } = await s.exited;
  t.equal(code, 0, `npm exits 0 after Portico's drain, not by a signal (${signal})`);
  if (code !== 0) t.comment(s.output().slice(-2000));
  t.match(s.output(), /"msg":"stopping","signal":"SIGTERM"/, 'Portico itself got the SIGTERM');
  for (const port of s.ports) t.equal(await refused(`http://127.0.0.1:${port}/healthz`), 'ECONNREFUSED', `nothing listens on ${port} any more (no orphaned Portico)`);
});

t.test('npm start stopped with Ctrl-C (SIGINT to its process group): one stop, replicas stopped, npm exits 0', async (t) => {
  const s = await npmStart(t);
  const token = readFileSync(join(s.dataDir, 'admin-token'), 'utf8').trim();
  const api = (method: string, path: string, body?: unknown) => callApi(s.adminUrl, token, method, path, body);
  const D = '/projects/acme/nlp/deployments/web';
  t.equal((await api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const name = (await api('POST', `${D}/versions`, { source: { path: join(ROOT, 'examples', 'node-sentiment') } })).body.name as string;
  const v = await waitFor(async () => {
    const r = (await api('GET', `${D}/versions/${name}`)).body;
    if (r.status === 'failed') throw new Error(`version failed: ${r.reason}`);
    return r.status === 'ready' ? r : undefined;
  }, { timeoutMs: 30_000, what: 'the version to be ready' });
  const replicas = (v.endpoints as { replicas: { address: string }[] }[]).flatMap((e) => e.replicas.map((r) => r.address));
  t.ok(replicas.length > 0, `replicas at ${replicas.join(', ')}`);

  process.kill(-(s.npm.pid as number), 'SIGINT');
  const { code, signal } = await s.exited;
  t.equal(code, 0, `npm exits 0 after Portico's stop, not by a signal (${signal})`);
  if (code !== 0) t.comment(s.output().slice(-2000));
  t.equal(s.output().match(/"msg":"stopping"/g)?.length, 1, 'Portico stopped once');
  for (const port of s.ports) t.equal(await refused(`http://127.0.0.1:${port}/healthz`), 'ECONNREFUSED', `nothing listens on ${port} any more`);
  for (const address of replicas) t.equal(await refused(`http://${address}/`), 'ECONNREFUSED', `the replica at ${address} was stopped`);
});
