import type { EndpointSpec, EndpointStatus, ReplicaState, ReplicaStatus, RuntimeHooks } from './runtime.ts';
import { tcpProbeAddress } from './local/net.ts';
import { StatusListeners } from './status-listeners.ts';

/** Restart backoff and crash-loop detection of the local and docker runtimes. */
export interface RestartPolicy {
  /** First restart delay (ms), doubled after each crash. Default 500. */
  readonly initialMs: number;
  /** Longest restart delay (ms). Default 30 000. */
  readonly maxMs: number;
  /** A replica ready this long (ms) before it crashes restarts with the initial delay again. Default 60 000. */
  readonly resetAfterMs: number;
  /** This many crashes of one replica within `crashLoopWindowMs` is a crash loop (endpoint error). Default 3. */
  readonly crashLoopCount: number;
  /** Default 300 000 (5 minutes). */
  readonly crashLoopWindowMs: number;
}

const DEFAULT_RESTART: RestartPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  resetAfterMs: 60_000,
  crashLoopCount: 3,
  crashLoopWindowMs: 300_000,
};
/** A replica the driver failed to stop (the engine refused its removal, say) is tried again after this long (ms)... */
export const STOP_RETRY_MS = 2000;
/** ...this many times in all: a stop holds up its endpoint's removal, and callers wait on that. */
const STOP_TRIES = 5;
const STDERR_KEPT = 20;
const STDERR_SHOWN = 5;
/** Delay of a new run's first readiness probe (ms). */
const FIRST_PROBE_MS = 30;

/** What the supervisor keeps of every replica; a runtime's replica type adds its own handles. */
export interface SupervisedReplica {
  readonly id: string;
  /** Published `host:port`, set only while it is ready. */
  address: string | null;
  state: ReplicaState;
  reason: string | undefined;
  /** An endpoint-level problem this replica shows (crash loop, port clash, missing image). */
  issue: string | undefined;
  restarts: number;
  startedAt: number | undefined;
  /** Its current run has been started and its exit not seen yet. */
  running: boolean;
  /** Bumped at each start: callbacks of an older run are ignored. */
  gen: number;
  crashes: number[];
  backoffMs: number;
  readySince: number | undefined;
  livenessFailures: number;
  stopRequested: boolean;
  /** The last stderr lines, quoted by the next crash's reason. */
  stderrTail: string[];
  /** The next probe or restart. */
  timer: NodeJS.Timeout | null;
}

/**
 * One endpoint's replicas. `S` is `EndpointSpec`, or `EndpointSpec | null` for a runtime that
 * adopts endpoints before anyone has named their spec (docker).
 */
export interface SupervisedEndpoint<R extends SupervisedReplica, S extends EndpointSpec | null = EndpointSpec> {
  readonly key: string;
  spec: S;
  nextId: number;
  readonly replicas: Map<string, R>;
  removed: boolean;
  /** A failure of the runtime itself during the last reconcile pass. */
  runtimeError: string | undefined;
  /** Serialises reconcile passes and (re)starts of this endpoint. */
  chain: Promise<void>;
  readonly stops: Set<Promise<void>>;
}

/**
 * The primitives a runtime gives the supervisor: how a replica is made, started, probed while
 * starting, and stopped, and what a crash means there. Everything else (bookkeeping, restarts,
 * crash loops, liveness, the stop sequence, status) is the supervisor's.
 */
