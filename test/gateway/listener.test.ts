import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashPassword } from '../../gateway/auth/password.ts';
import { waitFor } from '../helpers/poll.ts';
import { call, client, deployment, endpoint, gateway, metricValue, rawRequest, replica } from './fixtures.ts';

const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

t.test('/healthz and /readyz', async (t) => {
  const { gw } = await gateway(t);
  const agent = client(t);
  const h = await call(agent, `${gw.url}/healthz`);
  t.equal(h.status, 200);
  t.same(h.json(), { status: 'ok' });
  const r = await call(agent, `${gw.url}/readyz`);
  t.equal(r.status, 200);
  t.same(r.json(), { status: 'ready' });
  t.equal((await call(agent, `${gw.url}/readyz?probe=1`, { method: 'HEAD' })).status, 200, 'HEAD, with a query string');
  for (const path of ['/healthz', '/readyz']) {
    for (const method of ['POST', 'DELETE', 'OPTIONS']) {
      const res = await call(agent, `${gw.url}${path}`, { method });
      t.equal(res.status, 405, `${method} ${path}`);
      t.equal(res.headers.allow, 'GET, HEAD');
      t.equal(res.json().code, 'METHOD_NOT_ALLOWED');
    }
  }
});

t.test('alias and version paths reach the replica as the canonical path, rest and query kept', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  const cases: [string, string, string][] = [
    ['/acme/mnist/web/production/predict', '/acme/mnist/web/v1/predict', '/acme/mnist/web/production/predict'],
    ['/acme/mnist/web/v1/predict', '/acme/mnist/web/v1/predict', '/acme/mnist/web/v1/predict'],
    ['/acme/mnist/web/production/predict/', '/acme/mnist/web/v1/predict/', '/acme/mnist/web/production/predict'],
    ['/acme/mnist/web/production/predict/a/b%20c.json?x=1&y=%2F&y=2', '/acme/mnist/web/v1/predict/a/b%20c.json?x=1&y=%2F&y=2', '/acme/mnist/web/production/predict'],
    ['/%61cme/mnist/web/prod%75ction/predict/z', '/acme/mnist/web/v1/predict/z', '/%61cme/mnist/web/prod%75ction/predict'],
  ];
  for (const [sent, canonical, prefix] of cases) {
    const res = await call(agent, gw.url + sent);
    t.equal(res.status, 200, sent);
    const seen = rep.seen.at(-1)!;
    t.equal(seen.url, canonical, `${sent} -> ${canonical}`);
    t.equal(seen.headers['x-vh-prefix'], prefix, 'X-VH-Prefix is the prefix as sent');
    t.equal(res.headers['x-portico-version'], 'v1');
  }
});

