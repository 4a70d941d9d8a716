import t, { type Test } from 'tap';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { createDeployment, D, P, readyVersion, startApi } from '../harness.ts';

const ERROR_KEYS = ['statusCode', 'code', 'error', 'message'];

function assertError(t: Test, res: { status: number; json: any; headers: Headers | Record<string, string> }, status: number, code: string, message?: RegExp) {
  t.equal(res.status, status, `status ${status}`);
  t.equal(res.json?.code, code, `code ${code}`);
  t.equal(res.json?.statusCode, status);
  for (const k of ERROR_KEYS) t.ok(k in (res.json ?? {}), `error body has ${k}`);
  const header = (n: string) => (res.headers instanceof Headers ? res.headers.get(n) : res.headers[n]);
  t.match(header('content-type'), /^application\/json/);
  t.equal(header('cache-control'), 'no-store');
  t.equal(header('x-content-type-options'), 'nosniff');
  if (message) t.match(res.json.message, message);
}

t.test('API answers carry the security headers', async (t) => {
  const api = await startApi(t);
  const res = await api.call('GET', '/api/v1/targets');
  t.equal(res.status, 200);
  t.same(res.json, { items: [{ name: 'local', kind: 'local', gatewayUrl: 'http://127.0.0.1:8080' }] });
  t.equal(res.headers.get('cache-control'), 'no-store');
  t.equal(res.headers.get('x-content-type-options'), 'nosniff');
  t.equal(res.headers.get('x-frame-options'), 'DENY');
  t.match(res.headers.get('content-security-policy'), /default-src 'none'/);
  t.match(res.headers.get('content-type'), 'application/json; charset=utf-8');
  t.match(res.headers.get('x-request-id'), /^[0-9a-f-]{36}$/);
});

t.test('the store unreachable is a 503 STORE_UNAVAILABLE with Retry-After, never a 500', async (t) => {
  const api = await startApi(t);
  const { StoreUnavailableError } = await import('../../../builder/store/store.ts');
  for (const err of [new Error('Command timed out'), new Error('Connection is closed.'), new StoreUnavailableError('the store is closed')]) {
    api.fake.listDeployments = async () => {
      throw err;
    };
    const res = await api.call('GET', `${P}/deployments`);
    assertError(t, res, 503, 'STORE_UNAVAILABLE');
    t.equal(res.headers.get('retry-after'), '1', err.message);
    // A timed-out command was sent and may still be applied: the answer says so.
    t.equal(/may still be applied/.test(res.json.message), err.message === 'Command timed out', res.json.message);
  }
  api.fake.listDeployments = async () => {
    throw new Error('something else');
  };
  assertError(t, await api.call('GET', `${P}/deployments`), 500, 'INTERNAL');
});

t.test('an embedded store that failed to write (disk full): the 503 says a restart is needed, not "try again"', async (t) => {
  const api = await startApi(t);
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { EmbeddedStore } = await import('../../../builder/store/embedded.ts');
  const dir = mkdtempSync(join(tmpdir(), 'portico-failed-store-'));
  const store = await EmbeddedStore.open({ dir: join(dir, 'store') });
  t.teardown(() => store.close().finally(() => rmSync(dir, { recursive: true, force: true })));
  rmSync(dir, { recursive: true }); // its journal cannot be written any more
  await t.rejects(store.putState('ns', 'k', 1));
  api.fake.listDeployments = async () => {
    await store.getState('ns', 'k');
    return [];
  };
  const res = await api.call('GET', `${P}/deployments`);
  assertError(t, res, 503, 'STORE_UNAVAILABLE');
  t.match(res.json.message, /failed to write.*restart/i, res.json.message);
  t.notMatch(res.json.message, /try again/, 'retrying does not help');
  t.equal(res.headers.get('retry-after'), null, 'no Retry-After: retrying does not help');
  api.fake.storeFailed = true;
  const health = await api.call('GET', '/healthz', { token: null });
  assertError(t, health, 503, 'STORE_UNAVAILABLE');
  t.equal(health.json.message, res.json.message, '/healthz says what every call says');
  t.equal(health.headers.get('retry-after'), null);
});

t.test('GET /healthz needs no token', async (t) => {
  const api = await startApi(t);
  const res = await api.call('GET', '/healthz', { token: null });
  t.equal(res.status, 200);
  t.same(res.json, { status: 'ok', store: 'ok' });
  api.fake.storeLost = true;
  t.same((await api.call('GET', '/healthz', { token: null })).json, { status: 'ok', store: 'lost' }, 'a lost store is said, still 200');
  api.fake.storeLost = false;
  const busted = await api.call('GET', '/healthz?nocache=1723&x=1&x=2', { token: null });
  t.equal(busted.status, 200, 'a probe with a cache-busting query string is answered too');
  const other = await api.call('GET', `${P}/deployments?bogus=1`);
  t.equal(other.status, 400, 'routes without a query still refuse one');
});

