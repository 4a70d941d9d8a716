/**
 * The embedded `MetricStore`: series in memory (typed-array rings), each endpoint's rows appended
 * as NDJSON to `<dir>/<endpoint>.ndjson` and replayed when the store opens, so a restart loses
 * at most the last fraction of a second. A file is rewritten from memory (compacted) once it
 * holds about twice the lines the endpoint still keeps, so files stay bounded like memory.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keyFileName, keyOfFileName } from './key-files.ts';
import {
  byTime,
  kindOf,
  METRIC_LIMITS,
  type MetricKeyInfo,
  type MetricKind,
  type MetricLimits,
  type MetricPoint,
  type MetricRange,
  type MetricRow,
  type MetricStore,
  type MetricValue,
} from './metric-store.ts';

const FLUSH_MS = 100;
const INITIAL_CAPACITY = 64;

/** One series: a ring of (time, value, replica), growing up to its cap. */
class Series {
  readonly name: string;
  readonly kind: MetricKind;
  ats: Float64Array;
  nums: Float64Array | null;
  strs: string[] | null;
  reps: string[];
  start = 0;
  length = 0;
  /** String values with the number of points holding them (interning and category counts). */
  readonly refs: Map<string, { s: string; n: number }> | null;

  constructor(name: string, kind: MetricKind, capacity: number) {
    this.name = name;
    this.kind = kind;
    this.ats = new Float64Array(capacity);
    this.nums = kind === 'number' ? new Float64Array(capacity) : null;
    this.strs = kind === 'string' ? new Array<string>(capacity) : null;
    this.reps = new Array<string>(capacity);
    this.refs = kind === 'string' ? new Map() : null;
  }

  /** Appends a point; returns how many old points it pushed out (0 or 1). */
  push(at: number, value: MetricValue, replica: string, cap: number): number {
    let evicted = 0;
    if (this.length === this.ats.length) {
      if (this.ats.length < cap) this.grow(Math.min(cap, this.ats.length * 2));
      else {
        this.evict(1);
        evicted = 1;
      }
    }
    const i = (this.start + this.length) % this.ats.length;
    this.ats[i] = at;
    if (this.nums) this.nums[i] = value as number;
    else {
      const refs = this.refs as Map<string, { s: string; n: number }>;
      const s = value as string;
      const e = refs.get(s);
      if (e) e.n++;
      else refs.set(s, { s, n: 1 });
      (this.strs as string[])[i] = e ? e.s : s;
    }
    this.reps[i] = replica;
    this.length++;
    return evicted;
  }

  /** Drops the `n` oldest points. */
  evict(n: number): void {
    const cap = this.ats.length;
    for (let k = 0; k < n && this.length > 0; k++) {
      const i = this.start;
      if (this.strs) {
        const s = this.strs[i] as string;
        const e = this.refs!.get(s);
        if (e && --e.n === 0) this.refs!.delete(s);
        this.strs[i] = '';
      }
      this.reps[i] = '';
      this.start = (this.start + 1) % cap;
      this.length--;
    }
  }

  private grow(capacity: number): void {
    const ats = new Float64Array(capacity);
    const nums = this.nums ? new Float64Array(capacity) : null;
    const strs = this.strs ? new Array<string>(capacity) : null;
    const reps = new Array<string>(capacity);
    for (let k = 0; k < this.length; k++) {
      const i = (this.start + k) % this.ats.length;
      ats[k] = this.ats[i]!;
      if (nums) nums[k] = this.nums![i]!;
      if (strs) strs[k] = this.strs![i]!;
      reps[k] = this.reps[i]!;
    }
    this.ats = ats;
    this.nums = nums;
    this.strs = strs;
    this.reps = reps;
    this.start = 0;
  }

  /** Points in arrival order. */
  *entries(): Generator<MetricPoint> {
    const cap = this.ats.length;
    for (let k = 0; k < this.length; k++) {
      const i = (this.start + k) % cap;
      yield { at: this.ats[i]!, value: this.nums ? this.nums[i]! : this.strs![i]!, replica: this.reps[i]! };
    }
  }
}

