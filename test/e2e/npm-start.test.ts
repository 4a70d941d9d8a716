// The README's own start command under a supervisor: `npm start` stopped with SIGTERM sent to
// npm (what a process manager or a container runtime does) drains Portico and exits 0. With a
// shell between npm and Portico, the shell died of the signal and Portico was left running,
// orphaned, with its ports and replicas.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir } from '../helpers/portico.ts';

t.test('npm start stopped with SIGTERM to npm: Portico drains and exits, npm exits 0', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-npm-start-'));
  t.teardown(() => removeDataDir(dataDir));
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
  });
  const npm = spawn('npm', ['start'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => npm.once('exit', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
  });
  const ready = async (url: string) => {
    const res = await request(url).catch(() => null);
    if (res === null) return false;
    await res.body.dump();
    return res.statusCode === 200;
  };
  await waitFor(async () => {
    if (npm.exitCode !== null) throw new Error(`npm start exited with ${npm.exitCode}:\n${out}`);
    return (await ready(`http://127.0.0.1:${gateway}/readyz`)) && (await ready(`http://127.0.0.1:${admin}/healthz`));
  }, { timeoutMs: 30_000, what: 'npm start to be ready' });

  npm.kill('SIGTERM');
  const { code, signal } = await exited;
  t.equal(code, 0, `npm exits 0 after Portico's drain (signal ${signal})\n${out.slice(-2000)}`);
  t.match(out, /"msg":"stopping","signal":"SIGTERM"/, 'Portico itself got the SIGTERM');
  for (const port of [gateway, admin, metrics]) {
    const err = await request(`http://127.0.0.1:${port}/healthz`).then(
      async (res) => {
        await res.body.dump();
        return null;
      },
      (e: NodeJS.ErrnoException) => e,
    );
    t.equal(err?.code, 'ECONNREFUSED', `nothing listens on ${port} any more (no orphaned Portico)`);
  }
});