t.test('headers to the replica and back', async (t) => {
  const rep = await replica(t, (req, res) => {
    if (req.url?.endsWith('/split')) {
      // The hop-by-hop names in a second Connection line count as much as in the first.
      res.writeHead(200, ['Connection', 'keep-alive', 'Connection', 'X-Hop-By-Hop', 'X-Hop-By-Hop', 'must not pass', 'Content-Length', '5']);
      res.end('split');
      return;
    }
    res.writeHead(201, {
      'content-type': 'text/plain',
      connection: 'keep-alive, x-hop-by-hop',
      'x-hop-by-hop': 'must not pass',
      'x-request-id': 'replica-made-this-up',
      'x-custom': 'kept',
      'set-cookie': ['a=1', 'b=2'],
    });
    res.end('made');
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  const res = await call(agent, `${gw.url}/acme/mnist/web/production/predict`, {
    headers: {
      authorization: 'Bearer secret-token',
      'proxy-authorization': 'Basic c2VjcmV0',
      'x-request-id': 'client-id-42',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'spoofed.example',
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '8443',
      'x-forwarded-prefix': '/spoofed',
      'true-client-ip': '6.6.6.6',
      'cf-connecting-ip': '6.6.6.6',
      'x-vh-prefix': '/spoofed',
      'x-keep-me': 'yes',
      te: 'trailers',
    },
  });
  t.equal(res.status, 201);
  t.equal(res.text, 'made');
  const seen = rep.seen[0]!;
  t.equal(seen.headers.authorization, undefined, 'Authorization never reaches the replica');
  t.equal(seen.headers['proxy-authorization'], undefined);
  t.equal(seen.headers.te, undefined);
  t.equal(seen.headers['x-keep-me'], 'yes');
  t.equal(seen.headers['x-request-id'], 'client-id-42', 'the replica gets the client request id');
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'client-sent X-Forwarded-For is replaced (untrusted peer)');
  t.equal(seen.headers['x-forwarded-proto'], 'http');
  t.equal(seen.headers['x-forwarded-host'], new URL(gw.url).host);
  t.equal(seen.headers['x-forwarded-port'], undefined, 'nor are the other X-Forwarded-* an untrusted client sends passed on');
  t.equal(seen.headers['x-forwarded-prefix'], undefined);
  t.equal(seen.headers['true-client-ip'], undefined, 'nor a client address a CDN would set');
  t.equal(seen.headers['cf-connecting-ip'], undefined);
  t.equal(seen.headers['x-vh-prefix'], '/acme/mnist/web/production/predict');
  t.equal(seen.headers.host, rep.address, 'Host is the replica address, not the client Host');
  t.equal(res.headers['x-request-id'], 'client-id-42');
  t.equal(res.headers['x-portico-version'], 'v1');
  t.equal(res.headers['x-custom'], 'kept');
  t.equal(res.headers['x-hop-by-hop'], undefined);
  t.same(res.headers['set-cookie'], ['a=1', 'b=2']);
  const split = await call(agent, `${gw.url}/acme/mnist/web/v1/predict/split`);
  t.equal(split.text, 'split');
  t.equal(split.headers['x-hop-by-hop'], undefined, 'a header named in a second Connection line is dropped too');

  // undici never sends a client's Connection header: a raw request names a header in it.
  const raw = await rawRequest(gw.url, `GET /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close, X-Drop-Me\r\nX-Drop-Me: hop\r\nX-Keep-Me: yes\r\n\r\n`);
  t.match(raw, /^HTTP\/1\.1 201 /);
  t.equal(rep.seen[2]!.headers['x-drop-me'], undefined, 'headers named in Connection are dropped');
  t.equal(rep.seen[2]!.headers['x-keep-me'], 'yes');

  const fresh = await call(agent, `${gw.url}/acme/mnist/web/v1/predict`, { headers: { 'x-request-id': 'bad id with spaces' } });
  const id = fresh.headers['x-request-id'] as string;
  t.match(id, /^[0-9a-f-]{36}$/, 'a malformed request id is replaced');
  t.equal(rep.seen[3]!.headers['x-request-id'], id, 'the replica gets the same new id');
});

t.test('client forwarding headers are kept from a trusted proxy', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_TRUSTED_PROXIES: '127.0.0.0/8' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  await call(client(t), `${gw.url}/acme/mnist/web/v1/predict`, {
    headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com', 'x-forwarded-port': '443', 'x-forwarded-prefix': '/api', 'true-client-ip': '203.0.113.7' },
  });
  const seen = rep.seen[0]!;
  t.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  t.equal(seen.headers['x-forwarded-proto'], 'https');
  t.equal(seen.headers['x-forwarded-host'], 'api.example.com');
  t.equal(seen.headers['x-forwarded-port'], '443');
  t.equal(seen.headers['x-forwarded-prefix'], '/api');
  t.equal(seen.headers['true-client-ip'], '203.0.113.7');
});

