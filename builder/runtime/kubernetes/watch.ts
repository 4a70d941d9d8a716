import { Watch, type KubeConfig } from '@kubernetes/client-node';

/** The part of an object every informer reads. */
export interface KubeObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

/** What a LIST returned: the items and the collection's resourceVersion. */
export interface ListResult<T> {
  readonly items: readonly T[];
  readonly resourceVersion: string;
}

/** Counters for diagnostics and tests. */
export interface InformerStats {
  lists: number;
  watches: number;
  /** Watches that ended with 410 Gone (resourceVersion too old): each is followed by a LIST. */
  expired: number;
}

/** Construction options of `Informer`. */
export interface InformerOptions<T extends KubeObject> {
  readonly kubeConfig: KubeConfig;
  /** Collection path, e.g. `/api/v1/pods` (all namespaces). */
  readonly path: string;
  readonly labelSelector: string;
  /** LISTs the collection (same path and selector). */
  list(): Promise<ListResult<T>>;
  /** Called for every object that appeared, changed (`obj`) or vanished (`undefined`). */
  onChange(key: string, obj: T | undefined): void;
  /** A LIST or WATCH failed (the informer retries with backoff). */
  onError?(err: unknown): void;
  /** A LIST succeeded or a WATCH was opened after failures (`failure` is null again). */
  onRecover?(): void;
  /** The server ends each watch after this long (the client notices silence after 30 s). Default 25. */
  readonly watchTimeoutSeconds?: number;
  /** First retry delay after a failure (ms), doubled up to `maxBackoffMs`. Default 250. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** `namespace/name` of an object. */
export function objectKey(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

function statusCodeOf(err: unknown): number | undefined {
  if (err && typeof err === 'object') {
    const e = err as { statusCode?: unknown; code?: unknown };
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (typeof e.code === 'number') return e.code;
  }
  return undefined;
}

/**
 * Keeps an in-memory copy of a collection with the API's list-then-watch protocol:
 * - an initial LIST, then a WATCH from the LIST's resourceVersion;
 * - every event (and BOOKMARK, requested with `allowWatchBookmarks`) advances the last seen
 *   resourceVersion; a watch that ends or drops is resumed from it, without a LIST;
 * - `410 Gone` (as a watch ERROR event or as the HTTP status) means that resourceVersion is
 *   compacted away: the informer LISTs again and reports the difference as changes;
 * - other failures are retried with exponential backoff, from the last resourceVersion.
 */
export class Informer<T extends KubeObject> {
  readonly #opts: InformerOptions<T>;
  readonly #watch: Watch;
  readonly #objects = new Map<string, T>();
  readonly #stats: InformerStats = { lists: 0, watches: 0, expired: 0 };
  #resourceVersion = '';
  #stopped = false;
  #abort: AbortController | null = null;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #synced!: Promise<void>;
  #listed = false;
  #failure: { readonly since: number; error: unknown } | null = null;

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.#watch = new Watch(opts.kubeConfig);
  }

  /** Starts the loop; resolves after the first successful LIST (retrying until then). */
  start(): Promise<void> {
    if (this.#loop) return this.#synced;
    let synced!: () => void;
    this.#synced = new Promise<void>((resolve) => (synced = resolve));
    this.#loop = this.#run(synced);
    return this.#synced;
  }

  /** Stops watching; resolves once the loop has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
    await this.#loop;
  }

  /** The object at `namespace/name`, if present. */
  get(key: string): T | undefined {
    return this.#objects.get(key);
  }

  /** Every object currently known. */
  values(): IterableIterator<T> {
    return this.#objects.values();
  }

  /** The last resourceVersion seen (of a LIST, an event or a bookmark). */
  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  get stats(): Readonly<InformerStats> {
    return this.#stats;
  }

  /** Whether a LIST has succeeded since `start`: before, nothing is known of the collection. */
  get listed(): boolean {
    return this.#listed;
  }

  /**
   * Since when LISTs and WATCHes have been failing, and the last error; `null` while they work.
   * Meanwhile nothing that changes in the cluster reaches the copy.
   */
  get failure(): { readonly since: number; readonly error: unknown } | null {
    return this.#failure;
  }

  #failed(err: unknown): void {
    if (this.#failure) this.#failure.error = err;
    else this.#failure = { since: Date.now(), error: err };
    this.#opts.onError?.(err);
  }

  #recovered(): void {
    if (!this.#failure) return;
    this.#failure = null;
    this.#opts.onRecover?.();
  }

  async #run(synced: () => void): Promise<void> {
    let backoff = this.#opts.backoffMs ?? 250;
    const maxBackoff = this.#opts.maxBackoffMs ?? 10_000;
    const resetBackoff = () => (backoff = this.#opts.backoffMs ?? 250);
    while (!this.#stopped) {
      try {
        if (this.#resourceVersion === '') {
          await this.#relist();
          synced();
        }
        const startedAt = Date.now();
        const progressed = await this.#watchOnce();
        if (progressed || Date.now() - startedAt >= 1000) resetBackoff();
        else if (this.#resourceVersion !== '') {
          // A watch that ended at once without an event: pace the reconnects.
          await this.#sleep(backoff);
          backoff = Math.min(maxBackoff, backoff * 2);
        }
      } catch (err) {
        if (this.#stopped) break;
        if (statusCodeOf(err) === 410) {
          this.#expire();
          continue;
        }
        this.#failed(err);
        await this.#sleep(backoff);
        backoff = Math.min(maxBackoff, backoff * 2);
      }
    }
  }

  #expire(): void {
    this.#stats.expired++;
    this.#resourceVersion = '';
  }

  async #relist(): Promise<void> {
    this.#stats.lists++;
    const result = await this.#opts.list();
    if (this.#stopped) return;
    const seen = new Set<string>();
    for (const obj of result.items) {
      const key = objectKey(obj);
      seen.add(key);
      const before = this.#objects.get(key);
      this.#objects.set(key, obj);
      if (before?.metadata?.resourceVersion !== obj.metadata?.resourceVersion || before === undefined) this.#opts.onChange(key, obj);
    }
    for (const key of [...this.#objects.keys()]) {
      if (seen.has(key)) continue;
      this.#objects.delete(key);
      this.#opts.onChange(key, undefined);
    }
    this.#resourceVersion = result.resourceVersion;
    this.#listed = true;
    this.#recovered();
  }

  /**
   * One WATCH from the last resourceVersion; resolves when it ends (server closed it, the
   * connection dropped quietly, or the client saw 30 s of silence), true if it delivered anything.
   */
  #watchOnce(): Promise<boolean> {
    this.#stats.watches++;
    let progressed = false;
    return new Promise<boolean>((resolve, reject) => {
      let settled = false;
      const done = (err: unknown) => {
        if (settled) return;
        settled = true;
        this.#abort = null;
        if (err && !this.#stopped && !isQuietEnd(err)) reject(err);
        else resolve(progressed);
      };
      const onEvent = (type: string, object: unknown) => {
        if (this.#stopped || settled) return;
        if (type === 'ERROR') {
          const code = statusCodeOf(object);
          if (code === 410) this.#expire();
          // The server ends the watch after an ERROR; a 410 relists, anything else resumes.
          done(code === 410 ? null : new Error(`watch ${this.#opts.path}: ${describeStatus(object)}`));
          return;
        }
        const obj = object as T;
        const rv = obj?.metadata?.resourceVersion;
        if (type === 'BOOKMARK') {
          if (rv) this.#resourceVersion = rv;
          progressed = true;
          return;
        }
        if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return;
        const key = objectKey(obj);
        if (type === 'DELETED') {
          this.#objects.delete(key);
          this.#opts.onChange(key, undefined);
        } else {
          this.#objects.set(key, obj);
          this.#opts.onChange(key, obj);
        }
        if (rv) this.#resourceVersion = rv;
        progressed = true;
      };
      const query = {
        labelSelector: this.#opts.labelSelector,
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 25,
      };
      this.#watch
        .watch(this.#opts.path, query, (type: string, object: unknown) => onEvent(type, object), done)
        .then((abort) => {
          if (settled) return;
          this.#abort = abort;
          this.#recovered(); // the server answered the WATCH with a stream
          if (this.#stopped) abort.abort();
        }, done);
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }
}

/** Our own abort, or the client's inactivity timeout: resume from the last resourceVersion. */
function isQuietEnd(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

function describeStatus(object: unknown): string {
  const s = (object ?? {}) as { code?: unknown; reason?: unknown; message?: unknown };
  return `${String(s.code ?? '?')} ${String(s.reason ?? '')} ${String(s.message ?? '')}`.trim();
}
