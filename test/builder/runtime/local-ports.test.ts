import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { EndpointStatus } from '../../../builder/runtime/runtime.ts';
import { freePort, waitFor } from '../../helpers/poll.ts';
import { APPS, NODE, getJson, http, startRuntime } from './harness.ts';

// Replicas share one host: an app that ignores $PORT must never be published at an address
// another process answers, and the endpoint error must say what is wrong.

const fixedDir = join(APPS, 'fixed-port');

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer((sock) => {
      sock.on('error', () => {});
      sock.end('not a replica\n');
    });
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

const readyAddresses = (statuses: EndpointStatus[], key: string) =>
  new Set(statuses.filter((s) => s.key === key).flatMap((s) => s.replicas.filter((r) => r.state === 'ready').map((r) => r.address)));

t.test('an app hard-coding its declared port: one replica serves there, the second reports the clash', async (t) => {
  const h = await startRuntime(t, { restart: { initialMs: 100 } });
  const port = await freePort();
  const spec = h.spec({ replicas: 2, port, codeDir: fixedDir, command: { kind: 'exec', argv: [NODE, 'server.mjs', String(port)] } });
  await h.runtime.ensure(spec);
  const status = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.error && s.replicas.some((r) => r.state === 'ready') ? s : undefined;
  }, { what: 'one ready replica and an endpoint error' });
  t.match(status.error, `port ${port} is already in use: the app must listen on $PORT, or run one replica per host port`);
  const ready = status.replicas.filter((r) => r.state === 'ready');
  t.equal(ready.length, 1);
  t.equal(ready[0]!.address, `127.0.0.1:${port}`, 'published where its own socket listens');
  t.match(ready[0]!.reason, `listens on its declared port ${port}, not on $PORT`);
  const other = status.replicas.find((r) => r.state !== 'ready')!;
  t.match(other.reason, /EADDRINUSE/);
  const answered = await getJson<{ port: number }>(`127.0.0.1:${port}`);
  t.equal(answered.port, port);
  t.same([...readyAddresses(h.statuses, spec.key)], [`127.0.0.1:${port}`], 'never published anywhere else');
  t.ok(h.statuses.filter((s) => s.key === spec.key).every((s) => s.replicas.filter((r) => r.state === 'ready').length <= 1),
    'never two replicas on one address');
});

t.test('a hard-coded port held by another process: never ready, a clear error, no misroute', async (t) => {
  const h = await startRuntime(t, { restart: { initialMs: 100 } });
  const port = await freePort();
  const foreign = await listen(port);
  t.teardown(() => new Promise<void>((resolve) => foreign.close(() => resolve())));
  const spec = h.spec({ port, codeDir: fixedDir, command: { kind: 'exec', argv: [NODE, 'server.mjs', String(port)] } });
  await h.runtime.ensure(spec);
  const status = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.error ? s : undefined;
  }, { what: 'endpoint error' });
  t.match(status.error, new RegExp(`^port ${port} is already in use: the app must listen on \\$PORT, or run one replica per host port \\(replica r1 exited with code 1\\)`));
  t.equal(status.replicas[0]!.state, 'crashed');
  await waitFor(() => h.statuses.filter((s) => s.key === spec.key && s.replicas[0]?.state === 'crashed').length >= 2, { what: 'a restart' });
  t.same([...readyAddresses(h.statuses, spec.key)], [], 'the foreign listener is never published');
});

t.test('an app listening on some other port is not published and says why', async (t) => {
  const h = await startRuntime(t);
  const own = await freePort();
  const spec = h.spec({ port: 8000, codeDir: fixedDir, command: { kind: 'exec', argv: [NODE, 'server.mjs', String(own)] } });
  await h.runtime.ensure(spec);
  const status = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.error ? s : undefined;
  }, { what: 'endpoint error' });
  t.match(status.error, new RegExp(`^replica r1 listens on port ${own}, not on its assigned \\$PORT \\(\\d+\\): the app must listen on \\$PORT`));
  t.equal(status.replicas[0]!.state, 'starting', 'alive but never ready');
  t.equal(status.replicas[0]!.address, null);
  t.same([...readyAddresses(h.statuses, spec.key)], []);
});

t.test('an assigned port taken by someone else before the app binds it is never published', async (t) => {
  const port = await freePort();
  const h = await startRuntime(t, { restart: { initialMs: 100 }, portRange: { min: port, max: port } });
  const spec = h.spec({ codeDir: join(APPS, 'node-echo'), command: { kind: 'exec', argv: [NODE, 'server.mjs'] }, env: { START_DELAY_MS: '1500' } });
  await h.runtime.ensure(spec);
  await waitFor(async () => (await h.status(spec.key))?.replicas[0]?.state === 'starting', { what: 'starting' });
  // The app waits before it listens: another process grabs its port meanwhile.
  const foreign = await listen(port);
  const stolen = await waitFor(async () => {
    const r = (await h.status(spec.key))?.replicas[0];
    return r?.reason?.includes('answered by another process') || r?.reason?.includes('taken by another process') ? r : undefined;
  }, { what: 'stolen port noticed' });
  t.not(stolen.state, 'ready');
  t.same([...readyAddresses(h.statuses, spec.key)], [], 'the foreign listener is never published');
  await new Promise<void>((resolve) => foreign.close(() => resolve()));
  const s = await h.waitReady(spec.key, 1);
  t.equal(s.replicas[0]!.address, `127.0.0.1:${port}`, 'once the port is free again the replica gets it');
  const res = await http('GET', `http://127.0.0.1:${port}/env`);
  t.equal(res.status, 200);
});
