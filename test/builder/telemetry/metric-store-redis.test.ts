import t from 'tap';
import { Redis } from 'ioredis';
import { RedisMetricStore } from '../../../builder/telemetry/metric-store-redis.ts';
import { startRedis } from '../../helpers/redis.ts';
import { metricStoreContract } from './metric-store-contract.ts';

const redis = await startRedis();
t.teardown(() => redis.stop());

let n = 0;

t.test('contract', async (t) => {
  metricStoreContract(t, {
    fresh: async (limits) => {
      const prefix = `m${++n}:`;
      const opts = { url: redis.url, prefix, ...(limits ? { limits } : {}) };
      let store = new RedisMetricStore(opts);
      return {
        store,
        async reopen() {
          await store.close();
          store = new RedisMetricStore(opts);
          return store;
        },
      };
    },
  });
});

t.test('keys are trimmed in Redis itself, and the bookkeeping matches what is kept', async (t) => {
  const prefix = 'trim:';
  const s = new RedisMetricStore({ url: redis.url, prefix, limits: { pointsPerSeries: 50, totalPoints: 120 } });
  const raw = new Redis(redis.url);
  t.teardown(async () => {
    await s.close();
    await raw.quit();
  });
  for (let i = 0; i < 200; i++) s.add('o/p/d/v/e', { at: i, replica: 'r', values: [['a', i], ['b', i], ['c', i]] });
  await s.flush();
  const sizes = await raw.zrange(`${prefix}@sizes`, '0', '-1', 'WITHSCORES');
  const counts: number[] = [];
  for (const k of ['a', 'b', 'c']) counts.push(await raw.zcard(`${prefix}e:${encodeURIComponent('o/p/d/v/e')}:s:${k}`));
  t.ok(counts.every((c) => c <= 50), `each series at most 50 (${counts})`);
  const total = counts.reduce((x, y) => x + y, 0);
  t.ok(total <= 120, `the budget holds (${total})`);
  t.equal(Number(await raw.get(`${prefix}@total`)), total, '@total is exact');
  t.equal(sizes.filter((_, i) => i % 2 === 1).map(Number).reduce((x, y) => x + y, 0), total, '@sizes is exact');
  await s.remove('o/p/d/');
  t.equal(Number(await raw.get(`${prefix}@total`)), 0);
  t.same(await raw.keys(`${prefix}e:*`), []);
});

t.test('Redis unreachable: adds are dropped and counted, nothing throws', async (t) => {
  const s = new RedisMetricStore({ url: 'redis://127.0.0.1:1', prefix: 'down:', redisOptions: { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null } });
  t.teardown(() => s.close());
  s.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['a', 1], ['b', 2]] });
  await s.flush();
  t.equal(s.counters.dropped, 2);
  t.equal(s.counters.added, 0);
});

t.test('a key name that is not well-formed UTF-16 loses neither its values nor the others flushed with it', async (t) => {
  const s = new RedisMetricStore({ url: redis.url, prefix: 'lone:' });
  t.teardown(() => s.close());
  s.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['ok', 1]] });
  s.add('o/p/d/v/e', { at: 2, replica: 'r', values: [['\ud800', 2]] });
  t.same((await s.keys('o/p/d/v/e')).map((k) => [k.name, k.count]), [['ok', 1], ['\ufffd', 1]]);
  t.same((await s.points('o/p/d/v/e', '\ud800'))?.points, [{ at: 2, value: 2, replica: 'r' }], 'read by the name it was added with');
  t.same(s.counters, { added: 2, dropped: 0 });
});

t.test('Redis stalled (not answering): queries fail and close returns within a command timeout, instead of hanging until it answers', async (t) => {
  const stalled = await startRedis();
  t.teardown(() => stalled.stop());
  const s = new RedisMetricStore({ url: stalled.url, prefix: 'stall:' });
  s.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['a', 1]] });
  await s.flush();
  stalled.pause();
  t.teardown(() => stalled.resume());
  /** How `p` settled within `ms` (the stalled server itself never answers). */
  const outcome = (p: Promise<unknown>, ms: number): Promise<string> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p.then(() => 'resolved', (err: unknown) => `rejected: ${(err as Error).message}`),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`still pending after ${ms} ms`), ms))),
    ]).finally(() => clearTimeout(timer));
  };
  t.equal(await outcome(s.keys('o/p/d/v/e'), 15_000), 'rejected: Command timed out', 'a query fails (the admin API answers 503)');
  s.add('o/p/d/v/e', { at: 2, replica: 'r', values: [['a', 2]] });
  t.equal(await outcome(s.close(), 20_000), 'resolved', 'close returns (a controller\'s SIGTERM does not hang on it)');
});
