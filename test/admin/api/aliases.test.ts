import t from 'tap';
import { createDeployment, D, P, readyVersion, startApi } from '../harness.ts';

t.test('aliases: set, weighted, list, history, delete', async (t) => {
  const api = await startApi(t, { fake: { gateways: ['gw-a', 'gw-b'], silentGateways: ['gw-c'] } });
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  await readyVersion(api, { name: 'v2' });
  t.same((await api.call('GET', `${D}/aliases`)).json, { items: [] });

  const set = await api.call('PUT', `${D}/aliases/production`, { body: { version: 'v1' } });
  t.equal(set.status, 200);
  t.same(set.json, { name: 'production', version: 'v1', acknowledged: ['gw-a', 'gw-b'], missing: ['gw-c'] });
  const weighted = await api.call('PUT', `${D}/aliases/production`, { body: { versions: [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }] } });
  t.equal(weighted.status, 200);
  t.same(weighted.json.versions, [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }]);

  const list = await api.call('GET', `${D}/aliases`);
  t.same(list.json, { items: [{ name: 'production', versions: [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }] }] });

  t.equal((await api.call('DELETE', `${D}/aliases/production`)).status, 204);
  const history = await api.call('GET', `${D}/aliases/production/history`);
  t.equal(history.status, 200);
  t.match(history.json.items, [
    { by: 'admin', to: null },
    { by: 'admin', from: { version: 'v1' }, to: { versions: [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }] } },
    { by: 'admin', from: null, to: { version: 'v1' } },
  ], 'newest first');
  t.equal((await api.call('DELETE', `${D}/aliases/production`)).status, 404);
  t.equal((await api.call('GET', `${D}/aliases/staging/history`)).status, 404);
});

t.test('aliases: not ready is refused unless forced; unknown versions are 404', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const api = await startApi(t, { fake: { beforeBuild: () => held } });
  await createDeployment(api);
  const building = await api.call('POST', `${D}/versions`, { body: { name: 'v1', source: { git: { url: 'https://x/y.git' } } } });
  t.equal(building.json.status, 'building');
  const refused = await api.call('PUT', `${D}/aliases/staging`, { body: { version: 'v1' } });
  t.equal(refused.status, 409);
  t.equal(refused.json.code, 'VERSION_NOT_READY');
  const forced = await api.call('PUT', `${D}/aliases/staging`, { body: { version: 'v1', force: true } });
  t.equal(forced.status, 200);
  t.same(api.fake.calls.filter((c) => c.op === 'setAlias').map((c) => c.args[3]), [{ force: false }, { force: true }]);
  const missing = await api.call('PUT', `${D}/aliases/staging`, { body: { version: 'v9' } });
  t.equal(missing.status, 404);
  release();
});

t.test('aliases: body validation names the field', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const cases: [unknown, string][] = [
    [{}, 'body: must be one of {"version"} or {"versions"}'],
    [{ version: 'v1', versions: [] }, 'body: must be one of {"version"} or {"versions"}'],
    [{ version: '' }, 'body.version: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ (got "")'],
    [{ version: 'v1', force: 'yes' }, 'body.force: must be true or false'],
    [{ versions: [] }, 'body.versions: must have at least 1 item'],
    [{ versions: [{ version: 'v1', weight: 50 }, { version: 'v2', weight: 40 }] }, 'body.versions: weights must sum to 100 (they sum to 90)'],
    [{ versions: [{ version: 'v1', weight: 50 }, { version: 'v1', weight: 50 }] }, 'body.versions[1].version: "v1" is listed more than once'],
    [{ versions: [{ version: 'v1', weight: 50.5 }, { version: 'v2', weight: 49.5 }] }, 'body.versions[0].weight: must be an integer from 1 to 100; body.versions[1].weight: must be an integer from 1 to 100'],
    [{ versions: [{ version: 'v1', weight: 0 }, { version: 'v2', weight: 100 }] }, 'body.versions[0].weight: must be an integer from 1 to 100'],
    [{ versions: [{ version: 'v1' }] }, 'body.versions[0].weight: is required'],
  ];
  for (const [body, message] of cases) {
    const res = await api.call('PUT', `${D}/aliases/prod`, { body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.json.message, message);
  }
  t.notOk(api.fake.calls.some((c) => c.op === 'setAlias'));
});

