import t from 'tap';
import { Redis } from 'ioredis';
import { RedisStore } from '../../../builder/store/redis.ts';
import { startRedis } from '../../helpers/redis.ts';
import { newVersion, storeContract } from './contract-suite.ts';

const redis = await startRedis();
t.teardown(() => redis.stop());

let n = 0;
const freshPrefix = () => `t${++n}:`;

t.test('contract', async (t) => {
  storeContract(t, {
    persistent: true,
    fresh: async () => {
      const prefix = freshPrefix();
      return { open: async (opts) => new RedisStore({ ...opts, url: redis.url, prefix }) };
    },
  });
});

t.test('prefixes keep stores apart; a deployment delete leaves only its name counters', async (t) => {
  const a = new RedisStore({ url: redis.url, prefix: 'iso-a:' });
  const b = new RedisStore({ url: redis.url, prefix: 'iso-b:' });
  const raw = new Redis(redis.url);
  t.teardown(async () => {
    await a.close();
    await b.close();
    await raw.quit();
  });
  const ref = { owner: 'acme', project: 'mnist', deployment: 'web' };
  await a.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'basic' });
  t.equal(await b.getDeployment(ref), null, 'another prefix sees nothing');
  await b.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'docker', auth: 'none' });
  t.equal((await a.getDeployment(ref))?.target, 'local');

  await a.putUser(ref, 'alice', 'h');
  const name = await a.allocateVersionName('acme', 'mnist', 'web', new Date('2024-01-01T00:00:00Z'));
  await a.createVersion(newVersion(name));
  await a.createVersion(newVersion('v2'));
  await a.setAlias(ref, 'prod', { version: name }, 'ops');
  await a.setAlias(ref, 'canary', { versions: [{ version: name, weight: 50 }, { version: 'v2', weight: 50 }] }, 'ops');
  await a.deleteAlias(ref, 'canary', 'ops');
  t.ok((await raw.keys('iso-a:d:*')).length >= 7, 'the deployment has its keys');

  t.equal(await a.deleteDeployment(ref), true);
  t.same((await raw.keys('iso-a:d:*')).sort(), ['iso-a:d:acme/mnist/web:vcount'], 'cascade leaves only the name counters');
  t.equal(await raw.hlen('iso-a:p:acme/mnist:deps'), 0);
  t.equal((await b.getDeployment(ref))?.target, 'docker', 'the other prefix is untouched');
});

t.test('names with separators cannot collide', async (t) => {
  const s = new RedisStore({ url: redis.url, prefix: freshPrefix() });
  t.teardown(() => s.close());
  await s.createDeployment({ owner: 'a', project: 'b', name: 'c:ahist:x', target: 'local', auth: 'none' });
  await s.createDeployment({ owner: 'a', project: 'b', name: 'c', target: 'local', auth: 'none' });
  await s.putUser({ owner: 'a', project: 'b', deployment: 'c:ahist:x' }, 'u', 'h');
  t.same(await s.listUsers({ owner: 'a', project: 'b', deployment: 'c' }), []);
  t.same(await s.aliasHistory({ owner: 'a', project: 'b', deployment: 'c' }, 'x:users'), []);
});

t.test('a lost NOSCRIPT cache (SCRIPT FLUSH) is recovered transparently', async (t) => {
  const s = new RedisStore({ url: redis.url, prefix: freshPrefix() });
  const raw = new Redis(redis.url);
  t.teardown(async () => {
    await s.close();
    await raw.quit();
  });
  await s.createDeployment({ owner: 'a', project: 'b', name: 'c', target: 'local', auth: 'none' });
  await s.putUser({ owner: 'a', project: 'b', deployment: 'c' }, 'u', 'h1');
  await raw.script('FLUSH');
  await s.putUser({ owner: 'a', project: 'b', deployment: 'c' }, 'u', 'h2');
  t.same(await s.getUserHashes({ owner: 'a', project: 'b', deployment: 'c' }), { u: 'h2' });
});

t.test('concurrent updates from two connections lose nothing', async (t) => {
  const prefix = freshPrefix();
  const s1 = new RedisStore({ url: redis.url, prefix });
  const s2 = new RedisStore({ url: redis.url, prefix });
  t.teardown(async () => {
    await s1.close();
    await s2.close();
  });
  const ref = { owner: 'acme', project: 'mnist', deployment: 'web' };
  await s1.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
  await s1.createVersion(newVersion('v'));
  const inc = (s: RedisStore) => s.updateVersion({ ...ref, version: 'v' }, (v) => { v.endpoints[0]!.replicas += 1; });
  await Promise.all(Array.from({ length: 40 }, (_, i) => inc(i % 2 ? s1 : s2)));
  t.equal((await s1.getVersion({ ...ref, version: 'v' }))?.endpoints[0]?.replicas, 41);
  const names = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? s1 : s2).allocateVersionName('acme', 'mnist', 'web', new Date('2024-02-02T00:00:00Z'))));
  t.equal(new Set(names).size, 20, 'names unique across connections');
});

t.test('an unresponsive Redis fails store calls within the command timeout, as an outage', async (t) => {
  const { isRedisOutage } = await import('../../../common/redis.ts');
  const { STORE_COMMAND_TIMEOUT_MS } = await import('../../../builder/store/redis.ts');
  t.ok(STORE_COMMAND_TIMEOUT_MS <= 10_000, 'the default bound is seconds, not minutes');
  const s = new RedisStore({ url: redis.url, prefix: freshPrefix(), redisOptions: { commandTimeout: 300 } });
  t.teardown(() => s.close());
  const ref = { owner: 'acme', project: 'mnist', deployment: 'web' };
  t.equal(await s.getDeployment(ref), null, 'connected');
  redis.pause();
  t.teardown(() => redis.resume());
  const start = performance.now();
  const err = await s.getDeployment(ref).then(() => null, (e: unknown) => e);
  redis.resume();
  t.ok(err instanceof Error && isRedisOutage(err), `an outage error (${String(err)})`);
  t.ok(performance.now() - start < 2000, `failed after ${Math.round(performance.now() - start)} ms`);
  t.equal(await s.getDeployment(ref), null, 'and works again once Redis answers');
});
