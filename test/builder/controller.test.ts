// The controller's operations over a real store, routing table and local target (startController
// on a fresh data dir); the admin API tests cover the HTTP layer over a fake of the same interface.
import t, { type Test } from 'tap';
import { createHash, randomUUID } from 'node:crypto';
import { cp, mkdir, mkdtemp, open, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TestRequestInput } from '../../builder/control-plane.ts';
import { TEST_REPLY_MAX_BYTES } from '../../builder/controller.ts';
import { startController, type RunningController } from '../../builder/main.ts';
import { loadConfig } from '../../common/config.ts';
import { PorticoError } from '../../common/errors.ts';
import type { Logger } from '../../common/log.ts';
import { deploymentKey, type RoutingTable } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { Redis } from 'ioredis';
import { busyboxEntries, importRootfs } from '../helpers/base-image.ts';
import { startDockerd } from '../helpers/dockerd.ts';
import { waitFor } from '../helpers/poll.ts';
import { dropBeforeNextApply, startRedis } from '../helpers/redis.ts';

const silent: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const PROJECT = { owner: 'acme', project: 'mnist' } as const;
const DEPLOYMENT = { ...PROJECT, deployment: 'web' } as const;

/**
 * A controller on a fresh data dir (extra `PORTICO_*` variables in `env`) writing `routing` (default
 * a new embedded table), stopped on teardown.
 */
async function startControl<R extends RoutingTable = EmbeddedRoutingTable>(
  t: Test,
  env: Record<string, string> = {},
  routing: R = new EmbeddedRoutingTable() as RoutingTable as R,
  now?: () => number,
): Promise<RunningController & { routing: R }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-controller-test-'));
  const running = await startController({ config: loadConfig({ PORTICO_DATA_DIR: dataDir, ...env }), routing, log: silent, ...(now ? { now } : {}) });
  t.teardown(async () => {
    await running.close();
    await routing.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return { ...running, routing };
}

/** A controller on `dataDir`, which outlives it (a restart is another call); `stop` closes it. */
async function startOn(dataDir: string): Promise<RunningController & { stop(): Promise<void> }> {
  const routing = new EmbeddedRoutingTable();
  const running = await startController({ config: loadConfig({ PORTICO_DATA_DIR: dataDir }), routing, log: silent });
  return { ...running, stop: async () => { await running.close(); await routing.close(); } };
}

/** Resolves with the PorticoError `p` rejects with (fails the test if it resolves). */
async function refusal(t: Test, p: Promise<unknown>): Promise<PorticoError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  t.type(err, PorticoError);
  return err as PorticoError;
}

t.test('a data directory the controller creates is private (mode 0700): replica output, uploads and the admin token are in it', async (t) => {
  const parent = await mkdtemp(join(tmpdir(), 'portico-controller-test-'));
  t.teardown(() => rm(parent, { recursive: true, force: true }));
  const dataDir = join(parent, 'new', 'data');
  const running = await startOn(dataDir);
  t.teardown(() => running.stop());
  t.equal((await stat(dataDir)).mode & 0o777, 0o700);
  t.equal((await stat(join(dataDir, 'admin-token'))).mode & 0o777, 0o600, 'the token file too');
});

t.test('environment: __proto__ is refused, not dropped; names Object.prototype has are variables like any other', async (t) => {
  const { controller, store } = await startControl(t);
  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf'];
  const variables = Object.fromEntries(names.map((n) => [n, { value: `v-${n}`, secret: n === 'toString' }]));
  const put = await controller.putEnvironment(PROJECT, variables, 'admin');
  t.same(put.variables, { ...variables, toString: { value: '********', secret: true } });
  // The masked secret sent back keeps its stored value (the UI sends it so).
  await controller.putEnvironment(PROJECT, { ...variables, toString: { value: '********', secret: true } }, 'admin');
  t.same(await store.getEnvironment(PROJECT.owner, PROJECT.project), variables, 'stored with their values');

  // Object.fromEntries as the API's validation builds it: "__proto__" is an own key here.
  const proto = await refusal(t, controller.putEnvironment(PROJECT, Object.fromEntries([['__proto__', { value: 'x' }], ['OTHER', { value: 'y' }]]), 'admin'));
  t.match(proto, { code: 'VALIDATION_FAILED', statusCode: 400, message: /^variables\.__proto__: / });
  t.same(await store.getEnvironment(PROJECT.owner, PROJECT.project), variables, 'the environment is as it was');

  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const refused = await refusal(t, controller.createVersion(DEPLOYMENT, { source: { path: '/nonexistent' }, environment: Object.fromEntries([['__proto__', 'x']]) }, 'admin'));
  t.match(refused, { code: 'VALIDATION_FAILED', message: /^environment\.__proto__: / });
  t.same(await controller.listVersions(DEPLOYMENT), [], 'no version recorded');

  const v = await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent' }, environment: { valueOf: 'own', isPrototypeOf: 'x' } }, 'admin');
  t.same(v.environment, ['constructor', 'hasOwnProperty', 'isPrototypeOf', 'toString', 'valueOf']);
  t.same(v.secretEnvironment, ['toString']);
  t.same((await store.getVersion({ ...DEPLOYMENT, version: 'v1' }))?.environment, {
    constructor: 'v-constructor', toString: 'v-toString', hasOwnProperty: 'v-hasOwnProperty', valueOf: 'own', isPrototypeOf: 'x',
  });
  // The build of a missing path fails at once; wait so that teardown does not close the store under it.
  await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: 'v1' })).status === 'failed', { what: 'the build to fail' });
});

