import t from 'tap';
import { createHash } from 'node:crypto';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { waitFor } from '../../helpers/poll.ts';
import { deploymentKey, endpointKey } from '../../../gateway/routing/contract.ts';
import { FakeReader } from '../routing/fake-reader.ts';
import { call, client, deadAddress, deployment, endpoint, gateway, metricValue, rawRequest, replica, type Tap } from '../fixtures.ts';

const PATH = '/acme/mnist/web/v1/predict';

/** Opens a raw connection to the gateway and sends `bytes`. */
function open(url: string, bytes: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname, () => {
      sock.write(bytes);
      resolve(sock);
    });
    sock.on('error', reject);
  });
}

/** A replica that reads request bodies and records whether each one arrived complete. */
async function bodyReplica(t: Tap) {
  const bodies: { complete: boolean; bytes: number; sha?: string }[] = [];
  const rep = await replica(t, (req, res) => {
    const rec: (typeof bodies)[number] = { complete: false, bytes: 0 };
    bodies.push(rec);
    const hash = createHash('sha256');
    req.on('data', (d: Buffer) => {
      rec.bytes += d.length;
      hash.update(d);
    });
    req.on('end', () => {
      rec.complete = true;
      rec.sha = hash.digest('hex');
      res.end(JSON.stringify({ bytes: rec.bytes, sha: rec.sha }));
    });
    req.on('error', () => {});
  });
  return { rep, bodies };
}

t.test('request bodies stream through intact, sized and chunked', async (t) => {
  const { rep, bodies } = await bodyReplica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  const data = Buffer.alloc(5 * 1024 * 1024, 7);
  for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
  const sha = createHash('sha256').update(data).digest('hex');
  const sized = await call(agent, gw.url + PATH, { method: 'POST', body: data });
  t.same(sized.json(), { bytes: data.length, sha });
  const res = await request(gw.url + PATH, {
    dispatcher: agent,
    method: 'POST',
    body: Readable.from((function* () {
      for (let i = 0; i < data.length; i += 256 * 1024) yield data.subarray(i, i + 256 * 1024);
    })()),
  });
  t.same(await res.body.json(), { bytes: data.length, sha }, 'chunked upload');
  t.equal(rep.seen[1]!.headers['transfer-encoding'], 'chunked');
  t.equal(bodies.length, 2);
  const cont = await rawRequest(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nabc`);
  t.match(cont, /HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'Expect: 100-continue is answered by the gateway');
  t.equal(rep.seen[2]!.headers.expect, undefined);
});

t.test('413 by Content-Length: before anything is sent', async (t) => {
  const { rep } = await bodyReplica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: '100' } });
  await table.apply({
    putDeployments: [deployment()],
    putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [rep.address], { maxBodyBytes: 5 })],
  });
  const agent = client(t);
  t.equal((await call(agent, gw.url + PATH, { method: 'POST', body: 'x'.repeat(100) })).status, 200, 'at the limit');
  const over = await call(agent, gw.url + PATH, { method: 'POST', body: 'x'.repeat(101) });
  t.equal(over.status, 413);
  t.equal(over.json().code, 'PAYLOAD_TOO_LARGE');
  const endpointLimit = await call(agent, `${gw.url}/acme/mnist/web/v2/predict`, { method: 'POST', body: 'x'.repeat(6) });
  t.equal(endpointLimit.status, 413, "the endpoint's own maxBodyBytes applies");
  t.equal(over.headers.connection, 'close', 'the connection closes: the declared body is not read');
  t.equal(rep.seen.length, 1, 'the replica saw only the request within the limit');
});

/**
 * Sends a request head and `size` bytes of body as fast as the connection takes them, reading
 * only after the whole body is written, as a synchronous client does (Python's http.client).
 * The connection stays half-open after the gateway's FIN, as such a client's does.
 */
function writeAllThenRead(url: string, head: string, size: number, chunked = false): Promise<{ answer: string; sent: number; error: string | null }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const sock = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
    let answer = '';
    let sent = 0;
    let error: string | null = null;
    sock.on('data', (d) => (answer += d.toString('latin1')));
    sock.on('error', (e) => (error = e.message));
    sock.on('close', () => resolve({ answer, sent, error }));
    sock.write(head);
    const data = Buffer.alloc(64 * 1024, 120);
    const chunk = chunked ? Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n')]) : data;
    const pump = () => {
      while (sent < size) {
        sent += data.length;
        if (!sock.write(chunk)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end(chunked ? '0\r\n\r\n' : '');
    };
    pump();
  });
}

t.test('a client writing its whole body before reading gets the answer given before the body is read (lingering close)', async (t) => {
  const size = 16 * 2 ** 20;
  // The replica refuses at once, without reading the body (as an app validating headers does).
  const rep = await replica(t, (_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end('{"error":"rejected early"}');
  });
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: String(64 * 2 ** 20) } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [rep.address], { maxBodyBytes: 1000 })] });
  const early = await writeAllThenRead(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`, size);
  t.equal(early.error, null, 'no reset');
  t.equal(early.sent, size, 'the whole body could be written');
  t.match(early.answer, /^HTTP\/1\.1 400 /, "the replica's early answer arrives");
  t.match(early.answer, /rejected early/);
  t.match(early.answer, /\r\nconnection: close\r\n/i, 'and says the connection closes');
  // A 413 from the gateway itself, by Content-Length and for a chunked body over the limit.
  const tooLarge = await writeAllThenRead(gw.url, `POST /acme/mnist/web/v2/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`, size);
  t.equal(tooLarge.error, null, 'no reset');
  t.equal(tooLarge.sent, size);
  t.match(tooLarge.answer, /^HTTP\/1\.1 413 [^]*"code":"PAYLOAD_TOO_LARGE"/);
  const chunked = await writeAllThenRead(gw.url, `POST /acme/mnist/web/v2/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`, size, true);
  t.equal(chunked.error, null, 'no reset');
  t.equal(chunked.sent, size);
  t.match(chunked.answer, /^HTTP\/1\.1 413 [^]*"code":"PAYLOAD_TOO_LARGE"/);
  t.equal(gw.listener.inFlight, 0);
  t.equal(gw.upstreams.stats().pending, 0);
});

