import type {
  ChangeMessage,
  DeploymentRecord,
  EndpointRecord,
  GatewayInfo,
  RoutingReader,
} from '../../../gateway/routing/contract.ts';

type Record_ = DeploymentRecord | EndpointRecord;

/**
 * A `RoutingReader` a test steers by hand: records in a map, changes, resyncs and availability
 * emitted on demand, reads that can be held back (each answers with the record as it was when
 * the read was made, like a Redis GET executed before a change), and every call counted.
 */
export class FakeReader implements RoutingReader {
  readonly records = new Map<string, Record_>();
  seq = 0;
  reads = 0;
  readonly acks: [id: string, seq: number][] = [];
  readonly heartbeats: GatewayInfo[] = [];
  /** Heartbeats and acks tried, failed ones included. */
  beatCalls = 0;
  readonly unregistered: string[] = [];
  /** While true, every call rejects (a table that is down). */
  failing = false;
  private available = true;
  private holding = false;
  private readonly held: (() => void)[] = [];
  private readonly changeListeners: ((msg: ChangeMessage) => void)[] = [];
  private readonly resyncListeners: (() => void)[] = [];
  private readonly availabilityListeners: ((up: boolean) => void)[] = [];

  getDeployment(key: string): Promise<DeploymentRecord | null> {
    return this.read(key) as Promise<DeploymentRecord | null>;
  }

  getEndpoint(key: string): Promise<EndpointRecord | null> {
    return this.read(key) as Promise<EndpointRecord | null>;
  }

  async currentSeq(): Promise<number> {
    this.check();
    return this.seq;
  }

  onChange(listener: (msg: ChangeMessage) => void): void {
    this.changeListeners.push(listener);
  }

  onResync(listener: () => void): void {
    this.resyncListeners.push(listener);
  }

  onAvailability(listener: (up: boolean) => void): void {
    this.availabilityListeners.push(listener);
  }

  isAvailable(): boolean {
    return this.available;
  }

  async heartbeat(info: GatewayInfo): Promise<void> {
    this.beatCalls++;
    this.check();
    this.heartbeats.push(info);
  }

  async ack(id: string, seq: number): Promise<void> {
    this.beatCalls++;
    this.check();
    this.acks.push([id, seq]);
  }

  async unregister(id: string): Promise<void> {
    this.check();
    this.unregistered.push(id);
  }

  async close(): Promise<void> {}

  /** Stores records (no message: call `change` for that). */
  put(...records: [key: string, record: Record_][]): void {
    for (const [key, record] of records) this.records.set(key, record);
  }

  /** Publishes a change of `keys` with the next sequence number. */
  change(...keys: string[]): number {
    const msg = { seq: ++this.seq, keys };
    for (const l of this.changeListeners) l(msg);
    return msg.seq;
  }

  resync(): void {
    for (const l of this.resyncListeners) l();
  }

  setAvailable(up: boolean): void {
    this.available = up;
    this.failing = !up;
    for (const l of this.availabilityListeners) l(up);
  }

  /** Reads from now on wait for `release`. */
  hold(): void {
    this.holding = true;
  }

  /** Answers the held read number `index` (in the order they were made). */
  release(index: number): void {
    const answer = this.held[index];
    if (!answer) throw new Error(`no held read ${index}`);
    answer();
  }

  get heldReads(): number {
    return this.held.length;
  }

  private read(key: string): Promise<Record_ | null> {
    this.reads++;
    if (this.failing) return Promise.reject(new Error('table down'));
    const value = this.records.get(key) ?? null;
    if (!this.holding) return Promise.resolve(value);
    return new Promise((resolve) => this.held.push(() => resolve(value)));
  }

  private check(): void {
    if (this.failing) throw new Error('table down');
  }
}