t.test('a version POST and an alias PUT of one name at the same moment: one of them is a 409, never both kept', async (t) => {
  const { controller } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent' } }, 'admin');
  await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: 'v1' })).status === 'failed', { what: 'the build to fail' });
  for (let i = 0; i < 10; i++) {
    const name = `x${i}`;
    const [version, alias] = await Promise.allSettled([
      controller.createVersion(DEPLOYMENT, { name, source: { path: '/nonexistent' } }, 'admin'),
      controller.setAlias(DEPLOYMENT, name, { version: 'v1' }, { force: true }, 'admin'),
    ]);
    t.not(version.status, alias.status, `${name}: one of the two was refused`);
    const refused = (version.status === 'rejected' ? version : alias) as PromiseRejectedResult;
    t.match(refused.reason, { code: 'CONFLICT', statusCode: 409 }, `${name}: with a 409 CONFLICT`);
    if (version.status === 'fulfilled') await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: name })).status === 'failed', { what: 'the build to fail' });
  }
});

t.test('tokens: without PORTICO_ADMIN_TOKEN the last token is not revoked (nobody could sign in)', async (t) => {
  const { controller, createdToken } = await startControl(t);
  t.equal(await controller.authenticate(createdToken!), 'admin', 'the first start created admin');
  const alone = await refusal(t, controller.deleteToken('admin', 'admin'));
  t.match(alone, { code: 'CONFLICT', statusCode: 409, message: 'token admin is the last admin token: revoking it would lock everyone out of the API; create another token first' });
  t.equal(await controller.authenticate(createdToken!), 'admin', 'it still works');

  const ci = await controller.createToken('ci', 'admin');
  await controller.deleteToken('admin', 'ci');
  t.equal(await controller.authenticate(createdToken!), null, 'with another token there, admin is revoked');
  t.match(await refusal(t, controller.deleteToken('ci', 'ci')), { code: 'CONFLICT' });
  t.equal(await controller.authenticate(ci.token), 'ci');
  t.match(await refusal(t, controller.deleteToken('admin', 'ci')), { code: 'NOT_FOUND' }, 'an unknown name is still a 404');
  // Rotated away (docs/operations.md, "Rotating tokens"): a restart must not bring it back.
  t.equal(await controller.bootstrapToken(), null, 'no new admin token once tokens exist');
  t.same((await controller.listTokens()).map((tk) => tk.name), ['ci']);
});

t.test('tokens: with PORTICO_ADMIN_TOKEN every named token can go; that token is not named and stays', async (t) => {
  const envToken = 'e'.repeat(40);
  const { controller, createdToken } = await startControl(t, { PORTICO_ADMIN_TOKEN: envToken });
  t.equal(createdToken, null, 'no admin token created');
  t.same(await controller.listTokens(), []);
  const ci = await controller.createToken('ci', 'env');
  await controller.deleteToken('ci', 'env');
  t.equal(await controller.authenticate(ci.token), null);
  t.equal(await controller.authenticate(envToken), 'env', 'PORTICO_ADMIN_TOKEN still signs in');
  t.match(await refusal(t, controller.deleteToken('env', 'env')), { code: 'NOT_FOUND' }, 'it is not a stored token: there is nothing to revoke');
});

t.test('test console: a reply over 16 MiB is cut there and says so; a request HTTP cannot carry is a 400, nothing sent', async (t) => {
  const { controller, routing } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  // Stands in for a gateway: answers `?size=N` with N bytes, counting the requests it gets.
  let requests = 0;
  const gateway = createServer((req, res) => {
    requests++;
    let left = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size'));
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    const write = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(chunk.subarray(0, n))) return void res.once('drain', write);
      }
      res.end();
    };
    res.on('error', () => undefined); // the console stops reading a reply it cuts
    write();
  });
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => gateway.close(() => resolve())));
  gateway.unref();
  const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  await routing.heartbeat({ id: 'gw-1', url, pid: process.pid, startedAt: Date.now() }, 60_000);
  const send = (input: Partial<TestRequestInput>) => controller.test(DEPLOYMENT, { target: 'v1', endpoint: 'predict', method: 'GET', ...input });

  const over = await send({ path: `?size=${TEST_REPLY_MAX_BYTES + 100_000}` });
  t.equal(over.status, 200, 'the replica\'s status');
  t.equal(over.truncated, true);
  t.equal(Buffer.from(over.bodyBase64, 'base64').length, TEST_REPLY_MAX_BYTES, 'exactly the first 16 MiB');
  const exact = await send({ path: `?size=${TEST_REPLY_MAX_BYTES}` });
  t.equal(Buffer.from(exact.bodyBase64, 'base64').length, TEST_REPLY_MAX_BYTES);
  t.notOk('truncated' in exact, 'a body of exactly 16 MiB is whole: no truncated field');
  t.notOk('truncated' in (await send({ path: '?size=10' })), 'nor on a small one');
  t.equal(requests, 3);

  // The API refuses bad header values before the control plane; the controller still must not call that a gateway outage.
  const refusedHeaders: Record<string, string>[] = [{ 'x-a': 'one\r\nx-b: two' }, { 'x-a': 'nul\0' }, { 'transfer-encoding': 'chunked' }, { expect: '100-continue' }];
  for (const headers of refusedHeaders) {
    const err = await refusal(t, send({ headers }));
    t.match(err, { code: 'VALIDATION_FAILED', statusCode: 400, message: /^body: cannot be sent as an HTTP request: / }, JSON.stringify(headers));
  }
  t.equal(requests, 3, 'none of those reached the gateway');
});

