import t from 'tap';
import { Redis } from 'ioredis';
import { RedisRoutingTable } from '../../../gateway/routing/redis.ts';
import { deploymentKey } from '../../../gateway/routing/contract.ts';
import { startRedis } from '../../helpers/redis.ts';
import { waitFor } from '../../helpers/poll.ts';
import { routingTableContract, type Tap } from './contract-suite.ts';
import { deployment, gateway } from './fixtures.ts';

const redis = await startRedis();
t.teardown(() => redis.stop());

const TIMEOUT_MS = 250;
let tables = 0;

/** A table under a prefix of its own; each call of the result is a new pair of connections. */
function fresh(t: Tap): () => Promise<RedisRoutingTable> {
  const prefix = `test:${process.pid}:${++tables}:`;
  return async () => {
    const table = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: TIMEOUT_MS, prefix });
    t.teardown(() => table.close());
    t.ok(await table.whenAvailable(5000), 'connected');
    return table;
  };
}

routingTableContract('redis', async (t) => fresh(t));

const since = (start: number): number => performance.now() - start;

t.test('redis: prefixes keep tables apart', async (t) => {
  const a = await fresh(t)();
  const b = await fresh(t)();
  const seen: number[] = [];
  b.onChange((msg) => seen.push(msg.seq));
  await waitFor(() => b.isAvailable(), { what: 'change feed' });
  await a.apply({ putDeployments: [deployment('web')] });
  await a.heartbeat(gateway('g1'), 60_000);
  t.same(await b.keys(), []);
  t.same(await b.liveGateways(), []);
  t.equal(await b.getDeployment(deploymentKey(deployment('web'))), null);
  await b.apply({ putDeployments: [deployment('api')] });
  await waitFor(() => seen.length === 1, { what: "b's own change" });
  t.same(seen, [1], "only b's change reached b");
});

t.test('redis: acks wake waitForAcks at once, without polling', async (t) => {
  const prefix = `test:${process.pid}:${++tables}:`;
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: TIMEOUT_MS, prefix, ackRecheckMs: 60_000 });
  const reader = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: TIMEOUT_MS, prefix });
  t.teardown(() => Promise.all([writer.close(), reader.close()]));
  t.ok((await writer.whenAvailable(5000)) && (await reader.whenAvailable(5000)), 'connected');
  await reader.heartbeat(gateway('g1'), 60_000);
  for (const n of [1, 2]) {
    // The first wait subscribes to acks; the second finds the subscription in place.
    const seq = await writer.apply({ putDeployments: [deployment(`web${n}`)] });
    const start = performance.now();
    const waiting = writer.waitForAcks(seq, 30_000);
    setImmediate(() => void reader.ack('g1', seq));
    t.same(await waiting, { seq, acknowledged: ['g1'], missing: [] });
    t.ok(since(start) < 5000, `wait ${n} resolved in ${since(start).toFixed(0)} ms`);
  }
});

t.test('redis: a stopped server makes calls reject within the timeout', async (t) => {
  const table = await fresh(t)();
  const events: boolean[] = [];
  table.onAvailability((up) => events.push(up));
  const key = deploymentKey(deployment('web'));
  await table.apply({ putDeployments: [deployment('web')] });

  redis.pause();
  t.teardown(() => redis.resume());
  const calls: [string, () => Promise<unknown>][] = [
    ['get', () => table.getDeployment(key)],
    ['currentSeq', () => table.currentSeq()],
    ['heartbeat', () => table.heartbeat(gateway('g1'), 1000)],
    ['apply', () => table.apply({ putDeployments: [deployment('api')] })],
  ];
  for (const [name, call] of calls) {
    const start = performance.now();
    await t.rejects(call(), `${name} rejects`);
    t.ok(since(start) < 1000, `${name} rejected after ${since(start).toFixed(0)} ms`);
  }
  t.same(events, [false], 'unavailable after the first timeout');
  t.equal(table.isAvailable(), false);

  redis.resume();
  await waitFor(() => table.isAvailable(), { what: 'availability after resume' });
  t.same(events, [false, true]);
  t.same(await table.getDeployment(key), deployment('web'));
});

