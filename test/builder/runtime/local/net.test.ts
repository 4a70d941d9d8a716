import { createServer, type Server } from 'node:net';
import t from 'tap';
import { pickPort, portFree, tcpProbe } from '../../../../builder/runtime/local/net.ts';
import { freePort } from '../../../helpers/poll.ts';

function listen(port: number): Promise<Server> {
  return new Promise((resolve) => {
    const srv = createServer((s) => s.destroy());
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

t.test('tcpProbe and portFree see a listener come and go', async (t) => {
  const port = await freePort();
  t.equal(await tcpProbe('127.0.0.1', port, 500), false);
  t.equal(await portFree('127.0.0.1', port), true);
  const srv = await listen(port);
  t.equal(await tcpProbe('127.0.0.1', port, 500), true);
  t.equal(await portFree('127.0.0.1', port), false);
  await new Promise((resolve) => srv.close(resolve));
});

t.test('pickPort avoids given ports and taken ones within a range', async (t) => {
  const a = await freePort();
  const p = await pickPort('127.0.0.1', new Set([a]));
  t.not(p, a);
  t.ok(p > 0);
  const taken = await freePort();
  const srv = await listen(taken);
  t.teardown(() => new Promise((resolve) => srv.close(resolve)));
  await t.rejects(pickPort('127.0.0.1', new Set(), { min: taken, max: taken }), /no free port in/);
  const free = await freePort();
  t.equal(await pickPort('127.0.0.1', new Set(), { min: free, max: free }), free);
  await t.rejects(pickPort('127.0.0.1', new Set([free]), { min: free, max: free }), /no free port in/);
});
