import type { ReplicaAddress } from '../routing/contract.ts';

/** What the balancer asks about a replica: its current load (requests pending, plus any penalty). */
export interface LoadSource {
  load(address: string): number;
}

/**
 * Picks the replica with the fewest pending requests; among equally loaded replicas it goes
 * round robin (each pick starts scanning just after the previous pick). `exclude` skips one address
 * (the replica a retry must avoid). Returns `undefined` when nothing is left to pick.
 */
export class LeastPendingBalancer {
  #next = 0;

  pick(replicas: readonly ReplicaAddress[], loads: LoadSource, exclude?: string): ReplicaAddress | undefined {
    const n = replicas.length;
    if (n === 0) return undefined;
    if (n === 1) {
      const only = replicas[0] as ReplicaAddress;
      return only.address === exclude ? undefined : only;
    }
    const start = this.#next % n;
    let best = -1;
    let bestLoad = Infinity;
    for (let i = 0; i < n; i++) {
      const idx = (start + i) % n;
      const r = replicas[idx] as ReplicaAddress;
      if (r.address === exclude) continue;
      const l = loads.load(r.address);
      if (l < bestLoad) {
        best = idx;
        bestLoad = l;
        if (l === 0) break;
      }
    }
    if (best === -1) return undefined;
    // The next pick starts just after this one: equally loaded replicas take turns.
    this.#next = best + 1;
    return replicas[best];
  }
}
