import type { Store, Version } from '../store/store.ts';
import type { BlobStore } from './blobs.ts';

/** The uploads a version create request names, each with where (`source.upload`, `endpoints.E.files.F.upload`). */
export function uploadRefsOf(source: unknown, endpoints: unknown): { at: string; id: string }[] {
  const refs: { at: string; id: string }[] = [];
  const add = (s: unknown, at: string): void => {
    const id = typeof s === 'object' && s !== null ? (s as { upload?: unknown }).upload : undefined;
    if (typeof id === 'string') refs.push({ at: `${at}.upload`, id });
  };
  add(source, 'source');
  for (const [name, e] of typeof endpoints === 'object' && endpoints !== null ? Object.entries(endpoints) : []) {
    const files = typeof e === 'object' && e !== null ? (e as { files?: unknown }).files : undefined;
    for (const [file, f] of typeof files === 'object' && files !== null ? Object.entries(files) : []) add(f, `endpoints.${name}.files.${file}`);
  }
  return refs;
}

/** The ids of the uploads a version create request names, once each. */
export function uploadIdsOf(source: unknown, endpoints: unknown): string[] {
  return [...new Set(uploadRefsOf(source, endpoints).map((r) => r.id))].sort();
}

/**
 * The uploads a version refers to: those its create request named (`uploads`; a version stored
 * before that field has its source's, and its files' while it builds).
 */
function versionUploads(v: Version): string[] {
  return [...(v.uploads ?? []), ...uploadIdsOf(v.source, v.buildEndpoints)];
}

/**
 * Frees the blob store (see the folder README). A blob stays while a kept upload record or a
 * version's endpoint file has its digest. An upload record stays while a version refers to it;
 * one no version refers to goes once a version that did was deleted (`release`), or once it is
 * `graceMs` old (abandoned: never used). Work that writes or refers to blobs (uploads, version
 * creates, builds) runs under `hold`: a clean waits until none runs, and none starts while one
 * cleans.
 */
export class BlobCleaner {
  private readonly store: Store;
  private readonly blobs: BlobStore;
  private readonly graceMs: number;
  private readonly now: () => number;
  /** Whether the store is the one the controller started on (an emptied one names no blob). */
  private readonly storeIsOurs: () => Promise<boolean>;
  private readonly log: (msg: string, extra?: Record<string, unknown>) => void;
  private holders = 0;
  private running: Promise<void> | null = null;
  private wanted = false;
  private closed = false;
  /** Callers of `clean` waiting for the next clean to end. */
  private waiting: (() => void)[] = [];
  /** Uploads of deleted versions, removed at the next clean unless another version refers to them. */
  private readonly released = new Set<string>();

  constructor(opts: {
    store: Store;
    blobs: BlobStore;
    graceMs: number;
    now: () => number;
    storeIsOurs: () => Promise<boolean>;
    log: (msg: string, extra?: Record<string, unknown>) => void;
  }) {
    this.store = opts.store;
    this.blobs = opts.blobs;
    this.graceMs = opts.graceMs;
    this.now = opts.now;
    this.storeIsOurs = opts.storeIsOurs;
    this.log = opts.log;
  }

  /** Runs `task`, which writes or refers to blobs, while no clean runs (and none starts). */
  async hold<T>(task: () => Promise<T>): Promise<T> {
    while (this.running) await this.running;
    this.holders++;
    try {
      return await task();
    } finally {
      this.holders--;
      this.next();
    }
  }

  /** The uploads of a deleted version: they go at the next clean once no version refers to them. */
  release(version: Version): void {
    for (const id of versionUploads(version)) this.released.add(id);
  }

  /**
   * Cleans once nothing holds the store (builds and uploads under way end first); resolves when
   * that clean is done, or at once with `orLater` when something holds the store now.
   */
  clean(opts: { orLater?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.wanted = true;
    const done = opts.orLater === true && this.holders > 0 ? Promise.resolve() : new Promise<void>((resolve) => this.waiting.push(resolve));
    this.next();
    return done;
  }

  /** Waits for a clean under way; none starts after. */
  async close(): Promise<void> {
    this.closed = true;
    await this.running;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  private next(): void {
    if (this.running || !this.wanted || this.holders > 0 || this.closed) return;
    this.wanted = false;
    const waiting = this.waiting.splice(0);
    this.running = this.sweep()
      .catch((err: unknown) => this.log('the blob store was not cleaned (tried again later)', { error: String(err) }))
      .finally(() => {
        this.running = null;
        for (const resolve of waiting) resolve();
        this.next();
      });
  }

  private async sweep(): Promise<void> {
    const released = [...this.released];
    const versions: Version[] = [];
    for (const d of await this.store.listAllDeployments()) versions.push(...(await this.store.listVersions({ owner: d.owner, project: d.project, deployment: d.name })));
    const uploads = await this.store.listUploads();
    // Checked after the reads: an emptied store read names nothing, and its blobs are not freed.
    if (!(await this.storeIsOurs())) return;
    const used = new Set(versions.flatMap(versionUploads));
    const keep = new Set(versions.flatMap((v) => v.endpoints.flatMap((e) => e.files.map((f) => f.sha256))));
    const now = this.now();
    for (const u of uploads) {
      const gone = !used.has(u.id) && (this.released.has(u.id) || now - Date.parse(u.createdAt) >= this.graceMs);
      if (gone && (await this.store.deleteUpload(u.id).then(() => true, () => false))) continue;
      keep.add(u.sha256);
    }
    for (const id of released) this.released.delete(id);
    for (const sha256 of await this.blobs.list()) if (!keep.has(sha256)) await this.blobs.remove(sha256);
    await this.blobs.clearTemp();
  }
}