t.test('tokens: after the admin token is rotated away, a restart says its token file is stale', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-controller-test-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const start = () => startOn(dataDir);
  const first = await start();
  t.ok(first.createdToken, 'the first start created admin');
  t.equal(first.tokenFileRevoked, false);
  await first.stop();
  const second = await start();
  t.same([second.createdToken, second.tokenFile, second.tokenFileRevoked], [null, join(dataDir, 'admin-token'), false], 'a restart: the file still holds a token that signs in');
  await second.controller.createToken('ci', 'admin');
  await second.controller.deleteToken('admin', 'ci');
  await second.stop();
  const third = await start();
  t.teardown(() => third.stop());
  t.same([third.createdToken, third.tokenFileRevoked], [null, true], 'after the rotation: no new token, the file is said to be stale');
});

t.test('an alias PUT whose routing write failed after the store took it: the gateways get the stored alias once Redis is back', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const table = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 1000 });
  t.ok(await table.whenAvailable(5000), 'connected');
  const { controller, routing, store } = await startControl(t, { PORTICO_REDIS_URL: redis.url, PORTICO_FLIP_ACK_MS: '100' }, table);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  for (const name of ['v1', 'v2']) {
    await controller.createVersion(DEPLOYMENT, { name, source: { path: '/nonexistent' } }, 'admin');
    await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: name })).status === 'failed', { what: `the build of ${name} to fail` });
  }
  await controller.setAlias(DEPLOYMENT, 'production', { version: 'v1' }, { force: true }, 'admin');
  const production = async () => (await routing.getDeployment(deploymentKey(DEPLOYMENT)))?.aliases['production'];
  t.same(await production(), { version: 'v1' });

  // The routing table's connection drops between the store's write and the routing write.
  dropBeforeNextApply(routing, redis.url);
  await t.rejects(controller.setAlias(DEPLOYMENT, 'production', { version: 'v2' }, { force: true }, 'admin'), 'the PUT fails (503)');
  t.same((await store.listAliases(DEPLOYMENT)).find((a) => a.name === 'production'), { name: 'production', version: 'v2' }, 'the store has the new alias');
  await waitFor(async () => JSON.stringify(await production()) === '{"version":"v2"}', { what: 'the routing table to follow the store' });
});

t.test('users: names with @ and + (e-mail addresses), as the API and the web UI take them, are stored; others are still refused', async (t) => {
  const { controller } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  for (const user of ['alice@example.com', 'bob+ci@example.com']) {
    t.same(await controller.putUser(DEPLOYMENT, user, 'correct horse', 'admin'), { name: user });
  }
  t.same(await controller.listUsers(DEPLOYMENT), [{ name: 'alice@example.com' }, { name: 'bob+ci@example.com' }]);
  await controller.deleteUser(DEPLOYMENT, 'alice@example.com', 'admin');
  t.same(await controller.listUsers(DEPLOYMENT), [{ name: 'bob+ci@example.com' }]);
  for (const user of ['a:b', '@alice', '']) {
    t.match(await refusal(t, controller.putUser(DEPLOYMENT, user, 'correct horse', 'admin')), { code: 'VALIDATION_FAILED' }, JSON.stringify(user));
  }
});

t.test('environment: a secret sent back masked without "secret": true stays secret; its value is never read back', async (t) => {
  const { controller, store } = await startControl(t);
  await controller.putEnvironment(PROJECT, { TOKEN: { value: 'hunter2', secret: true } }, 'admin');
  for (const sent of [{ value: '********' }, { value: '********', secret: false }]) {
    const put = await controller.putEnvironment(PROJECT, { TOKEN: sent }, 'admin');
    t.same(put.variables, { TOKEN: { value: '********', secret: true } }, JSON.stringify(sent));
    t.same(await controller.getEnvironment(PROJECT), put);
    t.same(await store.getEnvironment(PROJECT.owner, PROJECT.project), { TOKEN: { value: 'hunter2', secret: true } }, 'the value is kept');
  }
  // A new value may turn it into a plain variable.
  const plain = await controller.putEnvironment(PROJECT, { TOKEN: { value: 'public', secret: false } }, 'admin');
  t.same(plain.variables, { TOKEN: { value: 'public', secret: false } });
});

