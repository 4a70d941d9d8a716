import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointSpec, EndpointStatus, ReplicaState, ReplicaStatus, Runtime, RuntimeHooks } from './runtime.ts';
import { launchFor, type Launch } from './local/command.ts';
import { pickPort, portFree, tcpProbe } from './local/net.ts';
import { groupAlive, groupListeners, portListening, procAvailable, processAlive, processStartTime, signalGroup } from './local/proc.ts';
import { readState, writeState, type EndpointRecord, type ReplicaRecord } from './local/state-file.ts';
import { LogTail } from './local/tail.ts';

/** Restart backoff and crash-loop detection of the local runtime. */
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

/** How often the local runtime looks at things (ms). */
export interface LocalTiming {
  /** Log files are read this often. Default 200. */
  readonly logPollMs: number;
  /** A ready replica's address is probed this often; 3 failures in a row make it `starting` again. Default 2000. */
  readonly livenessMs: number;
  /** Liveness of replicas this runtime did not start (adopted; not our children) is checked this often. Default 500. */
  readonly exitPollMs: number;
}

/** Construction options of `LocalRuntime`. */
export interface LocalRuntimeOptions {
  /** Replica log files and the state file live under `<dataDir>/replicas/`. */
  readonly dataDir: string;
  /** SIGTERM, then SIGKILL after this long. */
  readonly stopGraceSeconds: number;
  /** Each replica output file is truncated once read and larger than this. */
  readonly logRetentionBytes: number;
  readonly hooks: RuntimeHooks;
  /** Address replicas listen on and are reached at. Default `127.0.0.1`. */
  readonly host?: string;
  /** Ports handed out as `PORT` (inclusive). Default: ports the kernel picks. */
  readonly portRange?: { readonly min: number; readonly max: number };
  /** Clock for log timestamps and backoff bookkeeping. Default `Date.now`. */
  readonly now?: () => number;
  /** `PATH` replicas get (after the version's venv). Default: the controller's own `PATH`. */
  readonly path?: string;
  readonly restart?: Partial<RestartPolicy>;
  readonly timing?: Partial<LocalTiming>;
}

const DEFAULT_RESTART: RestartPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  resetAfterMs: 60_000,
  crashLoopCount: 3,
  crashLoopWindowMs: 300_000,
};
const DEFAULT_TIMING: LocalTiming = { logPollMs: 200, livenessMs: 2000, exitPollMs: 500 };
const STDERR_KEPT = 20;
const STDERR_SHOWN = 5;
const SCAN_FIRST_MS = 300;
const SCAN_MAX_MS = 5000;

