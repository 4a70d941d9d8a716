import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EndpointSpec, EndpointStatus, Runtime, RuntimeHooks } from './runtime.ts';
import { launchFor, type Launch } from './local/command.ts';
import { pickPort, portFree, tcpProbe } from './local/net.ts';
import { groupAlive, groupListeners, portListening, procAvailable, processAlive, processStartTime, signalGroup } from './local/proc.ts';
import { readState, writeState, type EndpointRecord, type ReplicaRecord } from './local/state-file.ts';
import { LogTail } from './local/tail.ts';
import { Supervisor, type RestartPolicy, type SupervisedEndpoint, type SupervisedReplica } from './supervisor.ts';

export type { RestartPolicy } from './supervisor.ts';

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

const DEFAULT_TIMING: LocalTiming = { logPollMs: 200, livenessMs: 2000, exitPollMs: 500 };
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

interface Replica extends SupervisedReplica {
  /** The spec this replica runs (its `specHash` may be older than the endpoint's). */
  spec: EndpointSpec;
  /** The port handed to it as `PORT`. */
  port: number;
  pid: number | null;
  startTime: string | null;
  /** Set when this runtime is the parent (exit comes as an event); adopted replicas are polled. */
  child: ChildProcess | null;
  /** Next /proc scan of a starting replica's sockets (Date.now ms) and the gap after it. */
  nextScanAt: number;
  scanGapMs: number;
  /** Our assigned port answered with someone else's socket: restart on another port. */
  portStolen: boolean;
  out: LogTail | null;
  err: LogTail | null;
  exitPoll: NodeJS.Timeout | null;
}

type Endpoint = SupervisedEndpoint<Replica>;

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
 *
 * Bookkeeping, restarts, liveness, the stop sequence and status are the `Supervisor`'s; this
 * class spawns and signals process groups, checks socket ownership in /proc, tails the log
 * files and keeps the state file.
 */
export class LocalRuntime implements Runtime {
  readonly kind = 'local' as const;
  readonly #dir: string;
  readonly #stateFile: string;
  readonly #graceMs: number;
  readonly #retention: number;
  readonly #host: string;
  readonly #portRange: { readonly min: number; readonly max: number } | undefined;
  readonly #path: string;
  readonly #timing: LocalTiming;
  readonly #sup: Supervisor<Replica>;
  readonly #ready: Promise<void>;
  readonly #logTimer: NodeJS.Timeout;

  constructor(opts: LocalRuntimeOptions) {
    this.#dir = join(opts.dataDir, 'replicas');
    this.#stateFile = join(this.#dir, 'local-runtime.json');
    this.#graceMs = opts.stopGraceSeconds * 1000;
    this.#retention = opts.logRetentionBytes;
    this.#host = opts.host ?? '127.0.0.1';
    this.#portRange = opts.portRange;
    // The one environment read outside common/config.ts: replicas need a PATH to find their
    // interpreters, and the controller's own is the only sensible default.
    this.#path = opts.path ?? process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin';
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.#sup = new Supervisor<Replica>({
      name: 'local runtime',
      hooks: opts.hooks,
      restart: opts.restart,
      livenessMs: this.#timing.livenessMs,
      now: opts.now,
      driver: {
        create: (id, spec) => this.#replica(id, spec),
        prepare: (ep, r) => this.#createLogFiles(ep, r),
        isCurrent: (ep, r) => r.spec.specHash === ep.spec.specHash,
        start: (ep, r, gen) => this.#startProcess(ep, r, gen),
        probeStarting: (ep, r, gen, lastDelay, stale) => this.#probeStarting(ep, r, gen, lastDelay, stale),
        exited: (r) => this.#exited(r),
        onCrash: (r, what, crashLoop) => this.#onCrash(r, what, crashLoop),
        terminate: (r) => this.#terminate(r),
        discard: (ep, r) => this.#discard(ep, r),
        forgotten: (key) => this.#forgotten(key),
        detach: (r) => this.#detach(r),
        closed: () => {
          clearInterval(this.#logTimer);
          this.#persist(true);
        },
        persist: () => this.#persist(),
      },
    });
    mkdirSync(this.#dir, { recursive: true });
    this.#logTimer = setInterval(() => this.#pollLogs(), this.#timing.logPollMs);
    this.#logTimer.unref();
    this.#ready = this.#adopt();
  }