t.test('test console: a path with . or .. segments is refused, not resolved into another endpoint\'s URL before it is sent', async (t) => {
  const { controller, routing } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const seen: string[] = [];
  const gateway = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.end('ok');
  });
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => gateway.close(() => resolve())));
  await routing.heartbeat({ id: 'gw-1', url: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, pid: process.pid, startedAt: Date.now() }, 60_000);
  const send = (path: string) => controller.test(DEPLOYMENT, { target: 'v1', endpoint: 'predict', method: 'GET', path });

  for (const path of ['/../../v2/other', '/..', '/a/./b', '/%2e%2E/x', '/.%2e?q=1', '/a\\..\\..\\v2\\other']) {
    t.match(await refusal(t, send(path)), { code: 'VALIDATION_FAILED', statusCode: 400, message: /^path: / }, path);
  }
  t.same(seen, [], 'none of them was sent');
  for (const path of ['/a..b/...', '/x?next=/../y', '/.well-known']) t.equal((await send(path)).status, 200, path);
  t.same(seen, ['/acme/mnist/web/v1/predict/a..b/...', '/acme/mnist/web/v1/predict/x?next=/../y', '/acme/mnist/web/v1/predict/.well-known'], 'other paths go as they are');
});

t.test('tokens: "env" and "anonymous" are not token names: the audit log uses them for PORTICO_ADMIN_TOKEN and for routes without auth', async (t) => {
  const envToken = 'e'.repeat(40);
  const { controller } = await startControl(t, { PORTICO_ADMIN_TOKEN: envToken });
  for (const name of ['env', 'anonymous']) {
    t.match(await refusal(t, controller.createToken(name, 'env')), { code: 'VALIDATION_FAILED', statusCode: 400, message: new RegExp(`^name: "${name}" is reserved`) }, name);
  }
  t.same(await controller.listTokens(), [], 'none created');
  const ok = await controller.createToken('environment', 'env');
  t.equal(await controller.authenticate(ok.token), 'environment');
  t.equal(await controller.authenticate(envToken), 'env');
});

t.test('an endpoint disabled when its version was built (its files never placed) is not enabled later by a PATCH', async (t) => {
  const { controller } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  // The example without its model file: the endpoint cannot run until a source gives the file.
  const code = await mkdtemp(join(tmpdir(), 'portico-controller-code-'));
  t.teardown(() => rm(code, { recursive: true, force: true }));
  await cp(join(import.meta.dirname, '../../examples/node-sentiment'), code, { recursive: true });
  await rm(join(code, 'model', 'weights.json'));
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: code }, endpoints: { sentiment: { enabled: false } } }, 'admin');
  await waitFor(async () => (await controller.getVersion(ref)).status === 'ready', { what: 'the build' });

  const refused = await refusal(t, controller.patchVersion(ref, { endpoints: { sentiment: { enabled: true } } }, 'admin'));
  t.match(refused, { code: 'CONFLICT', statusCode: 409, message: /^endpoints\.sentiment: .*disabled when version v1 was built.*build a new version/ });
  const v = await controller.getVersion(ref);
  t.same([v.status, v.endpoints[0]!.enabled, v.endpoints[0]!.replicas], ['ready', false, []], 'nothing started');
  // Other changes to it are still taken.
  t.equal((await controller.patchVersion(ref, { endpoints: { sentiment: { replicas: 2 } } }, 'admin')).endpoints[0]!.replicaCount, 2);
});

t.test('a followed endpoint log of a version deleted meanwhile ends with a 404, not an open stream forever', async (t) => {
  const { controller } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: join(import.meta.dirname, '../../examples/node-sentiment') }, endpoints: { sentiment: { replicas: 0 } } }, 'admin');
  await waitFor(async () => (await controller.getVersion(ref)).status !== 'building', { what: 'the build' });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const lines: string[] = [];
  const followed = (async () => {
    for await (const l of controller.endpointLogs(ref, 'sentiment', { follow: true }, ac.signal)) lines.push(l.line);
  })();
  const refused = refusal(t, followed);
  // The follow has subscribed once it waits; the delete then ends it.
  await new Promise((resolve) => setImmediate(resolve));
  await controller.deleteVersion(ref, 'admin');
  t.match(await refused, { code: 'NOT_FOUND', statusCode: 404, message: /version v1 .*deleted/ });
  t.same(lines, []);
  // A follow that the client ends is not an error.
  await controller.createVersion(DEPLOYMENT, { name: 'v2', source: { path: join(import.meta.dirname, '../../examples/node-sentiment') }, endpoints: { sentiment: { replicas: 0 } } }, 'admin');
  await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: 'v2' })).status !== 'building', { what: 'the build of v2' });
  const left = new AbortController();
  const iter = controller.endpointLogs({ ...DEPLOYMENT, version: 'v2' }, 'sentiment', { follow: true }, left.signal)[Symbol.asyncIterator]();
  const next = iter.next();
  left.abort();
  t.same(await next, { done: true, value: undefined });
});