/** File-system-safe, injective name for an endpoint key (`a/b` and `a_b` stay distinct). */
export function sanitiseKey(key: string): string {
  const enc = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
  // Percent-encoding (UTF-8, two hex digits per byte) is injective; '+' joins the segments.
  return key
    .split('/')
    .map((seg) => encodeURIComponent(seg).replace(/[!'()*~]/g, enc).replace(/^\./, enc))
    .join('+');
}

interface Replica {
  readonly id: string;
  /** The spec this replica runs (its `specHash` may be older than the endpoint's). */
  spec: EndpointSpec;
  /** The port handed to it as `PORT`. */
  port: number;
  /** Published `host:port`, set only once its own socket answers there. */
  address: string | null;
  state: ReplicaState;
  reason: string | undefined;
  /** An endpoint-level problem this replica shows (crash loop, port clash). */
  issue: string | undefined;
  restarts: number;
  pid: number | null;
  startTime: string | null;
  startedAt: number | undefined;
  /** Set when this runtime is the parent (exit comes as an event); adopted replicas are polled. */
  child: ChildProcess | null;
  running: boolean;
  /** Bumped at each start: callbacks of an older run are ignored. */
  gen: number;
  crashes: number[];
  backoffMs: number;
  readySince: number | undefined;
  livenessFailures: number;
  /** Next /proc scan of a starting replica's sockets (Date.now ms) and the gap after it. */
  nextScanAt: number;
  scanGapMs: number;
  /** Our assigned port answered with someone else's socket: restart on another port. */
  portStolen: boolean;
  stopRequested: boolean;
  out: LogTail | null;
  err: LogTail | null;
  stderrTail: string[];
  timer: NodeJS.Timeout | null;
  exitPoll: NodeJS.Timeout | null;
}

interface Endpoint {
  readonly key: string;
  spec: EndpointSpec;
  nextId: number;
  readonly replicas: Map<string, Replica>;
  removed: boolean;
  /** A failure of the runtime itself during the last reconcile pass. */
  runtimeError: string | undefined;
  /** Serialises reconcile passes and (re)starts of this endpoint. */
  chain: Promise<void>;
  readonly stops: Set<Promise<void>>;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (code !== null) return `exited with code ${code}`;
  if (signal !== null) return `killed by ${signal}`;
  return 'exited (exit status unknown: not started by this controller)';
}

/** The port an EADDRINUSE-like message names, if any. */
function clashedPort(lines: readonly string[]): { found: boolean; port: number | undefined } {
  for (const line of [...lines].reverse()) {
    if (!/EADDRINUSE|address already in use/i.test(line)) continue;
    const m = /:(\d{2,5})(?!.*:\d)/.exec(line) ?? /port\D{0,3}(\d{2,5})/i.exec(line);
    return { found: true, port: m?.[1] ? Number(m[1]) : undefined };
  }
  return { found: false, port: undefined };
}

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

const idNumber = (id: string) => Number(id.replace(/^\D+/, '')) || 0;

/**
 * Runs replicas as child processes on this machine (target `local`).
 *
 * Each replica gets a free port in `PORT` (and `$PORT` in the command), `HOST`, and is reached
 * at `host:PORT`. It is `ready` once a TCP connect to it succeeds and, where /proc tells, the
 * socket answering is the replica's own. An app that ignores `PORT` but listens on its declared
 * `spec.port` is published there (one replica per host port): further replicas of it fail with
 * EADDRINUSE and the endpoint error says so; an address another process answers is never
 * published. Exits restart with exponential backoff; a crash loop sets the endpoint error.
 * Replicas are detached process groups writing their output straight to files under
 * `<dataDir>/replicas/`, recorded in a state file, so a new `LocalRuntime` on the same data
 * directory adopts them after a controller restart. One runtime per data directory at a time.
 */
export class LocalRuntime implements Runtime {
  readonly kind = 'local' as const;
  readonly #dir: string;
  readonly #stateFile: string;
  readonly #graceMs: number;
  readonly #retention: number;
  readonly #hooks: RuntimeHooks;
  readonly #host: string;
  readonly #portRange: { readonly min: number; readonly max: number } | undefined;
  readonly #now: () => number;
  readonly #path: string;
  readonly #restart: RestartPolicy;
  readonly #timing: LocalTiming;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #listeners = new Set<(status: EndpointStatus) => void>();
  readonly #ready: Promise<void>;
  readonly #logTimer: NodeJS.Timeout;
  #closed = false;

  constructor(opts: LocalRuntimeOptions) {
    this.#dir = join(opts.dataDir, 'replicas');
    this.#stateFile = join(this.#dir, 'local-runtime.json');
    this.#graceMs = opts.stopGraceSeconds * 1000;
    this.#retention = opts.logRetentionBytes;
    this.#hooks = opts.hooks;
    this.#host = opts.host ?? '127.0.0.1';
    this.#portRange = opts.portRange;
    this.#now = opts.now ?? Date.now;
    // The one environment read outside common/config.ts: replicas need a PATH to find their
    // interpreters, and the controller's own is the only sensible default.
    this.#path = opts.path ?? process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin';
    this.#restart = { ...DEFAULT_RESTART, ...opts.restart };
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
    mkdirSync(this.#dir, { recursive: true });
    this.#logTimer = setInterval(() => this.#pollLogs(), this.#timing.logPollMs);
    this.#logTimer.unref();
    this.#ready = this.#adopt();
  }

  async ensure(spec: EndpointSpec): Promise<void> {
    await this.#ready;
    if (this.#closed) throw new Error('local runtime is closed');
    let ep = this.#endpoints.get(spec.key);
    if (!ep) {
      ep = { key: spec.key, spec, nextId: 1, replicas: new Map(), removed: false, runtimeError: undefined, chain: Promise.resolve(), stops: new Set() };
      this.#endpoints.set(spec.key, ep);
    }
    ep.spec = spec;
    ep.removed = false;
    this.#persist();
    await this.#reconcile(ep);
    this.#emit(ep);
  }

  async remove(key: string): Promise<void> {
    await this.#ready;
    if (this.#closed) throw new Error('local runtime is closed');
    const ep = this.#endpoints.get(key);
    if (!ep) return;
    ep.removed = true;
    await this.#reconcile(ep);
    while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    if (!ep.removed) return; // ensured again meanwhile
    this.#endpoints.delete(key);
    try {
      rmdirSync(join(this.#dir, sanitiseKey(key)));
    } catch {
      // not empty (a replica of a later ensure) or already gone
    }
    this.#persist();
    this.#emitStatus({ key, replicas: [] });
  }

  async list(): Promise<EndpointStatus[]> {
    await this.#ready;
    return [...this.#endpoints.values()].map((ep) => this.#status(ep));
  }

  onChange(listener: (status: EndpointStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    await this.#ready;
    if (this.#closed) return;
    for (const ep of this.#endpoints.values()) {
      await ep.chain;
      while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    }
    this.#closed = true;
    clearInterval(this.#logTimer);
    for (const ep of this.#endpoints.values()) {
      for (const r of ep.replicas.values()) {
        this.#clearTimers(r);
        r.out?.poll();
        r.err?.poll();
        r.out?.close();
        r.err?.close();
        r.out = r.err = null;
      }
    }
    this.#persist(true);
    this.#listeners.clear();
  }

  // --- reconcile ------------------------------------------------------------------------------

  /** One reconcile pass after those queued; rejects if it failed (the chain itself goes on). */
  #reconcile(ep: Endpoint): Promise<void> {
    const run = ep.chain.then(() => this.#reconcileNow(ep));
    ep.chain = run.then(
      () => {
        ep.runtimeError = undefined;
      },
      (err: unknown) => {
        // Nobody awaits a pass started by a replica's state change: its failure (disk full,
        // no file descriptors) becomes the endpoint error instead of vanishing.
        ep.runtimeError = `local runtime: ${err instanceof Error ? err.message : String(err)}`;
        this.#emit(ep);
      },
    );
    return run;
  }

  #reconcileLater(ep: Endpoint): void {
    this.#reconcile(ep).catch(() => {}); // recorded as ep.runtimeError by #reconcile
  }

  async #reconcileNow(ep: Endpoint): Promise<void> {
    if (this.#closed) return;
    const want = ep.removed ? 0 : Math.max(0, ep.spec.replicas);
    const live = [...ep.replicas.values()].filter((r) => !r.stopRequested);
    const current = live.filter((r) => r.spec.specHash === ep.spec.specHash);
    const old = live.filter((r) => r.spec.specHash !== ep.spec.specHash);
    for (let i = current.length; i < want; i++) {
      const r = this.#newReplica(ep);
      current.push(r);
      await this.#start(ep, r);
    }
    const toStop: Replica[] = [];
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
    if (toStop.length > 0) this.#stop(ep, toStop);
  }

  #newReplica(ep: Endpoint): Replica {
    const id = `r${ep.nextId++}`;
    const r: Replica = {
      id, spec: ep.spec, port: 0, address: null, state: 'starting', reason: undefined, issue: undefined,
      restarts: 0, pid: null, startTime: null, startedAt: undefined, child: null, running: false, gen: 0,
      crashes: [], backoffMs: this.#restart.initialMs, readySince: undefined, livenessFailures: 0,
      nextScanAt: 0, scanGapMs: SCAN_FIRST_MS, portStolen: false, stopRequested: false, out: null, err: null, stderrTail: [],
      timer: null, exitPoll: null,
    };
    ep.replicas.set(id, r);
    const dir = join(this.#dir, sanitiseKey(ep.key));
    mkdirSync(dir, { recursive: true });
    for (const stream of ['out', 'err'] as const) {
      const file = join(dir, `${id}.${stream}.log`);
      writeFileSync(file, '');
      this.#openTail(ep, r, stream, file, false);
    }
    return r;
  }

  #openTail(ep: Endpoint, r: Replica, stream: 'out' | 'err', file: string, fromEnd: boolean): void {
    const name = stream === 'out' ? 'stdout' : 'stderr';
    const tail = new LogTail(file, {
      fromEnd,
      maxBytes: this.#retention,
      onLine: (line) => {
        if (name === 'stderr') {
          r.stderrTail.push(line);
          if (r.stderrTail.length > STDERR_KEPT) r.stderrTail.shift();
        }
        try {
          this.#hooks.logs.write({ key: ep.key, replica: r.id, stream: name, line, at: this.#now() });
        } catch {
          // a failing sink must not stop the tail
        }
      },
    });
    r[stream] = tail;
  }

  #usedPorts(except: Replica | null): Set<number> {
    const used = new Set<number>();
    for (const ep of this.#endpoints.values()) {
      used.add(ep.spec.port);
      for (const r of ep.replicas.values()) {
        if (r === except) continue;
        if (r.port) used.add(r.port);
        const p = r.address ? Number(r.address.slice(r.address.lastIndexOf(':') + 1)) : 0;
        if (p) used.add(p);
      }
    }
    return used;
  }

  /** (Re)starts replica `r`; any failure to start is a crash with a reason (and a restart). */
  async #start(ep: Endpoint, r: Replica): Promise<void> {
    try {
      await this.#startProcess(ep, r);
    } catch (err) {
      if (!r.running && !r.stopRequested && !this.#closed) {
        this.#crashed(ep, r, `cannot start: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  async #startProcess(ep: Endpoint, r: Replica): Promise<void> {
    if (this.#closed || r.stopRequested) return;
    const gen = ++r.gen;
    const spec = r.spec;
    r.state = 'starting';
    r.address = null;
    r.livenessFailures = 0;
    r.nextScanAt = Date.now() + SCAN_FIRST_MS;
    r.scanGapMs = SCAN_FIRST_MS;
    if (!existsSync(spec.codeDir) || !statSync(spec.codeDir).isDirectory()) {
      this.#crashed(ep, r, `code directory ${spec.codeDir} does not exist`);
      return;
    }
    const used = this.#usedPorts(r);
    try {
      const reuse = r.port !== 0 && !r.portStolen && !used.has(r.port) && (await portFree(this.#host, r.port));
      if (!reuse) r.port = await pickPort(this.#host, used, this.#portRange);
    } catch (err) {
      this.#crashed(ep, r, `no port: ${(err as Error).message}`);
      return;
    }
    r.portStolen = false;
    if (this.#closed || r.stopRequested || gen !== r.gen) return;
    let launch: Launch;
    try {
      launch = launchFor(spec, r.port, this.#host, this.#path);
    } catch (err) {
      this.#crashed(ep, r, (err as Error).message);
      return;
    }
    const dir = join(this.#dir, sanitiseKey(ep.key));
    mkdirSync(dir, { recursive: true });
    const outFd = openSync(join(dir, `${r.id}.out.log`), 'a');
    const errFd = openSync(join(dir, `${r.id}.err.log`), 'a');
    let child: ChildProcess;
    try {
      // Detached: its own process group (stopped as a whole) that outlives the controller.
      child = spawn(launch.file, [...launch.args], {
        cwd: spec.codeDir,
        env: launch.env,
        stdio: ['ignore', outFd, errFd],
        detached: true,
      });
    } catch (err) {
      this.#crashed(ep, r, `cannot start ${launch.file}: ${(err as Error).message}`);
      return;
    } finally {
      closeSync(outFd);
      closeSync(errFd);
    }
    child.on('error', (err) => {
      if (gen !== r.gen || this.#closed || r.pid !== null) return;
      this.#crashed(ep, r, `cannot start ${launch.file}: ${err.message}`);
    });
    child.once('exit', (code, signal) => this.#onExit(ep, r, gen, code, signal));
    child.unref();
    if (child.pid === undefined) return; // 'error' follows
    r.child = child;
    r.running = true;
    r.pid = child.pid;
    r.startTime = processStartTime(child.pid);
    r.startedAt = this.#now();
    this.#persist();
    this.#emit(ep);
    this.#scheduleProbe(ep, r, gen, 30);
  }

  // --- readiness ------------------------------------------------------------------------------

  #scheduleProbe(ep: Endpoint, r: Replica, gen: number, delayMs: number): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      r.timer = null;
      this.#probe(ep, r, gen, delayMs).catch(() => {
        // /proc or a socket misbehaved: look again later rather than stop watching
        if (gen === r.gen && !this.#closed) this.#scheduleProbe(ep, r, gen, 1000);
      });
    }, delayMs);
    r.timer.unref();
  }

  async #probe(ep: Endpoint, r: Replica, gen: number, lastDelay: number): Promise<void> {
    const stale = () => this.#closed || gen !== r.gen || r.stopRequested || !r.running || r.pid === null;
    if (stale()) return;
    const pid = r.pid!;
    const publishedPort = r.address ? Number(r.address.slice(r.address.lastIndexOf(':') + 1)) : r.port;
    const ok = await tcpProbe(this.#host, publishedPort, 1000);
    if (stale()) return;
    if (r.state === 'ready') {
      if (ok) {
        r.livenessFailures = 0;
      } else if (++r.livenessFailures >= 3) {
        r.state = 'starting';
        r.readySince = undefined;
        r.reason = `stopped answering on ${r.address}`;
        r.address = null;
        this.#emit(ep);
        this.#scheduleProbe(ep, r, gen, 100);
        return;
      }
      this.#scheduleProbe(ep, r, gen, ok ? this.#timing.livenessMs : 500);
      return;
    }
    const next = Math.min(1000, Math.round(lastDelay * 1.5));
    if (ok) {
      const lis = groupListeners(pid, r.port);
      if (lis && !lis.ports.has(r.port) && lis.portOwnedElsewhere) {
        // Someone else holds the port we handed out: never publish it; restart elsewhere.
        r.portStolen = true;
        r.reason = `its assigned port ${r.port} is answered by another process; restarting it on another port`;
        this.#emit(ep);
        signalGroup(pid, 'SIGKILL');
        return;
      }
      this.#becomeReady(ep, r, `${this.#host}:${r.port}`, undefined);
      this.#scheduleProbe(ep, r, gen, this.#timing.livenessMs);
      return;
    }
    // A replica not answering on $PORT: look at which ports its processes listen on, less and less
    // often (a /proc scan costs a few ms; an app loading a big model may take minutes).
    if (procAvailable && Date.now() >= r.nextScanAt) {
      r.nextScanAt = Date.now() + r.scanGapMs;
      r.scanGapMs = Math.min(SCAN_MAX_MS, r.scanGapMs * 2);
      const declared = r.spec.port;
      const lis = groupListeners(pid, declared);
      if (lis && lis.ports.size > 0 && !lis.ports.has(r.port)) {
        const taken = [...this.#endpoints.values()].some((e) =>
          [...e.replicas.values()].some((o) => o !== r && o.address === `${this.#host}:${declared}`),
        );
        if (lis.ports.has(declared) && !lis.portOwnedElsewhere && !taken && (await tcpProbe(this.#host, declared, 1000))) {
          if (stale()) return;
          // It hard-codes its declared port, and that socket is its own: one replica per host port.
          this.#becomeReady(ep, r, `${this.#host}:${declared}`,
            `listens on its declared port ${declared}, not on $PORT (${r.port}): only one replica of it can run on this host`);
          this.#scheduleProbe(ep, r, gen, this.#timing.livenessMs);
          return;
        }
        const ports = [...lis.ports].sort((a, b) => a - b).join(', ');
        const why = `replica ${r.id} listens on port ${ports}, not on its assigned $PORT (${r.port}): the app must listen on $PORT, or run one replica per host port`;
        if (r.issue !== why) {
          r.reason = why;
          r.issue = why;
          this.#emit(ep);
        }
      }
    }
    this.#scheduleProbe(ep, r, gen, next);
  }

  #becomeReady(ep: Endpoint, r: Replica, address: string, note: string | undefined): void {
    r.state = 'ready';
    r.address = address;
    r.readySince = this.#now();
    r.livenessFailures = 0;
    r.reason = note;
    r.issue = undefined;
    this.#persist();
    this.#emit(ep);
    this.#reconcileLater(ep);
  }

  // --- exits and restarts ---------------------------------------------------------------------

  #onExit(ep: Endpoint, r: Replica, gen: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#closed || gen !== r.gen || !r.running) return;
    r.running = false;
    r.child = null;
    if (r.exitPoll) clearInterval(r.exitPoll);
    r.exitPoll = null;
    r.out?.flush();
    r.err?.flush();
    if (r.stopRequested) return;
    const stolen = r.portStolen;
    this.#crashed(ep, r, stolen ? `its assigned port ${r.port} was taken by another process` : describeExit(code, signal));
  }

  #crashed(ep: Endpoint, r: Replica, what: string): void {
    const now = this.#now();
    if (r.timer) clearTimeout(r.timer);
    if (r.readySince !== undefined && now - r.readySince >= this.#restart.resetAfterMs) r.backoffMs = this.#restart.initialMs;
    r.readySince = undefined;
    r.crashes = [...r.crashes.filter((t) => now - t < this.#restart.crashLoopWindowMs), now];
    r.state = 'crashed';
    r.address = null;
    r.running = false;
    r.pid = null;
    r.startTime = null;
    const stderr = stderrSummary(r.stderrTail);
    const lastLines = stderr.length > 0 ? `; last stderr: ${stderr.join(' | ')}` : '';
    const delay = r.backoffMs;
    r.backoffMs = Math.min(this.#restart.maxMs, r.backoffMs * 2);
    r.reason = `${what}${lastLines}; restarting in ${delay / 1000} s`;
    const clash = clashedPort(r.stderrTail);
    // Python's "Address already in use" names no port: if its own $PORT is taken now, that was it.
    const clashPort = clash.found ? (clash.port ?? (portListening(r.port) ? r.port : r.spec.port)) : undefined;
    r.issue = undefined;
    if (clashPort !== undefined && clashPort !== r.port) {
      r.issue = `port ${clashPort} is already in use: the app must listen on $PORT, or run one replica per host port (replica ${r.id} ${what})`;
    } else if (clashPort !== undefined) {
      r.portStolen = true; // our assigned port was taken in the meantime: the restart picks another
    } else if (r.crashes.length >= this.#restart.crashLoopCount) {
      const span = Math.max(1, Math.round((now - r.crashes[0]!) / 1000));
      r.issue = `crash loop: replica ${r.id} crashed ${r.crashes.length} times in ${span} s, last ${what}${lastLines}`;
    }
    r.stderrTail = [];
    this.#persist();
    this.#emit(ep);
    r.timer = setTimeout(() => {
      r.timer = null;
      if (this.#closed || r.stopRequested) return;
      r.restarts++;
      ep.chain = ep.chain.then(() => this.#start(ep, r));
    }, delay);
    r.timer.unref();
    this.#reconcileLater(ep);
  }

  // --- stopping -------------------------------------------------------------------------------

  #stop(ep: Endpoint, replicas: readonly Replica[]): Promise<void> {
    for (const r of replicas) r.stopRequested = true;
    const p = this.#stopNow(ep, replicas).finally(() => ep.stops.delete(p));
    ep.stops.add(p);
    return p;
  }

  async #stopNow(ep: Endpoint, replicas: readonly Replica[]): Promise<void> {
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
    this.#emit(ep);
    await Promise.all(replicas.map((r) => this.#terminate(r)));
    const dir = join(this.#dir, sanitiseKey(ep.key));
    for (const r of replicas) {
      this.#clearTimers(r);
      r.running = false;
      r.out?.flush();
      r.err?.flush();
      r.out?.close();
      r.err?.close();
      r.out = r.err = null;
      rmSync(join(dir, `${r.id}.out.log`), { force: true });
      rmSync(join(dir, `${r.id}.err.log`), { force: true });
      ep.replicas.delete(r.id);
    }
    if (!this.#closed) {
      this.#persist();
      this.#emit(ep);
    }
  }

  /** SIGTERM to the replica's process group, SIGKILL after the grace period; resolves once it is gone. */
  async #terminate(r: Replica): Promise<void> {
    const pid = r.pid;
    if (pid === null || !r.running) return;
    // An adopted pid is signalled only if it is still the process we recorded.
    if (!r.child && !processAlive(pid, r.startTime)) return;
    signalGroup(pid, 'SIGTERM');
    const deadline = Date.now() + this.#graceMs;
    while (groupAlive(pid) && Date.now() < deadline) await sleep(50);
    if (groupAlive(pid)) {
      signalGroup(pid, 'SIGKILL');
      const killDeadline = Date.now() + 10_000;
      while (groupAlive(pid) && Date.now() < killDeadline) await sleep(20);
    }
    // Our own child: wait for its exit to be reaped so the pid is really gone.
    const child = r.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      // A ref'd timer: the child handle is unref'd, and a caller awaiting remove() must not see
      // the event loop run dry before the exit is reaped.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  #clearTimers(r: Replica): void {
    if (r.timer) clearTimeout(r.timer);
    if (r.exitPoll) clearInterval(r.exitPoll);
    r.timer = r.exitPoll = null;
  }

  // --- adoption and state ---------------------------------------------------------------------

  async #adopt(): Promise<void> {
    const state = readState(this.#stateFile);
    const probes: Promise<void>[] = [];
    for (const [key, rec] of Object.entries(state.endpoints) as [string, EndpointRecord][]) {
      const ep: Endpoint = {
        key, spec: rec.spec, nextId: rec.nextId, replicas: new Map(), removed: false, runtimeError: undefined,
        chain: Promise.resolve(), stops: new Set(),
      };
      this.#endpoints.set(key, ep);
      const dir = join(this.#dir, sanitiseKey(key));
      for (const rr of rec.replicas) {
        if (!processAlive(rr.pid, rr.startTime)) {
          rmSync(join(dir, `${rr.id}.out.log`), { force: true });
          rmSync(join(dir, `${rr.id}.err.log`), { force: true });
          continue;
        }
        probes.push(this.#adoptReplica(ep, rr, dir));
      }
    }
    await Promise.all(probes);
    this.#persist();
    for (const ep of this.#endpoints.values()) {
      this.#reconcileLater(ep);
      this.#emit(ep);
    }
  }

  async #adoptReplica(ep: Endpoint, rr: ReplicaRecord, dir: string): Promise<void> {
    const spec = rr.specHash === ep.spec.specHash ? ep.spec : { ...ep.spec, specHash: rr.specHash };
    const r: Replica = {
      id: rr.id, spec, port: rr.port, address: null, state: 'starting', reason: undefined, issue: undefined,
      restarts: rr.restarts, pid: rr.pid, startTime: rr.startTime, startedAt: rr.startedAt, child: null,
      running: true, gen: 1, crashes: [], backoffMs: this.#restart.initialMs, readySince: undefined,
      livenessFailures: 0, nextScanAt: 0, scanGapMs: SCAN_FIRST_MS, portStolen: false, stopRequested: false, out: null, err: null,
      stderrTail: [], timer: null, exitPoll: null,
    };
    ep.replicas.set(r.id, r);
    mkdirSync(dir, { recursive: true });
    for (const stream of ['out', 'err'] as const) {
      const file = join(dir, `${r.id}.${stream}.log`);
      // A missing file (deleted by hand) is recreated; the replica's writes to the old one are lost.
      if (!existsSync(file)) writeFileSync(file, '');
      this.#openTail(ep, r, stream, file, true);
    }
    const gen = r.gen;
    // Not our child: its exit is seen by polling the pid (with its start time).
    r.exitPoll = setInterval(() => {
      if (r.pid !== null && !processAlive(r.pid, r.startTime)) this.#onExit(ep, r, gen, null, null);
    }, this.#timing.exitPollMs);
    r.exitPoll.unref();
    const address = rr.address ?? `${this.#host}:${rr.port}`;
    const port = Number(address.slice(address.lastIndexOf(':') + 1));
    if (await tcpProbe(this.#host, port, 1000)) {
      const lis = groupListeners(rr.pid, port);
      if (!lis || lis.ports.has(port)) {
        r.state = 'ready';
        r.address = address;
        r.readySince = this.#now();
        if (port !== rr.port) r.reason = `listens on its declared port ${port}, not on $PORT (${rr.port}): only one replica of it can run on this host`;
      }
    }
    this.#scheduleProbe(ep, r, gen, r.state === 'ready' ? this.#timing.livenessMs : 50);
  }

  #persist(final = false): void {
    if (this.#closed && !final) return;
    const endpoints: Record<string, EndpointRecord> = {};
    for (const ep of this.#endpoints.values()) {
      if (ep.removed && ep.replicas.size === 0) continue;
      const replicas: ReplicaRecord[] = [];
      for (const r of ep.replicas.values()) {
        if (r.pid === null || !r.running) continue;
        replicas.push({
          id: r.id, pid: r.pid, startTime: r.startTime, port: r.port, address: r.state === 'ready' ? r.address : null,
          specHash: r.spec.specHash, restarts: r.restarts, startedAt: r.startedAt ?? 0,
        });
      }
      endpoints[ep.key] = { spec: ep.spec, nextId: ep.nextId, replicas };
    }
    writeState(this.#stateFile, { version: 1, endpoints });
  }

  // --- status and logs ------------------------------------------------------------------------

  #status(ep: Endpoint): EndpointStatus {
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
    return { key: ep.key, replicas, ...(issues.length > 0 ? { error: issues.join('; ') } : {}) };
  }

  #emit(ep: Endpoint): void {
    if (this.#closed) return;
    this.#emitStatus(this.#status(ep));
  }

  #emitStatus(status: EndpointStatus): void {
    for (const l of this.#listeners) {
      try {
        l(status);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  #pollLogs(): void {
    for (const ep of this.#endpoints.values()) {
      for (const r of ep.replicas.values()) {
        try {
          r.out?.poll();
          r.err?.poll();
        } catch {
          // file replaced or removed by hand: keep going with the others
        }
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Log files of an endpoint's replicas (for diagnostics and tests): `<dataDir>/replicas/<key>/`. */
export function replicaLogDir(dataDir: string, key: string): string {
  return join(dataDir, 'replicas', sanitiseKey(key));
}