t.test('a replica that breaks off while the body is still coming: the client writing it all gets the 502, then the connection closes', async (t) => {
  const size = 16 * 2 ** 20;
  // The replica reads a little of the body, then its connection breaks (it crashed, say).
  const rep = await replica(t, (req) => {
    let read = 0;
    req.on('data', (d: Buffer) => {
      read += d.length;
      if (read > 64 * 1024) req.socket.destroy();
    });
    req.on('error', () => {});
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const started = performance.now();
  const out = await writeAllThenRead(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`, size);
  t.ok(performance.now() - started < 15_000, 'the body kept being read after the answer (not stalled until a timeout)');
  t.equal(out.error, null, 'no reset');
  t.equal(out.sent, size, 'the whole body could be written');
  t.match(out.answer, /^HTTP\/1\.1 502 [^]*"code":"UPSTREAM_UNREACHABLE"/);
  t.match(out.answer, /\r\nconnection: close\r\n/i, 'and says the connection closes (the rest of the body went nowhere)');
  t.equal(gw.listener.inFlight, 0);
});

t.test('Expect: 100-continue: 100 only when the request is proxied; a refusal comes without it and closes', async (t) => {
  const { rep, bodies } = await bodyReplica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: '100' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const head = (path: string, length: number) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`;
  // The client sends only the head and waits, as curl does: the refusal must come without a 100.
  for (const [path, length, status] of [[PATH, 5000, 413], ['/acme/mnist/web/v9/predict', 5, 404], ['/acme/mnist/web/v1', 5, 400]] as const) {
    const out = await rawRequest(gw.url, head(path, length), { until: () => false });
    t.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), `${status} for ${path}`);
    t.notMatch(out, /100 Continue/);
    t.match(out, /\r\nconnection: close\r\n/i, 'and the connection closed');
  }
  // A request to proxy gets its 100 once it is about to go out, then the answer.
  const { hostname, port } = new URL(gw.url);
  const sock = connect(Number(port), hostname);
  let got = '';
  sock.on('data', (d) => (got += d.toString('latin1')));
  sock.write(head(PATH, 5));
  await waitFor(() => got.includes('100 Continue'), { what: 'the 100 Continue' });
  sock.write('hello');
  await waitFor(() => got.includes('"bytes":5'), { what: 'the answer' });
  t.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  sock.destroy();
  t.same(bodies.map((b) => b.bytes), [5]);
});

t.test('Expect: 100-continue from a client that sends its body without waiting: the refusal arrives, not a broken pipe', async (t) => {
  // RFC 9110 10.1.1: such a client may send its body at once, and curl does after a second.
  const size = 16 * 2 ** 20;
  const rep = await replica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: String(size - 1) } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const cases: [string, number, string][] = [
    [PATH, 413, 'PAYLOAD_TOO_LARGE'],
    ['/acme/mnist/web/v9/predict', 404, 'ROUTE_NOT_FOUND'],
  ];
  for (const [path, status, code] of cases) {
    const out = await writeAllThenRead(gw.url, `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\nExpect: 100-continue\r\n\r\n`, size);
    t.equal(out.error, null, `${code}: no reset`);
    t.equal(out.sent, size, `${code}: the whole body could be written`);
    t.match(out.answer, new RegExp(`^HTTP/1\\.1 ${status} [^]*"code":"${code}"`), `${code}: the answer arrives`);
    t.notMatch(out.answer, /100 Continue/);
  }
  t.equal(rep.seen.length, 0);
});