t.test('a git source URL\'s credentials never appear: not in the version, the audit log or the build log', async (t) => {
  const { controller, store } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const url = 'https://bob:ghp_SECRET123@127.0.0.1:1/acme/x.git';
  const ref = { ...DEPLOYMENT, version: 'g1' };
  const created = await controller.createVersion(DEPLOYMENT, { name: 'g1', source: { git: { url, ref: 'main' } } }, 'admin');
  await waitFor(async () => (await controller.getVersion(ref)).status === 'failed', { what: 'the clone to fail' });
  const shown = JSON.stringify([created, await controller.getVersion(ref), await controller.listVersions(DEPLOYMENT), await controller.audit({}), await controller.buildLog(ref)]);
  t.notMatch(shown, 'ghp_SECRET123', 'the token is nowhere');
  t.same((await controller.getVersion(ref)).source, { git: { url: 'https://bob:********@127.0.0.1:1/acme/x.git', ref: 'main' } });
  t.match(shown, 'git clone https://bob:********@127.0.0.1:1/acme/x.git', 'the build log says what was cloned');
  t.same((await store.getVersion(ref))?.source, { git: { url, ref: 'main' } }, 'stored as given: a restarted build needs it');

  // A token given as the user name (https://TOKEN@host/...) is one too; other URLs are shown whole.
  const bare = await controller.createVersion(DEPLOYMENT, { name: 'g2', source: { git: { url: 'https://ghp_BARE456@127.0.0.1:1/x.git' } } }, 'admin');
  t.same(bare.source, { git: { url: 'https://********@127.0.0.1:1/x.git' } });
  const plain = await controller.createVersion(DEPLOYMENT, { name: 'g3', source: { git: { url: 'ssh://git@127.0.0.1:1/acme/x.git' } } }, 'admin');
  t.same(plain.source, { git: { url: 'ssh://git@127.0.0.1:1/acme/x.git' } });
  for (const name of ['g2', 'g3']) await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: name })).status === 'failed', { what: `${name} to fail` });
});

t.test('secrets are masked in replica logs after a restart: of a project without deployments then, and those a version was built with', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-controller-test-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  // The example, printing its API_KEY as it starts.
  const code = join(dataDir, 'code');
  await cp(join(import.meta.dirname, '../../examples/node-sentiment'), code, { recursive: true });
  await writeFile(join(code, 'server.js'), `console.log('key is ' + process.env.API_KEY);\n${await readFile(join(code, 'server.js'), 'utf8')}`);
  const other = { owner: 'acme', project: 'other' };
  const logsOf = async (c: RunningController, ref: { owner: string; project: string; deployment: string; version: string }) => {
    const lines: string[] = [];
    for await (const l of c.controller.endpointLogs(ref, 'sentiment', {})) lines.push(l.line);
    return lines.join('\n');
  };

  let current = await startOn(dataDir);
  // Replicas outlive a controller (the next one adopts them): deleting the deployments stops them.
  t.teardown(async () => {
    for (const ref of [PROJECT, other]) await current.controller.deleteDeployment({ ...ref, deployment: 'web' }, 'admin').catch(() => undefined);
    await current.stop();
  });
  await current.controller.putEnvironment(PROJECT, { API_KEY: { value: 'sk-old-1234567890', secret: true } }, 'admin');
  await current.controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const v1 = { ...DEPLOYMENT, version: 'v1' };
  await current.controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: code } }, 'admin');
  await waitFor(async () => (await logsOf(current, v1)).includes('key is ********'), { what: 'v1 to print its key' });
  // The project's secret changes; v1 keeps the value it was built with. Another project has a secret, no deployment yet.
  await current.controller.putEnvironment(PROJECT, { API_KEY: { value: 'sk-new-1234567890', secret: true } }, 'admin');
  await current.controller.putEnvironment(other, { API_KEY: { value: 'sk-other-1234567890', secret: true } }, 'admin');
  await current.stop();

  const second = await startOn(dataDir);
  current = second;
  // Restarted, its replica prints again the value it was built with.
  await second.controller.patchVersion(v1, { enabled: false }, 'admin');
  await second.controller.patchVersion(v1, { enabled: true }, 'admin');
  await waitFor(async () => (await logsOf(second, v1)).split('key is ').length > 2, { what: 'v1 to print its key again' });
  t.notMatch(await logsOf(second, v1), 'sk-old-1234567890', 'the value v1 was built with is masked');
  await second.controller.createDeployment(other, { name: 'web' }, 'admin');
  const v2 = { ...other, deployment: 'web', version: 'v2' };
  await second.controller.createVersion({ ...other, deployment: 'web' }, { name: 'v2', source: { path: code } }, 'admin');
  await waitFor(async () => (await logsOf(second, v2)).includes('key is '), { what: 'v2 to print its key' });
  t.match(await logsOf(second, v2), 'key is ********', 'the other project\'s secret is masked');
  t.notMatch(await logsOf(second, v2), 'sk-other-1234567890');
});