interface Endpoint {
  readonly key: string;
  readonly series: Map<string, Series>;
  /** Replica names, interned. */
  readonly replicas: Map<string, string>;
  /** Lines in its file. */
  lines: number;
  /** Lines waiting to be appended to its file. */
  pending: string[];
}

/** Options of `EmbeddedMetricStore.open`. */
export interface EmbeddedMetricStoreOptions {
  /** Where the files are (created when missing). */
  readonly dir: string;
  readonly limits?: Partial<MetricLimits>;
}

/** See the module comment. Open with `EmbeddedMetricStore.open`. */
export class EmbeddedMetricStore implements MetricStore {
  readonly dir: string;
  readonly limits: MetricLimits;
  readonly counters = { added: 0, dropped: 0 };
  private readonly endpoints = new Map<string, Endpoint>();
  private seriesCount = 0;
  private total = 0;
  private timer: NodeJS.Timeout | undefined;
  /** File operations, one after the other. */
  private chain: Promise<void> = Promise.resolve();
  private replaying = false;
  private closed = false;

  private constructor(opts: EmbeddedMetricStoreOptions) {
    this.dir = opts.dir;
    this.limits = { ...METRIC_LIMITS, ...opts.limits };
  }

  /** Creates `dir` if needed and replays every endpoint file in it. */
  static async open(opts: EmbeddedMetricStoreOptions): Promise<EmbeddedMetricStore> {
    const store = new EmbeddedMetricStore(opts);
    await mkdir(opts.dir, { recursive: true });
    store.replay();
    return store;
  }

  private replay(): void {
    this.replaying = true;
    try {
      for (const name of readdirSync(this.dir)) {
        const key = keyOfFileName(name);
        if (key === undefined) continue;
        const text = readFileSync(join(this.dir, name), 'utf8');
        let lines = 0;
        for (const raw of text.split('\n')) {
          if (raw === '') continue;
          lines++;
          const row = parseRow(raw);
          if (row) this.add(key, row);
        }
        const ep = this.endpoints.get(key);
        if (ep) ep.lines = lines;
      }
    } finally {
      this.replaying = false;
    }
  }

