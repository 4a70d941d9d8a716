// One active controller on Redis (design.md): `portico controller` processes sharing a real
// redis-server. A second one waits; it takes over when the first is killed (after the lease
// expires) or stopped (at once); one that stalls past its lease and comes back finds it taken
// and exits.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, waitFor } from '../helpers/poll.ts';
import { NODE, PORTICO, startPortico, type PorticoProcess } from '../helpers/portico.ts';
import { startRedis } from '../helpers/redis.ts';

const WAITING = /another controller is active on this store \(process (\d+) on /;

t.test('controllers on one Redis: one active, the next waits and takes over', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const env = { PORTICO_REDIS_URL: redis.url, PORTICO_CONTROLLER_LEASE_SECONDS: '2', PORTICO_ADMIN_TOKEN: 'l'.repeat(40) };
  const procs: PorticoProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) await p.kill();
  });
  /** `portico controller` in its own data directory (another machine); `printed` has what it said so far. */
  const controller = async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portico-lease-'));
    t.teardown(() => rm(dataDir, { recursive: true, force: true }));
    let printed = '';
    const ready = startPortico({ command: 'controller', dataDir, env, onOutput: (s) => (printed += s) }).then((p) => {
      procs.push(p);
      return p;
    });
    return { ready, printed: () => printed };
  };
  const answers = async (p: PorticoProcess) => (await p.api('GET', '/projects/acme/nlp/deployments')).status === 200;

  const a = await (await controller()).ready;
  t.ok(await answers(a), 'the first controller is active');

  // A second one waits, naming the first, and does not serve meanwhile.
  const b = await controller();
  await waitFor(() => WAITING.test(b.printed()), { what: 'the second controller to say it waits' });
  t.equal(WAITING.exec(b.printed())?.[1], String(a.process.pid), 'it names the active one');
  const early = await Promise.race([b.ready.then(() => 'ready'), new Promise((r) => setTimeout(r, 3000, 'waiting'))]);
  t.equal(early, 'waiting', 'while the first renews its lease, the second does not start (3 s, over the 2 s lease)');

  // The first is killed: the second takes over once its lease has expired.
  const killedAt = Date.now();
  await a.kill();
  const second = await b.ready;
  t.ok(Date.now() - killedAt < 15_000, `took over ${Date.now() - killedAt} ms after the SIGKILL (lease 2 s)`);
  t.ok(await answers(second));

  // A third waits; the second stops cleanly (SIGTERM) and lets the lease go at once.
  const c = await controller();
  await waitFor(() => WAITING.test(c.printed()), { what: 'the third controller to say it waits' });
  t.equal(await second.stop(), 0);
  const third = await c.ready;
  t.ok(await answers(third), 'the third is active');

  // The third stalls (SIGSTOP) past its lease: a fourth takes over; the third, resumed, finds the
  // lease taken and exits 1 rather than act beside it.
  const d = await controller();
  await waitFor(() => WAITING.test(d.printed()), { what: 'the fourth controller to say it waits' });
  third.process.kill('SIGSTOP');
  const fourth = await d.ready;
  const exited = new Promise<number | null>((resolve) => third.process.once('exit', resolve));
  third.process.kill('SIGCONT');
  t.equal(await exited, 1, 'the stalled controller exits 1 once it runs again');
  t.match(third.output(), /another controller \(process \d+ on [^)]+\) took over this store/, 'and says why');
  t.ok(await answers(fourth), 'the fourth is active');
  const healthz = await request(`${third.adminUrl}/healthz`).then((r) => r.statusCode, () => 'refused');
  t.equal(healthz, 'refused', 'the stalled one no longer serves');
});

t.test('a standby controller stopped while it waits for the lease exits 0 at once, as a stop does', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const env = { PORTICO_REDIS_URL: redis.url, PORTICO_CONTROLLER_LEASE_SECONDS: '2', PORTICO_ADMIN_TOKEN: 'l'.repeat(40) };
  const active = await startPortico({ command: 'controller', env });
  t.teardown(() => active.kill());
  // The standby, spawned by hand: it never becomes ready, which startPortico waits for.
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-lease-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const standby = spawn(NODE, [PORTICO, 'controller'], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', PORTICO_DATA_DIR: dataDir, PORTICO_ADMIN_PORT: String(await freePort()), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (standby.exitCode === null && standby.signalCode === null) standby.kill('SIGKILL');
  });
  let printed = '';
  standby.stdout.on('data', (d: Buffer) => (printed += d.toString()));
  standby.stderr.on('data', (d: Buffer) => (printed += d.toString()));
  const exited = new Promise<number | string | null>((resolve) => standby.once('exit', (code, signal) => resolve(code ?? signal)));
  await waitFor(() => WAITING.test(printed), { what: 'the standby to say it waits' });
  standby.kill('SIGTERM');
  t.equal(await exited, 0, `exit 0, not ended by the signal: ${printed}`);
  t.match(printed, /"msg":"stopped before starting"/);
  t.equal((await active.api('GET', '/projects/acme/nlp/deployments')).status, 200, 'the active one goes on');
});