t.test('names too long together for file names are refused where they are given, not lost in silence', async (t) => {
  const { controller } = await startControl(t);
  const [o, p] = ['o'.repeat(60), 'p'.repeat(60)];
  // Deployment: with a dated version name its build log would not fit.
  const long = await refusal(t, controller.createDeployment({ owner: 'o'.repeat(100), project: 'p'.repeat(100) }, { name: 'd'.repeat(60) }, 'admin'));
  t.equal(long.code, 'VALIDATION_FAILED');
  t.match(long.message, /^name: deployment build\/o{100}\/p{100}\/d{60}\/20000101\.0 makes file names of \d+ bytes, over the 255 the file system takes/);
  await controller.createDeployment({ owner: o, project: p }, { name: 'd'.repeat(40) }, 'admin');
  const dep = { owner: o, project: p, deployment: 'd'.repeat(40) };
  // Version: a name that leaves no room.
  t.equal((await refusal(t, controller.createVersion(dep, { name: 'v'.repeat(100), source: { path: '/nonexistent' } }, 'admin'))).code, 'VALIDATION_FAILED');
  // Endpoint: known only once its valohai.yaml is read, so the build fails naming it.
  const code = await mkdtemp(join(tmpdir(), 'portico-controller-long-'));
  t.teardown(() => rm(code, { recursive: true, force: true }));
  await writeFile(join(code, 'valohai.yaml'), `- endpoint:\n    name: ${'e'.repeat(90)}\n    image: python:3.12\n    port: 8000\n    server-command: sleep 60\n`);
  const ref = { ...dep, version: 'v1' };
  await controller.createVersion(dep, { name: 'v1', source: { path: code } }, 'admin');
  const v = await waitFor(async () => {
    const v = await controller.getVersion(ref);
    return v.status === 'failed' ? v : undefined;
  }, { what: 'the build to fail', timeoutMs: 30_000 });
  t.match(v.reason, /^endpoint o{60}\/p{60}\/d{40}\/v1\/e{90} makes file names of \d+ bytes, over the 255/);
  t.ok((await controller.buildLog(ref)).some((l) => l.line.startsWith('build failed: endpoint')), 'the build log says so too');
});

t.test('a replica crashing with a secret on its stderr: the error, the reason and the version view show it masked', async (t) => {
  const { controller } = await startControl(t);
  const code = await mkdtemp(join(tmpdir(), 'portico-controller-crash-'));
  t.teardown(() => rm(code, { recursive: true, force: true }));
  await writeFile(join(code, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: python:3.12\n    port: 8000\n    server-command: echo refused API_KEY=$API_KEY >&2; exit 3\n');
  await controller.putEnvironment(PROJECT, { API_KEY: { value: 'sk-live-1234567890', secret: true } }, 'admin');
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const ref = { ...DEPLOYMENT, version: 'v1' };
  t.teardown(() => controller.deleteVersion(ref, 'admin').catch(() => undefined));
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: code } }, 'admin');
  const v = await waitFor(async () => {
    const v = await controller.getVersion(ref);
    if (v.status === 'failed' && v.endpoints[0]?.error?.startsWith('crash loop')) return v;
    throw new Error(JSON.stringify(v));
  }, { what: 'the crash loop', timeoutMs: 30_000 });
  t.notMatch(JSON.stringify(v), 'sk-live-1234567890', 'the secret is nowhere in the version view');
  t.match(v.endpoints[0]?.error, 'last stderr: refused API_KEY=********', 'the endpoint error shows it masked');
  t.match(v.reason, 'API_KEY=********', 'so does the version\'s reason');
  t.notMatch(JSON.stringify(await controller.listVersions(DEPLOYMENT)), 'sk-live-1234567890', 'nor the version list');
});

t.test('a docker target of a targets file with host networking builds its images on the host network too', async (t) => {
  // An engine without a bridge (as the test engines are): its build steps reach nothing unless on the host network.
  const engine = await startDockerd();
  t.teardown(() => engine.stop());
  const server = createServer((_, res) => res.end('reached the host\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  // A "python" whose pip needs the network: it fetches from a server on the host's loopback.
  await importRootfs(engine.docker, 'portico-test/netpip:1', [
    ...busyboxEntries(),
    { type: 'data', path: 'usr/bin/python3', mode: 0o755, data: `#!/bin/sh\nwget -q -O - http://127.0.0.1:${port}/ || { echo "no network" >&2; exit 1; }\n` },
  ]);
  const dir = await mkdtemp(join(tmpdir(), 'portico-controller-net-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'targets.json'), JSON.stringify({ targets: [{ name: 'edge', kind: 'docker', socket: engine.socket, network: 'host' }] }));
  await writeFile(join(dir, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: portico-test/netpip:1\n    port: 8000\n    server-command: httpd -f -p $PORT\n');
  await writeFile(join(dir, 'requirements.txt'), 'numpy\n');
  const { controller } = await startControl(t, { PORTICO_TARGETS_FILE: join(dir, 'targets.json') });
  await controller.createDeployment(PROJECT, { name: 'web', target: 'edge' }, 'admin');
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: dir } }, 'admin');
  const v = await waitFor(async () => {
    const v = await controller.getVersion({ ...DEPLOYMENT, version: 'v1' });
    return v.status !== 'building' ? v : undefined;
  }, { what: 'the build to end', timeoutMs: 60_000 });
  t.not(v.status, 'failed', `built: ${v.reason ?? ''}`);
  t.ok((await controller.buildLog({ ...DEPLOYMENT, version: 'v1' })).some((l) => l.line === 'reached the host'), 'the pip step reached the host');
  await controller.deleteVersion({ ...DEPLOYMENT, version: 'v1' }, 'admin');
});

t.test('alias history: of an alias that never existed is a 404 (a typo is not an empty history); a deleted one keeps its history', async (t) => {
  const { controller } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: '/nonexistent' } }, 'admin');
  await waitFor(async () => (await controller.getVersion({ ...DEPLOYMENT, version: 'v1' })).status === 'failed', { what: 'the build to fail' });
  t.match(await refusal(t, controller.aliasHistory(DEPLOYMENT, 'prodution')), { code: 'NOT_FOUND', statusCode: 404, message: /alias prodution of acme\/mnist\/web/ });
  await controller.setAlias(DEPLOYMENT, 'production', { version: 'v1' }, { force: true }, 'admin');
  await controller.deleteAlias(DEPLOYMENT, 'production', 'admin');
  t.match(await controller.aliasHistory(DEPLOYMENT, 'production'), [{ by: 'admin', from: { version: 'v1' }, to: null }, { by: 'admin', from: null, to: { version: 'v1' } }], 'newest first');
});

