import t from 'tap';
import { deploymentKey, endpointKey, type ChangeMessage, type RoutingTable } from '../../../gateway/routing/contract.ts';
import { waitFor } from '../../helpers/poll.ts';
import { deployment, endpoint, gateway } from './fixtures.ts';

/** The `t` a subtest receives. */
export type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/**
 * Makes a fresh, empty routing table for one test (torn down with `t.teardown`) and returns how
 * to open a handle on it: for Redis each handle is its own connections, for the embedded table
 * the same instance. Handles are available when returned.
 */
export type TableFactory = (t: Tap) => Promise<() => Promise<RoutingTable>>;

/** Follows a reader's change feed; resolves once the feed is in place. */
async function follow(reader: RoutingTable): Promise<ChangeMessage[]> {
  const messages: ChangeMessage[] = [];
  reader.onChange((msg) => messages.push(msg));
  await waitFor(() => reader.isAvailable(), { what: 'change feed' });
  return messages;
}

const since = (start: number): number => performance.now() - start;

/** The behaviour every `RoutingTable` implementation must have. */
export function routingTableContract(name: string, factory: TableFactory): void {
  t.test(`${name}: put, get and delete records`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    const web = deployment('web');
    const v1 = endpoint('v1');
    await writer.apply({ putDeployments: [web], putEndpoints: [v1] });
    t.same(await reader.getDeployment(deploymentKey(web)), web);
    t.same(await reader.getEndpoint(endpointKey(v1)), v1);
    t.equal(await reader.getDeployment(deploymentKey(deployment('nope'))), null);
    t.equal(await reader.getEndpoint(endpointKey(endpoint('v9'))), null);

    await writer.apply({ delete: [deploymentKey(web)] });
    t.equal(await reader.getDeployment(deploymentKey(web)), null);
    t.same(await reader.getEndpoint(endpointKey(v1)), v1, 'a key not named stays');
  });

  t.test(`${name}: a change is applied whole and published as one message`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    const old = endpoint('v0');
    await writer.apply({ putEndpoints: [old] });
    const messages = await follow(reader);

    const web = deployment('web', 'v2');
    const v2 = endpoint('v2');
    const seq = await writer.apply({ putDeployments: [web], putEndpoints: [v2], delete: [endpointKey(old)] });
    await waitFor(() => messages.length >= 1, { what: 'change message' });
    t.equal(messages.length, 1);
    t.equal(messages[0]?.seq, seq);
    t.same([...(messages[0]?.keys ?? [])].sort(), [deploymentKey(web), endpointKey(old), endpointKey(v2)].sort());
    t.same(await reader.getDeployment(deploymentKey(web)), web);
    t.same(await reader.getEndpoint(endpointKey(v2)), v2);
    t.equal(await reader.getEndpoint(endpointKey(old)), null);

    const next = await writer.apply({ putDeployments: [deployment('api')] });
    await waitFor(() => messages.length >= 2, { what: 'second message' });
    t.same(messages.map((m) => m.seq), [seq, next], 'one message per change');
  });

  t.test(`${name}: sequence numbers increase`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    t.equal(await reader.currentSeq(), 0, 'an empty table is at 0');
    const seqs = [];
    for (const v of ['v1', 'v2', 'v3']) seqs.push(await writer.apply({ putEndpoints: [endpoint(v)] }));
    t.ok(seqs[0]! > 0 && seqs[0]! < seqs[1]! && seqs[1]! < seqs[2]!, `increasing: ${seqs.join(', ')}`);
    t.equal(await reader.currentSeq(), seqs[2]);
  });

  t.test(`${name}: listeners see every change in order`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    const calls: string[] = [];
    reader.onChange((msg) => calls.push(`a${msg.seq}`));
    reader.onChange((msg) => calls.push(`b${msg.seq}`));
    await waitFor(() => reader.isAvailable(), { what: 'change feed' });
    const seqs = [];
    for (const v of ['v1', 'v2', 'v3']) seqs.push(await writer.apply({ putEndpoints: [endpoint(v)] }));
    await waitFor(() => calls.length === 6, { what: 'six calls' });
    t.same(calls, seqs.flatMap((s) => [`a${s}`, `b${s}`]));
  });

  t.test(`${name}: a heartbeat keeps a gateway live until its TTL passes`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('short'), 300);
    await reader.heartbeat(gateway('long'), 60_000);
    await reader.heartbeat(gateway('gone'), 60_000);
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    t.same((await writer.liveGateways()).sort(byId), [gateway('gone'), gateway('long'), gateway('short')]);

    await reader.unregister('gone');
    t.same((await writer.liveGateways()).map((g) => g.id).sort(), ['long', 'short'], 'unregister leaves at once');
    await waitFor(async () => (await writer.liveGateways()).length === 1, { what: 'short to expire' });
    t.same(await writer.liveGateways(), [gateway('long')]);
  });

  t.test(`${name}: waitForAcks resolves once every live gateway acknowledged`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    await reader.heartbeat(gateway('g2'), 60_000);
    const seq = await writer.apply({ putDeployments: [deployment('web')] });
    const start = performance.now();
    const waiting = writer.waitForAcks(seq, 5000);
    await reader.ack('g1', seq);
    await reader.ack('g2', seq + 1); // a later change covers this one
    const result = await waiting;
    t.ok(since(start) < 1000, `resolved in ${since(start).toFixed(0)} ms, not at the timeout`);
    t.same({ ...result, acknowledged: [...result.acknowledged].sort() }, { seq, acknowledged: ['g1', 'g2'], missing: [] });
  });

  t.test(`${name}: waitForAcks names a silent live gateway after the timeout`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    await reader.heartbeat(gateway('silent'), 60_000);
    const seq = await writer.apply({ putDeployments: [deployment('web')] });
    await reader.ack('g1', seq);
    await reader.ack('silent', seq - 1);
    const start = performance.now();
    const result = await writer.waitForAcks(seq, 300);
    t.ok(since(start) >= 290, `waited ${since(start).toFixed(0)} ms`);
    t.same(result, { seq, acknowledged: ['g1'], missing: ['silent'] });
  });

  t.test(`${name}: waitForAcks does not wait for expired or unregistered gateways`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    await reader.heartbeat(gateway('expired'), 100);
    await reader.heartbeat(gateway('left'), 60_000);
    await reader.unregister('left');
    await waitFor(async () => (await writer.liveGateways()).length === 1, { what: 'expiry' });
    const seq = await writer.apply({ putDeployments: [deployment('web')] });
    await reader.ack('g1', seq);
    const start = performance.now();
    t.same(await writer.waitForAcks(seq, 5000), { seq, acknowledged: ['g1'], missing: [] });
    t.ok(since(start) < 1000, `resolved in ${since(start).toFixed(0)} ms`);
  });

  t.test(`${name}: a gateway whose heartbeat expires during the wait is no longer waited for, and is named`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    await reader.heartbeat(gateway('dying'), 400);
    const seq = await writer.apply({ putDeployments: [deployment('web')] });
    await reader.ack('g1', seq);
    const start = performance.now();
    // Cut off from Redis, it may still serve its cached routes: the caller is told.
    t.same(await writer.waitForAcks(seq, 10_000), { seq, acknowledged: ['g1'], missing: ['dying'] });
    t.ok(since(start) < 3000, `resolved in ${since(start).toFixed(0)} ms, after the expiry and before the timeout`);
  });

  t.test(`${name}: a gateway that acknowledged and then left is not named; one that left without is`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    // Both leave 400 ms into the wait (their heartbeats expire), as in the test above.
    await reader.heartbeat(gateway('acked-then-left'), 400);
    await reader.heartbeat(gateway('left'), 400);
    const seq = await writer.apply({ putDeployments: [deployment('web')] });
    await reader.ack('g1', seq);
    await reader.ack('acked-then-left', seq);
    t.same(await writer.waitForAcks(seq, 10_000), { seq, acknowledged: ['g1'], missing: ['left'] });
  });

  t.test(`${name}: acknowledgements only raise`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    await reader.heartbeat(gateway('g1'), 60_000);
    await reader.ack('g1', 10);
    await reader.ack('g1', 3);
    t.same(await writer.waitForAcks(10, 300), { seq: 10, acknowledged: ['g1'], missing: [] });
    t.same(await writer.waitForAcks(11, 100), { seq: 11, acknowledged: [], missing: ['g1'] });
  });

  t.test(`${name}: keys lists every record`, async (t) => {
    const open = await factory(t);
    const [writer, reader] = [await open(), await open()];
    t.same(await writer.keys(), []);
    const records = { putDeployments: [deployment('web'), deployment('api')], putEndpoints: [endpoint('v1'), endpoint('v2')] };
    await writer.apply(records);
    await writer.apply({ delete: [deploymentKey(deployment('api'))] });
    await reader.heartbeat(gateway('g1'), 60_000); // gateway bookkeeping is not a record
    await reader.ack('g1', 1);
    t.same((await writer.keys()).sort(), [deploymentKey(deployment('web')), endpointKey(endpoint('v1')), endpointKey(endpoint('v2'))].sort());
  });
}
