import t from 'tap';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { hashPassword } from '../../../gateway/auth/password.ts';
import { waitFor } from '../../helpers/poll.ts';
import { deploymentKey, endpointKey } from '../../../gateway/routing/contract.ts';
import { FakeReader } from '../routing/fake-reader.ts';
import { attachWebSocketEcho, deadAddress, deployment, endpoint, gateway, metricValue, rawRequest, replica, type Tap } from '../fixtures.ts';

const UPGRADE = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

t.test('a WebSocket echoes through the gateway', async (t) => {
  const rep = await replica(t);
  const { upgrades } = attachWebSocketEcho(rep.server);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/acme/mnist/web/production/predict/socket?room=1`);
  t.teardown(() => ws.close());
  const messages: string[] = [];
  ws.addEventListener('message', (e) => messages.push(String(e.data)));
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve);
    ws.addEventListener('error', reject);
  });
  ws.send('hello');
  ws.send('x'.repeat(1000));
  await waitFor(() => messages.length === 2, { what: 'two echoes' });
  t.same(messages, ['hello', 'x'.repeat(1000)]);
  const up = upgrades[0]!;
  t.equal(up.url, '/acme/mnist/web/v1/predict/socket?room=1', 'canonical path, query kept');
  t.equal(up.headers['x-vh-prefix'], '/acme/mnist/web/production/predict');
  t.equal(up.headers.upgrade, 'websocket');
  t.equal(up.headers['x-forwarded-for'], '127.0.0.1');
  t.ok(up.headers['x-request-id']);
  const closed = new Promise((r) => ws.addEventListener('close', r));
  ws.close();
  await closed;
  await waitFor(() => gw.listener.inFlight === 0 && gw.upstreams.stats().pending === 0, { what: 'the tunnel to be torn down' });
});

t.test('the upgrade response carries the version and request id; credentials are not forwarded', async (t) => {
  const rep = await replica(t);
  const { upgrades } = attachWebSocketEcho(rep.server);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const out = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict', 'Authorization: Bearer nope\r\nX-Request-Id: ws-1\r\n'));
  t.match(out, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  t.match(out, /\r\nx-portico-version: v1\r\n/);
  t.match(out, /\r\nx-request-id: ws-1\r\n/);
  t.match(out, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
  t.equal(upgrades[0]!.headers.authorization, undefined);
});

t.test('upgrades pass the same checks: bad path, unknown route, basic auth, dead replica', async (t) => {
  const rep = await replica(t);
  attachWebSocketEcho(rep.server);
  const { gw, table } = await gateway(t);
  await table.apply({
    putDeployments: [deployment(), deployment({ deployment: 'locked', auth: 'basic', users: { u: await hashPassword('p', { N: 1024, r: 8, p: 1 }) } })],
    putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [await deadAddress()]), endpoint('v1', [rep.address], { deployment: 'locked' })],
  });
  const cases: [string, string, number, string][] = [
    ['bad path', UPGRADE('/acme//web/v1/predict'), 400, 'BAD_PATH'],
    ['unknown route', UPGRADE('/acme/mnist/web/v9/predict'), 404, 'ROUTE_NOT_FOUND'],
    ['auth required', UPGRADE('/acme/mnist/locked/v1/predict'), 401, 'AUTH_REQUIRED'],
    ['dead replica', UPGRADE('/acme/mnist/web/v2/predict'), 502, 'UPSTREAM_UNREACHABLE'],
  ];
  for (const [name, bytes, status, code] of cases) {
    const out = await rawRequest(gw.url, bytes);
    t.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), name);
    t.match(out, new RegExp(`"code":"${code}"`), name);
  }
  const authed = await rawRequest(gw.url, UPGRADE('/acme/mnist/locked/v1/predict', `Authorization: Basic ${Buffer.from('u:p').toString('base64')}\r\n`));
  t.match(authed, /^HTTP\/1\.1 101 /, 'with credentials it passes');
});

t.test('a replica that does not answer an upgrade is a 504', async (t) => {
  const silent = createTcpServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    silent.close();
  });
  const { gw, table } = await gateway(t);
  await table.apply({
    putDeployments: [deployment()],
    putEndpoints: [endpoint('v1', [`127.0.0.1:${(silent.address() as AddressInfo).port}`], { timeoutSeconds: 1 })],
  });
  const out = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict'));
  t.match(out, /^HTTP\/1\.1 504 /);
  t.match(out, /"code":"UPSTREAM_TIMEOUT"/);
});

t.test('a replica that declines the upgrade answers once; nothing after it reaches the replica unrouted', async (t) => {
  const rep = await replica(t); // no 'upgrade' listener: Node answers the request normally
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const smuggled = 'GET /acme/mnist/other/v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0\r\n\r\n';
  const out = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict') + smuggled, { until: () => false });
  t.match(out, /^HTTP\/1\.1 200 /);
  t.match(out, /\r\nx-portico-version: v1\r\n/);
  t.equal(rep.seen.length, 1, 'only the routed request reached the replica');
  t.equal(rep.seen[0]!.url, '/acme/mnist/web/v1/predict');
  await waitFor(() => gw.listener.inFlight === 0, { what: 'the exchange to end' });
});

/** A replica that answers every request with `answer` and ignores `connection: close`; records what it got. */
async function stubbornReplica(t: Tap, answer: string) {
  const received: string[] = [];
  const server = createTcpServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => {
      received.push(d.toString('latin1'));
      s.write(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.close();
  });
  return { received, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

t.test('a declined upgrade ends with its answer, even when the replica keeps the connection open', async (t) => {
  const sized = await stubbornReplica(t, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nX-Portico-Version: forged\r\n\r\nhello');
  const chunked = await stubbornReplica(t, 'HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [sized.address]), endpoint('v2', [chunked.address])] });
  const smuggled = 'GET /acme/mnist/web/v1/predict/smuggled HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c2VjcmV0\r\n\r\n';
  const started = performance.now();
  // Pipelined after the upgrade request: must never reach the replica of a declined upgrade.
  const out = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict') + smuggled, { until: () => false });
  t.ok(performance.now() - started < 5000, "the connection closed after the answer (not at the test's timeout)");
  t.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(out, /\r\nconnection: close\r\n/);
  t.match(out, /\r\nx-portico-version: v1\r\n/);
  t.notMatch(out, /forged|keep-alive/i, "the replica's own version header and hop-by-hop headers are dropped");
  t.match(out, /\r\n\r\nhello$/, 'the body, and nothing after it');
  t.equal(sized.received.length, 1);
  t.notMatch(sized.received.join(''), /smuggled|c2VjcmV0/, 'the pipelined request never reached the replica');
  const out2 = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v2/predict'), { until: () => false });
  t.ok(performance.now() - started < 10_000, 'a chunked answer ends at its last chunk too');
  t.match(out2, /^HTTP\/1\.1 400 Bad Request\r\n/);
  t.match(out2, /\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n$/, 'passed as the replica framed it, and nothing after it');
  await waitFor(() => gw.listener.inFlight === 0 && gw.upstreams.stats().pending === 0, { what: 'the exchanges to end' });
});

t.test('an upgrade whose replica refuses the connection is tried once on another', async (t) => {
  const rep = await replica(t);
  const { upgrades } = attachWebSocketEcho(rep.server);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [await deadAddress(), rep.address])] });
  for (let i = 0; i < 4; i++) {
    const out = await rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict'));
    t.match(out, /^HTTP\/1\.1 101 /, `upgrade ${i + 1}`);
  }
  t.equal(upgrades.length, 4);
  const m = await (await fetch(gw.metricsUrl)).text();
  t.ok(metricValue(m, 'portico_gateway_upstream_retries_total') >= 1, 'at least one went to the dead replica first and was retried');
  t.equal(metricValue(m, 'portico_gateway_upstream_retries_total'), metricValue(m, 'portico_gateway_upstream_errors_total', { code: 'ECONNREFUSED' }));
});

t.test('an upgrade retried after a route change goes to a replica the route has now', async (t) => {
  // The request is resolved to a replica that is gone (connection refused); meanwhile the route
  // has moved to a new replica: the retry goes there, not to the others of the old record.
  const rep = await replica(t);
  const { upgrades } = attachWebSocketEcho(rep.server);
  const removed = await replica(t);
  const removedEcho = attachWebSocketEcho(removed.server);
  const reader = new FakeReader();
  const key = endpointKey(endpoint('v1', []));
  const dead = await deadAddress();
  reader.put([deploymentKey(deployment()), deployment()], [key, endpoint('v1', [dead, removed.address])]);
  const { gw } = await gateway(t, { routing: reader });
  reader.hold();
  let answered = false;
  const out = rawRequest(gw.url, UPGRADE('/acme/mnist/web/v1/predict')).finally(() => (answered = true));
  // The deployment, then the endpoint as it was (the dead replica and one about to be removed).
  await waitFor(() => reader.heldReads === 1, { what: 'the deployment read' });
  reader.release(0);
  await waitFor(() => reader.heldReads === 2, { what: 'the endpoint read' });
  reader.put([key, endpoint('v1', [dead, rep.address])]);
  reader.change(key);
  reader.release(1);
  // The retry reads the changed record (not cached yet: the change dropped it).
  await waitFor(() => reader.heldReads === 3 || answered, { what: 'the changed endpoint read by the retry' });
  if (reader.heldReads === 3) reader.release(2);
  t.match(await out, /^HTTP\/1\.1 101 /, 'retried on the replica the route has now');
  t.equal(upgrades.length, 1);
  t.equal(removedEcho.upgrades.length, 0, 'not on the removed one');
  await waitFor(() => gw.listener.inFlight === 0 && gw.upstreams.stats().pending === 0, { what: 'the exchange to end' });
});

t.test('an upgrade request with a body (curl --http2 -d) is proxied as a plain request, body and all', async (t) => {
  const rep = await replica(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.end(`got ${body}`));
  });
  const { gw, table } = await gateway(t);
  // Without the body the replica would wait for, the gateway would answer 504 after this.
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address], { timeoutSeconds: 5 })] });
  const h2c = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
  // A request pipelined after it would be lost (Node's parser drops it): the connection closes.
  const pipelined = 'GET /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\n\r\n';
  const sized = await rawRequest(gw.url, `POST /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\n${h2c}Content-Length: 11\r\n\r\nhello=world${pipelined}`, { until: () => false });
  t.match(sized, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(sized, /\r\nConnection: close\r\n/);
  t.match(sized, /\r\n\r\ngot hello=world$/);
  const chunked = await rawRequest(gw.url, `POST /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\n${h2c}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
  t.match(chunked, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(chunked, /\r\n\r\n(?:[0-9a-f]+\r\n)?got hello/);
  t.equal(rep.seen.length, 2, 'the pipelined request was not taken');
  for (const seen of rep.seen) {
    t.equal(seen.headers.upgrade, undefined, 'the replica is not offered an upgrade it could only take without the body');
    t.equal(seen.headers['http2-settings'], undefined);
  }
  const over = await rawRequest(gw.url, `POST /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\n${h2c}Content-Length: ${64 * 2 ** 20 + 1}\r\n\r\n`);
  t.match(over, /^HTTP\/1\.1 413 /, 'and the body limit applies to it');
});
