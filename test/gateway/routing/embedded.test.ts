import t from 'tap';
import { EmbeddedRoutingTable } from '../../../gateway/routing/embedded.ts';
import { deploymentKey } from '../../../gateway/routing/contract.ts';
import { routingTableContract } from './contract-suite.ts';
import { deployment, gateway } from './fixtures.ts';

routingTableContract('embedded', async () => {
  const table = new EmbeddedRoutingTable();
  return async () => table;
});

t.test('embedded: listeners run before apply resolves', async (t) => {
  const table = new EmbeddedRoutingTable();
  const seen: number[] = [];
  table.onChange((msg) => seen.push(msg.seq));
  const seq = await table.apply({ putDeployments: [deployment('web')] });
  t.same(seen, [seq]);
});

t.test('embedded: readers get copies, not the records themselves', async (t) => {
  const table = new EmbeddedRoutingTable();
  const web = deployment('web');
  await table.apply({ putDeployments: [web] });
  const a = await table.getDeployment(deploymentKey(web));
  const b = await table.getDeployment(deploymentKey(web));
  t.same(a, web);
  t.not(a, web);
  t.not(a, b);
});

t.test('embedded: a record that cannot be serialised leaves the table unchanged', async (t) => {
  const table = new EmbeddedRoutingTable();
  const seen: number[] = [];
  table.onChange((msg) => seen.push(msg.seq));
  const bad = { ...deployment('bad'), users: { x: 1n } } as unknown as ReturnType<typeof deployment>;
  await t.rejects(table.apply({ putDeployments: [deployment('web'), bad] }));
  t.same(await table.keys(), []);
  t.equal(await table.currentSeq(), 0);
  t.same(seen, []);
});

t.test('embedded: liveness follows the injected clock', async (t) => {
  let now = 1_000_000;
  const table = new EmbeddedRoutingTable({ now: () => now });
  await table.heartbeat(gateway('g1'), 3000);
  await table.heartbeat(gateway('g2'), 1000);
  now += 999;
  t.same((await table.liveGateways()).map((g) => g.id).sort(), ['g1', 'g2']);
  now += 1;
  t.same((await table.liveGateways()).map((g) => g.id), ['g1'], 'g2 expired at its TTL');

  const seq = await table.apply({ putDeployments: [deployment('web')] });
  await table.ack('g1', seq);
  t.same(await table.waitForAcks(seq, 1000), { seq, acknowledged: ['g1'], missing: [] });
  now += 5000;
  t.same(await table.waitForAcks(seq, 1000), { seq, acknowledged: [], missing: [] }, 'nobody left to wait for');
});