/** Where the blob store keeps the file with this content. */
function blobPath(blobRoot: string, content: string): string {
  const sha256 = createHash('sha256').update(content).digest('hex');
  return join(blobRoot, 'sha256', sha256.slice(0, 2), sha256);
}

const exists = (path: string) => stat(path).then(() => true, () => false);

t.test('blob store: a file versions share stays until the last of them is deleted; then it and its uploads are gone', async (t) => {
  const { controller, store } = await startControl(t);
  const model = JSON.stringify({ good: 1, bad: -1, note: randomUUID() });
  // `portico deploy --file` uploads the file again for each version: one content, one file.
  const [a, b, c] = [await controller.createUpload(Readable.from([model]), 'admin'), await controller.createUpload(Readable.from([model]), 'admin'), await controller.createUpload(Readable.from([model]), 'admin')];
  const file = (await store.getUpload(a.id))!.path;
  t.equal(file, blobPath(join(file, '../../..'), model));
  const code = join(import.meta.dirname, '../../examples/node-sentiment');
  const deploy = async (deployment: string, version: string, upload: string) => {
    const ref = { ...PROJECT, deployment, version };
    await controller.createVersion({ ...PROJECT, deployment }, { name: version, source: { path: code }, endpoints: { sentiment: { replicas: 0, files: { model: { upload } } } } }, 'admin');
    await waitFor(async () => (await controller.getVersion(ref)).status !== 'building', { what: `the build of ${version}` });
    t.same((await controller.getVersion(ref)).endpoints[0]!.files.map((f) => f.sha256), [a.sha256], `${deployment}/${version} has the file`);
    return ref;
  };
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  await controller.createDeployment(PROJECT, { name: 'other' }, 'admin');
  const v1 = await deploy('web', 'v1', a.id);
  const v2 = await deploy('web', 'v2', b.id);
  await deploy('other', 'v1', c.id);
  await controller.cleanBlobs(); // the builds' last steps are over

  await controller.deleteVersion(v1, 'admin');
  t.ok(await exists(file), 'the file stays: other versions have it');
  t.equal(await store.getUpload(a.id), null, 'the upload only v1 used is gone');
  t.not(await store.getUpload(b.id), null, 'the one v2 uses stays');
  await controller.deleteVersion(v2, 'admin');
  t.ok(await exists(file), 'the file stays: a version of another deployment has it');
  t.equal(await store.getUpload(b.id), null);
  await controller.deleteDeployment({ ...PROJECT, deployment: 'other' }, 'admin');
  t.notOk(await exists(file), 'the last version gone, the file is gone');
  t.same(await store.listUploads(), [], 'and every upload');
});

t.test('blob store: an upload no version uses goes after PORTICO_UPLOAD_GRACE_SECONDS, and so does one whose record could not be stored', async (t) => {
  let now = Date.now();
  const { controller, store } = await startControl(t, { PORTICO_UPLOAD_GRACE_SECONDS: '3600' }, undefined, () => now);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const [abandoned, used] = [JSON.stringify({ a: randomUUID() }), JSON.stringify({ u: randomUUID() })];
  const left = await controller.createUpload(Readable.from([abandoned]), 'admin');
  const kept = await controller.createUpload(Readable.from([used]), 'admin');
  const root = join((await store.getUpload(left.id))!.path, '../../..');
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: join(import.meta.dirname, '../../examples/node-sentiment') }, endpoints: { sentiment: { replicas: 0, files: { model: { upload: kept.id } } } } }, 'admin');
  await waitFor(async () => (await controller.getVersion(ref)).status !== 'building', { what: 'the build' });

  now = Date.parse((await store.getUpload(left.id))!.createdAt) + 3599_000;
  await controller.cleanBlobs();
  t.ok(await exists(blobPath(root, abandoned)), 'within the grace period the upload stays');
  t.not(await store.getUpload(left.id), null);
  now += 1000;
  await controller.cleanBlobs();
  t.notOk(await exists(blobPath(root, abandoned)), 'after it, its file is gone');
  t.equal(await store.getUpload(left.id), null, 'and its record');
  t.ok(await exists(blobPath(root, used)), 'an upload a version uses stays, however old');
  t.not(await store.getUpload(kept.id), null);
  // A version naming it later is refused where it is named; nothing is created.
  const late = controller.createVersion(DEPLOYMENT, { name: 'v2', source: { path: join(import.meta.dirname, '../../examples/node-sentiment') }, endpoints: { sentiment: { replicas: 0, files: { model: { upload: left.id } } } } }, 'admin');
  await t.rejects(late, { code: 'VALIDATION_FAILED', statusCode: 400, message: `endpoints.sentiment.files.model.upload: no upload ${JSON.stringify(left.id)} (an upload no version uses goes after PORTICO_UPLOAD_GRACE_SECONDS, and one a version used goes with the last such version)` });
  t.equal(await store.getVersion({ ...DEPLOYMENT, version: 'v2' }), null, 'no version v2');
  await t.rejects(controller.createVersion(DEPLOYMENT, { source: { upload: 'up_never' } }, 'admin'), { code: 'VALIDATION_FAILED', message: /^source\.upload: no upload "up_never"/ });
  t.same((await store.listVersions(DEPLOYMENT)).map((v) => v.name), ['v1'], 'nor any other, and no version name used up');

  // A write the store refused (a full disk) leaves no file behind.
  await controller.cleanBlobs(); // the build of v2 is over, to its last step
  const refusedContent = JSON.stringify({ r: randomUUID() });
  const original = store.createUpload.bind(store);
  store.createUpload = () => Promise.reject(new Error('ENOSPC: no space left on device'));
  t.teardown(() => void (store.createUpload = original));
  await t.rejects(controller.createUpload(Readable.from([refusedContent]), 'admin'), /ENOSPC/);
  t.notOk(await exists(blobPath(root, refusedContent)), 'the file of an upload without a record is gone');
  t.ok(await exists(blobPath(root, used)), 'the others stay');
});