t.test('Expect: 100-continue with Connection: close closes after the answer, whatever the path starts with', async (t) => {
  // The probe paths (/healthz, /readyz) are told apart by their second character: routes whose
  // owner starts with the same letter must not lose the client's Connection: close to that.
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  const owners = ['acme', 'hospital', 'research'];
  await table.apply({
    putDeployments: owners.map((owner) => deployment({ owner })),
    putEndpoints: owners.map((owner) => endpoint('v1', [rep.address], { owner })),
  });
  for (const owner of owners) {
    const out = await rawRequest(gw.url, `POST /${owner}/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello`, { until: () => false });
    t.match(out, /\r\n\r\nHTTP\/1\.1 200 /, owner);
    t.match(out, /\r\nConnection: close\r\n/, `${owner}: the connection closes, as the client asked`);
  }
  t.equal(rep.seen.length, owners.length);
});

t.test('413 for a chunked body over the limit: the replica never sees a complete request', async (t) => {
  const { rep, bodies } = await bodyReplica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: '1000' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
  const sock = await open(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(600))}`);
  let out = '';
  sock.on('data', (d) => (out += d.toString()));
  const closed = new Promise((r) => sock.on('close', r));
  sock.on('error', () => {});
  await waitFor(() => bodies[0]?.bytes === 600, { what: 'the first chunk at the replica' });
  sock.write(chunk('b'.repeat(600)) + chunk('c'.repeat(10)) + '0\r\n\r\n');
  await closed;
  t.match(out, /^HTTP\/1\.1 413 /);
  t.match(out, /"code":"PAYLOAD_TOO_LARGE"/);
  t.match(out, /connection: close/i);
  await waitFor(() => rep.open === 0, { what: 'the replica request to close' });
  t.equal(bodies.length, 1);
  t.equal(bodies[0]!.complete, false, 'the replica never got the end of the body');
  t.ok(bodies[0]!.bytes <= 1200);
  t.equal(gw.upstreams.stats().pending, 0);
});

t.test('413 for a chunked body over the limit that arrives whole: nothing reaches the replica', async (t) => {
  const { rep, bodies } = await bodyReplica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: '1000' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [rep.address], { maxBodyBytes: 100 })] });
  const chunk = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n`;
  // Head and the whole body in one write: the body is complete before the gateway forwards it.
  for (const [version, size] of [['v1', 1001], ['v1', 20_000], ['v2', 101], ['v2', 60_000]] as const) {
    const out = await rawRequest(gw.url, `POST /acme/mnist/web/${version}/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('z'.repeat(size))}0\r\n\r\n`);
    t.match(out, /^HTTP\/1\.1 413 /, `${size} bytes to ${version}`);
    t.match(out, /"code":"PAYLOAD_TOO_LARGE"/);
  }
  const within = await rawRequest(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk('y'.repeat(1000))}0\r\n\r\n`);
  t.match(within, /^HTTP\/1\.1 200 /, 'a whole chunked body at the limit goes through');
  t.same(bodies.map((b) => [b.complete, b.bytes]), [[true, 1000]], 'the replica saw only the body within the limit');
  t.equal(gw.upstreams.stats().pending, 0);
});

t.test('a hung replica is a 504 within the endpoint timeout', async (t) => {
  const rep = await replica(t, () => {});
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address], { timeoutSeconds: 1 })] });
  const started = performance.now();
  const res = await call(client(t), gw.url + PATH);
  const ms = performance.now() - started;
  t.equal(res.status, 504);
  t.equal(res.json().code, 'UPSTREAM_TIMEOUT');
  t.equal(res.headers['x-portico-version'], 'v1', 'gateway errors after resolution name the version too');
  t.ok(ms >= 900 && ms < 5000, `answered after ${Math.round(ms)} ms`);
  await waitFor(() => rep.open === 0, { what: 'the hung request to be closed at the replica' });
  t.equal(rep.seen.length, 1, 'a timeout is not retried');
});

t.test('a request waiting for a free replica connection is held to the endpoint timeout too', async (t) => {
  // One connection per replica: the second request waits in the pool's queue behind a hung one.
  const held: (() => void)[] = [];
  const rep = await replica(t, (_req, res) => {
    held.push(() => res.end('late'));
  });
  const { gw, table } = await gateway(t, { env: { PORTICO_UPSTREAM_CONNECTIONS: '1' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address], { timeoutSeconds: 1 })] });
  const agent = client(t);
  const first = call(agent, gw.url + PATH);
  await waitFor(() => rep.seen.length === 1, { what: 'the first request at the replica' });
  const started = performance.now();
  const queued = await call(agent, gw.url + PATH, { method: 'POST', body: 'queued' });
  const ms = performance.now() - started;
  t.equal(queued.status, 504, 'the queued request timed out');
  t.equal(queued.json().code, 'UPSTREAM_TIMEOUT');
  t.ok(ms >= 900 && ms < 1800, `answered after ${Math.round(ms)} ms`);
  t.equal((await first).status, 504, 'the hung one too');
  // The hung request's connection is closed at its timeout; the queued one must not go out then.
  await waitFor(() => gw.upstreams.stats().pending === 0, { what: 'both upstream calls to end' });
  t.equal(rep.seen.length, 1, 'the request that timed out in the queue never reached the replica');
  for (const release of held) release();
  // The pool serves again.
  const rep2 = await replica(t);
  await table.apply({ putEndpoints: [endpoint('v1', [rep2.address], { timeoutSeconds: 1 })] });
  t.equal((await call(agent, gw.url + PATH)).status, 200);
});

t.test('a dead replica: GET and never-sent POST retry on another; all dead is a 502', async (t) => {
  const live = await replica(t);
  const dead = await deadAddress();
  const { gw, table } = await gateway(t);
  await table.apply({
    putDeployments: [deployment()],
    putEndpoints: [endpoint('v1', [dead, live.address]), endpoint('v2', [dead, await deadAddress()])],
  });
  const agent = client(t);
  for (let i = 0; i < 4; i++) {
    t.equal((await call(agent, gw.url + PATH)).status, 200, `GET ${i}`);
    t.equal((await call(agent, gw.url + PATH, { method: 'POST', body: 'payload' })).status, 200, `POST ${i} (refused: nothing was sent)`);
  }
  t.equal(live.seen.length, 8);
  const m = (await call(agent, gw.metricsUrl)).text;
  t.ok(metricValue(m, 'portico_gateway_upstream_errors_total', { code: 'ECONNREFUSED' }) >= 1);
  t.equal(metricValue(m, 'portico_gateway_upstream_retries_total'), metricValue(m, 'portico_gateway_upstream_errors_total', { code: 'ECONNREFUSED' }));
  const all = await call(agent, `${gw.url}/acme/mnist/web/v2/predict`);
  t.equal(all.status, 502);
  t.equal(all.json().code, 'UPSTREAM_UNREACHABLE');
});

t.test('a replica that drops the connection after the request: GET retried, POST with a body is a 502', async (t) => {
  const live = await replica(t);
  const { bodies } = { bodies: [] as string[] };
  const dropper = await replica(t, (req) => {
    req.on('data', (d: Buffer) => bodies.push(d.toString()));
    req.on('end', () => req.socket.destroy());
    req.on('error', () => {});
  });
  const setup = async () => {
    const { gw, table } = await gateway(t);
    await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [dropper.address, live.address])] });
    return gw;
  };
  const agent = client(t);
  // A fresh gateway's first pick is the first replica: the dropper.
  const g1 = await setup();
  const get = await call(agent, g1.url + PATH);
  t.equal(get.status, 200, 'GET retried on the live replica');
  t.equal(dropper.seen.length, 1);
  t.equal(live.seen.length, 1);
  const g2 = await setup();
  const post = await call(agent, g2.url + PATH, { method: 'POST', body: 'not twice' });
  t.equal(post.status, 502);
  t.equal(post.json().code, 'UPSTREAM_UNREACHABLE');
  t.same(bodies, ['not twice'], 'the body reached the dropper once');
  t.equal(live.seen.length, 1, 'and was not sent again');
});

t.test('a response cut mid-body is cut for the client too (never a silent truncated success)', async (t) => {
  const rep = await replica(t, (req, res) => {
    if (req.url?.endsWith('/sized')) {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(100));
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('y'.repeat(100));
    }
    setImmediate(() => res.socket?.destroy());
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  for (const rest of ['/sized', '/chunked']) {
    const res = await request(`${gw.url}${PATH}${rest}`, { dispatcher: agent });
    t.equal(res.statusCode, 200, `${rest}: the head had gone out`);
    await t.rejects(res.body.text(), `${rest}: the body read fails`);
  }
  // HTTP/1.0 has no chunks: the body ends where the connection does, so a plain close would
  // read as a complete response. The connection is reset instead.
  const end = await new Promise<{ bytes: string; error: string }>((resolve) => {
    const { hostname, port } = new URL(gw.url);
    const sock = connect(Number(port), hostname);
    let bytes = '';
    let error = '';
    sock.on('data', (d) => (bytes += d.toString()));
    sock.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    sock.on('close', () => resolve({ bytes, error }));
    sock.write(`GET ${PATH}/chunked HTTP/1.0\r\nHost: x\r\n\r\n`);
  });
  t.match(end.bytes, /^HTTP\/1\.1 200 /, 'HTTP/1.0: the head had gone out');
  t.equal(end.error, 'ECONNRESET', 'HTTP/1.0: the connection is reset, not closed as if the body were whole');
  t.equal(gw.upstreams.stats().pending, 0);
});

t.test('a response body that goes idle is aborted after PORTICO_BODY_IDLE_SECONDS', async (t) => {
  const rep = await replica(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('started');
  });
  const { gw, table } = await gateway(t, { env: { PORTICO_BODY_IDLE_SECONDS: '1' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const started = performance.now();
  const res = await request(gw.url + PATH, { dispatcher: client(t) });
  await t.rejects(res.body.text());
  t.ok(performance.now() - started < 4000);
  await waitFor(() => rep.open === 0, { what: 'the replica request to close' });
});

t.test('a request body that stops moving for PORTICO_BODY_IDLE_SECONDS: 408 when the client stopped, 504 when the replica did', async (t) => {
  const { rep, bodies } = await bodyReplica(t);
  // A replica that takes the request but never reads its body.
  const stuck = await replica(t, (req) => req.pause());
  const { gw, table } = await gateway(t, { env: { PORTICO_BODY_IDLE_SECONDS: '1', PORTICO_MAX_BODY_BYTES: String(64 * 2 ** 20) } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address]), endpoint('v2', [stuck.address])] });

  // The client sends half its body and stops.
  const sock = await open(gw.url, `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello`);
  let out = '';
  sock.on('data', (d) => (out += d.toString()));
  const started = performance.now();
  await new Promise((r) => sock.on('close', r));
  const ms = performance.now() - started;
  t.match(out, /^HTTP\/1\.1 408 [^]*"code":"REQUEST_TIMEOUT"/, 'a client that stopped sending gets 408');
  t.match(out, /the request body stopped arriving/);
  t.ok(ms >= 900 && ms < 4000, `after ${Math.round(ms)} ms`);
  await waitFor(() => rep.open === 0, { what: 'the upstream request to be aborted' });
  t.same(bodies.map((b) => [b.complete, b.bytes]), [[false, 5]], 'the replica never got the body whole');

  // A replica that stops reading: the client's writes block, and it gets a 504 it can read.
  const size = 32 * 2 ** 20;
  const stalled = await writeAllThenRead(gw.url, `POST /acme/mnist/web/v2/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`, size);
  t.match(stalled.answer, /^HTTP\/1\.1 504 [^]*"code":"UPSTREAM_TIMEOUT"/, 'a replica that stopped reading is a 504');
  t.match(stalled.answer, /the replica stopped reading the request body/);
  t.equal(stalled.error, null, 'and the client can read it (the close lingers)');
  // (The stuck replica, reading nothing, would not notice its connection close.)
  await waitFor(() => gw.upstreams.stats().pending === 0, { what: 'the upstream call to the stuck replica to be aborted' });

  // Neither a slow but moving upload nor a slow first byte is cut by the idle timer.
  const slow = await replica(t, (req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => setTimeout(() => res.end(String(n)), 2500));
  });
  await table.apply({ putEndpoints: [endpoint('v3', [slow.address])] });
  const body = Readable.from(
    (async function* () {
      for (let i = 0; i < 6; i++) {
        yield Buffer.alloc(1000, 97);
        await new Promise((r) => setTimeout(r, 400));
      }
    })(),
  );
  const res = await request(`${gw.url}/acme/mnist/web/v3/predict`, { method: 'POST', body, dispatcher: client(t) });
  t.equal(res.statusCode, 200, 'an upload that keeps moving and an answer 2.5 s later pass');
  t.equal(await res.body.text(), '6000');
  t.equal(gw.listener.inFlight, 0);
});

t.test('a client that stops reading a response for PORTICO_BODY_IDLE_SECONDS is cut', async (t) => {
  const big = Buffer.alloc(64 * 2 ** 20, 98);
  let closedAt = 0;
  const rep = await replica(t, (_req, res) => {
    res.on('close', () => (closedAt = performance.now()));
    res.end(big);
  });
  const { gw, table } = await gateway(t, { env: { PORTICO_BODY_IDLE_SECONDS: '1' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const sock = await open(gw.url, `GET ${PATH} HTTP/1.1\r\nHost: x\r\n\r\n`);
  sock.on('error', () => {});
  let got = 0;
  const onData = (d: Buffer) => {
    got += d.length;
    if (got > 0) sock.pause(); // reads the first bytes, then stops reading
  };
  sock.on('data', onData);
  const started = performance.now();
  await waitFor(() => closedAt > 0, { what: 'the upstream response to be closed', timeoutMs: 8000 });
  t.ok(closedAt - started >= 900, `cut after ${Math.round(closedAt - started)} ms of not reading`);
  t.ok(got < big.length, 'the client had not read it all');
  await waitFor(() => gw.listener.inFlight === 0, { what: 'the exchange to end' });
  sock.destroy();
});

t.test('an invalid response from the replica is a 502 UPSTREAM_BAD_RESPONSE', async (t) => {
  const junk = createTcpServer((s) => {
    s.once('data', () => s.end('NOT HTTP\r\n\r\n'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => junk.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => junk.close(r)));
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [`127.0.0.1:${(junk.address() as AddressInfo).port}`])] });
  const res = await call(client(t), gw.url + PATH);
  t.equal(res.status, 502);
  t.equal(res.json().code, 'UPSTREAM_BAD_RESPONSE');
});

t.test('a response body in a transfer coding other than chunked is a 502, not passed on still coded', async (t) => {
  // undici takes off the chunks only; with Transfer-Encoding dropped (hop-by-hop) the client
  // would read gzip bytes as the body, nothing saying so. nginx answers these 502 too.
  const coded = createTcpServer((s) => {
    s.on('data', (d) => {
      if (d.toString('latin1').includes('/gzip-chunked')) s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
      else s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => coded.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => coded.close(r)));
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [`127.0.0.1:${(coded.address() as AddressInfo).port}`])] });
  for (const rest of ['/gzip-chunked', '/gzip']) {
    const res = await call(client(t), gw.url + PATH + rest);
    t.equal(res.status, 502, rest);
    t.equal(res.json().code, 'UPSTREAM_BAD_RESPONSE', rest);
  }
});

t.test("a status code Node has no phrase for keeps the replica's reason phrase (not `unknown`); known codes get the standard one", async (t) => {
  // The phrase as UTF-8 bytes on the wire (Très: 0xc3 0xa8), as a Python or Go replica sends it.
  const odd = createTcpServer((s) => {
    s.on('data', (d) => {
      const head = d.toString('latin1');
      const line = head.includes('/odd') ? 'HTTP/1.1 299 Tr\u00e8s Bien' : head.includes('/bare') ? 'HTTP/1.1 299 ' : head.includes('/ctl') ? 'HTTP/1.1 299 A\tB' : 'HTTP/1.1 200 Fine';
      s.write(Buffer.concat([Buffer.from(line, 'utf8'), Buffer.from('\r\nContent-Length: 2\r\n\r\nok')]));
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => odd.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => odd.close(r)));
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [`127.0.0.1:${(odd.address() as AddressInfo).port}`])] });
  const statusLine = async (rest: string) => {
    const raw = await rawRequest(gw.url, `GET ${PATH}${rest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    return Buffer.from(raw.slice(0, raw.indexOf('\r\n')), 'latin1');
  };
  t.same(await statusLine('/odd'), Buffer.from('HTTP/1.1 299 Tr\u00e8s Bien', 'utf8'), 'the same bytes');
  t.equal((await statusLine('/bare')).toString(), 'HTTP/1.1 299 ', 'none when it gave none');
  t.equal((await statusLine('/ctl')).toString(), 'HTTP/1.1 299 A\tB', 'a tab is allowed');
  t.equal((await statusLine('/known')).toString(), 'HTTP/1.1 200 OK', 'a known code: the standard phrase, as before');
});

