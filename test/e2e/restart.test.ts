// SIGKILL the whole `portico start` process (controller + gateway) and start it again on the
// same data directory: replicas keep running, the new controller adopts them, and the alias
// URL serves again within seconds, from the same replica processes.
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, processAlive, waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir, startPortico } from '../helpers/portico.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');

t.test('controller killed and restarted: replicas adopted, serving again within seconds', async (t) => {
  const ports = { gateway: await freePort(), admin: await freePort(), metrics: await freePort() };
  const first = await startPortico({ ports });
  const dataDir = first.dataDir;
  let second: Awaited<ReturnType<typeof startPortico>> | undefined;
  t.teardown(async () => {
    await first.kill();
    await second?.stop();
    await removeDataDir(dataDir);
  });

  t.equal((await first.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const created = await first.api('POST', '/projects/acme/nlp/deployments/web/versions', { source: { path: EXAMPLE }, endpoints: { sentiment: { replicas: 2 } } });
  t.equal(created.status, 202);
  const version = created.body.name as string;
  await waitFor(async () => (await first.api('GET', `/projects/acme/nlp/deployments/web/versions/${version}`)).body.status === 'ready', { timeoutMs: 30_000 });
  t.equal((await first.api('PUT', '/projects/acme/nlp/deployments/web/aliases/production', { version })).status, 200);

  const url = `${first.gatewayUrl}/acme/nlp/web/production/sentiment`;
  const pids = new Set<number>();
  await waitFor(async () => {
    const res = await request(url);
    pids.add(((await res.body.json()) as { pid: number }).pid);
    return pids.size === 2;
  }, { what: 'both replicas answering' });

  await first.kill();
  for (const pid of pids) t.ok(processAlive(pid), `replica ${pid} survives the controller's SIGKILL`);

  const restartedAt = performance.now();
  second = await startPortico({ ports, dataDir });
  const res = await waitFor(async () => {
    const r = await request(url);
    if (r.statusCode !== 200) {
      await r.body.dump();
      return undefined;
    }
    return r;
  }, { timeoutMs: 10_000, what: 'the alias URL after the restart' });
  const servedAfterMs = performance.now() - restartedAt;
  t.ok(servedAfterMs < 10_000, `served again ${Math.round(servedAfterMs)} ms after the restart began`);
  t.equal(res.headers['x-portico-version'], version);
  const pid = ((await res.body.json()) as { pid: number }).pid;
  t.ok(pids.has(pid), 'answered by an adopted replica, not a new one');

  const v = await second.api('GET', `/projects/acme/nlp/deployments/web/versions/${version}`);
  t.equal(v.body.status, 'ready');
  t.same(v.body.endpoints[0].replicas.map((r: { state: string }) => r.state), ['ready', 'ready']);

  // A clean stop of `portico start` stops the replicas it runs.
  t.equal(await second.stop(), 0);
  await waitFor(() => [...pids].every((p) => !processAlive(p)), { what: 'replicas stopped with portico' });
  second = undefined;
});