t.test('401 without a token, with a bad one, with a malformed header', async (t) => {
  const api = await startApi(t);
  const none = await api.call('GET', '/api/v1/targets', { token: null });
  assertError(t, none, 401, 'AUTH_REQUIRED', /Bearer/);
  t.equal(none.headers.get('www-authenticate'), 'Bearer realm="portico"');
  const bad = await api.call('GET', '/api/v1/targets', { token: 'nope' });
  assertError(t, bad, 401, 'AUTH_REQUIRED', /not valid/);
  t.equal(bad.headers.get('www-authenticate'), 'Bearer realm="portico", error="invalid_token"');
  for (const header of ['Basic dGVzdDp0ZXN0', 'Bearer', 'Bearer a b', `Bearer ${'x'.repeat(5000)}`]) {
    const res = await api.call('GET', '/api/v1/targets', { headers: { authorization: header } });
    assertError(t, res, 401, 'AUTH_REQUIRED');
  }
  const ok = await api.call('GET', '/api/v1/targets', { headers: { authorization: 'bearer test-token' } });
  t.equal(ok.status, 200, 'the scheme is case-insensitive');
  t.notOk(api.fake.calls.some((c) => c.op === 'targets' && api.fake.calls.indexOf(c) < 2), 'nothing ran before auth');
});

t.test('auth comes before validation and before the body is read', async (t) => {
  const api = await startApi(t);
  const res = await api.call('POST', `${P}/deployments`, { token: null, raw: '{not json', headers: { 'content-type': 'application/json' } });
  assertError(t, res, 401, 'AUTH_REQUIRED');
  const bad = await api.call('GET', '/api/v1/projects/../x/deployments', { token: null });
  t.equal(bad.status, 404, 'fetch normalises .. away: no such route');
  const undecodable = await api.call('GET', '/api/v1/projects/%E0%A4%A/mnist/deployments', { token: null });
  assertError(t, undecodable, 401, 'AUTH_REQUIRED', /Bearer/);
});

t.test('404 for unknown routes, 405 with Allow for a wrong method', async (t) => {
  const api = await startApi(t);
  assertError(t, await api.call('GET', '/api/v1/nothing'), 404, 'ROUTE_NOT_FOUND', /No route GET \/api\/v1\/nothing/);
  assertError(t, await api.call('GET', '/api/v2/targets', { token: null }), 404, 'ROUTE_NOT_FOUND');
  assertError(t, await api.call('GET', '/', { token: null }), 404, 'ROUTE_NOT_FOUND');
  assertError(t, await api.call('GET', '/api/v1/targets/'), 404, 'ROUTE_NOT_FOUND');
  const res = await api.call('DELETE', `${P}/deployments`);
  assertError(t, res, 405, 'METHOD_NOT_ALLOWED', /allowed: GET, HEAD, POST/);
  t.equal(res.headers.get('allow'), 'GET, HEAD, POST');
  const put = await api.call('POST', `${D}/aliases/prod`, { body: {} });
  t.equal(put.status, 405);
  t.equal(put.headers.get('allow'), 'PUT, DELETE');
});

t.test('HEAD is answered like GET without a body', async (t) => {
  const api = await startApi(t);
  const res = await fetch(`${api.url}/api/v1/targets`, { method: 'HEAD', headers: { authorization: 'Bearer test-token' } });
  t.equal(res.status, 200);
  t.equal(await res.text(), '');
  t.match(res.headers.get('content-type'), /json/);
});

