// The publisher over a real redis-server, read by a real gateway.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Publisher } from '../../builder/publisher.ts';
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
