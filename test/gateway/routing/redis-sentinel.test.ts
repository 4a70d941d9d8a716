// The routing table and the store through Redis Sentinel (`redis+sentinel://`): they follow a
// failover to the promoted replica, resynchronise, and lose nothing that was replicated.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Redis } from 'ioredis';
import { RedisStore } from '../../../builder/store/redis.ts';
import { deploymentKey } from '../../../gateway/routing/contract.ts';
import { RedisRoutingTable } from '../../../gateway/routing/redis.ts';
import { waitFor } from '../../helpers/poll.ts';
import { startSentinelSet } from '../../helpers/redis.ts';
import { deployment, productionVersion } from './fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'portico-sentinel-'));
const set = await startSentinelSet(dir);
t.teardown(async () => {
  await set.stop();
  rmSync(dir, { recursive: true, force: true });
});

t.test('through Sentinel: a failover moves readers and writers to the promoted replica', async (t) => {
  const open = async () => {
    const table = new RedisRoutingTable({ url: set.url, commandTimeoutMs: 500, prefix: 'sentinel-test:' });
    t.teardown(() => table.close());
    t.ok(await table.whenAvailable(10_000), 'connected through the sentinel');
    return table;
  };
  const [writer, reader] = [await open(), await open()];
  const store = new RedisStore({ url: set.url, prefix: 'sentinel-store:' });
  t.teardown(() => store.close());
  const seqs: number[] = [];
  let resyncs = 0;
  reader.onChange((msg) => seqs.push(msg.seq));
  reader.onResync(() => resyncs++);
  await waitFor(() => reader.isAvailable() && resyncs === 1, { what: 'change feed' });

  const before = await writer.apply({ putDeployments: [deployment('web', 'v1')] });
  await waitFor(() => seqs.includes(before), { what: 'the change before the failover' });
  await store.putEnvironment('acme', 'mnist', { MODEL: { value: 'small', secret: false } });
  // Replicated before the master goes: a failover keeps it (replication is asynchronous, so
  // only what the replica acknowledged is sure to survive).
  const master = new Redis({ port: set.master.port, host: '127.0.0.1' });
  t.equal(Number(await master.call('WAIT', '1', '5000')), 1, 'the replica has every write');
  master.disconnect();

  t.equal(await set.currentMasterPort(), set.master.port);
  await set.master.kill();
  await waitFor(async () => (await set.currentMasterPort()) === set.replica.port, { timeoutMs: 30_000, intervalMs: 100, what: 'the sentinel promoting the replica' });

  await waitFor(() => resyncs >= 2 && reader.isAvailable() && writer.isAvailable(), { timeoutMs: 30_000, what: 'both on the new master, the reader resynchronised' });
  t.equal(productionVersion(await reader.getDeployment(deploymentKey(deployment('web')))), 'v1', 'what was written before the failover is there');
  const after = await waitFor(() => writer.apply({ putDeployments: [deployment('web', 'v2')] }).catch(() => undefined), { timeoutMs: 30_000, what: 'a write after the failover' });
  await waitFor(() => seqs.includes(after), { what: 'its change message' });
  t.ok(after > before, 'the change sequence goes on from the replicated one');
  t.equal(productionVersion(await reader.getDeployment(deploymentKey(deployment('web')))), 'v2');

  const env = await waitFor(() => store.getEnvironment('acme', 'mnist').catch(() => undefined), { timeoutMs: 30_000, what: 'the store on the new master' });
  t.same(env, { MODEL: { value: 'small', secret: false } }, 'the store followed too');
  await store.putEnvironment('acme', 'mnist', { MODEL: { value: 'large', secret: false } });
  t.same(await store.getEnvironment('acme', 'mnist'), { MODEL: { value: 'large', secret: false } }, 'and writes there');
});