t.test('a 101 to a plain request is a bad response, not a broken connection to retry', async (t) => {
  let requests = 0;
  const upgrader = createTcpServer((s) => {
    s.once('data', () => {
      requests++;
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => upgrader.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => upgrader.close(r)));
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  const address = `127.0.0.1:${(upgrader.address() as AddressInfo).port}`;
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [address]), endpoint('v2', [address, rep.address])] });
  const res = await call(client(t), gw.url + PATH);
  t.equal(res.status, 502);
  t.equal(res.json().code, 'UPSTREAM_BAD_RESPONSE');
  t.equal(requests, 1);
  // Not retried elsewhere either: the replica answered, wrongly.
  for (let i = 0; i < 4; i++) await call(client(t), `${gw.url}/acme/mnist/web/v2/predict`);
  t.equal(rep.seen.length + requests, 5, 'each request went to one replica only');
});

t.test('a client that disconnects cancels the upstream request', async (t) => {
  const rep = await replica(t, () => {});
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const sock = await open(gw.url, `GET ${PATH} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await waitFor(() => rep.open === 1, { what: 'the request at the replica' });
  sock.destroy();
  await waitFor(() => rep.open === 0, { what: 'the replica to see the request closed' });
  await waitFor(() => gw.listener.inFlight === 0 && gw.upstreams.stats().pending === 0, { what: 'the gateway to forget it' });
});

t.test('1,000 aborted requests leave no open upstream request', async (t) => {
  const rep = await replica(t, () => {});
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const batch = 50;
  let sent = 0;
  for (let round = 0; round < 20; round++) {
    const socks = await Promise.all(Array.from({ length: batch }, () => open(gw.url, `GET ${PATH} HTTP/1.1\r\nHost: x\r\n\r\n`)));
    for (const s of socks) s.on('error', () => {});
    sent += batch;
    // Half the rounds abort once the replica has the requests, half at once (still connecting).
    if (round % 2 === 0) await waitFor(() => rep.seen.length >= sent && rep.open === batch, { what: `round ${round} at the replica` });
    for (const s of socks) s.destroy();
    await waitFor(() => gw.listener.inFlight === 0, { what: `round ${round} to end at the gateway` });
  }
  await waitFor(() => rep.open === 0, { what: 'every upstream request to close', timeoutMs: 20_000 });
  const stats = gw.upstreams.stats();
  t.equal(stats.pending, 0, 'no pending upstream request');
  t.equal(stats.running, 0, 'undici runs nothing');
  t.equal(stats.queued, 0, 'undici queues nothing');
  t.ok(rep.seen.length <= 1000);
  t.equal(gw.listener.inFlight, 0);
});

t.test('a large response to a slow reader is held back, not buffered (backpressure)', async (t) => {
  const total = 64 * 1024 * 1024;
  const state = { written: 0, blocked: false };
  const rep = await replica(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (state.written < total) {
        state.written += chunk.length;
        if (!res.write(chunk)) {
          state.blocked = true;
          res.once('drain', () => {
            state.blocked = false;
            pump();
          });
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const sock = await open(gw.url, `GET ${PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  sock.pause();
  // The replica ends up blocked with a bounded amount in flight (socket buffers + a chunk or so).
  let last = -1;
  await waitFor(
    () => {
      const stable = state.blocked && state.written === last;
      last = state.written;
      return stable;
    },
    { intervalMs: 200, what: 'the replica to block on backpressure' },
  );
  t.ok(state.written < 32 * 1024 * 1024, `only ${(state.written / 2 ** 20).toFixed(1)} MiB left the replica while the client read nothing`);
  let received = 0;
  sock.on('data', (d: Buffer) => (received += d.length));
  sock.resume();
  await new Promise((r) => sock.on('close', r));
  t.ok(received > total, 'the whole body arrived once the client read');
  t.equal(state.written, total);
});

t.test('server-sent events stream through unbuffered', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const rep = await replica(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: first\n\n');
    void released.then(() => {
      res.write('data: second\n\n');
      res.end();
    });
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const res = await request(gw.url + PATH, { dispatcher: client(t) });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/event-stream');
  const it = res.body[Symbol.asyncIterator]();
  const first = await it.next();
  t.equal(Buffer.from(first.value as Buffer).toString(), 'data: first\n\n', 'the first event arrives before the stream ends');
  t.equal(rep.open, 1, 'the replica is still streaming');
  release();
  let rest = '';
  for (let n = await it.next(); !n.done; n = await it.next()) rest += Buffer.from(n.value as Buffer).toString();
  t.equal(rest, 'data: second\n\n');
});

t.test('HEAD and 204/304 responses pass through', async (t) => {
  const rep = await replica(t, (req, res) => {
    if (req.url?.endsWith('/empty')) res.writeHead(204, { 'content-length': '5' }).end();
    else if (req.url?.endsWith('/same')) res.writeHead(304, { etag: '"x"' }).end();
    else res.writeHead(200, { 'content-length': '5', 'content-type': 'text/plain' }).end(req.method === 'HEAD' ? undefined : 'hello');
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  const head = await call(agent, gw.url + PATH, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], '5');
  t.equal(head.text, '');
  const empty = await call(agent, `${gw.url}${PATH}/empty`);
  t.equal(empty.status, 204);
  t.equal(empty.headers['content-length'], undefined, "a 204 declares no body, whatever the replica's head said");
  const same = await call(agent, `${gw.url}${PATH}/same`);
  t.equal(same.status, 304);
  t.equal(same.headers.etag, '"x"');
  t.equal((await call(agent, gw.url + PATH)).text, 'hello', 'the connection is still good');
});

t.test('a retry goes to the replicas the route has now, not those it had when the request arrived', async (t) => {
  // The request reaches the old replica; while it is there the route moves to a new one, and the
  // old one then drops the connection (a replica being replaced): the GET is retried, on the new one.
  const fresh = await replica(t);
  let table!: Awaited<ReturnType<typeof gateway>>['table'];
  const old = await replica(t, (req) => {
    void table.apply({ putEndpoints: [endpoint('v1', [fresh.address])] }).then(() => req.socket.destroy());
  });
  const g = await gateway(t);
  table = g.table;
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [old.address])] });
  const agent = client(t);
  const res = await call(agent, g.gw.url + PATH);
  t.equal(res.status, 200, 'retried on the replica that replaced the old one');
  t.equal(old.seen.length, 1);
  t.equal(fresh.seen.length, 1);
  await waitFor(() => g.gw.upstreams.stats().pending === 0, { what: 'no pending upstream call' });

  // Same with a queued request (one connection per replica) whose replica is removed and stops:
  // the running and the queued request are both answered by the replica now in the route.
  const fresh2 = await replica(t);
  const held: Array<() => void> = [];
  const old2 = await replica(t, (req) => held.push(() => req.socket.destroy()));
  const g2 = await gateway(t, { env: { PORTICO_UPSTREAM_CONNECTIONS: '1' } });
  await g2.table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [old2.address])] });
  const first = call(agent, g2.gw.url + PATH);
  await waitFor(() => old2.seen.length === 1, { what: 'the first request at the old replica' });
  const queued = call(agent, g2.gw.url + PATH, { method: 'POST', body: 'queued' });
  await waitFor(() => g2.gw.upstreams.stats().queued === 1, { what: 'the second request queued' });
  await g2.table.apply({ putEndpoints: [endpoint('v1', [fresh2.address])] });
  // The old replica stops: listener closed, its connection dropped.
  old2.server.close();
  for (const h of held) h();
  t.equal((await first).status, 200, 'the running GET, retried on the new replica');
  t.equal((await queued).status, 200, 'the queued POST (never sent), retried on the new replica');
  t.equal(fresh2.seen.length, 2);
  t.equal(old2.seen.length, 1);
  await waitFor(() => g2.gw.upstreams.stats().pending === 0, { what: 'no pending upstream call' });

  // The changed record is not cached yet when the retry comes (its read is slow, as from Redis):
  // the retry waits for it. An endpoint that is gone meanwhile is not retried (502).
  const reader = new FakeReader();
  const fresh3 = await replica(t);
  const drops: Array<() => void> = [];
  const old3 = await replica(t, (req) => drops.push(() => req.socket.destroy()));
  const key = endpointKey(endpoint('v1', []));
  const v2key = endpointKey(endpoint('v2', []));
  reader.put([deploymentKey(deployment()), deployment()], [key, endpoint('v1', [old3.address])], [v2key, endpoint('v2', [old3.address])]);
  const g3 = await gateway(t, { routing: reader });
  const moved = call(agent, g3.gw.url + PATH);
  await waitFor(() => drops.length === 1, { what: 'the request at the old replica' });
  reader.put([key, endpoint('v1', [fresh3.address])]);
  reader.hold();
  reader.change(key);
  (drops.shift() as () => void)();
  await waitFor(() => reader.heldReads === 1, { what: 'the changed record being read' });
  reader.release(0);
  t.equal((await moved).status, 200, 'retried on the replica of the record read after the change');
  t.equal(fresh3.seen.length, 1);
  const gone = call(agent, `${g3.gw.url}/acme/mnist/web/v2/predict`);
  await waitFor(() => reader.heldReads === 2, { what: 'the v2 record being read' });
  reader.release(1);
  await waitFor(() => drops.length === 1, { what: 'the v2 request at the old replica' });
  reader.records.delete(v2key);
  reader.change(v2key);
  (drops.shift() as () => void)();
  await waitFor(() => reader.heldReads === 3, { what: 'the deleted record being read' });
  reader.release(2);
  const goneRes = await gone;
  t.equal(goneRes.status, 502, 'the endpoint was deleted: no replica to retry on');
  t.equal(goneRes.json().code, 'UPSTREAM_UNREACHABLE');
  t.equal(old3.seen.length, 2, 'not sent to the old replica again');
  await waitFor(() => g3.gw.upstreams.stats().pending === 0 && g3.gw.listener.inFlight === 0, { what: 'nothing left in flight' });
});
