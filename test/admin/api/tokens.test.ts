import t from 'tap';
import { createHash } from 'node:crypto';
import { createDeployment, D, P, startApi } from '../harness.ts';

t.test('tokens: create (shown once), authenticate, list names only, revoke', async (t) => {
  const api = await startApi(t);
  const created = await api.call('POST', '/api/v1/tokens', { body: { name: 'ci' } });
  t.equal(created.status, 201);
  t.equal(created.json.name, 'ci');
  t.match(created.json.token, /^[A-Za-z0-9_-]{40,}$/);
  const token = created.json.token as string;

  const list = await api.call('GET', '/api/v1/tokens', { token });
  t.equal(list.status, 200, 'the new token authenticates');
  t.same(list.json.items.map((x: { name: string }) => x.name), ['admin', 'ci']);
  t.notMatch(list.text, token);

  await createDeployment(api);
  await api.call('PATCH', D, { body: { auth: 'basic' }, token });
  const audit = await api.call('GET', '/api/v1/audit?limit=1');
  t.match(audit.json.items, [{ actor: 'ci', action: 'deployment.patch', target: 'acme/mnist/web' }], 'the audit log names the token');

  t.equal((await api.call('POST', '/api/v1/tokens', { body: { name: 'ci' } })).json.code, 'ALREADY_EXISTS');
  t.equal((await api.call('POST', '/api/v1/tokens', { body: { name: 'a b' } })).json.message, 'body.name: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ (got "a b")');
  t.equal((await api.call('DELETE', '/api/v1/tokens/ci')).status, 204);
  t.equal((await api.call('GET', '/api/v1/tokens', { token })).status, 401, 'a revoked token stops working');
  t.equal((await api.call('DELETE', '/api/v1/tokens/ci')).status, 404);

  const last = await api.call('DELETE', '/api/v1/tokens/admin');
  t.equal(last.status, 409, 'the last token is not revoked: nobody could sign in any more');
  t.match(last.json, { statusCode: 409, code: 'CONFLICT', error: 'Conflict', message: /last admin token.*create another token first/ });
  t.equal((await api.call('GET', '/api/v1/tokens')).status, 200, 'it still works');
});

t.test('audit: newest first, limit, before', async (t) => {
  const api = await startApi(t);
  for (const name of ['a', 'b', 'c']) await api.call('POST', `${P}/deployments`, { body: { name } });
  const all = await api.call('GET', '/api/v1/audit');
  t.equal(all.status, 200);
  t.same(all.json.items.map((i: { target: string }) => i.target), ['acme/mnist/c', 'acme/mnist/b', 'acme/mnist/a']);
  t.match(all.json.items[0], { id: '3', at: String, actor: 'admin', action: 'deployment.create', details: { target: 'local' } });
  const page = await api.call('GET', '/api/v1/audit?limit=2');
  t.same(page.json.items.map((i: { id: string }) => i.id), ['3', '2']);
  const next = await api.call('GET', `/api/v1/audit?limit=2&before=${page.json.items[1].id}`);
  t.same(next.json.items.map((i: { target: string }) => i.target), ['acme/mnist/a'], 'paging with the last id');
  t.equal((await api.call('GET', '/api/v1/audit?before=a%20b')).json.message, 'query.before: must match ^[0-9]{1,15}$ (got "a b")');
  t.same(api.fake.calls.filter((c) => c.op === 'audit').map((c) => c.args[0]), [{ limit: 100 }, { limit: 2 }, { limit: 2, before: '2' }]);
});

t.test('uploads: streamed raw body, any media type, 413 over the limit', async (t) => {
  const api = await startApi(t, { server: { maxUploadBytes: 1000 } });
  const data = Buffer.alloc(900, 7);
  const res = await api.call('POST', '/api/v1/uploads', { raw: data, headers: { 'content-type': 'application/gzip' } });
  t.equal(res.status, 201);
  t.same(res.json, { id: res.json.id, size: 900, sha256: createHash('sha256').update(data).digest('hex') });
  t.same(api.fake.uploads.get(res.json.id), data);

  const declared = await api.call('POST', '/api/v1/uploads', { raw: Buffer.alloc(1001) });
  t.equal(declared.status, 413);
  t.equal(declared.json.code, 'PAYLOAD_TOO_LARGE');
  t.equal(api.fake.calls.filter((c) => c.op === 'createUpload').length, 1, 'a declared length over the limit never reaches the control plane');

  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 12; i++) c.enqueue(new Uint8Array(100));
      c.close();
    },
  });
  const streamed = await api.call('POST', '/api/v1/uploads', { raw: chunked });
  t.equal(streamed.status, 413);
  t.equal(streamed.json.code, 'PAYLOAD_TOO_LARGE');
  t.equal(api.fake.uploads.size, 1, 'nothing stored from the oversized upload');

  const empty = await api.call('POST', '/api/v1/uploads', { raw: Buffer.alloc(0) });
  t.equal(empty.status, 201);
  t.equal(empty.json.size, 0);
});

t.test('uploads: a failing store is a 500, and needs a token', async (t) => {
  const api = await startApi(t);
  t.equal((await api.call('POST', '/api/v1/uploads', { raw: 'x', token: null })).status, 401);
  api.fake.failNext('createUpload', new Error('disk full'));
  const res = await api.call('POST', '/api/v1/uploads', { raw: Buffer.alloc(10) });
  t.equal(res.status, 500);
  t.equal(res.json.code, 'INTERNAL');
  const after = await api.call('POST', '/api/v1/uploads', { raw: Buffer.alloc(10) });
  t.equal(after.status, 201, 'the server keeps working');
});

t.test('a refused upload closes the connection instead of reading the rest', async (t) => {
  const api = await startApi(t);
  const { request } = await import('node:http');
  const u = new URL(api.url);
  const answer = await new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method: 'POST', path: '/api/v1/uploads', headers: { 'content-length': String(1 << 30) } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
  });
  t.equal(answer.status, 401);
  t.equal(answer.connection, 'close');
  t.equal(JSON.parse(answer.body).code, 'AUTH_REQUIRED');
});
