import {
  deploymentKey,
  endpointKey,
  type AckResult,
  type DeploymentRecord,
  type EndpointRecord,
  type EndpointRef,
  type RoutingChange,
  type RoutingWriter,
} from '../gateway/routing/contract.ts';

/**
 * The only writer of routing records. Every write waits until the live gateways have applied it
 * (or the ack timeout passed), so a caller that goes on after `await` knows no gateway routes
 * the old way any more: replicas leave the table before they are stopped, and a request sent
 * after an alias PUT returns never reaches the old version.
 */
export class Publisher {
  private readonly routing: RoutingWriter;
  private readonly ackTimeoutMs: number;
  /** Last endpoint records written, so a replica change rewrites only what changed. */
  private readonly endpoints = new Map<string, EndpointRecord>();
  /** Last deployment records put (removed ones forgotten): written again on reconnection and by `republish`. */
  private readonly deployments = new Map<string, DeploymentRecord>();
  /** Keys whose removal could not be written (nor anything of them since): removed on reconnection. */
  private readonly unremoved = new Set<string>();
  /** Keys of changes not settled yet, with the number of the latest change handed on for each. */
  private readonly latest = new Map<string, number>();
  private handed = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(routing: RoutingWriter, opts: { ackTimeoutMs: number }) {
    this.routing = routing;
    this.ackTimeoutMs = opts.ackTimeoutMs;
    // The table may have lost what was written last (Redis restarted from its snapshot, a
    // failover, emptied with the store), or never got it (a deployment record whose write failed
    // after the store took it: an alias PUT answered 503): the records skipped as unchanged would
    // otherwise stay lost, the gateways routing the old way or to replicas that are gone, until
    // each changed again. A removal that failed (Redis gone after the store's delete) is made
    // now: nothing else would make it.
    routing.onReconnect?.(() => {
      if (this.endpoints.size > 0 || this.deployments.size > 0 || this.unremoved.size > 0) {
        // Failing, it forgets no record: they are as current as before, and the next
        // reconnection writes them again.
        this.write(this.owed(), false).catch(() => {});
      }
    });
  }

  /**
   * Applies a change and waits for the gateways' acknowledgements. Changes are written in the
   * order of the calls (a queue), so an older view of an endpoint never overwrites a newer one;
   * waiting for acknowledgements happens outside the queue.
   */
  apply(change: RoutingChange): Promise<AckResult> {
    return this.write(change, true);
  }

  /** `apply`; a failure forgets the endpoint records put (see there) only when `forget`. */
  private async write(change: RoutingChange, forget: boolean): Promise<AckResult> {
    const n = ++this.handed;
    const deletes = change.delete ?? [];
    const keys = [...(change.putDeployments ?? []).map(deploymentKey), ...(change.putEndpoints ?? []).map(endpointKey), ...deletes];
    for (const k of keys) {
      this.latest.set(k, n);
      this.unremoved.delete(k);
    }
    for (const e of change.putEndpoints ?? []) this.endpoints.set(endpointKey(e), e);
    for (const d of change.putDeployments ?? []) this.deployments.set(deploymentKey(d), d);
    for (const k of deletes) {
      this.endpoints.delete(k);
      this.deployments.delete(k);
    }
    const written = this.queue.then(() => this.routing.apply(change));
    this.queue = written.catch(() => undefined);
    let seq: number;
    try {
      seq = await written;
    } catch (err) {
      // Not written, where no later change speaks of the key: forget a record, so the next put of
      // it is not skipped as unchanged; remember a removal, to make on reconnection.
      const last = (k: string): boolean => this.latest.get(k) === n;
      if (forget) for (const e of change.putEndpoints ?? []) if (last(endpointKey(e))) this.endpoints.delete(endpointKey(e));
      for (const k of deletes) if (last(k)) this.unremoved.add(k);
      throw err;
    } finally {
      for (const k of keys) if (this.latest.get(k) === n) this.latest.delete(k);
    }
    return this.routing.waitForAcks(seq, this.ackTimeoutMs);
  }

  /** Writes a deployment's record (auth, users, aliases). */
  putDeployment(record: DeploymentRecord): Promise<AckResult> {
    return this.apply({ putDeployments: [record] });
  }

  /** Writes an endpoint's record unless it is unchanged; `null` when nothing was written. */
  async putEndpoint(record: EndpointRecord): Promise<AckResult | null> {
    const prev = this.endpoints.get(endpointKey(record));
    if (prev && sameEndpoint(prev, record)) return null;
    return this.apply({ putEndpoints: [record] });
  }

  /** The endpoint record as last published, if any. */
  current(ref: EndpointRef): EndpointRecord | undefined {
    return this.endpoints.get(endpointKey(ref));
  }

  /** Removes a version's endpoints or a whole deployment's records. */
  remove(keys: readonly string[]): Promise<AckResult> {
    return this.apply({ delete: keys });
  }

  /**
   * Replaces the whole table with `deployments` and `endpoints` (controller start): writes them
   * and deletes every other key, in one change. With `keepOthers` (the store was lost or
   * replaced, so it does not name what runs) the other keys stay.
   */
  async resync(deployments: readonly DeploymentRecord[], endpoints: readonly EndpointRecord[], opts: { keepOthers?: boolean } = {}): Promise<AckResult> {
    const keep = new Set([...deployments.map(deploymentKey), ...endpoints.map(endpointKey)]);
    const stale = opts.keepOthers ? [] : (await this.routing.keys()).filter((k) => !keep.has(k));
    this.endpoints.clear();
    this.deployments.clear();
    this.unremoved.clear();
    return this.apply({ putDeployments: deployments, putEndpoints: endpoints, delete: stale });
  }

  /**
   * Writes again every deployment and endpoint record last put and not removed since: the
   * routing table lost them with the store (one Redis emptied), which no longer names them.
   */
  republish(): Promise<AckResult> {
    return this.apply(this.owed());
  }

  /** Every record last put and not removed since, and the removals that could not be written. */
  private owed(): RoutingChange {
    return { putDeployments: [...this.deployments.values()], putEndpoints: [...this.endpoints.values()], delete: [...this.unremoved] };
  }
}

function sameEndpoint(a: EndpointRecord, b: EndpointRecord): boolean {
  if (a.timeoutSeconds !== b.timeoutSeconds || a.maxBodyBytes !== b.maxBodyBytes) return false;
  if (a.replicas.length !== b.replicas.length) return false;
  return a.replicas.every((r, i) => r.id === b.replicas[i]?.id && r.address === b.replicas[i]?.address);
}