t.test('blob store: the controller cleans by itself, every half grace period', async (t) => {
  const { controller, store } = await startControl(t, { PORTICO_UPLOAD_GRACE_SECONDS: '1' });
  const up = await controller.createUpload(Readable.from([randomUUID()]), 'admin');
  const file = (await store.getUpload(up.id))!.path;
  await waitFor(async () => !(await exists(file)) && (await store.getUpload(up.id)) === null, { what: 'the abandoned upload to go' });
});

t.test('blob store: nothing is cleaned while a build is under way; the clean asked for meanwhile runs after it', async (t) => {
  const { controller, store } = await startControl(t);
  await controller.createDeployment(PROJECT, { name: 'web' }, 'admin');
  const dir = await mkdtemp(join(tmpdir(), 'portico-controller-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const model = JSON.stringify({ m: randomUUID() });
  await writeFile(join(dir, 'weights.json'), model);
  const root = join((await store.getUpload((await controller.createUpload(Readable.from(['x']), 'admin')).id))!.path, '../../..');
  const orphan = blobPath(root, 'orphan');
  await mkdir(join(orphan, '..'), { recursive: true });
  await writeFile(orphan, 'orphan');

  // The build is held at its last write: its file is in the blob store, no version names it yet.
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const update = store.updateVersion.bind(store);
  store.updateVersion = async (...args) => {
    store.updateVersion = update;
    await gate;
    return update(...args);
  };
  const ref = { ...DEPLOYMENT, version: 'v1' };
  await controller.createVersion(DEPLOYMENT, { name: 'v1', source: { path: join(import.meta.dirname, '../../examples/node-sentiment') }, endpoints: { sentiment: { replicas: 0, files: { model: { path: join(dir, 'weights.json') } } } } }, 'admin');
  await waitFor(() => exists(blobPath(root, model)), { what: 'the build to store its file' });
  await controller.cleanBlobs({ orLater: true });
  const cleaned = controller.cleanBlobs();
  t.ok(await exists(orphan), 'not cleaned while the build is under way');
  release();
  await cleaned;
  t.equal((await controller.getVersion(ref)).status, 'ready');
  t.ok(await exists(blobPath(root, model)), 'the build\'s file stays: its version names it');
  t.notOk(await exists(orphan), 'the clean ran once the build ended');
});

t.test('an embedded store that failed a disk write: the controller says so, not "ok" (the admin /healthz is a 503 as every call)', async (t) => {
  const { controller, store } = await startControl(t);
  t.equal(controller.storeStatus(), 'ok');
  // Its journal now goes to /dev/full: the next write fails as on a full disk (ENOSPC).
  const disk = (store as unknown as { disk: { fh: FileHandle | null } }).disk;
  await disk.fh?.close();
  disk.fh = await open('/dev/full', 'a');
  await t.rejects(controller.createToken('other', 'admin'), { name: 'StoreUnavailableError', needsRestart: true });
  t.equal(controller.storeStatus(), 'failed');
});

t.test('a start whose targets cannot be created closes what it opened: no Redis connection is left behind', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-controller-test-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  await writeFile(join(dataDir, 'targets.json'), 'not json');
  const client = new Redis(redis.url);
  t.teardown(() => client.quit());
  const clients = async () => String(await client.client('LIST')).trim().split('\n').length;
  const before = await clients();
  const config = loadConfig({ PORTICO_DATA_DIR: dataDir, PORTICO_REDIS_URL: redis.url, PORTICO_TARGETS_FILE: join(dataDir, 'targets.json') });
  await t.rejects(startController({ config, routing: new EmbeddedRoutingTable(), log: silent }), /not JSON/);
  await waitFor(async () => (await clients()) === before, { timeoutMs: 3000, what: 'the store, lease and metric store connections to close' });
  t.pass('every connection it opened is closed');
});