  add(endpoint: string, row: MetricRow): void {
    if (this.closed) return;
    let ep = this.endpoints.get(endpoint);
    if (!ep) {
      ep = { key: endpoint, series: new Map(), replicas: new Map(), lines: 0, pending: [] };
      this.endpoints.set(endpoint, ep);
    }
    let replica = ep.replicas.get(row.replica);
    if (replica === undefined) {
      replica = row.replica;
      if (ep.replicas.size < 10_000) ep.replicas.set(replica, replica);
    }
    const cap = this.limits.pointsPerSeries;
    const kept: [string, MetricValue][] = [];
    for (const [name, value] of row.values) {
      const kind = kindOf(value);
      let s = ep.series.get(name);
      if (!s) {
        if (ep.series.size >= this.limits.seriesPerEndpoint || this.seriesCount >= this.limits.totalSeries) {
          this.counters.dropped++;
          continue;
        }
        s = new Series(name, kind, Math.min(INITIAL_CAPACITY, cap));
        ep.series.set(name, s);
        this.seriesCount++;
      }
      if (s.kind !== kind) {
        this.counters.dropped++;
        continue;
      }
      this.total += 1 - s.push(row.at, value, replica, cap);
      this.counters.added++;
      kept.push([name, value]);
    }
    if (this.total > this.limits.totalPoints) this.shed();
    if (kept.length === 0 || this.replaying) return;
    ep.pending.push(JSON.stringify({ t: row.at, r: row.replica, m: Object.fromEntries(kept) }) + '\n');
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_MS);
  }

  /** Over the global bound: the largest series lose their oldest tenth until it holds again. */
  private shed(): void {
    while (this.total > this.limits.totalPoints) {
      let largest: Series | undefined;
      for (const ep of this.endpoints.values()) for (const s of ep.series.values()) if (!largest || s.length > largest.length) largest = s;
      if (!largest || largest.length === 0) return;
      const n = Math.max(1, Math.floor(largest.length / 10));
      largest.evict(n);
      this.total -= n;
    }
  }

  async keys(endpoint: string): Promise<MetricKeyInfo[]> {
    const ep = this.endpoints.get(endpoint);
    if (!ep) return [];
    return [...ep.series.values()]
      .filter((s) => s.length > 0)
      .map((s) => ({ name: s.name, kind: s.kind, count: s.length }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async points(endpoint: string, key: string, range: MetricRange = {}): Promise<{ kind: MetricKind; points: MetricPoint[] } | null> {
    const s = this.endpoints.get(endpoint)?.series.get(key);
    if (!s || s.length === 0) return null;
    const from = range.from ?? -Infinity;
    const to = range.to ?? Infinity;
    const points: MetricPoint[] = [];
    for (const p of s.entries()) {
      if (p.at < from || p.at >= to) continue;
      if (range.replica !== undefined && p.replica !== range.replica) continue;
      points.push(p);
    }
    return { kind: s.kind, points: points.sort(byTime) };
  }

  async remove(prefix: string): Promise<void> {
    const gone: string[] = [];
    for (const [key, ep] of this.endpoints) {
      if (!key.startsWith(prefix)) continue;
      for (const s of ep.series.values()) this.total -= s.length;
      this.seriesCount -= ep.series.size;
      this.endpoints.delete(key);
      gone.push(key);
    }
    // Files of endpoints not in memory (nothing kept) are removed too.
    const files = await this.enqueue(async () => {
      for (const n of readdirSync(this.dir)) {
        const key = keyOfFileName(n);
        if (key !== undefined && key.startsWith(prefix)) await rm(join(this.dir, n), { force: true });
      }
    });
    return files;
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.enqueue(async () => {
      for (const ep of this.endpoints.values()) {
        if (ep.pending.length === 0) continue;
        const text = ep.pending.join('');
        const n = ep.pending.length;
        ep.pending = [];
        try {
          await appendFile(join(this.dir, keyFileName(ep.key)), text);
          ep.lines += n;
        } catch {
          this.counters.dropped += n; // a full disk must not stop the controller
          continue;
        }
        if (this.endpoints.get(ep.key) === ep && ep.lines > 1000 + 2 * this.kept(ep)) await this.compact(ep);
      }
    });
  }

  private kept(ep: Endpoint): number {
    let n = 0;
    for (const s of ep.series.values()) n += s.length;
    return n;
  }

  /** Rewrites an endpoint's file from memory: one line per (time, replica), oldest first. */
  private async compact(ep: Endpoint): Promise<void> {
    const groups = new Map<string, { t: number; r: string; m: Record<string, MetricValue> }>();
    for (const s of ep.series.values()) {
      for (const p of s.entries()) {
        const id = `${p.at}\u0000${p.replica}`;
        let g = groups.get(id);
        if (!g) groups.set(id, (g = { t: p.at, r: p.replica, m: {} }));
        // A key reported twice at one time by one replica keeps its arrival order in the file.
        if (Object.hasOwn(g.m, s.name)) groups.set(`${id}\u0000${groups.size}`, (g = { t: p.at, r: p.replica, m: {} }));
        Object.defineProperty(g.m, s.name, { value: p.value, enumerable: true, writable: true, configurable: true });
      }
    }
    const lines = [...groups.values()].sort((a, b) => a.t - b.t).map((g) => JSON.stringify(g) + '\n');
    const path = join(this.dir, keyFileName(ep.key));
    try {
      await writeFile(`${path}.tmp`, lines.join(''));
      await rename(`${path}.tmp`, path);
      ep.lines = lines.length;
    } catch {
      await rm(`${path}.tmp`, { force: true }).catch(() => {});
    }
  }

  private enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.chain.then(op, op);
    this.chain = next.catch(() => {});
    return next;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
  }
}

/** One file line back into a row (`null` for a torn or foreign line). */
function parseRow(raw: string): MetricRow | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { t, r, m } = v as { t?: unknown; r?: unknown; m?: unknown };
  if (typeof t !== 'number' || typeof r !== 'string' || typeof m !== 'object' || m === null) return null;
  const values: [string, MetricValue][] = [];
  for (const [k, x] of Object.entries(m)) if (typeof x === 'number' || typeof x === 'string') values.push([k, x]);
  return { at: t, replica: r, values };
}
