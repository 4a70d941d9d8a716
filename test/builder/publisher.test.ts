// The publisher over a real redis-server, read by a real gateway.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Publisher } from '../../builder/publisher.ts';
import { deploymentKey, endpointKey } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { waitFor } from '../helpers/poll.ts';
import { startRedis } from '../helpers/redis.ts';
import { call, client, deadAddress, deployment, endpoint, gateway, replica } from '../gateway/fixtures.ts';

t.test('a Redis restarted from a snapshot without the last replica change: the publisher writes its records again', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const prefix = `test:${randomBytes(4).toString('hex')}:`;
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 1000, prefix });
  const reader = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 250, prefix });
  t.teardown(() => Promise.all([writer.close(), reader.close()]));
  await waitFor(() => writer.isAvailable() && reader.isAvailable(), { what: 'redis connections' });
  const { gw } = await gateway(t, { routing: reader });
  const publisher = new Publisher(writer, { ackTimeoutMs: 2000 });
  await publisher.putDeployment(deployment());
  await publisher.putEndpoint(endpoint('v1', [await deadAddress()]));
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.save(); // Redis's last snapshot before it dies
  // The replica was replaced: its successor runs elsewhere.
  const current = await replica(t);
  const record = endpoint('v1', [current.address]);
  await publisher.putEndpoint(record);

  await redis.kill();
  await redis.start(); // loads the snapshot: the replacement is lost
  await waitFor(() => writer.isAvailable(), { what: 'the writer back' });
  await publisher.putEndpoint(record); // what the reconciler's next pass hands it
  const agent = client(t);
  await waitFor(async () => (await call(agent, `${gw.url}/acme/mnist/web/v1/predict`)).status === 200, { what: 'the gateway routing to the replica that runs' });
  t.ok(current.seen.length > 0, 'served by the current replica');
});

t.test('republish writes back every record last put and not removed; a resync that keeps others deletes nothing', async (t) => {
  const table = new EmbeddedRoutingTable();
  t.teardown(() => table.close());
  const publisher = new Publisher(table, { ackTimeoutMs: 100 });
  const dep = deployment();
  await publisher.putDeployment(dep);
  await publisher.putDeployment(deployment({ deployment: 'gone' }));
  await publisher.putEndpoint(endpoint('v1', ['127.0.0.1:1']));
  await publisher.putEndpoint(endpoint('v2', ['127.0.0.1:2']));
  await publisher.remove([deploymentKey(deployment({ deployment: 'gone' })), endpointKey(endpoint('v2', []))]);
  // The table is emptied behind the publisher's back (its Redis went with the store).
  await table.apply({ delete: await table.keys() });
  t.same(await table.keys(), []);
  await publisher.republish();
  t.same((await table.keys()).sort(), [deploymentKey(dep), endpointKey(endpoint('v1', []))].sort(), 'what was put and not removed');
  t.same((await table.getEndpoint(endpointKey(endpoint('v1', []))))?.replicas.map((r) => r.address), ['127.0.0.1:1']);

  // A restarted controller on a lost store resyncs with what it has (nothing) and keeps the rest.
  const next = new Publisher(table, { ackTimeoutMs: 100 });
  await next.resync([], [], { keepOthers: true });
  t.equal((await table.keys()).length, 2, 'nothing deleted');
  await next.resync([], []);
  t.same(await table.keys(), [], 'a resync without it deletes what the store does not name');
});
