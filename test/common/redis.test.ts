import t from 'tap';
import { loadConfig } from '../../common/config.ts';
import { describeRedisUrl, parseRedisUrl } from '../../common/redis.ts';

t.test('redis:// and rediss:// name one server', async (t) => {
  t.same(parseRedisUrl('redis://127.0.0.1:6379/2'), { kind: 'server', url: 'redis://127.0.0.1:6379/2' });
  t.same(parseRedisUrl('rediss://:pw@redis.example:6380'), { kind: 'server', url: 'rediss://:pw@redis.example:6380' });
  t.equal(describeRedisUrl('redis://:s3cret@redis.example:6380/1'), 'redis.example:6380', 'no password in the description');
});

t.test('redis+sentinel:// names a master through its sentinels', async (t) => {
  t.same(parseRedisUrl('redis+sentinel://s1,s2:26380,[::1]:26381/mymaster'), {
    kind: 'sentinel',
    sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26380 }, { host: '::1', port: 26381 }],
    name: 'mymaster',
    db: 0,
  }, 'default port 26379, IPv6 in brackets');
  t.same(parseRedisUrl('redis+sentinel://app:p%40ss@10.0.0.1/cache/3?sentinelPassword=sp'), {
    kind: 'sentinel',
    sentinels: [{ host: '10.0.0.1', port: 26379 }],
    name: 'cache',
    db: 3,
    username: 'app',
    password: 'p@ss',
    sentinelPassword: 'sp',
  }, 'user, percent-encoded password, db, sentinel password');
  t.same(parseRedisUrl('redis+sentinel://:pw@s1/m'), { kind: 'sentinel', sentinels: [{ host: 's1', port: 26379 }], name: 'm', db: 0, password: 'pw' });
  t.equal(describeRedisUrl('redis+sentinel://:pw@s1,s2:26380/m'), 'master m via Sentinel s1:26379,s2:26380', 'no password in the description');
});

t.test('bad Redis URLs say what is wrong', async (t) => {
  const cases: [string, RegExp][] = [
    ['http://x', /expected a redis:, rediss: or redis\+sentinel: URL/],
    ['redis+sentinel://s1', /expected redis\+sentinel:\/\/.*master-name/],
    ['redis+sentinel://s1:99999/m', /sentinel "s1:99999": expected host or host:port/],
    ['redis+sentinel://s1,/m', /sentinel "": expected host or host:port/],
    ['redis+sentinel://s1/m?db=2', /unknown parameter "db"/],
    ['redis://a b', /not a URL/],
  ];
  for (const [url, message] of cases) t.throws(() => parseRedisUrl(url), { message }, url);
});

t.test('PORTICO_REDIS_URL is checked at start-up, without echoing the URL (it may hold a password)', async (t) => {
  t.equal(loadConfig({ PORTICO_REDIS_URL: 'redis+sentinel://s1,s2/mymaster' }).redisUrl, 'redis+sentinel://s1,s2/mymaster');
  t.equal(loadConfig({ PORTICO_REDIS_URL: 'redis://127.0.0.1:6379/' }).redisUrl, 'redis://127.0.0.1:6379');
  const err = (() => {
    try {
      loadConfig({ PORTICO_REDIS_URL: 'redis+sentinel://:hunter2@s1' });
    } catch (e) {
      return e as Error;
    }
    return undefined;
  })();
  t.match(err?.message, /PORTICO_REDIS_URL: expected redis\+sentinel/, 'refused, saying why');
  t.notOk(err?.message.includes('hunter2'), 'the password is not in the message');
});