export interface ReplicaDriver<R extends SupervisedReplica, S extends EndpointSpec | null> {
  /** A new replica `id` of `spec` (its shared fields from `Supervisor.fresh`), not started. */
  create(id: string, spec: EndpointSpec): R;
  /** Sets up a new replica's resources (log files), once it is in `ep.replicas`. */
  prepare?(ep: SupervisedEndpoint<R, S>, r: R): void;
  /** Whether `r` runs what the endpoint wants now; others are replaced. */
  isCurrent(ep: SupervisedEndpoint<R, S>, r: R): boolean;
  /**
   * Starts run `gen` of `r` (already `starting`): calls `launched` once it runs, or `crashed`
   * with the reason it cannot. A throw is a crash `cannot start: <message>`.
   */
  start(ep: SupervisedEndpoint<R, S>, r: R, gen: number): Promise<void>;
  /**
   * Probes a starting replica: calls `ready`, or `scheduleProbe` for another look (after
   * `lastDelayMs`), or neither when it ends the run. `stale()` says the run is over or stopping.
   */
  probeStarting(ep: SupervisedEndpoint<R, S>, r: R, gen: number, lastDelayMs: number, stale: () => boolean): Promise<void>;
  /** The run's exit was seen: drop what watched it. */
  exited?(r: R): void;
  /**
   * The run crashed (`what`): drop its handles and return the endpoint issue it shows, if any.
   * `crashLoop` is the crash-loop error when the restart policy counts one.
   */
  onCrash(r: R, what: string, crashLoop: string | undefined): string | undefined;
  /** Stops the replica's process or container for good (grace period, then kill); resolves once it is gone. */
  terminate(r: R): Promise<void>;
  /** A stopped replica is forgotten: release what is left of it (log files). */
  discard?(ep: SupervisedEndpoint<R, S>, r: R): void;
  /** `ensure` gave the endpoint its spec, before the reconcile pass. */
  ensured?(ep: SupervisedEndpoint<R, S>): void;
  /** `remove` forgot the endpoint. */
  forgotten?(key: string): void;
  /** The runtime closes: stop watching `r`, leaving it running. */
  detach?(r: R): void;
  /** The runtime closed, every replica detached. */
  closed?(): void;
  /** Records the current state (after starts, readiness, crashes, stops and spec changes). */
  persist?(): void;
}

/** Construction options of a `Supervisor`. */
export interface SupervisorOptions<R extends SupervisedReplica, S extends EndpointSpec | null> {
  /** `local runtime`, `docker runtime`: names the runtime in its errors. */
  readonly name: string;
  readonly hooks: RuntimeHooks;
  readonly restart?: Partial<RestartPolicy> | undefined;
  /** A ready replica's address is probed this often (ms); 3 failures in a row make it `starting` again. */
  readonly livenessMs: number;
  /** Clock for log timestamps and backoff bookkeeping. Default `Date.now`. */
  readonly now?: (() => number) | undefined;
  /** The message of a runtime failure. Default: the `Error`'s message. */
  readonly message?: (err: unknown) => string;
  readonly driver: ReplicaDriver<R, S>;
}

/** The number in a replica id (`r12` -> 12): replicas are ordered by it, and new ids count on from it. */
export const idNumber = (id: string): number => Number(id.replace(/^\D+/, '')) || 0;

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The last stderr lines worth showing: blank lines and Node's version footer dropped, and the
 * error line itself kept even when a stack trace follows it.
 */
function stderrSummary(lines: readonly string[]): string[] {
  const kept = lines.map((l) => l.trim()).filter((l) => l !== '' && !/^Node\.js v\d/.test(l));
  const shown = kept.slice(-STDERR_SHOWN);
  const errorLine = [...kept].reverse().find((l) => /^(\w+)?(Error|Exception)\b(\s*\[[^\]]*\])?:/.test(l));
  if (errorLine !== undefined && !shown.includes(errorLine)) return [errorLine, '...', ...shown.slice(-(STDERR_SHOWN - 2))];
  return shown;
}

/**
 * Keeps `spec.replicas` replicas of each endpoint running through a runtime's `ReplicaDriver`,
 * the same way on every runtime that supervises its replicas itself (local, docker):
 *
 * - a reconcile pass at a time per endpoint; a spec change starts the replacements and stops old
 *   replicas only as new ones become ready; scale-down stops not-ready and newest first;
 * - `ready` once the runtime's probe says so, then a TCP connect to the address every
 *   `livenessMs`, 3 failures in a row making it `starting` again;
 * - an exit is `crashed`, restarted after `initialMs` doubling to `maxMs` (reset after
 *   `resetAfterMs` ready); `crashLoopCount` crashes within `crashLoopWindowMs` set the endpoint
 *   error with the exit and the last stderr lines;
 * - stop: `beforeStop`, then `stopping`, then the runtime's `terminate`;
 * - status: replicas in id order, the endpoint error from the runtime's failure and the issues of
 *   replicas not ready, sent to every `onChange` listener at each change.
 */
