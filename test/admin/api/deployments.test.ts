import t from 'tap';
import { createDeployment, D, P, startApi } from '../harness.ts';

t.test('targets', async (t) => {
  const api = await startApi(t, { fake: { targets: [{ name: 'k8s', kind: 'kubernetes', gatewayUrl: 'https://k8s.example.com' }] } });
  const res = await api.call('GET', '/api/v1/targets');
  t.equal(res.status, 200);
  t.same(res.json.items.map((x: { name: string }) => x.name), ['local', 'k8s']);
});

t.test('environment: put replaces, get masks secrets, bad names are named', async (t) => {
  const api = await startApi(t);
  const empty = await api.call('GET', `${P}/environment`);
  t.equal(empty.status, 200);
  t.same(empty.json, { variables: {} });
  const put = await api.call('PUT', `${P}/environment`, { body: { variables: { MODEL: { value: 'mnist' }, API_KEY: { value: 's3cret', secret: true } } } });
  t.equal(put.status, 200);
  t.same(put.json, { variables: { MODEL: { value: 'mnist', secret: false }, API_KEY: { value: '********', secret: true } } });
  t.notMatch(put.text, /s3cret/);
  const get = await api.call('GET', `${P}/environment`);
  t.same(get.json, put.json);
  t.match(api.fake.calls.find((c) => c.op === 'putEnvironment')?.args[2], 'admin', 'the actor is the token name');

  const bad = await api.call('PUT', `${P}/environment`, { body: { variables: { '1BAD': { value: 'x' }, OK: { value: 3 }, ALSO: { secret: true } } } });
  t.equal(bad.status, 400);
  t.same(bad.json.problems.map((p: { path: string }) => p.path), ['body.variables.1BAD', 'body.variables.OK.value', 'body.variables.ALSO.value']);
  t.equal((await api.call('PUT', `${P}/environment`, { body: { MODEL: 'x' } })).json.message, 'body.variables: is required; body.MODEL: is not a known field (known: "variables")');
});

t.test('environment: __proto__ is refused naming the field, nothing replaced; constructor, toString... are variables like any other', async (t) => {
  const api = await startApi(t);
  await api.call('PUT', `${P}/environment`, { body: { variables: { MODEL: { value: 'mnist' } } } });
  // Parsed, not an object literal: JSON keeps "__proto__" as a key, a literal makes it the prototype.
  const proto = await api.call('PUT', `${P}/environment`, { body: { variables: JSON.parse('{"__proto__": {"value": "x"}, "OTHER": {"value": "y"}}') } });
  t.equal(proto.status, 400);
  t.equal(proto.json.code, 'VALIDATION_FAILED');
  t.same(proto.json.problems.map((p: { path: string }) => p.path), ['body.variables.__proto__']);
  t.same((await api.call('GET', `${P}/environment`)).json, { variables: { MODEL: { value: 'mnist', secret: false } } }, 'the environment is as it was');

  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];
  const variables = Object.fromEntries(names.map((n) => [n, { value: `v-${n}`, secret: false }]));
  const put = await api.call('PUT', `${P}/environment`, { body: { variables } });
  t.equal(put.status, 200);
  t.same(put.json, { variables });
  t.same((await api.call('GET', `${P}/environment`)).json, { variables });
});

t.test('deployments: create 201 + Location, list, get, patch, delete 204', async (t) => {
  const api = await startApi(t);
  t.same((await api.call('GET', `${P}/deployments`)).json, { items: [] });
  const created = await createDeployment(api, { name: 'web', auth: 'basic' });
  t.equal(created.headers.get('location'), D);
  t.match(created.json, { owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'basic', url: 'http://127.0.0.1:8080/acme/mnist/web' });
  t.match(created.json.createdAt, /^\d{4}-\d\d-\d\dT/);

  const list = await api.call('GET', `${P}/deployments`);
  t.equal(list.status, 200);
  t.same(list.json.items.map((d: { name: string }) => d.name), ['web']);
  t.equal((await api.call('GET', D)).json.name, 'web');

  const patched = await api.call('PATCH', D, { body: { auth: 'none' } });
  t.equal(patched.status, 200);
  t.equal(patched.json.auth, 'none');
  const badPatch = await api.call('PATCH', D, { body: { auth: 'digest' } });
  t.equal(badPatch.status, 400);
  t.equal(badPatch.json.message, 'body.auth: must be one of "none", "basic"');

  const del = await api.call('DELETE', D);
  t.equal(del.status, 204);
  t.equal(del.text, '');
  t.equal(del.headers.get('content-type'), null);
  const gone = await api.call('GET', D);
  t.equal(gone.status, 404);
  t.equal(gone.json.code, 'NOT_FOUND');
  t.equal((await api.call('DELETE', D)).status, 404);
  t.equal((await api.call('PATCH', D, { body: {} })).status, 404);
});

t.test('deployments: conflicts and validation', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const again = await api.call('POST', `${P}/deployments`, { body: { name: 'web' } });
  t.equal(again.status, 409);
  t.equal(again.json.code, 'ALREADY_EXISTS');
  const target = await api.call('POST', `${P}/deployments`, { body: { name: 'api', target: 'mars' } });
  t.equal(target.status, 400);
  t.match(target.json.message, /target/);
  const cases: [unknown, string][] = [
    [{}, 'body.name: is required'],
    [{ name: '../x' }, 'body.name: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ (got "../x")'],
    [{ name: 'x', target: 5 }, 'body.target: must be a string, not number 5'],
    [[], 'body: must be an object, not an array'],
    ['web', 'body: must be an object, not string "web"'],
  ];
  for (const [body, message] of cases) {
    const res = await api.call('POST', `${P}/deployments`, { body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.json.message, message);
  }
});

t.test('users: put, list (names only), delete, errors', async (t) => {
  const api = await startApi(t);
  t.equal((await api.call('GET', `${D}/users`)).status, 404, 'no deployment yet');
  await createDeployment(api);
  const put = await api.call('PUT', `${D}/users/alice@example.com`, { body: { password: 'correct horse' } });
  t.equal(put.status, 200);
  t.same(put.json, { name: 'alice@example.com' });
  const list = await api.call('GET', `${D}/users`);
  t.same(list.json, { items: [{ name: 'alice@example.com' }] });
  t.notMatch(list.text, /horse/);
  const short = await api.call('PUT', `${D}/users/bob`, { body: { password: 'short' } });
  t.equal(short.status, 400);
  t.equal(short.json.message, 'body.password: must be at least 8 characters long');
  t.equal((await api.call('PUT', `${D}/users/bob`, { body: {} })).json.message, 'body.password: is required');
  t.equal((await api.call('DELETE', `${D}/users/alice@example.com`)).status, 204);
  const missing = await api.call('DELETE', `${D}/users/alice@example.com`);
  t.equal(missing.status, 404);
  t.equal(missing.json.code, 'NOT_FOUND');
  t.notMatch(JSON.stringify(api.fake.calls), /correct horse/, 'the fake never records passwords');
});
