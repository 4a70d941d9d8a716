/**
 * The embedded store: state in memory, durable under one directory. A crash (SIGKILL, power
 * loss) at any moment loses no acknowledged write and leaves no half-written file:
 *
 * - every operation's changes are one journal record (length + CRC32 + JSON) appended to
 *   `journal-<gen>.log`; its promise resolves after `fdatasync`. Operations that arrive while
 *   a sync runs are written and synced together (group commit);
 * - reads resolve only once what they saw is durable, so nothing is ever observed that a crash
 *   could take back;
 * - when the journal passes `compactBytes`, new records go to a fresh journal file and the
 *   state is written to `snapshot.json` (tmp + fsync + rename + directory fsync); the old
 *   journals are removed after that. Records carry sequence numbers (lsn) and the snapshot
 *   the last one it holds, so replay skips what the snapshot has, whichever step a crash hit;
 * - on open: the snapshot is loaded, the journals replayed, a torn last record truncated; then
 *   the directory is compacted to one snapshot.
 * - one process at a time: `lock` (see lock.ts).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { acquireLock, type DirLock } from './lock.ts';
import { encodeRecord, fsyncDir, scanJournal, writeFileAtomic, type JournalRecord } from './journal.ts';
import { MemoryState, depKey, projectKey, type DeploymentData, type Op, type StateJSON } from './state.ts';
import {
  STORE_DEFAULTS,
  StoreConflictError,
  StoreNotFoundError,
  StoreUnavailableError,
  applyVersionMutator,
  auditPageLimit,
  compareDeployments,
  compareStrings,
  deploymentLabel,
  jsonCopy,
  normaliseTarget,
  patchDeployment,
  targetVersions,
  versionDay,
  type AdminToken,
  type Alias,
  type AliasHistoryItem,
  type AliasTarget,
  type AuditEntry,
  type AuditPage,
  type Deployment,
  type DeploymentPatch,
  type DeploymentRef,
  type Environment,
  type NewAuditEntry,
  type NewDeployment,
  type NewUpload,
  type NewVersion,
  type Store,
  type StoreOptions,
  type Upload,
  type Version,
  type VersionMutator,
  type VersionRef,
} from './store.ts';

export { StoreLockedError } from './lock.ts';

/** Steps of a compaction, reported to `EmbeddedStoreOptions.onCompaction`. */
export type CompactionPhase = 'start' | 'snapshot-written' | 'snapshot-renamed' | 'done';

/** Options of `EmbeddedStore.open`. */
export interface EmbeddedStoreOptions extends StoreOptions {
  /** The store's own directory (created if missing), e.g. `$PORTICO_DATA_DIR/store`. */
  readonly dir: string;
  /** Journal bytes after which the state is compacted into a snapshot. Default 8 MiB. */
  readonly compactBytes?: number;
  /** Called at each step of a compaction, synchronously (tests crash at chosen steps). */
  readonly onCompaction?: (phase: CompactionPhase) => void;
}

/** What opening found on disk. */
export interface RecoveryReport {
  /** Last lsn the snapshot held (0: no snapshot). */
  readonly snapshotLsn: number;
  /** Journal records applied on top of it. */
  readonly replayed: number;
  /** Bytes of torn or corrupt journal tail that were cut off. */
  readonly truncatedBytes: number;
  /** Journal files found. */
  readonly journals: number;
}

const SNAPSHOT = 'snapshot.json';
const SNAPSHOT_FORMAT = 1;
const JOURNAL_RE = /^journal-(\d{10})\.log$/;
const journalName = (gen: number) => `journal-${String(gen).padStart(10, '0')}.log`;

interface Waiter {
  lsn: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** The on-disk side: journal files, group commit, compaction. Absent for a memory-only store. */
class Disk {
  readonly dir: string;
  private readonly lock: DirLock;
  private readonly compactBytes: number;
  private readonly onCompaction: (phase: CompactionPhase) => void;
  private readonly snapshotOf: () => Buffer;
  /** Generation of the journal new records go to, its handle (opened on first write) and size. */
  private gen: number;
  private fh: FileHandle | null = null;
  private bytes = 0;
  /** Encoded records not yet written, and the lsn of the last of them. */
  private pending: Buffer[] = [];
  private pendingLsn = 0;
  flushedLsn: number;
  private waiters: Waiter[] = [];
  private flushing: Promise<void> | null = null;
  private compacting: Promise<void> | null = null;
  failure: Error | null = null;
  readonly stats = { records: 0, syncs: 0, compactions: 0 };