export class Supervisor<R extends SupervisedReplica, S extends EndpointSpec | null = EndpointSpec> {
  /** Clock for log timestamps and backoff bookkeeping. */
  readonly now: () => number;
  readonly #name: string;
  readonly #hooks: RuntimeHooks;
  readonly #restart: RestartPolicy;
  readonly #livenessMs: number;
  readonly #message: (err: unknown) => string;
  readonly #driver: ReplicaDriver<R, S>;
  readonly #endpoints = new Map<string, SupervisedEndpoint<R, S>>();
  readonly #listeners = new StatusListeners();
  #closed = false;
  /** Why the replicas could not be recorded last time (see `#persist`). */
  #persistError: string | undefined;
  /** `close()` has begun: a stop that fails is no longer tried again (the next adoption finds it). */
  #closing = false;

  constructor(opts: SupervisorOptions<R, S>) {
    this.#name = opts.name;
    this.#hooks = opts.hooks;
    this.#restart = { ...DEFAULT_RESTART, ...opts.restart };
    this.#livenessMs = opts.livenessMs;
    this.now = opts.now ?? Date.now;
    this.#message = opts.message ?? errorMessage;
    this.#driver = opts.driver;
  }

  /** True once `close` has run: nothing is started, restarted or emitted any more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Every endpoint known (ensured or adopted, not removed yet). */
  endpoints(): IterableIterator<SupervisedEndpoint<R, S>> {
    return this.#endpoints.values();
  }

  /** The endpoint `key`, made (with `spec`, no replicas) if unknown; for adoption. */
  endpoint(key: string, spec: S): SupervisedEndpoint<R, S> {
    let ep = this.#endpoints.get(key);
    if (!ep) {
      ep = { key, spec, nextId: 1, replicas: new Map(), removed: false, runtimeError: undefined, chain: Promise.resolve(), stops: new Set() };
      this.#endpoints.set(key, ep);
    }
    return ep;
  }

  /** The supervisor's fields of a new replica `id`: `starting`, not running, no crashes. */
  fresh(id: string): SupervisedReplica {
    return {
      id, address: null, state: 'starting', reason: undefined, issue: undefined, restarts: 0, startedAt: undefined,
      running: false, gen: 0, crashes: [], backoffMs: this.#restart.initialMs, readySince: undefined,
      livenessFailures: 0, stopRequested: false, stderrTail: [], timer: null,
    };
  }

  // --- the Runtime operations (the runtime awaits its adoption first) ---------------------------

