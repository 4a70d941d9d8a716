import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { waitFor } from '../helpers/poll.ts';
import { attachWebSocketEcho, call, client, deployment, endpoint, gateway, rawRequest, replica } from './fixtures.ts';

const P = '/acme/mnist/web/v1/predict';

/** A keep-alive connection that has made one request and is now idle (`head`: that answer's head). */
async function idleConnection(url: string): Promise<{ sock: Socket; closed: Promise<unknown>; head: string }> {
  const { hostname, port } = new URL(url);
  const sock = connect(Number(port), hostname);
  sock.on('error', () => {});
  const closed = new Promise((r) => sock.once('close', r));
  let got = '';
  await new Promise<void>((resolve) => {
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('{"status":"ok"}')) resolve();
    });
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  return { sock, closed, head: got.slice(0, got.indexOf('\r\n\r\n')) };
}

t.test('an idle client connection is kept PORTICO_KEEPALIVE_SECONDS (default 65), as announced', async (t) => {
  const { gw } = await gateway(t);
  const byDefault = await idleConnection(gw.url);
  t.match(byDefault.head, /\r\nKeep-Alive: timeout=65\r\n/i);
  byDefault.sock.destroy();

  const { gw: short } = await gateway(t, { env: { PORTICO_KEEPALIVE_SECONDS: '1' } });
  const idleSince = performance.now();
  const idle = await idleConnection(short.url);
  t.match(idle.head, /\r\nKeep-Alive: timeout=1\r\n/i, 'the setting is announced');
  await waitFor(() => idle.sock.destroyed, { timeoutMs: 10_000, what: 'the gateway to close the idle connection' });
  t.ok(performance.now() - idleSince >= 900, 'closed by the gateway once idle for the setting, not at once');
});

t.test('drain: readyz 503 at once, in-flight requests finish, idle connections close, then it stops', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const rep = await replica(t, (req, res) => {
    if (req.url?.endsWith('/slow')) void released.then(() => res.end('slow done'));
    else res.end('quick');
  });
  attachWebSocketEcho(rep.server);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const idle = await idleConnection(gw.url);
  const inflight = request(`${gw.url}${P}/slow`, { dispatcher: client(t) });
  await waitFor(() => rep.open === 1, { what: 'the slow request at the replica' });

  const drained = gw.drain();
  const ready = await call(client(t), `${gw.url}/readyz`);
  t.equal(ready.status, 503);
  t.same(ready.json(), { status: 'draining' });
  t.equal(ready.headers.connection, 'close', "the probe's connection closes too");
  await idle.closed;
  t.pass('the idle keep-alive connection was closed');

  const during = await call(client(t), gw.url + P);
  t.equal(during.status, 200, 'a request arriving during the drain is still served');
  t.equal(during.headers.connection, 'close', 'but its connection closes');
  const ws = await rawRequest(gw.url, `GET ${P} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  t.match(ws, /^HTTP\/1\.1 503 [\s\S]*"code":"GATEWAY_DRAINING"/, 'no new tunnels while draining');

  let done = false;
  void drained.then(() => (done = true));
  t.equal(done, false, 'the drain waits for the in-flight request');
  release();
  const res = await inflight;
  t.equal(res.statusCode, 200);
  t.equal(await res.body.text(), 'slow done');
  await drained;
  await t.rejects(call(client(t), `${gw.url}/healthz`), 'the listener is closed after the drain');
});

t.test('drain: a keep-alive connection whose answer had begun before the drain closes once it is idle', async (t) => {
  let releaseStream!: () => void;
  const streamReleased = new Promise<void>((r) => (releaseStream = r));
  let releaseSlow!: () => void;
  const slowReleased = new Promise<void>((r) => (releaseSlow = r));
  const rep = await replica(t, (req, res) => {
    if (req.url?.endsWith('/stream')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('begun;');
      void streamReleased.then(() => res.end('ended'));
    } else void slowReleased.then(() => res.end('slow done'));
  });
  const { gw, table } = await gateway(t, { env: { PORTICO_DRAIN_SECONDS: '10' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  // Its head goes out with keep-alive before the drain; its body ends during it.
  const { hostname, port } = new URL(gw.url);
  const sock = connect(Number(port), hostname);
  sock.on('error', () => {});
  let got = '';
  sock.on('data', (d) => (got += d.toString()));
  const closed = new Promise((r) => sock.once('close', r));
  sock.write(`GET ${P}/stream HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor(() => got.includes('begun;'), { what: 'the head and first bytes' });
  t.match(got, /\r\nConnection: keep-alive\r\n/);
  // Another request keeps the drain going.
  const slow = request(`${gw.url}${P}/slow`, { dispatcher: client(t) });
  await waitFor(() => rep.open === 2, { what: 'the slow request at the replica' });
  const drained = gw.drain();
  const started = performance.now();
  releaseStream();
  await closed;
  t.ok(performance.now() - started < 5000, 'closed at once, not at the drain deadline');
  t.match(got, /ended\r\n0\r\n\r\n$/, 'the answer arrived whole first');
  t.equal(gw.listener.inFlight, 1, 'while the drain goes on');
  const health = await call(client(t), `${gw.url}/healthz`);
  t.equal(health.status, 200, '/healthz still answers');
  t.equal(health.headers.connection, 'close', 'and its connection closes too');
  releaseSlow();
  t.equal(await (await slow).body.text(), 'slow done');
  await drained;
});

t.test('drain gives up on requests still running at PORTICO_DRAIN_SECONDS', async (t) => {
  const rep = await replica(t, () => {});
  const dir = mkdtempSync(join(tmpdir(), 'portico-drain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'access.log');
  const { gw, table } = await gateway(t, { env: { PORTICO_DRAIN_SECONDS: '1', PORTICO_ACCESS_LOG: log } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const hung = request(gw.url + P, { dispatcher: client(t) });
  hung.catch(() => {});
  await waitFor(() => rep.open === 1, { what: 'the hung request at the replica' });
  const started = performance.now();
  await gw.drain();
  const ms = performance.now() - started;
  t.ok(ms >= 900 && ms < 5000, `drained in ${Math.round(ms)} ms`);
  await t.rejects(hung, 'the hung request was cut');
  await waitFor(() => rep.open === 0, { what: 'the replica to see it closed' });
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { route: string; status: number });
  t.match(lines, [{ route: '/acme/mnist/web/v1/predict', status: 499 }], 'the cut request has its access-log line, written before the log closed');
});

t.test('close() is immediate and idempotent', async (t) => {
  const { gw } = await gateway(t);
  await Promise.all([gw.close(), gw.close()]);
  await t.rejects(call(client(t), `${gw.url}/healthz`));
});

t.test('the gateway refuses to start when its caches need more heap than the process may use', async (t) => {
  const { checkHeapBound, heapNeeded } = await import('../../gateway/main.ts');
  const defaults = { cacheSize: 10_000, metricsMaxRoutes: 2000 };
  t.ok(heapNeeded(defaults) < 128 * 2 ** 20, 'the defaults fit the bound deploy/kubernetes sets');
  t.doesNotThrow(() => checkHeapBound(defaults, 320 * 2 ** 20));
  t.throws(() => checkHeapBound({ cacheSize: 1_000_000, metricsMaxRoutes: 2000 }, 320 * 2 ** 20), /PORTICO_CACHE_SIZE=1000000 .* need about \d+ MiB .*--max-old-space-size/);
});
