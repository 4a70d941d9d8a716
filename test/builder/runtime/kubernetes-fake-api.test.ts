import { ApiException, AppsV1Api, CoreV1Api, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import t, { type Test } from 'tap';
import { FakeKubeApi } from '../../helpers/fake-kube-api.ts';
import { waitFor } from '../../helpers/poll.ts';

// The fake API server the kubernetes runtime is tested against must itself behave like the API:
// these tests pin the semantics the runtime relies on, through @kubernetes/client-node.

async function start(t: Test): Promise<FakeKubeApi> {
  const fake = await FakeKubeApi.start({ controllers: false });
  t.teardown(() => fake.close());
  return fake;
}

const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
};

const deployment = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: 'ns', labels: { app: name } },
  spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'i' }] } }, ...extra },
});

t.test('CRUD: AlreadyExists, NotFound, Conflict on a stale resourceVersion, Invalid bodies', async (t) => {
  const fake = await start(t);
  const core = fake.kubeConfig().makeApiClient(CoreV1Api);
  const apps = fake.kubeConfig().makeApiClient(AppsV1Api);
  t.equal(await code(apps.createNamespacedDeployment({ namespace: 'ns', body: deployment('a') })), 404, 'no namespace: NotFound');
  t.equal(await code(core.createNamespace({ body: { metadata: { name: 'ns' } } })), 200);
  t.equal(await code(core.createNamespace({ body: { metadata: { name: 'ns' } } })), 409, 'AlreadyExists');
  t.equal(await code(core.readNamespace({ name: 'nope' })), 404, 'NotFound');
  const created = await apps.createNamespacedDeployment({ namespace: 'ns', body: deployment('a') });
  const rv = created.metadata!.resourceVersion!;
  t.equal(created.metadata!.generation, 1);
  const stale = { ...deployment('a', { replicas: 2 }), metadata: { ...deployment('a').metadata, resourceVersion: String(Number(rv) - 1) } };
  t.equal(await code(apps.replaceNamespacedDeployment({ name: 'a', namespace: 'ns', body: stale })), 409, 'Conflict on a stale resourceVersion');
  const fresh = { ...stale, metadata: { ...stale.metadata, resourceVersion: rv } };
  const replaced = await apps.replaceNamespacedDeployment({ name: 'a', namespace: 'ns', body: fresh });
  t.ok(Number(replaced.metadata!.resourceVersion) > Number(rv), 'resourceVersion increases');
  t.equal(replaced.metadata!.generation, 2, 'generation follows spec changes');
  t.equal(await code(apps.deleteNamespacedDeployment({ name: 'a', namespace: 'ns' })), 200);
  t.equal(await code(apps.deleteNamespacedDeployment({ name: 'a', namespace: 'ns' })), 404);

  const unknown = deployment('b');
  (unknown.spec.template.spec.containers[0] as Record<string, unknown>)['imagePullPolicyy'] = 'Always';
  const res = await fetch(`${fake.url}/apis/apps/v1/namespaces/ns/deployments`, { method: 'POST', headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body: JSON.stringify(unknown) });
  t.equal(res.status, 422);
  const status = (await res.json()) as { reason: string; message: string };
  t.equal(status.reason, 'Invalid');
  t.match(status.message, /unknown field "spec\.template\.spec\.containers\[0\]\.imagePullPolicyy"/);
  t.equal(await code(apps.createNamespacedDeployment({ namespace: 'ns', body: deployment('c', { replicas: 'two' }) as never })), 422, 'schema violations');
  t.equal((await fetch(`${fake.url}/api/v1/namespaces/ns`)).status, 401, 'no credentials: 401');
  t.same(fake.requests.slice(1, 4).map((r) => [r.verb, r.resource, r.status]), [['create', 'namespaces', 201], ['create', 'namespaces', 409], ['get', 'namespaces', 404]], 'recorded with RBAC verbs');
});

t.test('server-side apply: field manager required, creates, no-op when unchanged, drops what the manager dropped', async (t) => {
  const fake = await start(t);
  const apps = fake.kubeConfig().makeApiClient(AppsV1Api);
  const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
  const apply = (body: unknown, fieldManager?: string) =>
    apps.patchNamespacedDeployment({ name: 'a', namespace: 'ns', body, ...(fieldManager ? { fieldManager, force: true } : {}) }, ssa);
  t.equal(await code(apply(deployment('a'), 'portico')), 404, 'not in a namespace that does not exist');
  fake.put('namespaces', { metadata: { name: 'ns' } });
  t.equal(await code(apply(deployment('a'))), 400, 'fieldManager is required');
  const first = { ...deployment('a'), metadata: { ...deployment('a').metadata, labels: { app: 'a', tier: 'x' } } };
  await apply(first, 'portico');
  t.ok(fake.requests.at(-1)!.created, 'an apply that creates is recorded as such (RBAC: create)');
  const rv = fake.get('deployments', 'ns', 'a')!.metadata.resourceVersion;
  await apply(first, 'portico');
  t.equal(fake.get('deployments', 'ns', 'a')!.metadata.resourceVersion, rv, 'an unchanged apply changes nothing');
  // Someone else labels it; our next apply drops `tier` (ours) and keeps theirs.
  const live = fake.get('deployments', 'ns', 'a')!;
  live.metadata.labels = { ...live.metadata.labels, owner: 'ops' };
  fake.put('deployments', live);
  await apply(deployment('a', { replicas: 3 }), 'portico');
  const after = fake.get('deployments', 'ns', 'a')!;
  t.same(after.metadata.labels, { app: 'a', owner: 'ops' });
  t.equal((after['spec'] as { replicas: number }).replicas, 3);
  t.equal(await code(apps.patchNamespacedDeployment({ name: 'a', namespace: 'ns', body: deployment('a', { replicas: 'x' }), fieldManager: 'p' }, ssa)), 422, 'applied configs are validated');
});

