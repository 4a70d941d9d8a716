import t from 'tap';
import { request as httpRequest } from 'node:http';
import { waitFor } from '../../helpers/poll.ts';
import { appFolder, createDeployment, D, readyVersion, REF, startApi } from '../harness.ts';

t.test('create a version: 202, Location, builds to ready from a folder', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const dir = await appFolder(t);
  const res = await api.call('POST', `${D}/versions`, {
    body: {
      name: 'v1',
      source: { path: dir },
      endpoints: { predict: { replicas: 2, files: { model: { url: 'https://models.example.com/m.h5' } }, timeoutSeconds: 30, maxBodyBytes: 1024 }, greet: { enabled: false } },
      environment: { MODEL: 'm' },
      inheritEnvironment: false,
    },
  });
  t.equal(res.status, 202);
  t.equal(res.headers.get('location'), `${D}/versions/v1`);
  t.match(res.json, { name: 'v1', status: 'building', source: { path: dir } });
  const input = api.fake.calls.find((c) => c.op === 'createVersion')!.args[1];
  t.same(input, {
    name: 'v1',
    source: { path: dir },
    endpoints: { predict: { replicas: 2, files: { model: { url: 'https://models.example.com/m.h5' } }, timeoutSeconds: 30, maxBodyBytes: 1024 }, greet: { enabled: false } },
    environment: { MODEL: 'm' },
    inheritEnvironment: false,
  }, 'the control plane gets the validated body');

  const ready = await waitFor(async () => {
    const v = await api.call('GET', `${D}/versions/v1`);
    return v.json.status === 'ready' ? v : undefined;
  });
  t.equal(ready.status, 200);
  const predict = ready.json.endpoints.find((e: { name: string }) => e.name === 'predict');
  t.match(predict, { status: 'ready', url: 'http://127.0.0.1:8080/acme/mnist/web/v1/predict', replicaCount: 2, timeoutSeconds: 30, maxBodyBytes: 1024 });
  t.equal(predict.replicas.length, 2);
  t.match(ready.json.endpoints.find((e: { name: string }) => e.name === 'greet'), { status: 'stopped', replicas: [] });

  const list = await api.call('GET', `${D}/versions`);
  t.equal(list.status, 200);
  t.same(list.json.items.map((v: { name: string }) => v.name), ['v1']);

  const log = await api.call('GET', `${D}/versions/v1/build-log`);
  t.equal(log.status, 200);
  t.match(log.json.items.at(-1), { stream: 'build', line: 'build finished' });

  const dup = await api.call('POST', `${D}/versions`, { body: { name: 'v1', source: { path: dir } } });
  t.equal(dup.status, 409);
  t.equal(dup.json.code, 'ALREADY_EXISTS');
});

t.test('a version whose build fails says why', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const dir = await appFolder(t);
  const res = await api.call('POST', `${D}/versions`, { body: { source: { path: dir }, endpoints: { nope: { replicas: 1 } } } });
  t.equal(res.status, 202);
  t.match(res.json.name, /^\d{8}\.0$/, 'default name: UTC date + counter');
  const failed = await waitFor(async () => {
    const v = await api.call('GET', `${D}/versions/${res.json.name}`);
    return v.json.status === 'failed' ? v.json : undefined;
  });
  t.equal(failed.reason, 'endpoint "nope" is not declared in valohai.yaml');
});