t.test('test console: through a gateway, basic auth, errors', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  await api.call('PUT', `${D}/aliases/production`, { body: { version: 'v1' } });
  const res = await api.call('POST', `${D}/test`, { body: { target: 'production', endpoint: 'predict', method: 'POST', path: '/score?x=1', headers: { 'x-a': 'b' }, body: '{"x":1}' } });
  t.equal(res.status, 200);
  t.match(res.json, { status: 200, headers: { 'x-portico-version': 'v1' }, durationMs: Number });
  t.same(JSON.parse(Buffer.from(res.json.bodyBase64, 'base64').toString()), {
    method: 'POST', path: '/acme/mnist/web/v1/predict/score?x=1', headers: { 'x-a': 'b' }, body: '{"x":1}',
  });
  const binary = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'PUT', bodyBase64: Buffer.from('hi').toString('base64') } });
  t.equal(JSON.parse(Buffer.from(binary.json.bodyBase64, 'base64').toString()).body, 'hi');

  await api.call('PATCH', D, { body: { auth: 'basic' } });
  await api.call('PUT', `${D}/users/alice`, { body: { password: 'long enough' } });
  const denied = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'GET' } });
  t.equal(denied.json.status, 401, 'the endpoint\'s 401 is relayed as data');
  const allowed = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'GET', username: 'alice', password: 'long enough' } });
  t.equal(allowed.json.status, 200);

  const cases: [unknown, string][] = [
    [{ target: 'v1', endpoint: 'predict' }, 'body.method: is required'],
    [{ target: 'v1', endpoint: 'predict', method: 'BREW' }, 'body.method: must be one of "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"'],
    [{ target: 'v1', endpoint: 'predict', method: 'GET', path: 'no-slash' }, 'body.path: must match ^(/[^\\s]*)?$ (got "no-slash")'],
    [{ target: 'v1', endpoint: 'predict', method: 'GET', body: 'a', bodyBase64: 'YQ==' }, 'body.bodyBase64: send either body or bodyBase64, not both'],
    [{ target: 'v1', endpoint: 'predict', method: 'GET', bodyBase64: 'not base64!' }, 'body.bodyBase64: must match ^[A-Za-z0-9+/]*={0,2}$ (got "not base64!")'],
    [{ target: 'v1', endpoint: 'predict', method: 'GET', headers: { 'bad header': 'x' } }, 'body.headers["bad header"]: name must match ^[!#$%&\'*+.^_`|~0-9A-Za-z-]{1,256}$'],
  ];
  // Header values HTTP cannot carry: refused naming the header (they were a 503 "gateway did not answer", logged with a stack).
  const badValue = 'is not a valid HTTP header value (CR, LF, NUL and other control characters, and characters beyond U+00FF, cannot be sent)';
  for (const [header, value] of [['x-a', 'one\r\nx-injected: two'], ['x-a', 'line\n'], ['x-b', 'nul\0'], ['x-c', 'bell\u0007'], ['x-d', '\u20ac5']] as const) {
    cases.push([{ target: 'v1', endpoint: 'predict', method: 'GET', headers: { 'x-ok': 'fine\tvalue \u00e9', [header]: value } }, `body.headers.${header}: ${badValue}`]);
  }
  const tests = api.fake.calls.filter((c) => c.op === 'test').length;
  for (const [body, message] of cases) {
    const res = await api.call('POST', `${D}/test`, { body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.json.code, 'VALIDATION_FAILED');
    t.equal(res.json.message, message);
  }
  t.equal(api.fake.calls.filter((c) => c.op === 'test').length, tests, 'nothing sent');
  t.same(api.errors, [], 'nothing logged as an error');
  t.equal((await api.call('POST', `${D}/test`, { body: { target: 'v7', endpoint: 'predict', method: 'GET' } })).status, 404);
});

t.test('test console: a body as large as the API documents (10 MiB, base64) is taken, larger is a 413', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const image = Buffer.alloc(10 * 1024 * 1024, 'i');
  const res = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'POST', bodyBase64: image.toString('base64') } });
  t.equal(res.status, 200, 'a 10 MiB file, as the console sends one');
  t.equal(JSON.parse(Buffer.from(res.json.bodyBase64, 'base64').toString()).body.length, image.length);
  const text = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'POST', body: 't'.repeat(10 * 1024 * 1024) } });
  t.equal(text.status, 200, 'a 10 MiB text body');
  const over = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'POST', bodyBase64: Buffer.alloc(12 * 1024 * 1024).toString('base64') } });
  t.equal(over.status, 413);
  t.equal(over.json.code, 'PAYLOAD_TOO_LARGE');
  const other = await api.call('POST', `${P}/deployments`, { body: { name: 'x'.repeat(2 * 1024 * 1024) } });
  t.equal(other.status, 413, 'other routes keep the server\'s JSON limit');
});

t.test('test console: no live gateway is a 503', async (t) => {
  const api = await startApi(t, { fake: { gateways: [] } });
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const res = await api.call('POST', `${D}/test`, { body: { target: 'v1', endpoint: 'predict', method: 'GET' } });
  t.equal(res.status, 503);
  t.equal(res.json.code, 'GATEWAY_UNAVAILABLE');
  t.same(api.errors.map((e) => e.extra?.code), ['GATEWAY_UNAVAILABLE'], '5xx answers are logged');
});