  async ensure(spec: EndpointSpec): Promise<void> {
    await this.#ready;
    await this.#sup.ensure(spec);
  }

  async remove(key: string): Promise<void> {
    await this.#ready;
    await this.#sup.remove(key);
  }

  async list(): Promise<EndpointStatus[]> {
    await this.#ready;
    return this.#sup.list();
  }

  onChange(listener: (status: EndpointStatus) => void): () => void {
    return this.#sup.onChange(listener);
  }

  async close(): Promise<void> {
    await this.#ready;
    await this.#sup.close();
  }

  // --- replicas and their files ---------------------------------------------------------------

  #replica(id: string, spec: EndpointSpec): Replica {
    return {
      ...this.#sup.fresh(id), spec, port: 0, pid: null, startTime: null, child: null, nextScanAt: 0,
      scanGapMs: SCAN_FIRST_MS, portStolen: false, out: null, err: null, exitPoll: null,
    };
  }

  #logDir(key: string): string {
    return join(this.#dir, sanitiseKey(key));
  }

  #createLogFiles(ep: Endpoint, r: Replica): void {
    const dir = this.#logDir(ep.key);
    mkdirSync(dir, { recursive: true });
    for (const stream of ['out', 'err'] as const) {
      const file = join(dir, `${r.id}.${stream}.log`);
      writeFileSync(file, '');
      this.#openTail(ep, r, stream, file, false);
    }
  }

  #openTail(ep: Endpoint, r: Replica, stream: 'out' | 'err', file: string, fromEnd: boolean): void {
    const name = stream === 'out' ? 'stdout' : 'stderr';
    r[stream] = new LogTail(file, {
      fromEnd,
      maxBytes: this.#retention,
      onLine: (line) => this.#sup.output(ep, r, name, line, this.#sup.now()),
    });
  }

  #usedPorts(except: Replica | null): Set<number> {
    const used = new Set<number>();
    for (const ep of this.#sup.endpoints()) {
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

  // --- starting -------------------------------------------------------------------------------

  async #startProcess(ep: Endpoint, r: Replica, gen: number): Promise<void> {
    const spec = r.spec;
    r.nextScanAt = Date.now() + SCAN_FIRST_MS;
    r.scanGapMs = SCAN_FIRST_MS;
    if (!existsSync(spec.codeDir) || !statSync(spec.codeDir).isDirectory()) {
      this.#sup.crashed(ep, r, `code directory ${spec.codeDir} does not exist`);
      return;
    }
    const used = this.#usedPorts(r);
    try {
      const reuse = r.port !== 0 && !r.portStolen && !used.has(r.port) && (await portFree(this.#host, r.port));
      if (!reuse) r.port = await pickPort(this.#host, used, this.#portRange);
    } catch (err) {
      this.#sup.crashed(ep, r, `no port: ${(err as Error).message}`);
      return;
    }
    r.portStolen = false;
    if (this.#sup.superseded(r, gen)) return;
    let launch: Launch;
    try {
      launch = launchFor(spec, r.port, this.#host, this.#path);
    } catch (err) {
      this.#sup.crashed(ep, r, (err as Error).message);
      return;
    }
    const dir = this.#logDir(ep.key);
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
      this.#sup.crashed(ep, r, `cannot start ${launch.file}: ${(err as Error).message}`);
      return;
    } finally {
      closeSync(outFd);
      closeSync(errFd);
    }
    child.on('error', (err) => {
      if (gen !== r.gen || this.#sup.closed || r.pid !== null) return;
      this.#sup.crashed(ep, r, `cannot start ${launch.file}: ${err.message}`);
    });
    child.once('exit', (code, signal) => this.#onExit(ep, r, gen, code, signal));
    child.unref();
    if (child.pid === undefined) return; // 'error' follows
    r.child = child;
    r.running = true;
    r.pid = child.pid;
    r.startTime = processStartTime(child.pid);
    r.startedAt = this.#sup.now();
    this.#sup.launched(ep, r, gen);
  }

  // --- readiness ------------------------------------------------------------------------------

  async #probeStarting(ep: Endpoint, r: Replica, gen: number, lastDelay: number, stale: () => boolean): Promise<void> {
    const pid = r.pid;
    if (pid === null) return;
    const ok = await tcpProbe(this.#host, r.port, 1000);
    if (stale()) return;
    const next = Math.min(1000, Math.round(lastDelay * 1.5));
    if (ok) {
      const lis = groupListeners(pid, r.port);
      if (lis && !lis.ports.has(r.port) && lis.portOwnedElsewhere) {
        // Someone else holds the port we handed out: never publish it; restart elsewhere.
        r.portStolen = true;
        r.reason = `its assigned port ${r.port} is answered by another process; restarting it on another port`;
        this.#sup.emit(ep);
        signalGroup(pid, 'SIGKILL');
        return;
      }
      this.#sup.ready(ep, r, gen, `${this.#host}:${r.port}`);
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
        const taken = [...this.#sup.endpoints()].some((e) =>
          [...e.replicas.values()].some((o) => o !== r && o.address === `${this.#host}:${declared}`),
        );
        const ownDeclared = lis.ports.has(declared) && !lis.portOwnedElsewhere && !taken && (await tcpProbe(this.#host, declared, 1000));
        // Gone while probed: its crash's reason is not overwritten below.
        if (stale()) return;
        if (ownDeclared) {
          // It hard-codes its declared port, and that socket is its own: one replica per host port.
          this.#sup.ready(ep, r, gen, `${this.#host}:${declared}`,
            `listens on its declared port ${declared}, not on $PORT (${r.port}): only one replica of it can run on this host`);
          return;
        }
        const ports = [...lis.ports].sort((a, b) => a - b).join(', ');
        const why = `replica ${r.id} listens on port ${ports}, not on its assigned $PORT (${r.port}): the app must listen on $PORT, or run one replica per host port`;
        if (r.issue !== why) {
          r.reason = why;
          r.issue = why;
          this.#sup.emit(ep);
        }
      }
    }
    this.#sup.scheduleProbe(ep, r, gen, next);
  }

  // --- exits ----------------------------------------------------------------------------------

  #onExit(ep: Endpoint, r: Replica, gen: number, code: number | null, signal: NodeJS.Signals | null): void {
    const what = r.portStolen ? `its assigned port ${r.port} was taken by another process` : describeExit(code, signal);
    this.#sup.exited(ep, r, gen, what);
  }

  #exited(r: Replica): void {
    r.child = null;
    if (r.exitPoll) clearInterval(r.exitPoll);
    r.exitPoll = null;
    r.out?.flush();
    r.err?.flush();
  }

  #onCrash(r: Replica, what: string, crashLoop: string | undefined): string | undefined {
    // What is left of the run's group (its leader died, say OOM-killed) holds the port and would
    // never be stopped: killed, unless another process has taken the leader's pid.
    if (r.pid !== null && !processAlive(r.pid, null)) signalGroup(r.pid, 'SIGKILL');
    r.pid = null;
    r.startTime = null;
    const clash = clashedPort(r.stderrTail);
    // Python's "Address already in use" names no port: if its own $PORT is taken now, that was it.
    const clashPort = clash.found ? (clash.port ?? (portListening(r.port) ? r.port : r.spec.port)) : undefined;
    if (clashPort !== undefined && clashPort !== r.port) {
      return `port ${clashPort} is already in use: the app must listen on $PORT, or run one replica per host port (replica ${r.id} ${what})`;
    }
    if (clashPort !== undefined) {
      r.portStolen = true; // our assigned port was taken in the meantime: the restart picks another
      return undefined;
    }
    return crashLoop;
  }

  // --- stopping -------------------------------------------------------------------------------

  /** SIGTERM to the replica's process group, SIGKILL after the grace period; resolves once it is gone. */
  async #terminate(r: Replica): Promise<void> {
    const pid = r.pid;
    if (pid === null) return;
    // An adopted pid is signalled only if it is still the process we recorded. A leader that
    // exited (during beforeStop) may leave the rest of its group: stopped all the same, unless
    // another process has taken its pid.
    const leader = r.running && (r.child !== null || processAlive(pid, r.startTime));
    if (!leader && (processAlive(pid, null) || !groupAlive(pid))) return;
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

  /** A stopped replica: its last output read (an unterminated last line too), its files deleted. */
  #discard(ep: Endpoint, r: Replica): void {
    this.#unfollow(r, 'flush');
    this.#deleteLogFiles(ep.key, r.id);
  }

  #forgotten(key: string): void {
    try {
      rmdirSync(this.#logDir(key));
    } catch {
      // not empty (a replica of a later ensure) or already gone
    }
  }

  /** On close: the complete lines written so far passed on; the replica keeps running. */
  #detach(r: Replica): void {
    this.#unfollow(r, 'poll');
  }

  /** Stops watching `r`'s exit and output, after reading what is in its files (`flush` or `poll`). */
  #unfollow(r: Replica, read: 'flush' | 'poll'): void {
    if (r.exitPoll) clearInterval(r.exitPoll);
    r.exitPoll = null;
    r.out?.[read]();
    r.err?.[read]();
    r.out?.close();
    r.err?.close();
    r.out = r.err = null;
  }

  #deleteLogFiles(key: string, id: string): void {
    const dir = this.#logDir(key);
    rmSync(join(dir, `${id}.out.log`), { force: true });
    rmSync(join(dir, `${id}.err.log`), { force: true });
  }

  // --- adoption and state ---------------------------------------------------------------------

  async #adopt(): Promise<void> {
    const state = readState(this.#stateFile);
    const probes: Promise<void>[] = [];
    for (const [key, rec] of Object.entries(state.endpoints) as [string, EndpointRecord][]) {
      const ep = this.#sup.endpoint(key, rec.spec);
      ep.nextId = rec.nextId;
      const dir = this.#logDir(key);
      for (const rr of rec.replicas) {
        if (!processAlive(rr.pid, rr.startTime)) {
          this.#deleteLogFiles(key, rr.id);
          continue;
        }
        probes.push(this.#adoptReplica(ep, rr, dir));
      }
    }
    await Promise.all(probes);
    this.#persist();
    for (const ep of this.#sup.endpoints()) {
      this.#sup.reconcileLater(ep);
      this.#sup.emit(ep);
    }
  }

  async #adoptReplica(ep: Endpoint, rr: ReplicaRecord, dir: string): Promise<void> {
    const spec = rr.specHash === ep.spec.specHash ? ep.spec : { ...ep.spec, specHash: rr.specHash };
    const r: Replica = {
      ...this.#replica(rr.id, spec),
      port: rr.port, restarts: rr.restarts, pid: rr.pid, startTime: rr.startTime, startedAt: rr.startedAt, running: true, gen: 1,
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
    // Not if it exited during the probe (its crash is reported and its restart scheduled).
    if ((await tcpProbe(this.#host, port, 1000)) && r.running && gen === r.gen) {
      const lis = groupListeners(rr.pid, port);
      if (!lis || lis.ports.has(port)) {
        r.state = 'ready';
        r.address = address;
        r.readySince = this.#sup.now();
        if (port !== rr.port) r.reason = `listens on its declared port ${port}, not on $PORT (${rr.port}): only one replica of it can run on this host`;
      }
    }
    this.#sup.scheduleProbe(ep, r, gen, r.state === 'ready' ? this.#timing.livenessMs : 50);
  }

  #persist(final = false): void {
    if (this.#sup.closed && !final) return;
    const endpoints: Record<string, EndpointRecord> = {};
    for (const ep of this.#sup.endpoints()) {
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

  #pollLogs(): void {
    for (const ep of this.#sup.endpoints()) {
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

/** Log files of an endpoint's replicas (for diagnostics and tests): `<dataDir>/replicas/<key>/`. */
export function replicaLogDir(dataDir: string, key: string): string {
  return join(dataDir, 'replicas', sanitiseKey(key));
}