t.test('create a version: validation names the bad field', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const ok = { source: { path: '/srv/app' } };
  const cases: [unknown, string][] = [
    [{}, 'body.source: is required'],
    [{ ...ok, endpoints: { predict: { replicas: 101 } } }, 'body.endpoints.predict.replicas: must be an integer from 0 to 100'],
    [{ ...ok, endpoints: { predict: { replicas: '2' } } }, 'body.endpoints.predict.replicas: must be an integer from 0 to 100'],
    [{ ...ok, endpoints: { Predict: {} } }, 'body.endpoints.Predict: name must match ^[a-z][a-z0-9-]+$'],
    [{ ...ok, endpoints: { predict: { replica: 1 } } }, 'body.endpoints.predict.replica: is not a known field (known: "enabled", "replicas", "files", "timeoutSeconds", "maxBodyBytes")'],
    [{ ...ok, endpoints: { predict: { timeoutSeconds: 0 } } }, 'body.endpoints.predict.timeoutSeconds: must be an integer from 1 to 86400'],
    [{ ...ok, endpoints: { predict: { files: { model: { url: 'ftp://x' } } } } }, 'body.endpoints.predict.files.model.url: must match ^https?://\\S+$ (got "ftp://x")'],
    [{ ...ok, endpoints: { predict: { files: { model: {} } } } }, 'body.endpoints.predict.files.model: must be one of {"path"} or {"url"} or {"upload"}'],
    [{ source: { path: 'relative/dir' } }, 'body.source.path: must match ^/ (got "relative/dir")'],
    [{ source: { git: { url: '--upload-pack=evil' } } }, 'body.source.git.url: must match ^(https?://|ssh://|git://|file:///|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\\S+$ (got "--upload-pack=evil")'],
    [{ source: { git: { url: 'https://x/y.git', ref: '-x' } } }, 'body.source.git.ref: must match ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ (got "-x")'],
    [{ source: { upload: 'a/b' } }, 'body.source.upload: must match ^[A-Za-z0-9_-]{1,100}$ (got "a/b")'],
    [{ source: { s3: 'x' } }, 'body.source: must be one of {"path"} or {"git"} or {"upload"}'],
    [{ ...ok, environment: { 'A-B': 'x' } }, 'body.environment.A-B: name must match ^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,199}$'],
    // Parsed, not an object literal: JSON keeps "__proto__" as a key, a literal makes it the prototype.
    [{ ...ok, environment: JSON.parse('{"__proto__": "x"}') }, 'body.environment.__proto__: name must match ^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,199}$'],
    [{ ...ok, environment: { A: 1 } }, 'body.environment.A: must be a string, not number 1'],
    [{ ...ok, inheritEnvironment: 'no' }, 'body.inheritEnvironment: must be true or false'],
    [{ ...ok, name: '.' }, 'body.name: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ (got ".")'],
  ];
  for (const [body, message] of cases) {
    const res = await api.call('POST', `${D}/versions`, { body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.json.code, 'VALIDATION_FAILED');
    t.equal(res.json.message, message);
  }
  const upload = await api.call('POST', `${D}/versions`, { body: { source: { upload: 'u_missing' } } });
  t.equal(upload.status, 400, 'an unknown upload is refused by the control plane');
  t.equal((await api.call('POST', '/api/v1/projects/acme/mnist/deployments/none/versions', { body: ok })).status, 404);
});