t.test('a weighted alias splits traffic by weight', async (t) => {
  const a = await replica(t);
  const b = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({
    putDeployments: [deployment({ aliases: { canary: { versions: [{ version: 'v1', weight: 80 }, { version: 'v2', weight: 20 }] } } })],
    putEndpoints: [endpoint('v1', [a.address]), endpoint('v2', [b.address])],
  });
  const agent = client(t);
  const n = 500;
  const versions: Record<string, number> = {};
  for (let i = 0; i < n; i += 25) {
    const batch = await Promise.all(Array.from({ length: 25 }, () => call(agent, `${gw.url}/acme/mnist/web/canary/predict`)));
    for (const r of batch) {
      const v = r.headers['x-portico-version'] as string;
      versions[v] = (versions[v] ?? 0) + 1;
    }
  }
  // Binomial(500, 0.2): sd ~ 9; +-40 is over 4 sd.
  t.ok(Math.abs((versions.v2 ?? 0) - 100) <= 40, `v2 got ${versions.v2} of ${n} (want ~100)`);
  t.equal((versions.v1 ?? 0) + (versions.v2 ?? 0), n);
  t.equal(a.seen.length, versions.v1, 'v1 requests reached v1 replicas');
  t.equal(b.seen.length, versions.v2);
  t.ok(b.seen.every((s) => s.url === '/acme/mnist/web/v2/predict' && s.headers['x-vh-prefix'] === '/acme/mnist/web/canary/predict'));
});

t.test('a weighted alias keeps serving all its traffic when a version cannot: no ready replica, or no such endpoint', async (t) => {
  const a = await replica(t);
  const b = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({
    putDeployments: [deployment({ aliases: { canary: { versions: [{ version: 'v1', weight: 50 }, { version: 'v2', weight: 50 }] } } })],
    putEndpoints: [endpoint('v1', [a.address]), endpoint('v2', [b.address])],
  });
  const agent = client(t);
  const versionsOf = async (path: string) => {
    const seen: Record<string, number> = {};
    const batch = await Promise.all(Array.from({ length: 40 }, () => call(agent, `${gw.url}/acme/mnist/web/canary/${path}`)));
    for (const r of batch) {
      const key = `${r.status} ${r.headers['x-portico-version'] as string}`;
      seen[key] = (seen[key] ?? 0) + 1;
    }
    return seen;
  };
  const both = await versionsOf('predict');
  t.ok((both['200 v2'] ?? 0) > 0 && (both['200 v1'] ?? 0) > 0, `both versions serve while both can: ${JSON.stringify(both)}`);
  // The canary's replicas are gone (crashed, being replaced): its half goes to v1.
  await table.apply({ putEndpoints: [endpoint('v2', [])] });
  t.same(await versionsOf('predict'), { '200 v1': 40 }, 'every request served by v1');
  // An endpoint only v2 has: v1 has no such endpoint, so all of it goes to v2.
  await table.apply({ putEndpoints: [endpoint('v2', [b.address], { endpoint: 'explain' })] });
  t.same(await versionsOf('explain'), { '200 v2': 40 }, 'every request served by v2');
  t.ok(b.seen.slice(-40).every((s) => s.url === '/acme/mnist/web/v2/explain'));
  // Neither can: the answer names why.
  await table.apply({ putEndpoints: [endpoint('v1', []), endpoint('v2', [])] });
  const none = await call(agent, `${gw.url}/acme/mnist/web/canary/predict`);
  t.equal(none.status, 503);
  t.equal(none.json().code, 'NO_READY_REPLICA');
});

t.test('requests spread over replicas (least pending, round robin)', async (t) => {
  const reps = await Promise.all([replica(t), replica(t), replica(t)]);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', reps.map((r) => r.address))] });
  const agent = client(t);
  for (let i = 0; i < 30; i++) await call(agent, `${gw.url}/acme/mnist/web/v1/predict`);
  t.same(reps.map((r) => r.seen.length), [10, 10, 10]);
});

