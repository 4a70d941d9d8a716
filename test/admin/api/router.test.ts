import t from 'tap';
import { defineRoute } from '../../../admin/api/route.ts';
import { decodeParams, Router } from '../../../admin/api/router.ts';
import { routes } from '../../../admin/api/routes.ts';
import { string } from '../../../admin/api/schema.ts';

const handler = async () => ({ body: {} });
const r = (method: 'GET' | 'PUT' | 'DELETE', path: string, params: Record<string, ReturnType<typeof string>> = {}) =>
  defineRoute({ id: `${method}${path}`, method, path, tag: 't', summary: 's', params, response: { status: 200, description: 'd' }, handler });

t.test('matches templates, decodes params, reports allowed methods', async (t) => {
  const router = new Router([
    r('GET', '/a/{x}', { x: string() }),
    r('PUT', '/a/{x}', { x: string() }),
    r('GET', '/a/{x}/b', { x: string() }),
  ]);
  const m = router.match('GET', '/a/h%C3%A9llo');
  t.equal(m.kind, 'route');
  if (m.kind === 'route') t.same(decodeParams(m.params), { x: 'héllo' });
  t.same(router.match('DELETE', '/a/1'), { kind: 'method', allow: ['GET', 'HEAD', 'PUT'] });
  t.equal(router.match('HEAD', '/a/1/b').kind, 'route', 'HEAD is served by GET');
  t.same(router.match('GET', '/a/1/c'), { kind: 'none' });
  t.same(router.match('GET', '/a/1/b/'), { kind: 'none' }, 'a trailing slash is another path');
  t.same(router.match('GET', '/a'), { kind: 'none' });
  const slash = router.match('GET', '/a/..%2Fx');
  t.equal(slash.kind, 'route');
  if (slash.kind === 'route') t.equal(decodeParams(slash.params).x, '../x', 'decoded: the schema refuses it later');
  const undecodable = router.match('GET', '/a/%E0%A4%A');
  t.equal(undecodable.kind, 'route', 'matched still encoded: decoded after authentication');
  if (undecodable.kind === 'route') t.throws(() => decodeParams(undecodable.params), { code: 'BAD_REQUEST', statusCode: 400 });
});

t.test('refuses inconsistent declarations', async (t) => {
  t.throws(() => r('GET', '/a/{x}'), /params {2}do not match|do not match the template/);
  t.throws(() => new Router([r('GET', '/a/{x}', { x: string() }), { ...r('GET', '/a/{y}', { y: string() }), id: 'other' }]), /declared twice/);
  t.throws(() => new Router([r('GET', '/a'), r('PUT', '/a')].map((x) => ({ ...x, id: 'same' }))), /ids must be unique/);
  t.throws(() => defineRoute({
    id: 'x', method: 'PUT', path: '/x', tag: 't', summary: 's', params: {}, body: string(),
    rawBody: { contentType: 'a/b', description: 'd' }, response: { status: 200, description: 'd' }, handler,
  }), /both a JSON and a raw body/);
});

t.test('the real route table builds', async (t) => {
  const router = new Router(routes);
  t.ok(router.routes.length >= 30);
  t.same(router.methodsOf('/api/v1/tokens').sort(), ['GET', 'POST']);
});