t.test('patch a version: stop, start, scale; delete refused while aliased', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  const v = await readyVersion(api, { name: 'v1' });
  const stop = await api.call('PATCH', `${D}/versions/v1`, { body: { enabled: false } });
  t.equal(stop.status, 200);
  t.match(stop.json, { status: 'stopped', enabled: false });
  const start = await api.call('PATCH', `${D}/versions/v1`, { body: { enabled: true } });
  t.match(start.json, { status: 'ready', enabled: true });
  const scale = await api.call('PATCH', `${D}/versions/v1`, { body: { endpoints: { predict: { replicas: 3 } } } });
  t.equal(scale.json.endpoints[0].replicaCount, 3);
  t.equal(scale.json.endpoints[0].replicas.length, 3);
  const limits = await api.call('PATCH', `${D}/versions/v1`, { body: { endpoints: { predict: { timeoutSeconds: 5, maxBodyBytes: 100 } } } });
  t.match(limits.json.endpoints[0], { timeoutSeconds: 5, maxBodyBytes: 100 });
  const reset = await api.call('PATCH', `${D}/versions/v1`, { body: { endpoints: { predict: { timeoutSeconds: null, maxBodyBytes: null } } } });
  t.equal(reset.status, 200);
  t.match(reset.json.endpoints[0], { timeoutSeconds: null, maxBodyBytes: null, replicaCount: 3 }, 'null puts the gateway defaults back, and leaves the rest');
  const bad = await api.call('PATCH', `${D}/versions/v1`, { body: { endpoints: { predict: { replicas: -1 } } } });
  t.equal(bad.json.message, 'body.endpoints.predict.replicas: must be an integer from 0 to 100');
  const unknown = await api.call('PATCH', `${D}/versions/v1`, { body: { endpoints: { other: { replicas: 1 } } } });
  t.equal(unknown.status, 400);
  t.equal((await api.call('PATCH', `${D}/versions/v9`, { body: {} })).status, 404);

  t.equal((await api.call('PUT', `${D}/aliases/prod`, { body: { version: v.name } })).status, 200);
  const refused = await api.call('DELETE', `${D}/versions/v1`);
  t.equal(refused.status, 409);
  t.equal(refused.json.code, 'ALIAS_IN_USE');
  t.match(refused.json.message, /prod/);
  t.equal((await api.call('DELETE', `${D}/aliases/prod`)).status, 204);
  t.equal((await api.call('DELETE', `${D}/versions/v1`)).status, 204);
  t.equal((await api.call('GET', `${D}/versions/v1`)).status, 404);
  t.equal((await api.call('GET', `${D}/versions/v1/build-log`)).status, 404);
});

t.test('endpoint logs: read with filters', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'one', { at: 1000, replica: 'predict-0' });
  api.fake.appendLog(ref, 'predict', 'two ERROR', { at: 2000, replica: 'predict-1', stream: 'stderr' });
  api.fake.appendLog(ref, 'predict', 'three', { at: 3000, replica: 'predict-0' });
  const logs = (q: string) => api.call('GET', `${D}/versions/v1/endpoints/predict/logs${q}`);
  const all = await logs('');
  t.equal(all.status, 200);
  t.same(all.json.items.map((l: { line: string }) => l.line), ['one', 'two ERROR', 'three']);
  t.same(all.json.items[1], { at: 2000, replica: 'predict-1', stream: 'stderr', line: 'two ERROR' });
  t.same((await logs('?tail=1')).json.items.map((l: { line: string }) => l.line), ['three']);
  t.same((await logs('?tail=0')).json.items, []);
  t.same((await logs('?replica=predict-0')).json.items.map((l: { line: string }) => l.line), ['one', 'three']);
  t.same((await logs('?since=2000&until=3000')).json.items.map((l: { line: string }) => l.line), ['two ERROR']);
  t.same((await logs('?contains=ERROR')).json.items.map((l: { line: string }) => l.line), ['two ERROR']);
  t.same((await logs('?follow=false')).json.items.length, 3);
  t.equal((await logs('?tail=x')).json.message, 'query.tail: must be an integer from 0 to 100000');
  t.equal((await logs('?follow=maybe')).json.message, 'query.follow: must be true or false');
  t.equal((await logs('?contains=')).json.message, 'query.contains: must not be empty');
  t.equal((await logs('?grep=x')).json.message, 'query.grep: is not a known query parameter (known: "tail", "follow", "replica", "since", "until", "contains")');
  const noEndpoint = await api.call('GET', `${D}/versions/v1/endpoints/other/logs`);
  t.equal(noEndpoint.status, 404);
  t.match(noEndpoint.json.message, /no endpoint "other"/);
  t.equal((await api.call('GET', `${D}/versions/v2/endpoints/predict/logs`)).status, 404);
});

