import t from 'tap';
import { RouteCache, RoutingUnavailableError, type RouteCacheOptions } from '../../../gateway/routing/cache.ts';
import { deploymentKey, endpointKey, type RoutingReader } from '../../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../../gateway/routing/redis.ts';
import { startRedis } from '../../helpers/redis.ts';
import { waitFor } from '../../helpers/poll.ts';
import type { Tap } from './contract-suite.ts';
import { FakeReader } from './fake-reader.ts';
import { deployment, endpoint, gateway, productionVersion } from './fixtures.ts';

const WEB = deploymentKey(deployment('web'));
const NOPE = deploymentKey(deployment('nope'));

/** A started cache on `reader`, stopped at teardown. */
async function cacheOn(t: Tap, reader: RoutingReader, opts: Partial<RouteCacheOptions> = {}): Promise<RouteCache> {
  const cache = new RouteCache(reader, {
    maxEntries: 100,
    negativeTtlMs: 1000,
    maxStaleMs: 5000,
    heartbeatMs: 1000,
    gateway: gateway('gw1'),
    ...opts,
  });
  t.teardown(() => cache.stop());
  await cache.start();
  return cache;
}

/** A clock the test moves; lru-cache needs it to start above 0. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let now = 1_000_000;
  return { now: () => now, advance: (ms) => void (now += ms) };
}

t.test('a miss loads from the table, then peeks hit', async (t) => {
  const table = new EmbeddedRoutingTable();
  await table.apply({ putDeployments: [deployment('web')], putEndpoints: [endpoint('v1')] });
  const cache = await cacheOn(t, table);
  t.equal(cache.peekDeployment(WEB), undefined, 'nothing cached yet');
  t.same(await cache.loadDeployment(WEB), deployment('web'));
  t.same(cache.peekDeployment(WEB), deployment('web'));
  t.same(await cache.loadEndpoint(endpointKey(endpoint('v1'))), endpoint('v1'));
  t.same(await cache.loadDeployment(WEB), deployment('web'), 'a load of a cached key is a hit');
  t.same({ ...cache.stats }, { hits: 2, misses: 2, negativeHits: 0, invalidations: 0, size: 2 });
});

t.test('concurrent loads of one key read the table once', async (t) => {
  const reader = new FakeReader();
  reader.put([WEB, deployment('web')]);
  const cache = await cacheOn(t, reader);
  reader.hold();
  const loads = [cache.loadDeployment(WEB), cache.loadDeployment(WEB), cache.loadDeployment(WEB)];
  t.equal(reader.reads, 1);
  reader.release(0);
  t.same(await Promise.all(loads), [deployment('web'), deployment('web'), deployment('web')]);
  t.equal(cache.stats.misses, 1);
});

t.test('an unknown key is remembered as missing for negativeTtlMs', async (t) => {
  const c = clock();
  const reader = new FakeReader();
  const cache = await cacheOn(t, reader, { negativeTtlMs: 500, now: c.now });
  t.equal(await cache.loadDeployment(NOPE), null);
  t.equal(cache.peekDeployment(NOPE), null);
  t.equal(await cache.loadDeployment(NOPE), null);
  t.equal(reader.reads, 1);
  t.equal(cache.stats.negativeHits, 2);
  c.advance(499);
  t.equal(cache.peekDeployment(NOPE), null, 'still known missing just before the TTL');
  c.advance(2);
  t.equal(cache.peekDeployment(NOPE), undefined, 'forgotten after the TTL');
});

t.test('negativeTtlMs 0 remembers no missing key', async (t) => {
  const reader = new FakeReader();
  const cache = await cacheOn(t, reader, { negativeTtlMs: 0 });
  t.equal(await cache.loadDeployment(NOPE), null);
  t.equal(cache.peekDeployment(NOPE), undefined);
  t.equal(cache.stats.size, 0);
});

t.test('a change to a key known missing makes its new record visible at once', async (t) => {
  const table = new EmbeddedRoutingTable();
  const cache = await cacheOn(t, table, { negativeTtlMs: 60_000 });
  t.equal(await cache.loadDeployment(WEB), null);
  t.equal(cache.peekDeployment(WEB), null);
  await table.apply({ putDeployments: [deployment('web')] });
  t.equal(cache.peekDeployment(WEB), undefined, 'the negative entry is gone');
  t.same(await cache.loadDeployment(WEB), deployment('web'));
});

t.test('a change drops only the keys it names, and is acknowledged after', async (t) => {
  const table = new EmbeddedRoutingTable();
  await table.apply({ putDeployments: [deployment('web', 'v1'), deployment('api')] });
  const cache = await cacheOn(t, table);
  await cache.loadDeployment(WEB);
  await cache.loadDeployment(deploymentKey(deployment('api')));

  const seq = await table.apply({ putDeployments: [deployment('web', 'v2')] });
  t.same(await table.waitForAcks(seq, 1000), { seq, acknowledged: ['gw1'], missing: [] });
  t.equal(productionVersion(cache.peekDeployment(WEB) ?? (await cache.loadDeployment(WEB))), 'v2', 'the acknowledged change is what a request sees');
  t.same(cache.peekDeployment(deploymentKey(deployment('api'))), deployment('api'), 'a key not named stays cached');
  t.equal(cache.stats.invalidations, 1);
});

t.test('a changed record in use is loaded again at once, and serves through an outage right after', async (t) => {
  const reader = new FakeReader();
  const API = endpointKey(endpoint('v1'));
  reader.put([WEB, deployment('web', 'v1')], [API, endpoint('v1')]);
  const cache = await cacheOn(t, reader);
  await cache.loadDeployment(WEB);
  t.equal(reader.reads, 1);
  reader.put([WEB, deployment('web', 'v2')]);
  reader.change(WEB, API); // the endpoint was never loaded here: not fetched
  await waitFor(() => cache.peekDeployment(WEB) !== undefined, { what: 'the changed record to be loaded again' });
  t.equal(productionVersion(cache.peekDeployment(WEB)), 'v2', 'the new record, without a request asking for it');
  t.equal(reader.reads, 2, 'one read: only the record that was cached');
  reader.setAvailable(false);
  t.equal(productionVersion(await cache.loadDeployment(WEB)), 'v2', 'the table gone at once after the change: the route still serves');
  await t.rejects(cache.loadEndpoint(API), RoutingUnavailableError, 'a route not in use was not loaded');
});

t.test('a load under way when its key changes does not fill the cache', async (t) => {
  const reader = new FakeReader();
  reader.put([WEB, deployment('web', 'v1')]);
  const cache = await cacheOn(t, reader);
  reader.hold();
  const before = cache.loadDeployment(WEB); // reads v1...
  reader.put([WEB, deployment('web', 'v2')]);
  reader.change(WEB); // ...but the change arrives before the answer
  const after = cache.loadDeployment(WEB);
  t.equal(reader.reads, 2, 'a load after the change does not join the one before it');
  reader.release(1);
  t.equal(productionVersion(await after), 'v2');
  reader.release(0);
  t.equal(productionVersion(await before), 'v1', 'the early caller gets what it asked for');
  t.equal(productionVersion(cache.peekDeployment(WEB)), 'v2', 'but the old answer did not replace the new one');
});

t.test('a load under way during a resync does not fill the cache', async (t) => {
  const reader = new FakeReader();
  reader.put([WEB, deployment('web', 'v1')]);
  const cache = await cacheOn(t, reader);
  reader.hold();
  const before = cache.loadDeployment(WEB);
  reader.resync();
  reader.release(0);
  t.equal(productionVersion(await before), 'v1');
  t.equal(cache.peekDeployment(WEB), undefined);
});

t.test('a resync drops everything and acknowledges the current sequence', async (t) => {
  const reader = new FakeReader();
  reader.put([WEB, deployment('web')], [NOPE, deployment('nope')]);
  const cache = await cacheOn(t, reader);
  await cache.loadDeployment(WEB);
  await cache.loadDeployment(NOPE);
  reader.seq = 7;
  reader.resync();
  t.equal(cache.stats.size, 0);
  t.equal(cache.peekDeployment(WEB), undefined);
  t.equal(cache.stats.invalidations, 2);
  await waitFor(() => reader.acks.some(([id, seq]) => id === 'gw1' && seq === 7), { what: 'ack of seq 7' });
});

t.test('every change is acknowledged with its sequence number', async (t) => {
  const reader = new FakeReader();
  const cache = await cacheOn(t, reader);
  t.same(reader.acks, [['gw1', 0]], 'start acknowledges the current sequence');
  t.same(reader.heartbeats, [gateway('gw1')], 'start registers the gateway');
  reader.change(WEB);
  reader.change(NOPE);
  await waitFor(() => reader.acks.length === 3, { what: 'two acks' });
  t.same(reader.acks.slice(1), [['gw1', 1], ['gw1', 2]]);
  await cache.stop();
  reader.change(WEB);
  t.same(reader.unregistered, ['gw1']);
  t.equal(reader.acks.length, 3, 'a stopped cache acknowledges nothing');
});

t.test('while the table is down, cached entries serve for maxStaleMs', async (t) => {
  const c = clock();
  const reader = new FakeReader();
  reader.put([WEB, deployment('web')]);
  const cache = await cacheOn(t, reader, { maxStaleMs: 10_000, negativeTtlMs: 60_000, now: c.now });
  await cache.loadDeployment(WEB);
  await cache.loadDeployment(NOPE);
  reader.setAvailable(false);
  const reads = reader.reads;

  c.advance(10_000);
  t.ok(cache.isReady(), 'ready within the bound');
  t.same(cache.peekDeployment(WEB), deployment('web'));
  t.same(await cache.loadDeployment(WEB), deployment('web'));
  t.equal(cache.peekDeployment(NOPE), null, 'known-missing keys serve too');
  await t.rejects(cache.loadDeployment(deploymentKey(deployment('other'))), RoutingUnavailableError, 'unknown keys fail');
  t.equal(reader.reads, reads, 'without asking the table');

  c.advance(1);
  t.notOk(cache.isReady(), 'not ready past the bound');
  t.equal(cache.peekDeployment(WEB), undefined);
  await t.rejects(cache.loadDeployment(WEB), RoutingUnavailableError);

  reader.setAvailable(true);
  t.ok(cache.isReady());
  t.same(cache.peekDeployment(WEB), deployment('web'), 'serving again once the table is back');
});

t.test('a table down from the start: not ready, loads wait out the start-up window then fail fast, registration follows its return', async (t) => {
  const reader = new FakeReader();
  reader.setAvailable(false);
  const started = performance.now();
  const cache = await cacheOn(t, reader, { startupWaitMs: 300 });
  t.notOk(cache.isReady());
  await t.rejects(cache.loadDeployment(WEB), RoutingUnavailableError);
  t.ok(performance.now() - started >= 290, 'a load during start-up waited for the table');
  const again = performance.now();
  await t.rejects(cache.loadDeployment(WEB), RoutingUnavailableError);
  t.ok(performance.now() - again < 100, 'after it, loads fail at once');
  t.equal(reader.reads, 0);
  t.same(reader.heartbeats, []);
  reader.seq = 3;
  reader.setAvailable(true);
  t.notOk(cache.isReady(), 'not ready before it is registered');
  await waitFor(() => reader.heartbeats.length === 1, { what: 'heartbeat after the return' });
  t.ok(cache.isReady());
  t.same(reader.acks, [['gw1', 3]]);
});

t.test('a failed read rejects with RoutingUnavailableError and caches nothing', async (t) => {
  const reader = new FakeReader();
  const cache = await cacheOn(t, reader);
  reader.failing = true;
  const err = await cache.loadDeployment(WEB).catch((e: unknown) => e);
  t.type(err, RoutingUnavailableError);
  t.match((err as Error).cause, { message: 'table down' });
  reader.failing = false;
  reader.put([WEB, deployment('web')]);
  t.same(await cache.loadDeployment(WEB), deployment('web'), 'the next load reads again');
});

t.test('the cache holds at most maxEntries records, and as many known-missing keys apart', async (t) => {
  const table = new EmbeddedRoutingTable();
  const versions = Array.from({ length: 10_050 }, (_, i) => endpoint(`v${i}`));
  await table.apply({ putEndpoints: versions });
  const cache = await cacheOn(t, table, { maxEntries: 10_000 });
  for (const v of versions) await cache.loadEndpoint(endpointKey(v));
  t.equal(cache.stats.size, 10_000);
  t.equal(cache.peekEndpoint(endpointKey(versions[0]!)), undefined, 'the least recently used went first');
  // A flood of unknown routes fills only the known-missing side.
  for (let i = 0; i < 12_000; i++) await cache.loadEndpoint(endpointKey(endpoint(`missing${i}`)));
  t.equal(cache.stats.size, 20_000);
  t.same(cache.peekEndpoint(endpointKey(versions.at(-1)!)), versions.at(-1), 'records stay');
  t.same(cache.peekEndpoint(endpointKey(versions[50]!)), versions[50], 'even the least recently used one');
  t.equal(cache.peekEndpoint(endpointKey(endpoint('missing11999'))), null);
  t.equal(cache.peekEndpoint(endpointKey(endpoint('missing0'))), undefined, 'the oldest missing keys went first');
});

t.test('a resync while the table cannot answer: dropped records serve until the table is back', async (t) => {
  const c = clock();
  const reader = new FakeReader();
  reader.put([WEB, deployment('web')]);
  const cache = await cacheOn(t, reader, { now: c.now, maxStaleMs: 5000 });
  await cache.loadDeployment(WEB);
  reader.setAvailable(false);
  // The change feed comes back (a resync) before the table answers commands again.
  reader.resync();
  t.equal(cache.peekDeployment(WEB), undefined, 'not served as current');
  t.same(await cache.loadDeployment(WEB), deployment('web'), 'but served while the table cannot answer');
  await t.rejects(cache.loadDeployment(NOPE), RoutingUnavailableError, 'an unknown route still fails fast');
  c.advance(5001);
  await t.rejects(cache.loadDeployment(WEB), RoutingUnavailableError, 'not beyond maxStaleMs from when the table went down');
  c.advance(-5001);
  // A change missed while the feed was down: the table has a new record, no message came.
  reader.put([WEB, deployment('web', 'v2')]);
  const acks = reader.acks.length;
  reader.setAvailable(true);
  await waitFor(() => reader.acks.length > acks, { what: 'the ack after the table came back' });
  t.same(await cache.loadDeployment(WEB), deployment('web', 'v2'), 'once acknowledged, the table is read again');
  reader.failing = true;
  await t.rejects(cache.loadDeployment(NOPE), RoutingUnavailableError);
  reader.put([WEB, deployment('web', 'v3')]);
  reader.change(WEB);
  await t.rejects(cache.loadDeployment(WEB), RoutingUnavailableError, 'the dropped records are forgotten after the ack');
});

t.test('a change while the table cannot answer: the old record serves until the table is back, unacknowledged', async (t) => {
  const reader = new FakeReader();
  reader.put([WEB, deployment('web')]);
  const cache = await cacheOn(t, reader, { heartbeatMs: 20 });
  await cache.loadDeployment(WEB);
  reader.setAvailable(false);
  // The change feed delivers an alias change; the command connection is still away.
  reader.put([WEB, deployment('web', 'v2')]);
  const acks = reader.acks.length;
  const seq = reader.change(WEB);
  t.equal(cache.peekDeployment(WEB), undefined, 'no longer served as current');
  t.same(await cache.loadDeployment(WEB), deployment('web'), 'but the old record serves while the table cannot answer');
  // Periodic heartbeats meanwhile (they fail) neither drop it nor acknowledge.
  const calls = reader.beatCalls;
  await waitFor(() => reader.beatCalls >= calls + 3, { what: 'three heartbeats while the table is down' });
  t.same(await cache.loadDeployment(WEB), deployment('web'), 'still served after heartbeats');
  t.equal(reader.acks.length, acks, 'and the change is not acknowledged meanwhile');
  reader.setAvailable(true);
  await waitFor(() => reader.acks.some(([id, s]) => id === 'gw1' && s === seq), { what: 'the ack once the table is back' });
  t.same(await cache.loadDeployment(WEB), deployment('web', 'v2'), 'then the new record');
});

t.test('start registers the gateway in the live set, stop removes it', async (t) => {
  const table = new EmbeddedRoutingTable();
  const cache = await cacheOn(t, table);
  t.same(await table.liveGateways(), [gateway('gw1')]);
  await cache.stop();
  t.same(await table.liveGateways(), []);
});

t.test('a heartbeat under way when the cache stops does not register the gateway again', async (t) => {
  const table = new EmbeddedRoutingTable();
  const cache = await cacheOn(t, table, { heartbeatMs: 20 });
  // The next periodic beat's ack is held: the beat is between its ack and its heartbeat.
  const ack = table.ack.bind(table);
  let answer: (() => void) | undefined;
  table.ack = (id, seq) => new Promise((resolve) => (answer = () => resolve(ack(id, seq))));
  const release = await waitFor(() => answer, { what: 'the next heartbeat' });
  await cache.stop();
  t.same(await table.liveGateways(), [], 'left the live set');
  release();
  await new Promise(setImmediate); // the beat goes on as far as it will
  t.same(await table.liveGateways(), [], 'and stays out: alias changes do not wait for a gateway that is gone');
});

t.test('through Redis', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const open = async (): Promise<RedisRoutingTable> => {
    const table = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix: 'cache-test:' });
    t.teardown(() => table.close());
    t.ok(await table.whenAvailable(5000), 'connected');
    return table;
  };
  const controller = await open();
  const reader = await open();
  const cache = await cacheOn(t, reader, { heartbeatMs: 200 });
  await waitFor(() => cache.isReady() && reader.isAvailable(), { what: 'change feed' });

  t.test('an alias flip reaches a cache on another connection within 100 ms', async (t) => {
    await controller.apply({ putDeployments: [deployment('web', 'v1')] });
    t.equal(productionVersion(await cache.loadDeployment(WEB)), 'v1');
    const start = performance.now();
    const seq = await controller.apply({ putDeployments: [deployment('web', 'v2')] });
    const seen = async () => productionVersion(cache.peekDeployment(WEB) ?? (await cache.loadDeployment(WEB))) === 'v2';
    await waitFor(seen, { intervalMs: 1, what: 'v2' });
    const elapsed = performance.now() - start;
    t.ok(elapsed < 100, `visible after ${elapsed.toFixed(1)} ms`);
    t.same(await controller.waitForAcks(seq, 2000), { seq, acknowledged: ['gw1'], missing: [] });
  });

  t.test('after waitForAcks, the cache serves the new version', async (t) => {
    for (const version of ['v3', 'v4', 'v5']) {
      const seq = await controller.apply({ putDeployments: [deployment('web', version)] });
      const acks = await controller.waitForAcks(seq, 2000);
      t.same(acks.missing, []);
      t.equal(productionVersion(cache.peekDeployment(WEB) ?? (await cache.loadDeployment(WEB))), version);
    }
  });

  t.test('a stopped Redis: cached routes serve, unknown ones fail fast', async (t) => {
    await cache.loadDeployment(WEB);
    redis.pause();
    t.teardown(() => redis.resume());
    await waitFor(() => !reader.isAvailable(), { what: 'the heartbeat to notice' });
    t.ok(cache.isReady(), 'ready: within the staleness bound');
    t.equal(productionVersion(cache.peekDeployment(WEB)), 'v5');
    const start = performance.now();
    await t.rejects(cache.loadDeployment(deploymentKey(deployment('other'))), RoutingUnavailableError);
    t.ok(performance.now() - start < 50, 'at once, without waiting on Redis');
    redis.resume();
    await waitFor(() => reader.isAvailable(), { what: 'Redis back' });
    t.equal(await cache.loadDeployment(deploymentKey(deployment('other'))), null);
  });
});
