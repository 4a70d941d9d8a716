import t from 'tap';
import { LeastPendingBalancer } from '../../../gateway/balancer/least-pending.ts';
import type { ReplicaAddress } from '../../../gateway/routing/contract.ts';

function replicas(...addresses: string[]): ReplicaAddress[] {
  return addresses.map((address, i) => ({ id: `r${i}`, address }));
}

const loads = (m: Record<string, number>) => ({ load: (a: string) => m[a] ?? 0 });

// [name, replicas, loads, exclude, picks in order (one per call on a fresh balancer)]
const cases: [string, string[], Record<string, number>, string | undefined, (string | undefined)[]][] = [
  ['no replicas', [], {}, undefined, [undefined]],
  ['one replica', ['a'], { a: 7 }, undefined, ['a', 'a']],
  ['one replica, excluded', ['a'], {}, 'a', [undefined]],
  ['idle replicas take turns', ['a', 'b', 'c'], {}, undefined, ['a', 'b', 'c', 'a', 'b', 'c']],
  ['least pending wins', ['a', 'b', 'c'], { a: 3, b: 1, c: 2 }, undefined, ['b', 'b', 'b']],
  ['ties at the minimum take turns', ['a', 'b', 'c'], { a: 2, b: 5, c: 2 }, undefined, ['a', 'c', 'a', 'c']],
  ['idle ones take turns around a busy one', ['a', 'b', 'c'], { b: 4 }, undefined, ['a', 'c', 'a', 'c']],
  ['exclude skips the failed replica', ['a', 'b', 'c'], { b: 9, c: 9 }, 'a', ['b', 'c', 'b']],
  ['everything excluded but one', ['a', 'b'], { b: 100 }, 'a', ['b', 'b']],
  ['a failing replica (penalty) is used only when alone', ['a', 'b'], { a: 1_000_000 }, undefined, ['b', 'b', 'b']],
];

t.test('least pending, round robin among ties (table)', async (t) => {
  for (const [name, addrs, load, exclude, want] of cases) {
    const b = new LeastPendingBalancer();
    const rs = replicas(...addrs);
    const got = want.map(() => b.pick(rs, loads(load), exclude)?.address);
    t.same(got, want, name);
  }
});

t.test('picks follow load as it changes', async (t) => {
  const b = new LeastPendingBalancer();
  const rs = replicas('a', 'b');
  const pending: Record<string, number> = { a: 0, b: 0 };
  const src = { load: (a: string) => pending[a] ?? 0 };
  // Every pick adds a pending request and nothing finishes: the two stay balanced.
  for (let i = 0; i < 10; i++) {
    const r = b.pick(rs, src);
    pending[r!.address]!++;
  }
  t.same(pending, { a: 5, b: 5 });
  // b finishes its requests: the next picks all go to b until it catches up.
  pending.b = 0;
  const next = Array.from({ length: 5 }, () => {
    const r = b.pick(rs, src)!;
    pending[r.address]!++;
    return r.address;
  });
  t.same(next, ['b', 'b', 'b', 'b', 'b']);
});