/** Opens a followed log stream with node:http; `lines` fills as they arrive. */
function follow(url: string, accept = 'application/x-ndjson') {
  const chunks: string[] = [];
  let headers: Record<string, unknown> = {};
  let status = 0;
  let ended = false;
  const req = httpRequest(url, { headers: { authorization: 'Bearer test-token', accept } }, (res) => {
    status = res.statusCode ?? 0;
    headers = res.headers;
    res.setEncoding('utf8').on('data', (d: string) => chunks.push(d)).on('end', () => (ended = true));
  });
  req.on('error', () => undefined);
  req.end();
  return {
    get text() { return chunks.join(''); },
    get status() { return status; },
    get headers() { return headers; },
    get ended() { return ended; },
    close: () => req.destroy(),
  };
}

t.test('endpoint logs: follow streams NDJSON until the client leaves', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'old-1', { at: 1 });
  api.fake.appendLog(ref, 'predict', 'old-2', { at: 2 });
  const stream = follow(`${api.url}${D}/versions/v1/endpoints/predict/logs?follow=true&tail=1`);
  await waitFor(() => api.fake.followers === 1, { what: 'a follower' });
  t.equal(stream.status, 200);
  t.match(stream.headers['content-type'], 'application/x-ndjson');
  t.equal(stream.headers['cache-control'], 'no-store');
  api.fake.appendLog(ref, 'predict', 'new-1', { at: 3 });
  api.fake.appendLog(ref, 'predict', 'other', { at: 4 });
  await waitFor(() => stream.text.split('\n').length > 3, { what: 'three lines' });
  const lines = stream.text.trim().split('\n').map((l) => JSON.parse(l));
  t.same(lines.map((l) => l.line), ['old-2', 'new-1', 'other']);
  stream.close();
  await waitFor(() => api.fake.followers === 0, { what: 'the follower to stop' });
  t.pass('the control plane iterator was stopped when the client disconnected');
});

t.test('endpoint logs: follow as server-sent events', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const stream = follow(`${api.url}${D}/versions/v1/endpoints/predict/logs?follow`, 'text/event-stream');
  await waitFor(() => api.fake.followers === 1);
  t.match(stream.headers['content-type'], 'text/event-stream');
  api.fake.appendLog({ ...REF, version: 'v1' }, 'predict', 'hello', { at: 5 });
  await waitFor(() => stream.text.includes('hello'));
  t.equal(stream.text, `data: ${JSON.stringify({ at: 5, replica: 'predict-0', stream: 'stdout', line: 'hello' })}\n\n`);
  stream.close();
  await waitFor(() => api.fake.followers === 0);
});

t.test('endpoint logs: an error after the stream started ends it with an error line', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  api.fake.failNext('endpointLogs', new Error('store exploded'));
  const stream = follow(`${api.url}${D}/versions/v1/endpoints/predict/logs?follow=1`);
  await waitFor(() => stream.ended, { what: 'the stream to end' });
  t.equal(stream.status, 200);
  t.same(JSON.parse(stream.text), { error: { statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'Internal error.' } });
  t.equal(api.errors.length, 1);
  t.notMatch(stream.text, /exploded/);
});

t.test('endpoint logs: server close ends followers', async (t) => {
  const { startAdminServer } = await import('../../../admin/api/server.ts');
  const { FakeControlPlane } = await import('../../helpers/fake-control-plane.ts');
  const fake = new FakeControlPlane({ buildStepMs: 1 });
  const server = await startAdminServer({ control: fake, host: '127.0.0.1', port: 0 });
  await fake.createDeployment({ owner: 'acme', project: 'mnist' }, { name: 'web' }, 'admin');
  await fake.createVersion(REF, { name: 'v1', source: { git: { url: 'https://x/y.git' } } }, 'admin');
  await fake.settled();
  const stream = follow(`${server.url}${D}/versions/v1/endpoints/predict/logs?follow=true`);
  await waitFor(() => fake.followers === 1);
  await server.close();
  await waitFor(() => fake.followers === 0, { what: 'the follower to stop on close' });
  stream.close();
  t.pass();
});