/** A request whose path is sent exactly as given (fetch would normalise dot segments). */
function rawRequest(base: string, method: string, path: string): Promise<{ status: number; json: any; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers: { authorization: 'Bearer test-token' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => {
        resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined, headers: res.headers as Record<string, string> });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('path parameters are validated after decoding', async (t) => {
  const api = await startApi(t);
  const cases: [string, string][] = [
    ['/api/v1/projects/..%2F..%2Fetc/mnist/deployments', 'path.owner'],
    ['/api/v1/projects/%2E%2E/mnist/deployments', 'path.owner'],
    ['/api/v1/projects/%2E/mnist/deployments', 'path.owner'],
    ['/api/v1/projects/acme/a%2Fb/deployments', 'path.project'],
    ['/api/v1/projects/acme/mnist/deployments/-web', 'path.deployment'],
    ['/api/v1/projects/acme/mnist/deployments/we%00b', 'path.deployment'],
    [`/api/v1/projects/acme/mnist/deployments/${'w'.repeat(101)}`, 'path.deployment'],
    ['/api/v1/projects/acme/mnist/deployments/web/versions/a%20b', 'path.version'],
    ['/api/v1/tokens/%2E%2E', 'path.name'],
    ['/api/v1/projects/acme/mnist/deployments/web/users/a:b', 'path.user'],
  ];
  for (const [path, field] of cases) {
    const method = path.includes('/users/') || path.includes('/tokens/') ? 'DELETE' : 'GET';
    const res = await rawRequest(api.url, method, path);
    assertError(t, res, 400, 'VALIDATION_FAILED', new RegExp(`^${field.replace('.', '\\.')}: must match`));
    t.equal(res.json.problems[0].path, field);
  }
  assertError(t, await api.call('GET', '/api/v1/projects/%E0%A4%A/mnist/deployments'), 400, 'BAD_REQUEST', /percent-encoding/);
  t.notOk(api.fake.calls.some((c) => c.op === 'listDeployments'), 'the control plane never saw a bad name');
});

t.test('raw dot segments never reach a handler', async (t) => {
  const api = await startApi(t);
  for (const path of ['/api/v1/projects/../mnist/deployments', '/api/v1/projects/./mnist/deployments', '/api/v1/projects/acme/mnist/deployments/..']) {
    assertError(t, await rawRequest(api.url, 'GET', path), 400, 'VALIDATION_FAILED', /must match/);
  }
  t.notOk(api.fake.calls.some((c) => c.op === 'listDeployments' || c.op === 'getDeployment'));
});

t.test("requests Node's parser refuses get the JSON error shape too", async (t) => {
  const api = await startApi(t);
  const { port } = new URL(api.url);
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), '127.0.0.1');
      let out = '';
      sock.on('data', (d) => (out += d.toString()));
      sock.on('end', () => resolve(out));
      sock.on('error', reject);
      sock.end(bytes);
    });
  const cases: [string, string, number, string][] = [
    ['bad header', 'GET /api/v1/targets HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n', 400, 'BAD_REQUEST'],
    ['garbage', 'NOT HTTP AT ALL\r\n\r\n', 400, 'BAD_REQUEST'],
    ['headers too large', `GET /api/v1/targets HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
    ['URI too long', `GET /api/v1/targets?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'URI_TOO_LONG'],
  ];
  for (const [name, bytes, status, code] of cases) {
    const out = await raw(bytes);
    t.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), `${name}: ${status}`);
    t.match(out, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i, `${name}: JSON`);
    t.match(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4)), { statusCode: status, code }, `${name}: the error shape`);
  }
});

t.test('query strings: unknown, repeated, bad values', async (t) => {
  const api = await startApi(t);
  assertError(t, await api.call('GET', `${P}/deployments?x=1`), 400, 'VALIDATION_FAILED', /^query\.x: is not a known query parameter/);
  assertError(t, await api.call('GET', '/api/v1/audit?limit=0'), 400, 'VALIDATION_FAILED', /^query\.limit: must be an integer from 1 to 1000$/);
  assertError(t, await api.call('GET', '/api/v1/audit?limit=1&limit=2'), 400, 'VALIDATION_FAILED', /query\.limit: must be given once/);
  assertError(t, await api.call('GET', '/api/v1/audit?limti=2'), 400, 'VALIDATION_FAILED', /query\.limti: is not a known query parameter/);
  t.equal((await api.call('GET', '/api/v1/audit?limit=5')).status, 200);
});

t.test('query strings: a value that can never match is refused, not an empty list', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  // Audit ids are whole numbers: any other cursor cannot name an item.
  for (const before of ['zz', '-1', '1e3', 'a_b']) {
    assertError(t, await api.call('GET', `/api/v1/audit?before=${before}`), 400, 'VALIDATION_FAILED', new RegExp(`^query\\.before: must match \\^\\[0-9\\]\\{1,15\\}\\$ \\(got "${before}"\\)$`));
  }
  t.equal((await api.call('GET', '/api/v1/audit?before=2')).status, 200);
  // A time window that holds nothing, as the metrics routes refuse from >= to.
  for (const path of [`${D}/versions/v1/endpoints/predict/logs`, `${D}/versions/v1/build-log`]) {
    assertError(t, await api.call('GET', `${path}?since=3000&until=2000`), 400, 'VALIDATION_FAILED', /^query\.since: must be less than query\.until$/);
    // A followed stream with an end it would never reach: it stayed open for good, silent.
    assertError(t, await api.call('GET', `${path}?until=2001&follow=true`), 400, 'VALIDATION_FAILED', /^query\.until: cannot be combined with query\.follow \(a followed log has no end\)$/);
    t.equal((await api.call('GET', `${path}?since=2000&until=2001`)).status, 200);
  }
  const args = (op: string) => api.fake.calls.filter((c) => c.op === op).flatMap((c) => c.args);
  t.same(args('audit'), [{ limit: 100, before: '2' }], 'only the good cursor reached the control plane');
  t.notOk([...args('endpointLogs'), ...args('buildLogStream')].some((a) => (a as { since?: number }).since === 3000 || (a as { until?: number }).until === 2000), 'no empty window reached it');
});