t.test('LIST and WATCH: resourceVersion, selectors, headers at once, replay, BOOKMARK, 410 Gone', async (t) => {
  const fake = await start(t);
  const kc = fake.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const pod = (name: string, labels: Record<string, string>) => ({ metadata: { name, namespace: 'ns', labels }, spec: { containers: [{ name: 'app', image: 'i' }] } });
  fake.put('pods', pod('a', { app: 'x' }));
  fake.put('pods', pod('b', { app: 'y' }));
  const list = await core.listPodForAllNamespaces({ labelSelector: 'app=x' });
  t.same(list.items.map((p) => p.metadata!.name), ['a']);
  const rv = list.metadata!.resourceVersion!;
  fake.put('pods', pod('c', { app: 'x' }));
  fake.put('pods', pod('d', { app: 'y' }));

  const events: string[] = [];
  let ended: unknown = 'open';
  // The Watch resolves once response headers arrive: before any event, so they are flushed at once.
  const abort = await new Watch(kc).watch('/api/v1/pods', { labelSelector: 'app=x', resourceVersion: rv, allowWatchBookmarks: true }, (type, obj: { metadata: { name?: string; resourceVersion: string } }) => {
    events.push(`${type}:${obj.metadata.name ?? obj.metadata.resourceVersion}`);
  }, (err) => (ended = err));
  await waitFor(() => events.length === 1, { what: 'replayed event' });
  t.same(events, ['ADDED:c'], 'history after the resourceVersion, matching the selector');
  fake.remove('pods', 'ns', 'c');
  fake.bookmark();
  await waitFor(() => events.length === 3, { what: 'live events' });
  t.same(events.slice(1), ['DELETED:c', `BOOKMARK:${fake.resourceVersion}`]);
  t.equal(fake.dropWatches('end'), 1);
  await waitFor(() => ended !== 'open', { what: 'watch ended' });
  t.equal(ended, null, 'a server-side end is a clean end');
  abort.abort();

  fake.compact();
  const expired: string[] = [];
  await new Watch(kc).watch('/api/v1/pods', { resourceVersion: rv }, (type, obj: { code?: number }) => expired.push(`${type}:${obj.code}`), () => {});
  await waitFor(() => expired.length === 1, { what: 'ERROR event' });
  t.same(expired, ['ERROR:410'], 'too old: 410 Gone as a watch event');
  fake.failNextWatches('pods', 410);
  let httpErr: { statusCode?: number } | undefined;
  await new Watch(kc).watch('/api/v1/pods', { resourceVersion: rv }, () => {}, (err) => (httpErr = err as { statusCode?: number }));
  t.equal(httpErr?.statusCode, 410, 'or as the HTTP status, when asked to');
});

t.test('pod logs: 404 for unknown pods, 400 before the container starts, follow with timestamps and sinceTime', async (t) => {
  const fake = await start(t);
  const pod = { metadata: { name: 'p', namespace: 'ns' }, spec: { containers: [{ name: 'app', image: 'i' }] }, status: { containerStatuses: [{ name: 'app', image: 'i', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] } };
  fake.put('pods', pod);
  const get = (name: string, q: string) => fetch(`${fake.url}/api/v1/namespaces/ns/pods/${name}/log?container=app&${q}`, { headers: { authorization: 'Bearer x' } });
  t.equal((await get('nope', '')).status, 404);
  const waiting = await get('p', '');
  t.equal(waiting.status, 400);
  t.match(((await waiting.json()) as { message: string }).message, /is waiting to start: ContainerCreating/);
  fake.setReady('ns', 'p', true);
  fake.appendLog('ns', 'p', 'one');
  const res = await get('p', 'follow=true&timestamps=true');
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  let text = '';
  const readUntil = async (n: number) => {
    while (text.split('\n').length <= n) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  };
  await readUntil(1);
  fake.appendLog('ns', 'p', 'two');
  await readUntil(2);
  const lines = text.trim().split('\n');
  t.match(lines, [/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one$/, /^\S+ two$/]);
  fake.remove('pods', 'ns', 'p');
  const { done } = await reader.read();
  t.ok(done, 'the stream ends with the pod');
});