t.test('basic auth: 401 with a challenge, right/wrong/unknown users, verified credentials cached', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  const users = { alice: await hashPassword('wonderland', { N: 1024, r: 8, p: 1 }) };
  await table.apply({
    putDeployments: [deployment({ auth: 'basic', users })],
    putEndpoints: [endpoint('v1', [rep.address])],
  });
  const agent = client(t);
  const url = `${gw.url}/acme/mnist/web/production/predict`;
  const cases: [string, Record<string, string>, number][] = [
    ['no credentials', {}, 401],
    ['bearer token', { authorization: 'Bearer abc' }, 401],
    ['wrong password', { authorization: basic('alice', 'wrong') }, 401],
    ['unknown user', { authorization: basic('mallory', 'wonderland') }, 401],
    ['garbage', { authorization: 'Basic %%%' }, 401],
    ['right password', { authorization: basic('alice', 'wonderland') }, 200],
  ];
  for (const [name, headers, status] of cases) {
    const res = await call(agent, url, { headers });
    t.equal(res.status, status, name);
    if (status === 401) {
      t.equal(res.headers['www-authenticate'], 'Basic realm="acme/mnist/web"', `${name}: challenge`);
      t.equal(res.json().code, 'AUTH_REQUIRED');
    }
  }
  t.equal(rep.seen.length, 1, 'only the authenticated request reached the replica');
  t.equal(rep.seen[0]!.headers.authorization, undefined, 'credentials are not forwarded');
  const metricsBefore = await call(agent, gw.metricsUrl);
  const hashes = metricValue(metricsBefore.text, 'portico_gateway_auth_hashes_total');
  t.equal(hashes, 3, 'a hash per wrong, unknown and right credentials');
  for (let i = 0; i < 50; i++) {
    t.equal((await call(agent, url, { headers: { authorization: basic('alice', 'wonderland') } })).status, 200);
    t.equal((await call(agent, url, { headers: { authorization: basic('alice', 'wrong') } })).status, 401);
  }
  const after = (await call(agent, gw.metricsUrl)).text;
  t.equal(metricValue(after, 'portico_gateway_auth_hashes_total'), hashes, 'steady state costs no hash');
  t.equal(metricValue(after, 'portico_gateway_auth_cache_hits_total'), 50);
  t.equal(metricValue(after, 'portico_gateway_auth_failure_cache_hits_total'), 50);

  // A password change is seen at once.
  await table.apply({ putDeployments: [deployment({ auth: 'basic', users: { alice: await hashPassword('new', { N: 1024, r: 8, p: 1 }) } })] });
  t.equal((await call(agent, url, { headers: { authorization: basic('alice', 'wonderland') } })).status, 401);
  t.equal((await call(agent, url, { headers: { authorization: basic('alice', 'new') } })).status, 200);
  // An unknown version of a protected deployment does not reveal itself before auth.
  const hidden = await call(agent, `${gw.url}/acme/mnist/web/v404/predict`);
  t.equal(hidden.status, 401);
});