t.test('JSON bodies: 415, 400 invalid JSON, 413 over the limit, validation naming fields', async (t) => {
  const api = await startApi(t, { server: { maxJsonBytes: 200 } });
  const text = await api.call('POST', `${P}/deployments`, { raw: 'name=web', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assertError(t, text, 415, 'UNSUPPORTED_MEDIA_TYPE', /application\/json/);
  const noType = await api.call('POST', `${P}/deployments`, { raw: '{"name":"web"}' });
  t.equal(noType.status, 415, 'a body without Content-Type is refused');
  const invalid = await api.call('POST', `${P}/deployments`, { raw: '{"name":', headers: { 'content-type': 'application/json' } });
  assertError(t, invalid, 400, 'BAD_REQUEST', /not valid JSON/);
  const big = await api.call('POST', `${P}/deployments`, { body: { name: 'x'.repeat(300) } });
  assertError(t, big, 413, 'PAYLOAD_TOO_LARGE', /200 bytes/);
  const chunks = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(i === 0 ? '{"name":"' : 'x'.repeat(50)));
      c.close();
    },
  });
  const chunked = await api.call('POST', `${P}/deployments`, { raw: chunks, headers: { 'content-type': 'application/json' } });
  assertError(t, chunked, 413, 'PAYLOAD_TOO_LARGE');
  const empty = await api.call('POST', `${P}/deployments`, { headers: { 'content-type': 'application/json' }, raw: '' });
  assertError(t, empty, 400, 'VALIDATION_FAILED', /^body: is required$/);
  const vendor = await api.call('POST', `${P}/deployments`, { raw: '{"name":"web"}', headers: { 'content-type': 'application/vnd.portico+json; charset=utf-8' } });
  t.equal(vendor.status, 201, 'application/*+json is JSON');
  const wrong = await api.call('POST', `${P}/deployments`, { body: { name: 'web2', auth: 'token', extra: true } });
  assertError(t, wrong, 400, 'VALIDATION_FAILED');
  t.same(wrong.json.problems, [
    { path: 'body.auth', message: 'must be one of "none", "basic"' },
    { path: 'body.extra', message: 'is not a known field (known: "name", "target", "auth")' },
  ]);
});

t.test('a failing control plane is a 500 INTERNAL without details, and it is logged', async (t) => {
  const api = await startApi(t);
  api.fake.failNext('targets', new Error('disk on fire at /secret/path'));
  const res = await api.call('GET', '/api/v1/targets');
  assertError(t, res, 500, 'INTERNAL');
  t.same(res.json, { statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'Internal error.' });
  t.notMatch(res.text, /secret|stack|at /);
  t.equal(api.errors.length, 1);
  t.match(api.errors[0], { msg: 'internal error in the admin API', extra: { method: 'GET', path: '/api/v1/targets', err: { message: 'disk on fire at /secret/path' } } });
  t.equal(api.errors[0]!.extra!.requestId, res.headers.get('x-request-id'), 'the log names the request id the client saw');
});

t.test('a non-API path goes to the UI handler, else 404', async (t) => {
  const api = await startApi(t, {
    server: {
      ui: async (req, res) => {
        if (req.url === '/') {
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html>ui</html>');
          return true;
        }
        if (req.url === '/boom') throw new Error('ui broke');
        return false;
      },
    },
  });
  const home = await api.call('GET', '/', { token: null });
  t.equal(home.status, 200);
  t.equal(home.text, '<html>ui</html>');
  t.equal(home.headers.get('x-content-type-options'), 'nosniff');
  assertError(t, await api.call('GET', '/nope', { token: null }), 404, 'ROUTE_NOT_FOUND');
  assertError(t, await api.call('GET', '/boom', { token: null }), 500, 'INTERNAL');
  assertError(t, await api.call('GET', '/api/v1/nope', { token: null }), 404, 'ROUTE_NOT_FOUND', /No route/);
});

t.test('close() ends kept-alive connections', async (t) => {
  const { startAdminServer } = await import('../../../admin/api/server.ts');
  const { FakeControlPlane } = await import('../../helpers/fake-control-plane.ts');
  const server = await startAdminServer({ control: new FakeControlPlane(), host: '127.0.0.1', port: 0 });
  const sock = connect(server.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  const answer = await new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
  t.match(answer, /^HTTP\/1\.1 200/);
  const closed = new Promise((r) => sock.once('close', r));
  await server.close();
  await closed;
  t.pass('the idle keep-alive connection was closed');
});