  /** `Runtime.ensure`: takes the spec and runs a reconcile pass. */
  async ensure(spec: EndpointSpec): Promise<void> {
    if (this.#closed) throw new Error(`${this.#name} is closed`);
    // S is EndpointSpec or EndpointSpec | null: a spec fits either.
    const ep = this.endpoint(spec.key, spec as S);
    ep.spec = spec as S;
    ep.removed = false;
    this.#driver.ensured?.(ep);
    this.#persist();
    await this.#reconcile(ep);
    this.emit(ep);
  }

  /** `Runtime.remove`: stops every replica, then forgets the endpoint (unless ensured again meanwhile). */
  async remove(key: string): Promise<void> {
    if (this.#closed) throw new Error(`${this.#name} is closed`);
    const ep = this.#endpoints.get(key);
    if (!ep) return;
    ep.removed = true;
    await this.#reconcile(ep);
    while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    if (!ep.removed) return; // ensured again meanwhile
    this.#endpoints.delete(key);
    this.#driver.forgotten?.(key);
    this.#persist();
    this.#listeners.emit({ key, replicas: [] });
  }

  /** `Runtime.list`. */
  list(): EndpointStatus[] {
    return [...this.#endpoints.values()].map((ep) => this.#status(ep));
  }

  /** `Runtime.onChange`. */
  onChange(listener: (status: EndpointStatus) => void): () => void {
    return this.#listeners.add(listener);
  }

  /** `Runtime.close`: waits for passes and stops under way, then stops watching; replicas keep running. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closing = true;
    for (const ep of this.#endpoints.values()) {
      await ep.chain;
      while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    }
    this.#closed = true;
    for (const ep of this.#endpoints.values()) {
      for (const r of ep.replicas.values()) {
        if (r.timer) clearTimeout(r.timer);
        r.timer = null;
        this.#driver.detach?.(r);
      }
    }
    this.#driver.closed?.();
    this.#listeners.clear();
  }

  // --- reconcile ------------------------------------------------------------------------------

  /** One reconcile pass after those queued; rejects if it failed (the chain itself goes on). */
  #reconcile(ep: SupervisedEndpoint<R, S>): Promise<void> {
    const run = ep.chain.then(() => this.#reconcileNow(ep));
    ep.chain = run.then(
      () => {
        ep.runtimeError = undefined;
      },
      (err: unknown) => {
        // Nobody awaits a pass started by a replica's state change: its failure (disk full,
        // no file descriptors, engine gone) becomes the endpoint error instead of vanishing.
        ep.runtimeError = `${this.#name}: ${this.#message(err)}`;
        this.emit(ep);
      },
    );
    return run;
  }

  /** A reconcile pass nobody awaits (its failure becomes the endpoint error). */
  reconcileLater(ep: SupervisedEndpoint<R, S>): void {
    this.#reconcile(ep).catch(() => {}); // recorded as ep.runtimeError by #reconcile
  }

  async #reconcileNow(ep: SupervisedEndpoint<R, S>): Promise<void> {
    if (this.#closed) return;
    const live = [...ep.replicas.values()].filter((r) => !r.stopRequested);
    const current = live.filter((r) => this.#driver.isCurrent(ep, r));
    const old = live.filter((r) => !this.#driver.isCurrent(ep, r));
    // An adopted endpoint whose spec nobody named yet keeps what it has.
    const want = ep.removed ? 0 : ep.spec ? Math.max(0, ep.spec.replicas) : current.length;
    for (let i = current.length; i < want; i++) {
      const r = this.#driver.create(`r${ep.nextId++}`, ep.spec!);
      ep.replicas.set(r.id, r);
      this.#driver.prepare?.(ep, r);
      current.push(r);
      await this.#start(ep, r);
    }
    const toStop: R[] = [];
    if (current.length > want) {
      // Not-ready and newest first.
      const sorted = [...current].sort(
        (a, b) => Number(a.state === 'ready') - Number(b.state === 'ready') || idNumber(b.id) - idNumber(a.id),
      );
      toStop.push(...sorted.slice(0, current.length - want));
    }
    // Old-spec replicas keep serving until enough new ones are ready (no gap on replace).
    const readyCurrent = current.filter((r) => r.state === 'ready' && !toStop.includes(r)).length;
    const keepOld = Math.max(0, want - readyCurrent);
    const oldReady = old.filter((r) => r.state === 'ready');
    toStop.push(...old.filter((r) => r.state !== 'ready'), ...oldReady.slice(keepOld));
    if (toStop.length > 0) void this.#stop(ep, toStop);
  }

  // --- starting and readiness -----------------------------------------------------------------

  /** Queues a (re)start of `r` behind the endpoint's passes. */
  queueStart(ep: SupervisedEndpoint<R, S>, r: R): void {
    ep.chain = ep.chain.then(() => this.#start(ep, r));
  }

  /** (Re)starts replica `r`; any failure to start is a crash with a reason (and a restart). */
  async #start(ep: SupervisedEndpoint<R, S>, r: R): Promise<void> {
    try {
      if (this.#closed || r.stopRequested) return;
      const gen = ++r.gen;
      r.state = 'starting';
      r.address = null;
      r.livenessFailures = 0;
      await this.#driver.start(ep, r, gen);
    } catch (err) {
      if (!r.running && !r.stopRequested && !this.#closed) this.crashed(ep, r, `cannot start: ${this.#message(err)}`);
    }
  }

  /** Whether run `gen` of `r` is over: the runtime closed, `r` is stopping, or it was started again. */
  superseded(r: R, gen: number): boolean {
    return this.#closed || r.stopRequested || gen !== r.gen;
  }

  /** Run `gen` of `r` is running: records it, reports it and starts probing it. */
  launched(ep: SupervisedEndpoint<R, S>, r: R, gen: number): void {
    this.#persist();
    this.emit(ep);
    this.scheduleProbe(ep, r, gen, FIRST_PROBE_MS);
  }

  /** Probes run `gen` of `r` after `delayMs` (readiness while starting, liveness once ready). */
  scheduleProbe(ep: SupervisedEndpoint<R, S>, r: R, gen: number, delayMs: number): void {
    // A run that is over (it exited while its driver was still awaiting something about it, and
    // its crash has scheduled the restart in `r.timer`) is not probed: replacing that timer left
    // the replica crashed for good, or the next run never probed.
    if (this.#closed || gen !== r.gen || !r.running || r.stopRequested) return;
    if (r.timer) clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      r.timer = null;
      this.#probe(ep, r, gen, delayMs).catch(() => {
        // /proc, a socket or the engine misbehaved: look again later rather than stop watching
        if (gen === r.gen && !this.#closed) this.scheduleProbe(ep, r, gen, 1000);
      });
    }, delayMs);
    r.timer.unref();
  }

  async #probe(ep: SupervisedEndpoint<R, S>, r: R, gen: number, lastDelay: number): Promise<void> {
    const stale = () => this.#closed || gen !== r.gen || r.stopRequested || !r.running;
    if (stale()) return;
    if (r.state !== 'ready') {
      await this.#driver.probeStarting(ep, r, gen, lastDelay, stale);
      return;
    }
    const ok = r.address !== null && (await tcpProbeAddress(r.address, 1000));
    if (stale()) return;
    if (ok) {
      r.livenessFailures = 0;
    } else if (++r.livenessFailures >= 3) {
      r.state = 'starting';
      r.readySince = undefined;
      r.reason = `stopped answering on ${r.address}`;
      r.address = null;
      this.emit(ep);
      this.scheduleProbe(ep, r, gen, 100);
      return;
    }
    this.scheduleProbe(ep, r, gen, ok ? this.#livenessMs : 500);
  }

  /** Run `gen` of `r` answers at `address`: publishes it (with `note` as its reason) and probes its liveness. */
  ready(ep: SupervisedEndpoint<R, S>, r: R, gen: number, address: string, note?: string): void {
    r.state = 'ready';
    r.address = address;
    r.readySince = this.now();
    r.livenessFailures = 0;
    r.reason = note;
    r.issue = undefined;
    this.#persist();
    this.emit(ep);
    this.reconcileLater(ep);
    this.scheduleProbe(ep, r, gen, this.#livenessMs);
  }

  // --- output, exits and restarts -------------------------------------------------------------

  /** A line the replica printed: to the log sink, and stderr kept for the next crash's reason. */
  output(ep: SupervisedEndpoint<R, S>, r: R, stream: 'stdout' | 'stderr', line: string, at: number): void {
    if (stream === 'stderr') {
      r.stderrTail.push(line);
      if (r.stderrTail.length > STDERR_KEPT) r.stderrTail.shift();
    }
    try {
      this.#hooks.logs.write({ key: ep.key, replica: r.id, stream, line, at });
    } catch {
      // a failing sink must not stop the tail
    }
  }

  /** Run `gen` of `r` exited (`what`): a crash, unless it was being stopped. */
  exited(ep: SupervisedEndpoint<R, S>, r: R, gen: number, what: string): void {
    if (this.#closed || gen !== r.gen || !r.running) return;
    r.running = false;
    this.#driver.exited?.(r);
    if (r.stopRequested) return;
    this.crashed(ep, r, what);
  }

  /** `r` crashed or could not start (`what`): `crashed`, its endpoint issue set, restarted after the backoff. */
  crashed(ep: SupervisedEndpoint<R, S>, r: R, what: string): void {
    const now = this.now();
    if (r.timer) clearTimeout(r.timer);
    if (r.readySince !== undefined && now - r.readySince >= this.#restart.resetAfterMs) r.backoffMs = this.#restart.initialMs;
    r.readySince = undefined;
    r.crashes = [...r.crashes.filter((t) => now - t < this.#restart.crashLoopWindowMs), now];
    r.state = 'crashed';
    r.address = null;
    r.running = false;
    const stderr = stderrSummary(r.stderrTail);
    const lastLines = stderr.length > 0 ? `; last stderr: ${stderr.join(' | ')}` : '';
    const delay = r.backoffMs;
    r.backoffMs = Math.min(this.#restart.maxMs, r.backoffMs * 2);
    r.reason = `${what}${lastLines}; restarting in ${delay / 1000} s`;
    const span = Math.max(1, Math.round((now - r.crashes[0]!) / 1000));
    const crashLoop = r.crashes.length >= this.#restart.crashLoopCount
      ? `crash loop: replica ${r.id} crashed ${r.crashes.length} times in ${span} s, last ${what}${lastLines}`
      : undefined;
    r.issue = this.#driver.onCrash(r, what, crashLoop);
    r.stderrTail = [];
    this.#persist();
    this.emit(ep);
    r.timer = setTimeout(() => {
      r.timer = null;
      if (this.#closed || r.stopRequested) return;
      r.restarts++;
      this.queueStart(ep, r);
    }, delay);
    r.timer.unref();
    this.reconcileLater(ep);
  }

  // --- stopping -------------------------------------------------------------------------------

  #stop(ep: SupervisedEndpoint<R, S>, replicas: readonly R[]): Promise<void> {
    for (const r of replicas) r.stopRequested = true;
    const p = this.#stopNow(ep, replicas).finally(() => ep.stops.delete(p));
    ep.stops.add(p);
    return p;
  }

  async #stopNow(ep: SupervisedEndpoint<R, S>, replicas: readonly R[]): Promise<void> {
    for (const r of replicas) {
      if (r.timer) clearTimeout(r.timer);
      r.timer = null;
    }
    try {
      await this.#hooks.beforeStop(ep.key, replicas.map((r) => r.id));
    } catch {
      // Taking them out of routing failed; they are stopped all the same (the alternative is
      // replicas nobody can stop). The gateway retries idempotent requests elsewhere.
    }
    for (const r of replicas) {
      r.state = 'stopping';
      r.issue = undefined;
    }
    this.emit(ep);
    // A replica the driver could not stop (an engine error) stays, `stopping` with the reason, and
    // is tried again a few times: the rejection, unhandled where the stop is not awaited, would
    // end the process. After the last try it is left, with the reason, to the next adoption.
    let left = replicas;
    for (let tries = 1; ; tries++) {
      const results = await Promise.allSettled(left.map((r) => this.#driver.terminate(r)));
      const failed = left.filter((_, i) => results[i]?.status === 'rejected');
      for (const r of left) {
        if (failed.includes(r)) continue;
        if (r.timer) clearTimeout(r.timer);
        r.timer = null;
        r.running = false;
        this.#driver.discard?.(ep, r);
        ep.replicas.delete(r.id);
      }
      if (failed.length === 0 || this.#closing) break;
      const err = (results.find((x) => x.status === 'rejected') as PromiseRejectedResult).reason;
      const last = tries >= STOP_TRIES;
      const next = last ? `gave up after ${tries} tries (a restarted controller tries again)` : `trying again in ${STOP_RETRY_MS / 1000} s`;
      for (const r of failed) r.reason = `could not be stopped: ${this.#message(err)}; ${next}`;
      this.emit(ep);
      if (last) break;
      await new Promise((resolve) => setTimeout(resolve, STOP_RETRY_MS));
      left = failed;
    }
    if (!this.#closed) {
      this.#persist();
      this.emit(ep);
    }
  }

  // --- status ---------------------------------------------------------------------------------

  #status(ep: SupervisedEndpoint<R, S>): EndpointStatus {
    const replicas: ReplicaStatus[] = [...ep.replicas.values()]
      .sort((a, b) => idNumber(a.id) - idNumber(b.id))
      .map((r) => ({
        id: r.id,
        address: r.state === 'ready' ? r.address : null,
        state: r.state,
        restarts: r.restarts,
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
        ...(r.startedAt !== undefined ? { startedAt: r.startedAt } : {}),
      }));
    const issues = [...new Set([...ep.replicas.values()].filter((r) => r.state !== 'ready' && r.issue).map((r) => r.issue!))];
    if (ep.runtimeError) issues.unshift(ep.runtimeError);
    if (this.#persistError) issues.unshift(this.#persistError);
    return { key: ep.key, replicas, ...(issues.length > 0 ? { error: issues.join('; ') } : {}) };
  }

  /**
   * Records the replicas (the local runtime's state file). Called from replicas' events, where a
   * throw would be uncaught and skip what follows (a crash's restart): a failure (disk full) is
   * every endpoint's error until a write succeeds (each event writes the whole state again).
   */
  #persist(): void {
    try {
      this.#driver.persist?.();
      this.#persistError = undefined;
    } catch (err) {
      this.#persistError = `${this.#name}: cannot record its replicas: ${this.#message(err)}`;
    }
  }

  /** Sends the endpoint's status to every listener (nothing once closed). */
  emit(ep: SupervisedEndpoint<R, S>): void {
    if (this.#closed) return;
    this.#listeners.emit(this.#status(ep));
  }
}