t.test('metrics are served on the metrics port only', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  for (let i = 0; i < 3; i++) await call(agent, `${gw.url}/acme/mnist/web/production/predict`);
  await call(agent, `${gw.url}/acme/mnist/web/v9/predict`);
  const pub = await call(agent, `${gw.url}/metrics`);
  t.equal(pub.status, 400, 'no /metrics on the public port');
  const m = await call(agent, gw.metricsUrl);
  t.equal(m.status, 200);
  t.match(m.headers['content-type'], /text\/plain/);
  const route = { owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict' };
  t.equal(metricValue(m.text, 'portico_gateway_requests_total', { ...route, status_class: '2xx' }), 3);
  t.equal(metricValue(m.text, 'portico_gateway_request_duration_seconds_count', route), 3);
  t.equal(metricValue(m.text, 'portico_gateway_requests_total', { owner: '', status_class: '4xx' }), 2, 'unrouted 404 and 400');
  t.ok(metricValue(m.text, 'portico_gateway_route_cache_hits_total') >= 2);
  t.equal((await call(agent, gw.metricsUrl.replace('/metrics', '/other'))).status, 404);
  const bad = await rawRequest(new URL(gw.metricsUrl).origin, 'GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n');
  t.match(bad, /^HTTP\/1\.1 400 [\s\S]*\r\n\r\n\{"statusCode":400,"code":"BAD_REQUEST"/, 'a malformed request to the metrics port: the JSON error');
});

t.test('the access log has one JSON line per request and never credentials', async (t) => {
  const rep = await replica(t);
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-log-'));
  const path = join(dir, 'access.log');
  const { gw, table } = await gateway(t, { env: { PORTICO_ACCESS_LOG: path } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const agent = client(t);
  await call(agent, `${gw.url}/acme/mnist/web/production/predict/x?token=query-secret`, {
    headers: { authorization: basic('u', 'header-secret'), 'x-request-id': 'log-me' },
  });
  await call(agent, `${gw.url}/acme/mnist/web/nope/predict`, { headers: { 'x-request-id': 'missing' } });
  const refused = await rawRequest(gw.url, 'GET /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n');
  await rawRequest(gw.url, `POST /a/b/c/d/e?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  await rawRequest(gw.url, 'GOT / HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => readFileSync(path, 'utf8').split('\n').length >= 6, { what: 'five access-log lines' });
  const text = readFileSync(path, 'utf8');
  t.notMatch(text, /secret|dTpoZWFkZXI/, 'no credentials, no query string');
  const [ok, missing, bad, long, garbled] = text.trimEnd().split('\n').map((l) => JSON.parse(l));
  t.match(bad, { method: 'GET', route: null, status: 400, error: 'BAD_REQUEST' }, "a request Node's parser refused is logged too, with its method");
  t.match(long, { method: 'POST', route: null, status: 414, error: 'URI_TOO_LONG' }, 'a 414 with its method');
  t.match(garbled, { method: '', route: null, status: 400, error: 'BAD_REQUEST' }, 'no method when the bytes begin with none');
  t.match(refused, new RegExp(`\r\nx-request-id: ${bad.requestId}\r\n`), 'under the request id its answer carries');
  t.match(ok, { requestId: 'log-me', method: 'GET', route: '/acme/mnist/web/production/predict', version: 'v1', replica: rep.address, status: 200 });
  t.ok(ok.bytes > 0);
  t.type(ok.durationMs, 'number');
  t.ok(!Number.isNaN(Date.parse(ok.time)));
  t.match(missing, { requestId: 'missing', status: 404, replica: null, error: 'ROUTE_NOT_FOUND' });
});

t.test('gateway errors are JSON with their contract status (table)', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_MAX_BODY_BYTES: '10' } });
  await table.apply({
    putDeployments: [deployment()],
    putEndpoints: [endpoint('v1', [rep.address]), endpoint('v0', [])],
  });
  const agent = client(t);
  const cases: [string, string, { method?: string; headers?: Record<string, string>; body?: string }, number, string, Record<string, RegExp>?][] = [
    ['empty segment', '/acme//web/v1/predict', {}, 400, 'BAD_PATH'],
    ['encoded slash in a route segment', '/acme/mnist/web/v%2F1/predict', {}, 400, 'BAD_PATH'],
    ['bad percent-encoding', '/acme/mnist/web/v1/predict/%zz', {}, 400, 'BAD_PATH'],
    ['unknown deployment', '/acme/mnist/nope/v1/predict', {}, 404, 'ROUTE_NOT_FOUND'],
    ['unknown version', '/acme/mnist/web/v9/predict', {}, 404, 'ROUTE_NOT_FOUND'],
    ['unknown endpoint', '/acme/mnist/web/v1/nope', {}, 404, 'ROUTE_NOT_FOUND'],
    ['no ready replica', '/acme/mnist/web/v0/predict', {}, 503, 'NO_READY_REPLICA', { 'retry-after': /^\d+$/, 'x-portico-version': /^v0$/ }],
    ['body over the limit', '/acme/mnist/web/v1/predict', { method: 'POST', body: 'x'.repeat(11) }, 413, 'PAYLOAD_TOO_LARGE'],
  ];
  for (const [name, path, opts, status, code, headers] of cases) {
    const res = await call(agent, gw.url + path, opts);
    t.equal(res.status, status, name);
    t.match(res.headers['content-type'], /^application\/json/, `${name}: JSON`);
    t.match(res.json(), { statusCode: status, code, error: String, message: String }, name);
    t.notMatch(res.text, /<html|at .+\.ts:\d+/i, `${name}: no HTML, no stack`);
    t.ok(res.headers['x-request-id'], `${name}: carries the request id`);
    for (const [h, re] of Object.entries(headers ?? {})) t.match(res.headers[h], re, `${name}: ${h}`);
  }
  // Clients normalise dot segments away (WHATWG URL); a raw request keeps them.
  for (const path of ['/acme/mnist/web/v1/predict/%2e%2e/x', '/acme/mnist/web/v1/predict/../../../v2/predict', '/acme/mnist/web/%2E/predict', '/acme/mnist/web/v1/predict/a/./b', '/acme/mnist/web/v1/predict/..#', '/acme/mnist/web/v1/predict/x/..#/v2']) {
    const out = await rawRequest(gw.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    t.match(out, /^HTTP\/1\.1 400 /, `${path}: 400`);
    t.match(out, /"code":"BAD_PATH"/);
  }
  t.equal(rep.seen.length, 0, 'none of these reached the replica');
});

t.test("Node's parser errors and other protocol refusals are JSON too", async (t) => {
  const { gw } = await gateway(t);
  const cases: [string, string, number, string][] = [
    ['garbage request line', 'NOT HTTP AT ALL\r\n\r\n', 400, 'BAD_REQUEST'],
    ['bad header', 'GET /a/b/c/d/e HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 400, 'BAD_REQUEST'],
    ['no Host on HTTP/1.1', 'GET /a/b/c/d/e HTTP/1.1\r\n\r\n', 400, 'BAD_REQUEST'],
    ['headers too large', `GET /a/b/c/d/e HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ['URI too long', `GET /a/b/c/d/e?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'URI_TOO_LONG'],
    ['URI too long, head still arriving', `GET /a/b/c/d/e/${'a'.repeat(20_000)}`, 414, 'URI_TOO_LONG'],
    ['unsupported Expect', 'GET /a/b/c/d/e HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nX-Request-Id: teapot-1\r\n\r\n', 417, 'EXPECTATION_FAILED'],
    ['CONNECT', 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nX-Request-Id: connect-1\r\n\r\n', 405, 'METHOD_NOT_ALLOWED'],
  ];
  const outs = new Map<string, string>();
  for (const [name, bytes, status, code] of cases) {
    const out = await rawRequest(gw.url, bytes);
    outs.set(name, out);
    t.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), name);
    const body = out.slice(out.indexOf('\r\n\r\n') + 4);
    t.match(JSON.parse(body), { statusCode: status, code }, name);
  }
  t.match(outs.get('unsupported Expect'), /\r\nx-request-id: teapot-1\r\n/i, '417 carries the request id');
  t.match(outs.get('unsupported Expect'), /\r\nconnection: close\r\n/i, 'and closes (a body may or may not follow)');
  t.match(outs.get('CONNECT'), /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i, '405 names the methods allowed');
  t.match(outs.get('CONNECT'), /\r\nx-request-id: connect-1\r\n/i);
  t.match(outs.get('CONNECT'), /\r\nconnection: close\r\n/i);
  const unrouted4xx = async () => metricValue(await (await fetch(gw.metricsUrl)).text(), 'portico_gateway_requests_total', { owner: '', status_class: '4xx' });
  // The 400 for a missing Host comes from the header stage, so it is a request too.
  await waitFor(async () => (await unrouted4xx()) === 3, { what: "the 400 without Host, the 417 and the 405 counted as requests" });
});

t.test('bytes the parser refuses after a complete request: that request is answered, then the connection closes', async (t) => {
  let release: () => void = () => {};
  const rep = await replica(t, (req, res) => {
    req.resume();
    if (req.url?.endsWith('/stream')) {
      // The head goes out at once; the end waits for the test.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first ');
      release = () => res.end('last');
      return;
    }
    req.on('end', () => res.end('done'));
  });
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  // Garbage in the same packet as the request: refused while the request is being proxied.
  const out = await rawRequest(gw.url, 'POST /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGARBAGE GARBAGE\r\n\r\n', { until: () => false });
  t.match(out, /^HTTP\/1\.1 200 /, 'the client gets the answer to its request, not a 400');
  t.match(out, /\r\nconnection: close\r\n/i);
  t.notMatch(out, /HTTP\/1\.1 400/);
  t.match(out, /done$/);
  t.equal(rep.seen.length, 1);
  // Garbage after the answer's head has gone out: the answer completes, then the connection ends.
  const { hostname, port } = new URL(gw.url);
  const { connect } = await import('node:net');
  const sock = connect(Number(port), hostname);
  let got = '';
  sock.on('data', (d) => (got += d.toString('latin1')));
  const closed = new Promise((r) => sock.on('close', r));
  sock.write('GET /acme/mnist/web/v1/predict/stream HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => got.includes('first '), { what: 'the head and first chunk' });
  sock.write('GARBAGE GARBAGE\r\n\r\n');
  const text = () => fetch(gw.metricsUrl).then((r) => r.text());
  await waitFor(async () => metricValue(await text(), 'portico_gateway_client_errors_total', { code: 'BAD_REQUEST' }) === 2, { what: 'the refusal to be counted' });
  release();
  await closed;
  t.match(got, /^HTTP\/1\.1 200 /);
  t.match(got, /first .*last/s, 'the streamed answer is complete');
  t.notMatch(got, /HTTP\/1\.1 400/);
});

t.test('a request head that trickles in slower than PORTICO_HEADERS_TIMEOUT_SECONDS is a 408', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t, { env: { PORTICO_HEADERS_TIMEOUT_SECONDS: '1' } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const { hostname, port } = new URL(gw.url);
  const sock = connect(Number(port), hostname);
  let out = '';
  sock.on('data', (d) => (out += d.toString()));
  sock.on('error', () => {});
  const closed = new Promise((r) => sock.on('close', r));
  sock.write('GET /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  // One byte every 100 ms: the connection is never idle, the head never complete.
  const trickle = setInterval(() => sock.writable && sock.write('a'), 100);
  t.teardown(() => clearInterval(trickle));
  const started = performance.now();
  await closed;
  const ms = performance.now() - started;
  t.match(out, /^HTTP\/1\.1 408 [^]*"code":"REQUEST_TIMEOUT"/);
  t.ok(ms >= 900 && ms < 2500, `after ${Math.round(ms)} ms`);
  t.equal(rep.seen.length, 0);
});

t.test('a client that closes its side in the middle of a body gets one access-log line (499), not also a 400', async (t) => {
  const rep = await replica(t, (req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-log-'));
  const path = join(dir, 'access.log');
  const { gw, table } = await gateway(t, { env: { PORTICO_ACCESS_LOG: path } });
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const { hostname, port } = new URL(gw.url);
  const sock = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
  let out = '';
  sock.on('data', (d) => (out += d.toString()));
  sock.on('error', () => {});
  const closed = new Promise((r) => sock.on('close', r));
  sock.write('POST /acme/mnist/web/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789');
  await waitFor(() => rep.seen.length === 1, { what: 'the request at the replica' });
  sock.end();
  await closed;
  t.equal(out, '', 'no answer written to a client that gave up');
  await waitFor(() => gw.listener.inFlight === 0, { what: 'the exchange to end' });
  await waitFor(() => readFileSync(path, 'utf8').trim() !== '', { what: 'the log line' });
  // One more request, so that a late second line for the first would be there by now.
  await call(client(t), `${gw.url}/acme/mnist/web/v1/predict`, { method: 'POST', body: 'x' });
  await waitFor(() => readFileSync(path, 'utf8').trim().split('\n').length >= 2, { what: 'two log lines' });
  const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { status: number; method: string });
  t.same(lines.map((l) => [l.method, l.status]).sort(), [['POST', 200], ['POST', 499]]);
  const m = await call(client(t), gw.metricsUrl);
  t.notMatch(m.text, /portico_gateway_client_errors_total\{[^}]*\} [1-9]/, 'no client error counted');
});