t.test('redis: a restarted server fires resync and availability events', async (t) => {
  const open = fresh(t);
  const [writer, reader] = [await open(), await open()];
  const events: boolean[] = [];
  const messages: number[] = [];
  let resyncs = 0;
  reader.onResync(() => resyncs++);
  reader.onAvailability((up) => events.push(up));
  reader.onChange((msg) => messages.push(msg.seq));
  await waitFor(() => reader.isAvailable(), { what: 'change feed' });
  t.equal(resyncs, 1, 'the feed starting is a resync: nothing before it was seen');
  events.length = 0;

  await redis.kill();
  await waitFor(() => events.includes(false), { what: 'unavailability' });
  const start = performance.now();
  await t.rejects(reader.getDeployment(deploymentKey(deployment('web'))));
  t.ok(since(start) < 100, `a call while the server is gone fails at once (${since(start).toFixed(0)} ms)`);

  await redis.start();
  await waitFor(() => resyncs === 2 && reader.isAvailable() && writer.isAvailable(), { what: 'resync after restart' });
  t.same(events, [false, true]);
  const seq = await writer.apply({ putDeployments: [deployment('web')] });
  await waitFor(() => messages.includes(seq), { what: 'a change after the restart' });
  t.same(await reader.getDeployment(deploymentKey(deployment('web'))), deployment('web'));
});

t.test('redis: gateways do not all expire while the server itself is stalled', async (t) => {
  const open = fresh(t);
  const [writer, reader] = [await open(), await open()];
  await reader.heartbeat(gateway('g1'), 900);
  await reader.heartbeat(gateway('g2'), 900);
  redis.pause();
  // The stall being simulated (longer than the gateways' TTL, shorter than the client's socket
  // timeout), not a wait for some condition: nobody can heartbeat meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  redis.resume();
  const seq = await writer.apply({ putDeployments: [deployment('web')] });
  await reader.ack('g1', seq);
  const result = await writer.waitForAcks(seq, 200);
  t.same(result, { seq, acknowledged: ['g1'], missing: ['g2'] }, 'both still count as live: one acknowledged, the other waited for and named');
  // Without heartbeats they leave the live set within a TTL of the stall's end.
  const start = performance.now();
  await waitFor(async () => (await writer.liveGateways()).length === 0, { what: 'expiry after the stall' });
  t.ok(since(start) < 2000, `expired ${since(start).toFixed(0)} ms later`);
});

t.test('redis: a feed connection closed by the server resyncs', async (t) => {
  const reader = await fresh(t)();
  let resyncs = 0;
  const messages: number[] = [];
  reader.onResync(() => resyncs++);
  reader.onChange((msg) => messages.push(msg.seq));
  await waitFor(() => resyncs === 1, { what: 'feed' });
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  t.ok(Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')) >= 1, 'killed the subscriber');
  await waitFor(() => resyncs === 2 && reader.isAvailable(), { what: 'resync' });
  const seq = await reader.apply({ putDeployments: [deployment('web')] });
  await waitFor(() => messages.includes(seq), { what: 'changes flow again' });
});

t.test('redis: a feed connection that stops answering is replaced and resyncs', async (t) => {
  const reader = await fresh(t)();
  let resyncs = 0;
  reader.onResync(() => resyncs++);
  reader.onChange(() => {});
  await waitFor(() => resyncs === 1, { what: 'feed' });
  redis.pause();
  t.teardown(() => redis.resume());
  await t.rejects(reader.heartbeat(gateway('g1'), 1000), 'the heartbeat times out');
  await waitFor(() => !reader.isAvailable(), { what: 'unavailability' });
  redis.resume();
  await waitFor(() => resyncs === 2 && reader.isAvailable(), { what: 'resync after the stall' });
});