  constructor(opts: {
    dir: string;
    lock: DirLock;
    gen: number;
    lsn: number;
    compactBytes: number;
    onCompaction: (phase: CompactionPhase) => void;
    snapshotOf: () => Buffer;
  }) {
    this.dir = opts.dir;
    this.lock = opts.lock;
    this.gen = opts.gen;
    this.flushedLsn = opts.lsn;
    this.pendingLsn = opts.lsn;
    this.compactBytes = opts.compactBytes;
    this.onCompaction = opts.onCompaction;
    this.snapshotOf = opts.snapshotOf;
  }

  /** Queues a record; it is written by the next flush. */
  append(record: JournalRecord): void {
    this.pending.push(encodeRecord(record));
    this.pendingLsn = record.lsn;
    this.stats.records += 1;
    this.flushing ??= this.flushLoop();
  }

  /** Resolves once every record up to `lsn` is durable. */
  durable(lsn: number): Promise<void> {
    if (this.failure) return Promise.reject(this.unavailable());
    if (lsn <= this.flushedLsn) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ lsn, resolve, reject }));
  }

  unavailable(): StoreUnavailableError {
    return new StoreUnavailableError(`the store in ${this.dir} failed to write and must be reopened: ${this.failure?.message}`, {
      cause: this.failure,
      needsRestart: true,
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      // Let the operations started in this same turn join the first batch.
      await new Promise((r) => setImmediate(r));
      while (this.pending.length > 0 && this.failure === null) {
        const batch = Buffer.concat(this.pending);
        const upTo = this.pendingLsn;
        this.pending = [];
        if (this.fh === null) {
          this.fh = await open(join(this.dir, journalName(this.gen)), 'a', 0o600);
          await fsyncDir(this.dir);
        }
        let off = 0;
        while (off < batch.length) off += (await this.fh.write(batch, off, batch.length - off)).bytesWritten;
        await this.fh.datasync();
        this.stats.syncs += 1;
        this.bytes += batch.length;
        this.flushedLsn = upTo;
        this.wake();
        // Between two batches nothing is being written: the journal can be switched here.
        if (this.bytes >= this.compactBytes && this.compacting === null) this.compacting = this.compact();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.flushing = null;
    }
  }

  private wake(): void {
    let i = 0;
    while (i < this.waiters.length && this.waiters[i]!.lsn <= this.flushedLsn) this.waiters[i++]!.resolve();
    if (i > 0) this.waiters = this.waiters.slice(i);
  }

  private fail(err: unknown): void {
    this.failure ??= err instanceof Error ? err : new Error(String(err));
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(this.unavailable());
  }

  /**
   * Switches to a new journal and writes a snapshot of the state as it is now (which holds
   * every record appended so far, flushed or not); then removes the older journals, whose
   * records are all in the snapshot.
   */
  private async compact(): Promise<void> {
    try {
      const old = this.fh;
      const oldGen = this.gen;
      this.fh = null;
      this.gen += 1;
      this.bytes = 0;
      const data = this.snapshotOf();
      this.onCompaction('start');
      await old?.close();
      await writeSnapshot(this.dir, data, (phase) => this.onCompaction(phase === 'written' ? 'snapshot-written' : 'snapshot-renamed'));
      await removeJournals(this.dir, (gen) => gen <= oldGen);
      this.stats.compactions += 1;
      this.onCompaction('done');
    } catch (err) {
      this.fail(err);
    } finally {
      this.compacting = null;
    }
  }

  /** Waits for writes and compaction in progress, then closes the journal and the lock. */
  async close(): Promise<void> {
    while (this.flushing || this.compacting) await Promise.all([this.flushing, this.compacting]);
    await this.fh?.close();
    this.fh = null;
    await this.lock.release();
  }
}

async function writeSnapshot(dir: string, data: Buffer, hook?: (phase: 'written' | 'renamed') => void): Promise<void> {
  await writeFileAtomic(dir, join(dir, SNAPSHOT), data, hook);
}

async function journalGens(dir: string): Promise<number[]> {
  const gens: number[] = [];
  for (const name of await readdir(dir)) {
    const m = JOURNAL_RE.exec(name);
    if (m) gens.push(Number(m[1]));
  }
  return gens.sort((a, b) => a - b);
}

async function removeJournals(dir: string, which: (gen: number) => boolean): Promise<void> {
  let removed = false;
  for (const gen of await journalGens(dir)) {
    if (!which(gen)) continue;
    await unlink(join(dir, journalName(gen)));
    removed = true;
  }
  if (removed) await fsyncDir(dir);
}

function snapshotBytes(lsn: number, state: MemoryState): Buffer {
  return Buffer.from(JSON.stringify({ format: SNAPSHOT_FORMAT, lsn, state: state.toJSON() }), 'utf8');
}

/** The embedded `Store`. Open it with `EmbeddedStore.open` (durable) or `EmbeddedStore.memory` (tests). */
export class EmbeddedStore implements Store {
  /** What opening found on disk (all zero for a memory-only store). */
  readonly recovery: RecoveryReport;
  private readonly state: MemoryState;
  private readonly disk: Disk | null;
  private readonly clock: () => Date;
  private lsn: number;
  private closed = false;

  private constructor(state: MemoryState, lsn: number, disk: Disk | null, clock: () => Date, recovery: RecoveryReport) {
    this.state = state;
    this.lsn = lsn;
    this.disk = disk;
    this.clock = clock;
    this.recovery = recovery;
  }

  /**
   * Opens (or creates) the store in `opts.dir`: takes its lock (`StoreLockedError` if a live
   * process holds it), loads the snapshot, replays the journals and cuts off a torn tail, then
   * compacts the directory to one snapshot. A snapshot that does not parse, or a gap between
   * records, is corruption: it throws `StoreUnavailableError` rather than guess.
   */
  static async open(opts: EmbeddedStoreOptions): Promise<EmbeddedStore> {
    const limits = {
      auditLimit: opts.auditLimit ?? STORE_DEFAULTS.auditLimit,
      aliasHistoryLimit: opts.aliasHistoryLimit ?? STORE_DEFAULTS.aliasHistoryLimit,
    };
    const dir = opts.dir;
    const created = await mkdir(dir, { recursive: true });
    if (created !== undefined) {
      // Make every directory entry that was just created durable, down from the top-most.
      for (let p = resolve(dir); ; p = dirname(p)) {
        await fsyncDir(dirname(p));
        if (p === resolve(created) || p === dirname(p)) break;
      }
    }
    const lock = await acquireLock(dir);
    try {
      await unlink(join(dir, `${SNAPSHOT}.tmp`)).catch(() => {});
      let state = new MemoryState(limits);
      let lsn = 0;
      let snapshotLsn = 0;
      const snapText = await readFile(join(dir, SNAPSHOT), 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null;
        throw err;
      });
      if (snapText !== null) {
        let snap: { format: number; lsn: number; state: StateJSON };
        try {
          snap = JSON.parse(snapText) as typeof snap;
        } catch (err) {
          throw new StoreUnavailableError(`${join(dir, SNAPSHOT)} is corrupt (restore it from a backup): ${(err as Error).message}`);
        }
        if (snap.format !== SNAPSHOT_FORMAT) {
          throw new StoreUnavailableError(`${join(dir, SNAPSHOT)} has format ${snap.format}; this Portico reads format ${SNAPSHOT_FORMAT}`);
        }
        state = MemoryState.fromJSON(snap.state, limits);
        lsn = snapshotLsn = snap.lsn;
      }
      const gens = await journalGens(dir);
      let replayed = 0;
      let truncatedBytes = 0;
      for (const gen of gens) {
        const path = join(dir, journalName(gen));
        const buf = await readFile(path);
        const { records, validBytes } = scanJournal(buf);
        if (validBytes < buf.length) {
          truncatedBytes += buf.length - validBytes;
          await truncate(path, validBytes);
          const fh = await open(path, 'r+');
          await fh.sync().finally(() => fh.close());
        }
        for (const r of records) {
          if (r.lsn <= lsn) continue;
          if (r.lsn !== lsn + 1) {
            throw new StoreUnavailableError(`${path}: record ${r.lsn} follows ${lsn}; the journal is corrupt (restore it from a backup)`);
          }
          for (const op of r.ops) state.apply(op);
          lsn = r.lsn;
          replayed++;
        }
      }
      const lastGen = gens.at(-1) ?? 0;
      if (gens.length > 0 || snapText === null) {
        await writeSnapshot(dir, snapshotBytes(lsn, state));
        await removeJournals(dir, () => true);
      }
      let store: EmbeddedStore | undefined;
      const disk = new Disk({
        dir,
        lock,
        gen: lastGen + 1,
        lsn,
        compactBytes: opts.compactBytes ?? 8 * 1024 * 1024,
        onCompaction: opts.onCompaction ?? (() => {}),
        snapshotOf: () => snapshotBytes(store!.lsn, store!.state),
      });
      store = new EmbeddedStore(state, lsn, disk, opts.clock ?? (() => new Date()), {
        snapshotLsn,
        replayed,
        truncatedBytes,
        journals: gens.length,
      });
      return store;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  failure(): StoreUnavailableError | null {
    return this.disk?.failure ? this.disk.unavailable() : null;
  }

  /** A store that lives in memory only (nothing on disk, no lock): for tests and fakes. */
  static memory(opts: StoreOptions = {}): EmbeddedStore {
    const state = new MemoryState({
      auditLimit: opts.auditLimit ?? STORE_DEFAULTS.auditLimit,
      aliasHistoryLimit: opts.aliasHistoryLimit ?? STORE_DEFAULTS.aliasHistoryLimit,
    });
    return new EmbeddedStore(state, 0, null, opts.clock ?? (() => new Date()), { snapshotLsn: 0, replayed: 0, truncatedBytes: 0, journals: 0 });
  }

  /** Since open: journal records written, fsyncs they took (group commit), compactions done. */
  get journalStats(): { records: number; syncs: number; compactions: number } {
    return { ...(this.disk?.stats ?? { records: 0, syncs: 0, compactions: 0 }) };
  }

  /**
   * Runs `fn` (synchronous, so it is atomic: nothing else runs in between), then waits until
   * everything it may have seen or written is durable before returning its result or error.
   */
  private async run<T>(fn: () => T): Promise<T> {
    if (this.closed) throw new StoreUnavailableError('the store is closed');
    if (this.disk?.failure) await this.disk.durable(Number.MAX_SAFE_INTEGER);
    let result: T;
    try {
      result = fn();
    } catch (err) {
      await this.disk?.durable(this.lsn);
      throw err;
    }
    await this.disk?.durable(this.lsn);
    return result;
  }

  /** Applies the ops and queues them as one journal record. */
  private commit(ops: Op[]): void {
    if (ops.length === 0) return;
    for (const op of ops) this.state.apply(op);
    this.lsn += 1;
    this.disk?.append({ lsn: this.lsn, ops });
  }

  private now(): string {
    return this.clock().toISOString();
  }

  private dep(ref: DeploymentRef): DeploymentData | undefined {
    return this.state.deployments.get(depKey(ref));
  }

  private mustDep(ref: DeploymentRef): DeploymentData {
    const data = this.dep(ref);
    if (!data) throw new StoreNotFoundError('deployment', deploymentLabel(ref));
    return data;
  }

  getEnvironment(owner: string, project: string): Promise<Environment> {
    return this.run(() => structuredClone(this.state.env.get(projectKey(owner, project)) ?? {}));
  }

  putEnvironment(owner: string, project: string, vars: Environment): Promise<void> {
    return this.run(() => this.commit([{ t: 'env.put', owner, project, vars: jsonCopy(vars) }]));
  }

  listProjects(): Promise<{ owner: string; project: string }[]> {
    return this.run(() => {
      const keys = new Set(this.state.env.keys());
      for (const d of this.state.deployments.values()) keys.add(projectKey(d.deployment.owner, d.deployment.project));
      return [...keys]
        .map((k) => {
          const [owner = '', project = ''] = k.split('/').map(decodeURIComponent);
          return { owner, project };
        })
        .sort((a, b) => compareStrings(a.owner, b.owner) || compareStrings(a.project, b.project));
    });
  }

  listAllDeployments(): Promise<Deployment[]> {
    return this.run(() => [...this.state.deployments.values()].map((d) => structuredClone(d.deployment)).sort(compareDeployments));
  }

  listDeployments(owner: string, project: string): Promise<Deployment[]> {
    return this.run(() =>
      [...this.state.deployments.values()]
        .map((d) => d.deployment)
        .filter((d) => d.owner === owner && d.project === project)
        .sort((a, b) => cmp(a.name, b.name))
        .map((d) => structuredClone(d)),
    );
  }

  getDeployment(ref: DeploymentRef): Promise<Deployment | null> {
    return this.run(() => clone(this.dep(ref)?.deployment));
  }

  createDeployment(input: NewDeployment): Promise<Deployment> {
    return this.run(() => {
      const ref = { owner: input.owner, project: input.project, deployment: input.name };
      if (this.dep(ref)) throw new StoreConflictError('deployment', deploymentLabel(ref));
      const d: Deployment = jsonCopy({ owner: input.owner, project: input.project, name: input.name, target: input.target, auth: input.auth, createdAt: this.now() });
      this.commit([{ t: 'dep.put', d }]);
      return structuredClone(d);
    });
  }

  updateDeployment(ref: DeploymentRef, patch: DeploymentPatch): Promise<Deployment> {
    return this.run(() => {
      const d = patchDeployment(this.mustDep(ref).deployment, patch);
      this.commit([{ t: 'dep.put', d }]);
      return structuredClone(d);
    });
  }

  deleteDeployment(ref: DeploymentRef): Promise<boolean> {
    return this.run(() => {
      if (!this.dep(ref)) return false;
      this.commit([{ t: 'dep.del', ref: { owner: ref.owner, project: ref.project, deployment: ref.deployment } }]);
      return true;
    });
  }

  listUsers(ref: DeploymentRef): Promise<string[]> {
    return this.run(() => [...(this.dep(ref)?.users.keys() ?? [])].sort(cmp));
  }

  getUserHashes(ref: DeploymentRef): Promise<Record<string, string>> {
    return this.run(() => Object.fromEntries([...(this.dep(ref)?.users ?? [])].sort(([a], [b]) => cmp(a, b))));
  }

  putUser(ref: DeploymentRef, name: string, passwordHash: string): Promise<void> {
    return this.run(() => {
      this.mustDep(ref);
      this.commit([{ t: 'user.put', ref: refOf(ref), name, hash: passwordHash }]);
    });
  }

  deleteUser(ref: DeploymentRef, name: string): Promise<boolean> {
    return this.run(() => {
      if (!this.dep(ref)?.users.has(name)) return false;
      this.commit([{ t: 'user.del', ref: refOf(ref), name }]);
      return true;
    });
  }

  listVersions(ref: DeploymentRef): Promise<Version[]> {
    return this.run(() => [...(this.dep(ref)?.versions.values() ?? [])].map((v) => structuredClone(v)));
  }

  getVersion(ref: VersionRef): Promise<Version | null> {
    return this.run(() => clone(this.dep(ref)?.versions.get(ref.version)));
  }

  createVersion(input: NewVersion): Promise<Version> {
    return this.run(() => {
      const ref = { owner: input.owner, project: input.project, deployment: input.deployment };
      const data = this.mustDep(ref);
      if (data.versions.has(input.name)) throw new StoreConflictError('version', `${deploymentLabel(ref)}/${input.name}`);
      if (data.aliases.has(input.name)) throw new StoreConflictError('version', `${deploymentLabel(ref)}/${input.name}`, 'name-taken');
      const now = this.now();
      const v: Version = jsonCopy({ ...input, createdAt: now, updatedAt: now });
      this.commit([{ t: 'ver.put', v }]);
      return structuredClone(v);
    });
  }

  updateVersion(ref: VersionRef, mutator: VersionMutator): Promise<Version> {
    return this.run(() => {
      const current = this.dep(ref)?.versions.get(ref.version);
      if (!current) throw new StoreNotFoundError('version', `${deploymentLabel(ref)}/${ref.version}`);
      const next = applyVersionMutator(current, mutator, this.clock());
      if (next === null) return structuredClone(current);
      this.commit([{ t: 'ver.put', v: next }]);
      return structuredClone(next);
    });
  }

  deleteVersion(ref: VersionRef): Promise<boolean> {
    return this.run(() => {
      const data = this.dep(ref);
      if (!data?.versions.has(ref.version)) return false;
      for (const [alias, target] of [...data.aliases].sort(([a], [b]) => cmp(a, b))) {
        if (targetVersions(target).includes(ref.version)) {
          throw new StoreConflictError('version', `${deploymentLabel(ref)}/${ref.version}`, 'in-use', alias);
        }
      }
      this.commit([{ t: 'ver.del', ref: { ...refOf(ref), version: ref.version } }]);
      return true;
    });
  }

  allocateVersionName(owner: string, project: string, deployment: string, date: Date): Promise<string> {
    return this.run(() => {
      const ref = { owner, project, deployment };
      const data = this.mustDep(ref);
      const day = versionDay(date);
      let n = this.state.counters.get(depKey(ref))?.get(day) ?? 0;
      while (data.versions.has(`${day}.${n}`)) n++;
      this.commit([{ t: 'vname', ref, day, next: n + 1 }]);
      return `${day}.${n}`;
    });
  }

  listAliases(ref: DeploymentRef): Promise<Alias[]> {
    return this.run(() =>
      [...(this.dep(ref)?.aliases ?? [])].sort(([a], [b]) => cmp(a, b)).map(([name, target]) => ({ name, ...structuredClone(target) })),
    );
  }

  getAlias(ref: DeploymentRef, alias: string): Promise<Alias | null> {
    return this.run(() => {
      const target = this.dep(ref)?.aliases.get(alias);
      return target ? { name: alias, ...structuredClone(target) } : null;
    });
  }

  setAlias(ref: DeploymentRef, alias: string, target: AliasTarget, by: string): Promise<AliasHistoryItem> {
    return this.run(() => {
      const data = this.mustDep(ref);
      if (data.versions.has(alias)) throw new StoreConflictError('alias', `${deploymentLabel(ref)}/${alias}`, 'name-taken');
      const to = normaliseTarget(target);
      for (const v of targetVersions(to)) {
        if (!data.versions.has(v)) throw new StoreNotFoundError('version', `${deploymentLabel(ref)}/${v}`);
      }
      const item: AliasHistoryItem = { at: this.now(), by, from: data.aliases.get(alias) ?? null, to };
      // The target it has already: not a change, so no history item (see `Store.setAlias`).
      if (JSON.stringify(item.from) !== JSON.stringify(to)) this.commit([{ t: 'alias.put', ref: refOf(ref), alias, target: to, item }]);
      return structuredClone(item);
    });
  }

  deleteAlias(ref: DeploymentRef, alias: string, by: string): Promise<AliasHistoryItem | null> {
    return this.run(() => {
      const from = this.dep(ref)?.aliases.get(alias);
      if (!from) return null;
      const item: AliasHistoryItem = { at: this.now(), by, from, to: null };
      this.commit([{ t: 'alias.put', ref: refOf(ref), alias, target: null, item }]);
      return structuredClone(item);
    });
  }

  aliasHistory(ref: DeploymentRef, alias: string): Promise<AliasHistoryItem[]> {
    return this.run(() => structuredClone(this.dep(ref)?.history.get(alias) ?? []).reverse());
  }

  appendAudit(entry: NewAuditEntry): Promise<AuditEntry> {
    return this.run(() => {
      const e: AuditEntry = jsonCopy({
        id: String(this.state.auditSeq + 1),
        at: this.now(),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        details: entry.details,
      });
      this.commit([{ t: 'audit', e }]);
      return structuredClone(e);
    });
  }

  listAudit(query: { limit?: number; before?: string } = {}): Promise<AuditPage> {
    return this.run(() => {
      const limit = auditPageLimit(query.limit);
      const audit = this.state.audit;
      // Entries are oldest first with increasing ids: find the first one not older than `before`.
      let end = audit.length;
      if (query.before !== undefined) {
        // An unknown cursor shape gives an empty page, as in the Redis store.
        const before = /^\d{1,15}$/.test(query.before) ? Number(query.before) : 0;
        let lo = 0;
        let hi = audit.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (Number(audit[mid]!.id) < before) lo = mid + 1;
          else hi = mid;
        }
        end = lo;
      }
      const start = Math.max(0, end - limit);
      const items = audit.slice(start, end).reverse().map((e) => structuredClone(e));
      return { items, next: start > 0 && items.length > 0 ? items.at(-1)!.id : null };
    });
  }

  listTokens(): Promise<AdminToken[]> {
    return this.run(() => [...this.state.tokens.values()].sort((a, b) => cmp(a.name, b.name)).map((t) => structuredClone(t)));
  }

  createToken(input: { name: string; hash: string }): Promise<AdminToken> {
    return this.run(() => {
      if (this.state.tokens.has(input.name)) throw new StoreConflictError('token', input.name);
      if (this.state.tokenByHash.has(input.hash)) throw new StoreConflictError('token', `with this hash (${this.state.tokenByHash.get(input.hash)})`);
      const token: AdminToken = { name: input.name, hash: input.hash, createdAt: this.now() };
      this.commit([{ t: 'token.put', token }]);
      return structuredClone(token);
    });
  }

  deleteToken(name: string, opts: { readonly keepLast?: boolean } = {}): Promise<boolean> {
    return this.run(() => {
      if (!this.state.tokens.has(name)) return false;
      if (opts.keepLast && this.state.tokens.size === 1) throw new StoreConflictError('token', name, 'last');
      this.commit([{ t: 'token.del', name }]);
      return true;
    });
  }

  findTokenByHash(hash: string): Promise<AdminToken | null> {
    return this.run(() => {
      const name = this.state.tokenByHash.get(hash);
      return clone(name === undefined ? undefined : this.state.tokens.get(name));
    });
  }

  createUpload(input: NewUpload): Promise<Upload> {
    return this.run(() => {
      if (this.state.uploads.has(input.id)) throw new StoreConflictError('upload', input.id);
      const u: Upload = jsonCopy({ id: input.id, size: input.size, sha256: input.sha256, createdAt: this.now(), path: input.path });
      this.commit([{ t: 'upload.put', u }]);
      return structuredClone(u);
    });
  }

  getUpload(id: string): Promise<Upload | null> {
    return this.run(() => clone(this.state.uploads.get(id)));
  }

  listUploads(): Promise<Upload[]> {
    return this.run(() => [...this.state.uploads.values()].sort((a, b) => cmp(a.id, b.id)).map((u) => structuredClone(u)));
  }

  deleteUpload(id: string): Promise<boolean> {
    return this.run(() => {
      if (!this.state.uploads.has(id)) return false;
      this.commit([{ t: 'upload.del', id }]);
      return true;
    });
  }

  getState(ns: string, key: string): Promise<unknown> {
    return this.run(() => structuredClone(this.state.kv.get(ns)?.get(key)));
  }

  putState(ns: string, key: string, value: unknown): Promise<void> {
    return this.run(() => {
      if (value === undefined) throw new TypeError('putState: undefined is not a JSON value (use deleteState)');
      this.commit([{ t: 'kv.put', ns, key, value: jsonCopy(value) }]);
    });
  }

  deleteState(ns: string, key: string): Promise<boolean> {
    return this.run(() => {
      if (!this.state.kv.get(ns)?.has(key)) return false;
      this.commit([{ t: 'kv.del', ns, key }]);
      return true;
    });
  }

  listState(ns: string): Promise<Record<string, unknown>> {
    return this.run(() => Object.fromEntries([...(this.state.kv.get(ns) ?? [])].sort(([a], [b]) => cmp(a, b)).map(([k, v]) => [k, structuredClone(v)])));
  }

  getStoreId(): Promise<string | null> {
    return this.run(() => this.state.id);
  }

  initStoreId(): Promise<string> {
    return this.run(() => {
      if (this.state.id !== null) return this.state.id;
      const id = randomUUID();
      this.commit([{ t: 'id', id }]);
      return id;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.disk?.close();
  }
}

const cmp = compareStrings;

function clone<T>(value: T | undefined): T | null {
  return value === undefined ? null : structuredClone(value);
}

function refOf(ref: DeploymentRef): DeploymentRef {
  return { owner: ref.owner, project: ref.project, deployment: ref.deployment };
}
