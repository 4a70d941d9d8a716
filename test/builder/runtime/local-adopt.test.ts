import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { replicaLogDir } from '../../../builder/runtime/local.ts';
import { waitFor } from '../../helpers/poll.ts';
import { APPS, NODE, getJson, http, pidAlive, startRuntime } from './harness.ts';

// A controller restart: a new LocalRuntime on the same data directory adopts the replicas the
// previous one started (they are detached and write their output to files themselves).

const echoDir = join(APPS, 'node-echo');

t.test('a second runtime adopts a live replica: same pid, still serving, logs followed, removable', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const before = await h.waitReady(spec.key, 1);
  const address = before.replicas[0]!.address!;
  const pid = (await getJson<{ pid: number }>(address, '/env')).pid;

  await h.runtime.close();
  t.equal((await getJson<{ pid: number }>(address, '/env')).pid, pid, 'close() leaves replicas running');
  const state = JSON.parse(readFileSync(join(h.dataDir, 'replicas', 'local-runtime.json'), 'utf8'));
  t.match(state.endpoints[spec.key].replicas, [{ id: 'r1', pid, port: Number(address.split(':')[1]), specHash: 'h1' }]);

  const changes: string[] = [];
  await h.reopen();
  h.runtime.onChange((s) => changes.push(s.replicas.map((r) => r.state).join(',')));
  const adopted = await h.status(spec.key);
  t.match(adopted, { key: spec.key, replicas: [{ id: 'r1', address, state: 'ready' }] }, 'listed as ready at once');
  t.equal((await getJson<{ pid: number }>(address, '/env')).pid, pid, 'same process');

  // The reconciler ensures the same spec again: nothing is restarted.
  await h.runtime.ensure(spec);
  t.match(await h.status(spec.key), { replicas: [{ id: 'r1', address, state: 'ready' }] });
  t.equal((await h.status(spec.key))!.replicas.length, 1);

  // Output written after the adoption reaches the new runtime's sink, from the end of the file.
  const logsBefore = h.logs.length;
  await http('GET', `http://${address}/spam?lines=2&size=3`);
  await waitFor(() => h.logs.slice(logsBefore).filter((l) => l.line.startsWith('spam ')).length === 2, { what: 'adopted logs' });
  t.notOk(h.logs.slice(logsBefore).some((l) => l.line.startsWith('listening on')), 'old output is not replayed');

  await h.runtime.remove(spec.key);
  t.notOk(pidAlive(pid), 'the adopted replica is stopped by the new runtime');
  t.ok(h.events.includes('beforeStop:r1'));
  t.notOk(changes.some((c) => c.includes('crashed')), 'a stop is not a crash');
  t.same(await h.runtime.list(), []);
});

t.test('a replica that died while no controller ran is replaced on adoption', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const before = await h.waitReady(spec.key, 1);
  const pid = (await getJson<{ pid: number }>(before.replicas[0]!.address!, '/env')).pid;
  await h.runtime.close();
  process.kill(-pid, 'SIGKILL');
  await waitFor(() => !pidAlive(pid), { what: 'replica gone' });

  await h.reopen();
  const after = await h.waitReady(spec.key, 1);
  t.same(after.replicas.map((r) => r.id), ['r2'], 'a new replica (ids are not reused)');
  t.not((await getJson<{ pid: number }>(after.replicas[0]!.address!, '/env')).pid, pid);
  t.notOk(existsSync(join(replicaLogDir(h.dataDir, spec.key), 'r1.out.log')), 'the dead replica\'s files are deleted');
});

t.test('an adopted replica that exits later is seen by polling its pid and restarted', async (t) => {
  const h = await startRuntime(t, { timing: { exitPollMs: 50, logPollMs: 50 } });
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const before = await h.waitReady(spec.key, 1);
  const address = before.replicas[0]!.address!;
  const pid = (await getJson<{ pid: number }>(address, '/env')).pid;
  await h.reopen();
  await http('GET', `http://${address}/exit?code=5`);
  const crashed = await waitFor(() => h.statuses.flatMap((s) => s.replicas).find((r) => r.state === 'crashed'), { what: 'crash seen' });
  t.match(crashed.reason, /^exited \(exit status unknown: not started by this controller\)/);
  const again = await h.waitReady(spec.key, 1);
  t.match(again.replicas[0], { id: 'r1', restarts: 1 });
  t.not((await getJson<{ pid: number }>(again.replicas[0]!.address!, '/env')).pid, pid, 'a new process');
});
