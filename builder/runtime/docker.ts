import { randomBytes } from 'node:crypto';
import type Dockerode from 'dockerode';
import type { RestartPolicy } from './local.ts';
import { substitutePort } from './local/command.ts';
import { pickPort, tcpProbe } from './local/net.ts';
import {
  IMAGE_WSGI_RUNNER,
  LABEL_KEY,
  LABEL_MANAGED,
  LABEL_NETWORK,
  LABEL_PORT,
  LABEL_REPLICA,
  LABEL_SPEC_HASH,
  identityLabels,
} from './docker/labels.ts';
import { followContainerLogs, type ContainerLine } from './docker/logs.ts';
import { followProgress } from './docker/progress.ts';
import type { EndpointSpec, EndpointStatus, ReplicaState, ReplicaStatus, Runtime, RuntimeHooks } from './runtime.ts';

/** How often the docker runtime looks at things (ms). */
export interface DockerTiming {
  /** A ready replica's address is probed this often; 3 failures in a row make it `starting` again. Default 2000. */
  readonly livenessMs: number;
  /** Longest wait between readiness probes of a starting replica. Default 1000. */
  readonly probeMaxMs: number;
}

/** Construction options of `DockerRuntime`. */
export interface DockerRuntimeOptions {
  readonly docker: Dockerode;
  /**
   * `host`: containers share the host's network, each gets a free port in `PORT` and is reached at
   * `host:PORT`. Anything else names a Docker network (default `bridge`): each container has its
   * own address there and is reached at `containerIP:spec.port`.
   */
  readonly network?: string;
  readonly hooks: RuntimeHooks;
  /** `docker stop -t`: SIGTERM, then SIGKILL after this long. */
  readonly stopGraceSeconds: number;
  /** Host networking: the address replicas listen on (`HOST`) and are reached at. Default `127.0.0.1`. */
  readonly host?: string;
  /** Host networking: ports handed out as `PORT` (inclusive). Default: ports the kernel picks. */
  readonly portRange?: { readonly min: number; readonly max: number };
  /** Credentials for pulling images the engine does not have (from `PORTICO_REGISTRY`). */
  readonly registryAuth?: { readonly username: string; readonly password: string; readonly serveraddress?: string };
  /** Log size kept by the engine per container (`json-file` driver `max-size`, 2 files). Default `10m`. */
  readonly logMaxSize?: string;
  readonly restart?: Partial<RestartPolicy>;
  readonly timing?: Partial<DockerTiming>;
  /** Clock for backoff bookkeeping. Default `Date.now`. */
  readonly now?: () => number;
}

const DEFAULT_RESTART: RestartPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  resetAfterMs: 60_000,
  crashLoopCount: 3,
  crashLoopWindowMs: 300_000,
};
const DEFAULT_TIMING: DockerTiming = { livenessMs: 2000, probeMaxMs: 1000 };
const STDERR_KEPT = 20;
const STDERR_SHOWN = 5;
const MiB = 1024 * 1024;

interface Replica {
  readonly id: string;
  /** The spec it was made from; null for an adopted container until `ensure` names its spec. */
  spec: EndpointSpec | null;
  specHash: string;
  network: string;
  containerId: string | null;
  /** The port the app was told (`PORT`). */
  port: number;
  /** Where it is reached (published once ready). */
  target: string | null;
  address: string | null;
  state: ReplicaState;
  reason: string | undefined;
  issue: string | undefined;
  /** An endpoint-level problem found while starting (no image, pull refused): the crash's issue. */
  startIssue: string | undefined;
  /** Host networking: its port was taken; the restart makes a new container on another port. */
  recreate: boolean;
  restarts: number;
  startedAt: number | undefined;
  running: boolean;
  /** Bumped at each start: callbacks of an older run are ignored. */
  gen: number;
  crashes: number[];
  backoffMs: number;
  readySince: number | undefined;
  livenessFailures: number;
  stopRequested: boolean;
  stderrTail: string[];
  timer: NodeJS.Timeout | null;
  /** Aborts the current run's log follow and exit wait. */
  watch: AbortController | null;
  logsDone: Promise<void> | null;
  lastLogNs: bigint;
}

interface Endpoint {
  readonly key: string;
  /** Null for an endpoint adopted from running containers and not `ensure`d since. */
  spec: EndpointSpec | null;
  nextId: number;
  readonly replicas: Map<string, Replica>;
  removed: boolean;
  runtimeError: string | undefined;
  /** Serialises reconcile passes and (re)starts of this endpoint. */
  chain: Promise<void>;
  readonly stops: Set<Promise<void>>;
}

const idNumber = (id: string) => Number(id.replace(/^\D+/, '')) || 0;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The engine's message of a dockerode error. */
function message(err: unknown): string {
  const e = err as { json?: { message?: string } | null; message?: string };
  return (e?.json && typeof e.json === 'object' && typeof e.json.message === 'string' ? e.json.message : e?.message ?? String(err)).trim();
}

const statusOf = (err: unknown) => (err as { statusCode?: number })?.statusCode;

/** The last stderr lines worth showing: blank lines dropped, the error line kept. */
function stderrSummary(lines: readonly string[]): string[] {
  const kept = lines.map((l) => l.trim()).filter((l) => l !== '' && !/^Node\.js v\d/.test(l));
  const shown = kept.slice(-STDERR_SHOWN);
  const errorLine = [...kept].reverse().find((l) => /^(\w+)?(Error|Exception)\b(\s*\[[^\]]*\])?:/.test(l));
  if (errorLine !== undefined && !shown.includes(errorLine)) return [errorLine, '...', ...shown.slice(-(STDERR_SHOWN - 2))];
  return shown;
}

/** A container name for a replica: readable, valid, and unique (a random suffix). */
function containerName(key: string, replica: string): string {
  const slug = key.replace(/\//g, '.').replace(/[^a-zA-Z0-9_.-]+/g, '-').slice(0, 180);
  return `portico.${slug}.${replica}.${randomBytes(3).toString('hex')}`;
}

/**
 * Runs replicas as containers on a Docker engine (target `docker`), from the image built for
 * the endpoint (`spec.image`; pulled when the engine lacks it).
 *
 * Each container carries the `portico.*` identity labels plus `portico.key`, `portico.replica`,
 * `portico.spec-hash`, `portico.port` and `portico.network`, the version's env, `PORT`, `HOST`,
 * the endpoint's command (`$PORT` substituted in list form), and the limits of
 * `spec.resources`: memory max -> `Memory`, memory min -> `MemoryReservation` (valohai.yaml
 * memory is in MiB), cpu max -> `NanoCpus`. With bridge networking (default) a replica is reached
 * at `containerIP:spec.port` and listens on `0.0.0.0`; with host networking it gets a free port in
 * `PORT` and is reached at `host:PORT`. It is `ready` once a TCP connect to that address succeeds.
 *
 * Restarts are this runtime's, not the engine's (`RestartPolicy: no`): an exit is `crashed`, and
 * the same container is started again after 0.5 s doubling to 30 s (reset after 60 s ready); 3
 * crashes within 5 minutes set the endpoint error with the exit status and the last stderr
 * lines, as the local runtime does. So states, backoff and crash-loop errors read the same on
 * every target; the price is that a replica crashing while no controller runs stays down until
 * a controller adopts it (and starts it again).
 *
 * Stop: `beforeStop` first, then `stopping`, `docker stop -t <grace>`, then the container is
 * removed. Output is followed per container (stdout/stderr, engine timestamps) into the log
 * sink. A new `DockerRuntime` on the same engine adopts the labelled containers it finds:
 * `list()` reports them, `ensure` keeps those of the same spec hash, `remove` deletes them.
 * `close()` stops watching and leaves every container running.
 */
export class DockerRuntime implements Runtime {
  readonly kind = 'docker' as const;
  readonly #docker: Dockerode;
  readonly #network: string;
  readonly #hostNetwork: boolean;
  readonly #hooks: RuntimeHooks;
  readonly #grace: number;
  readonly #host: string;
  readonly #portRange: { readonly min: number; readonly max: number } | undefined;
  readonly #registryAuth: DockerRuntimeOptions['registryAuth'];
  readonly #logMaxSize: string;
  readonly #restart: RestartPolicy;
  readonly #timing: DockerTiming;
  readonly #now: () => number;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #listeners = new Set<(status: EndpointStatus) => void>();
  #adopting: Promise<void> | null = null;
  /** Image pulls under way (one per image, shared by the replicas waiting for it). */
  readonly #pulls = new Map<string, Promise<void>>();
  #closed = false;

  constructor(opts: DockerRuntimeOptions) {
    this.#docker = opts.docker;
    this.#network = opts.network ?? 'bridge';
    this.#hostNetwork = this.#network === 'host';
    this.#hooks = opts.hooks;
    this.#grace = opts.stopGraceSeconds;
    this.#host = opts.host ?? '127.0.0.1';
    this.#portRange = opts.portRange;
    this.#registryAuth = opts.registryAuth;
    this.#logMaxSize = opts.logMaxSize ?? '10m';
    this.#restart = { ...DEFAULT_RESTART, ...opts.restart };
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.#now = opts.now ?? Date.now;
    void this.#ready().catch(() => {}); // adoption starts now; a failure is retried by the next call
  }

  /** Adoption, once; retried by the next call after a failure (engine not reachable yet). */
  #ready(): Promise<void> {
    this.#adopting ??= this.#adopt().catch((err: unknown) => {
      this.#adopting = null;
      throw new Error(`docker engine: ${message(err)}`, { cause: err });
    });
    return this.#adopting;
  }

  async ensure(spec: EndpointSpec): Promise<void> {
    await this.#ready();
    if (this.#closed) throw new Error('docker runtime is closed');
    let ep = this.#endpoints.get(spec.key);
    if (!ep) {
      ep = { key: spec.key, spec, nextId: 1, replicas: new Map(), removed: false, runtimeError: undefined, chain: Promise.resolve(), stops: new Set() };
      this.#endpoints.set(spec.key, ep);
    }
    ep.spec = spec;
    ep.removed = false;
    for (const r of ep.replicas.values()) {
      if (r.specHash === spec.specHash) r.spec = spec; // adopted ones learn their spec
    }
    await this.#reconcile(ep);
    this.#emit(ep);
  }

  async remove(key: string): Promise<void> {
    await this.#ready();
    if (this.#closed) throw new Error('docker runtime is closed');
    const ep = this.#endpoints.get(key);
    if (!ep) return;
    ep.removed = true;
    await this.#reconcile(ep);
    while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    if (!ep.removed) return; // ensured again meanwhile
    this.#endpoints.delete(key);
    this.#emitStatus({ key, replicas: [] });
  }

  async list(): Promise<EndpointStatus[]> {
    try {
      await this.#ready();
    } catch {
      // The engine is not reachable: report what is known (nothing yet); ensure() says why.
    }
    return [...this.#endpoints.values()].map((ep) => this.#status(ep));
  }

  onChange(listener: (status: EndpointStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    await this.#ready().catch(() => {});
    if (this.#closed) return;
    for (const ep of this.#endpoints.values()) {
      await ep.chain;
      while (ep.stops.size > 0) await Promise.all([...ep.stops]);
    }
    this.#closed = true;
    for (const ep of this.#endpoints.values()) {
      for (const r of ep.replicas.values()) {
        if (r.timer) clearTimeout(r.timer);
        r.timer = null;
        r.watch?.abort();
        r.watch = null;
      }
    }
    this.#listeners.clear();
  }

  // --- reconcile ------------------------------------------------------------------------------

  #reconcile(ep: Endpoint): Promise<void> {
    const run = ep.chain.then(() => this.#reconcileNow(ep));
    ep.chain = run.then(
      () => {
        ep.runtimeError = undefined;
      },
      (err: unknown) => {
        ep.runtimeError = `docker runtime: ${message(err)}`;
        this.#emit(ep);
      },
    );
    return run;
  }

  #reconcileLater(ep: Endpoint): void {
    this.#reconcile(ep).catch(() => {}); // recorded as ep.runtimeError
  }

  #isCurrent(ep: Endpoint, r: Replica): boolean {
    return ep.spec === null || (r.specHash === ep.spec.specHash && r.network === this.#network);
  }

  async #reconcileNow(ep: Endpoint): Promise<void> {
    if (this.#closed) return;
    const live = [...ep.replicas.values()].filter((r) => !r.stopRequested);
    const current = live.filter((r) => this.#isCurrent(ep, r));
    const old = live.filter((r) => !this.#isCurrent(ep, r));
    const want = ep.removed ? 0 : ep.spec ? Math.max(0, ep.spec.replicas) : current.length;
    for (let i = current.length; i < want; i++) {
      const r = this.#newReplica(ep, ep.spec!);
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
    if (toStop.length > 0) void this.#stop(ep, toStop);
  }

  #newReplica(ep: Endpoint, spec: EndpointSpec): Replica {
    const r = this.#replica(`r${ep.nextId++}`, spec, spec.specHash, this.#network);
    ep.replicas.set(r.id, r);
    return r;
  }

  #replica(id: string, spec: EndpointSpec | null, specHash: string, network: string): Replica {
    return {
      id, spec, specHash, network, containerId: null, port: 0, target: null, address: null, state: 'starting', reason: undefined,
      issue: undefined, startIssue: undefined, recreate: false, restarts: 0, startedAt: undefined, running: false, gen: 0, crashes: [], backoffMs: this.#restart.initialMs,
      readySince: undefined, livenessFailures: 0, stopRequested: false, stderrTail: [], timer: null, watch: null, logsDone: null,
      lastLogNs: 0n,
    };
  }

  // --- starting -------------------------------------------------------------------------------

  /** (Re)starts replica `r`; any failure to start is a crash with a reason (and a restart). */
  async #start(ep: Endpoint, r: Replica): Promise<void> {
    try {
      await this.#startContainer(ep, r);
    } catch (err) {
      if (!r.running && !r.stopRequested && !this.#closed) this.#crashed(ep, r, `cannot start: ${message(err)}`);
    }
  }

  #usedPorts(except: Replica): Set<number> {
    const used = new Set<number>();
    for (const ep of this.#endpoints.values()) {
      for (const r of ep.replicas.values()) if (r !== except && r.port && r.network === 'host') used.add(r.port);
    }
    return used;
  }

  async #startContainer(ep: Endpoint, r: Replica): Promise<void> {
    if (this.#closed || r.stopRequested) return;
    const gen = ++r.gen;
    r.state = 'starting';
    r.address = null;
    r.livenessFailures = 0;
    r.startIssue = undefined;
    if (r.recreate && r.containerId !== null && r.spec !== null) {
      await this.#docker.getContainer(r.containerId).remove({ force: true, v: true }).catch(() => {});
      r.containerId = null;
    }
    r.recreate = false;
    if (r.containerId === null) {
      const spec = r.spec;
      if (spec === null) {
        // An adopted replica whose container vanished, spec unknown: forget it; ensure() replaces it.
        ep.replicas.delete(r.id);
        this.#emit(ep);
        return;
      }
      if (!spec.image) {
        r.startIssue = `no image was built for endpoint ${spec.endpoint} of version ${spec.version} (the docker target runs images)`;
        this.#crashed(ep, r, 'no image');
        return;
      }
      r.port = this.#hostNetwork ? await pickPort(this.#host, this.#usedPorts(r), this.#portRange) : spec.port;
      if (this.#closed || r.stopRequested || gen !== r.gen) return;
      const id = await this.#create(spec, r);
      if (id === null) {
        this.#pullThenStart(ep, r, gen, spec.image);
        return;
      }
      r.containerId = id;
    }
    const container = this.#docker.getContainer(r.containerId);
    try {
      await container.start();
    } catch (err) {
      if (statusOf(err) === 404) r.containerId = null; // removed behind our back: made anew next time
      if (statusOf(err) !== 304) throw err; // 304: already running
    }
    if (this.#closed || r.stopRequested || gen !== r.gen) return;
    r.running = true;
    r.startedAt = this.#now();
    this.#watch(ep, r, gen, container, false);
    const info = await container.inspect();
    r.target = this.#targetOf(r, info);
    this.#emit(ep);
    this.#scheduleProbe(ep, r, gen, 30);
  }

  /** Where a replica is reached: `host:PORT` (host networking) or its IP on the network. */
  #targetOf(r: Replica, info: Dockerode.ContainerInspectInfo): string | null {
    if (r.network === 'host') return `${this.#host}:${r.port}`;
    const nets = info.NetworkSettings?.Networks ?? {};
    const ip = nets[r.network]?.IPAddress || Object.values(nets).find((n) => n.IPAddress)?.IPAddress;
    if (!ip) return null;
    return ip.includes(':') ? `[${ip}]:${r.port}` : `${ip}:${r.port}`;
  }

  /** Creates the replica's container; null when the engine does not have the image. */
  async #create(spec: EndpointSpec, r: Replica): Promise<string | null> {
    const image = spec.image!;
    const env: Record<string, string> = {
      PYTHONUNBUFFERED: '1',
      ...spec.env,
      PORT: String(r.port),
      HOST: this.#hostNetwork ? this.#host : '0.0.0.0',
    };
    if (spec.command.kind === 'wsgi') env['SCRIPT_NAME'] = spec.env['VH_DEFAULT_PREFIX'] ?? '';
    const cmd = spec.command;
    let Cmd: string[];
    if (cmd.kind === 'shell') Cmd = ['/bin/sh', '-c', cmd.command];
    else if (cmd.kind === 'exec') Cmd = cmd.argv.map((a) => substitutePort(a, r.port));
    else Cmd = ['python3', IMAGE_WSGI_RUNNER, cmd.module];
    const res = spec.resources;
    const hostConfig: Dockerode.HostConfig = {
      NetworkMode: this.#network,
      RestartPolicy: { Name: 'no' },
      Init: true,
      LogConfig: { Type: 'json-file', Config: { 'max-size': this.#logMaxSize, 'max-file': '2' } },
      ...(res?.memory?.max !== undefined ? { Memory: Math.round(res.memory.max * MiB) } : {}),
      ...(res?.memory?.min !== undefined ? { MemoryReservation: Math.round(res.memory.min * MiB) } : {}),
      ...(res?.cpu?.max !== undefined ? { NanoCpus: Math.round(res.cpu.max * 1e9) } : {}),
    };
    const options: Dockerode.ContainerCreateOptions = {
      name: containerName(spec.key, r.id),
      Image: image,
      Cmd,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: {
        ...identityLabels(spec),
        [LABEL_KEY]: spec.key,
        [LABEL_REPLICA]: r.id,
        [LABEL_SPEC_HASH]: spec.specHash,
        [LABEL_PORT]: String(r.port),
        [LABEL_NETWORK]: this.#network,
      },
      ...(this.#hostNetwork ? {} : { ExposedPorts: { [`${r.port}/tcp`]: {} } }),
      HostConfig: hostConfig,
    };
    try {
      return (await this.#docker.createContainer(options)).id;
    } catch (err) {
      if (statusOf(err) === 404 && /no such image/i.test(message(err))) return null;
      throw err;
    }
  }

  /**
   * The engine lacks the image: pull it without holding up the endpoint's other work (a pull
   * may take minutes), then start the replica; a failed pull is a crash with the pull's message.
   */
  #pullThenStart(ep: Endpoint, r: Replica, gen: number, image: string): void {
    r.reason = `pulling image ${image}`;
    this.#emit(ep);
    let pull = this.#pulls.get(image);
    if (!pull) {
      pull = (async () => {
        const stream = await this.#docker.pull(image, this.#registryAuth ? { authconfig: { ...this.#registryAuth } } : {});
        await followProgress(stream, () => {});
      })().finally(() => this.#pulls.delete(image));
      this.#pulls.set(image, pull);
    }
    const stale = () => this.#closed || r.stopRequested || gen !== r.gen;
    pull.then(
      () => {
        if (!stale()) ep.chain = ep.chain.then(() => this.#start(ep, r));
      },
      (err: unknown) => {
        if (stale()) return;
        r.startIssue = `image ${image} is not on the docker engine and cannot be pulled: ${message(err)}`;
        this.#crashed(ep, r, `image ${image} is missing`);
      },
    );
  }

  /** Follows the run's output and waits for its exit. */
  #watch(ep: Endpoint, r: Replica, gen: number, container: Dockerode.Container, adopted: boolean): void {
    r.watch?.abort();
    const watch = new AbortController();
    r.watch = watch;
    r.logsDone = followContainerLogs(container, {
      ...(adopted ? { fromNow: true } : { sinceNs: r.lastLogNs }),
      signal: watch.signal,
      onLine: (l) => this.#onLine(ep, r, l),
    }).catch(() => {});
    this.#waitExit(ep, r, gen, container, watch.signal);
  }

  #waitExit(ep: Endpoint, r: Replica, gen: number, container: Dockerode.Container, signal: AbortSignal): void {
    container.wait({ condition: 'not-running', abortSignal: signal }).then(
      async (res: { StatusCode?: number }) => {
        if (signal.aborted || gen !== r.gen || this.#closed) return;
        // The crash reason quotes the last lines: let the log follow deliver them first.
        await Promise.race([r.logsDone, sleep(2000)]);
        let what = `exited with code ${res.StatusCode ?? 'unknown'}`;
        try {
          const info = await container.inspect();
          if (info.State?.OOMKilled) what += ' (killed: out of memory)';
        } catch (err) {
          if (statusOf(err) === 404) {
            r.containerId = null;
            what = 'its container was removed outside Portico';
          }
        }
        this.#onExit(ep, r, gen, what);
      },
      (err: unknown) => {
        if (signal.aborted || gen !== r.gen || this.#closed) return;
        if (statusOf(err) === 404) {
          r.containerId = null;
          this.#onExit(ep, r, gen, 'its container was removed outside Portico');
          return;
        }
        // The connection to the engine broke (engine restarting): wait again shortly.
        const t = setTimeout(() => this.#waitExit(ep, r, gen, container, signal), 1000);
        t.unref();
      },
    );
  }

  #onLine(ep: Endpoint, r: Replica, l: ContainerLine): void {
    if (l.ns > r.lastLogNs) r.lastLogNs = l.ns;
    if (l.stream === 'stderr') {
      r.stderrTail.push(l.line);
      if (r.stderrTail.length > STDERR_KEPT) r.stderrTail.shift();
    }
    try {
      this.#hooks.logs.write({ key: ep.key, replica: r.id, stream: l.stream, line: l.line, at: l.at });
    } catch {
      // a failing sink must not stop the follow
    }
  }

  // --- readiness ------------------------------------------------------------------------------

  #scheduleProbe(ep: Endpoint, r: Replica, gen: number, delayMs: number): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      r.timer = null;
      this.#probe(ep, r, gen, delayMs).catch(() => {
        if (gen === r.gen && !this.#closed) this.#scheduleProbe(ep, r, gen, 1000);
      });
    }, delayMs);
    r.timer.unref();
  }

  async #probe(ep: Endpoint, r: Replica, gen: number, lastDelay: number): Promise<void> {
    const stale = () => this.#closed || gen !== r.gen || r.stopRequested || !r.running;
    if (stale()) return;
    if (r.target === null && r.containerId) {
      // No address on the network yet: look again.
      r.target = this.#targetOf(r, await this.#docker.getContainer(r.containerId).inspect());
      if (stale()) return;
    }
    const target = r.target;
    const ok = target !== null && (await tcpProbe(target.slice(0, target.lastIndexOf(':')).replace(/^\[|\]$/g, ''), Number(target.slice(target.lastIndexOf(':') + 1)), 1000));
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
    if (ok && target !== null) {
      r.state = 'ready';
      r.address = target;
      r.readySince = this.#now();
      r.livenessFailures = 0;
      r.reason = undefined;
      r.issue = undefined;
      this.#emit(ep);
      this.#reconcileLater(ep);
      this.#scheduleProbe(ep, r, gen, this.#timing.livenessMs);
      return;
    }
    this.#scheduleProbe(ep, r, gen, Math.min(this.#timing.probeMaxMs, Math.round(lastDelay * 1.5)));
  }

  // --- exits and restarts ---------------------------------------------------------------------

  #onExit(ep: Endpoint, r: Replica, gen: number, what: string): void {
    if (this.#closed || gen !== r.gen || !r.running) return;
    r.running = false;
    if (r.stopRequested) return;
    this.#crashed(ep, r, what);
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
    const stderr = stderrSummary(r.stderrTail);
    const lastLines = stderr.length > 0 ? `; last stderr: ${stderr.join(' | ')}` : '';
    const delay = r.backoffMs;
    r.backoffMs = Math.min(this.#restart.maxMs, r.backoffMs * 2);
    r.reason = `${what}${lastLines}; restarting in ${delay / 1000} s`;
    r.issue = r.startIssue;
    if (r.issue === undefined) {
      const clash = r.network === 'host' && r.stderrTail.some((l) => /EADDRINUSE|address already in use/i.test(l));
      if (clash) {
        r.recreate = true; // its port may have been taken meanwhile: the restart gets another
        r.issue = `a port is already in use on the host (replica ${r.id} ${what}): with host networking the app must listen on $PORT (${r.port})`;
      } else if (r.crashes.length >= this.#restart.crashLoopCount) {
        const span = Math.max(1, Math.round((now - r.crashes[0]!) / 1000));
        r.issue = `crash loop: replica ${r.id} crashed ${r.crashes.length} times in ${span} s, last ${what}${lastLines}`;
      }
    }
    r.stderrTail = [];
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
    for (const r of replicas) ep.replicas.delete(r.id);
    if (!this.#closed) this.#emit(ep);
  }

  /** `docker stop -t grace`, the last output read, then the container removed. */
  async #terminate(r: Replica): Promise<void> {
    if (r.containerId === null) {
      r.watch?.abort();
      return;
    }
    const c = this.#docker.getContainer(r.containerId);
    try {
      await c.stop({ t: this.#grace });
    } catch (err) {
      if (statusOf(err) !== 304 && statusOf(err) !== 404) {
        // Could not stop it gracefully: the forced removal below kills it.
      }
    }
    await Promise.race([r.logsDone, sleep(2000)]);
    r.watch?.abort();
    r.watch = null;
    r.running = false;
    try {
      await c.remove({ force: true, v: true });
    } catch (err) {
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err; // 409: removal already in progress
    }
    r.containerId = null;
  }

  // --- adoption -------------------------------------------------------------------------------

  async #adopt(): Promise<void> {
    const containers = await this.#docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`, LABEL_KEY, LABEL_REPLICA] } });
    for (const c of containers) {
      const labels = c.Labels ?? {};
      const key = labels[LABEL_KEY]!;
      const id = labels[LABEL_REPLICA]!;
      if (this.#endpoints.get(key)?.replicas.has(id)) continue;
      let ep = this.#endpoints.get(key);
      if (!ep) {
        ep = { key, spec: null, nextId: 1, replicas: new Map(), removed: false, runtimeError: undefined, chain: Promise.resolve(), stops: new Set() };
        this.#endpoints.set(key, ep);
      }
      ep.nextId = Math.max(ep.nextId, idNumber(id) + 1);
      const r = this.#replica(id, null, labels[LABEL_SPEC_HASH] ?? '', labels[LABEL_NETWORK] ?? 'bridge');
      r.containerId = c.Id;
      r.port = Number(labels[LABEL_PORT]) || 0;
      // What it printed before now was the previous controller's to collect.
      r.lastLogNs = BigInt(Date.now()) * 1_000_000n;
      ep.replicas.set(id, r);
      const container = this.#docker.getContainer(c.Id);
      if (c.State === 'running') {
        const gen = ++r.gen;
        r.running = true;
        r.startedAt = c.Created * 1000;
        this.#watch(ep, r, gen, container, true);
        try {
          r.target = this.#targetOf(r, await container.inspect());
        } catch {
          // looked up again by the first probe
        }
        this.#scheduleProbe(ep, r, gen, 0);
      } else {
        // Exited while no controller watched it: start it again.
        const e = ep;
        ep.chain = ep.chain.then(() => this.#start(e, r));
      }
    }
    // Ready ones are reported ready at once: a restarted controller must not drop them from routing.
    await Promise.all([...this.#endpoints.values()].flatMap((ep) => [...ep.replicas.values()].map((r) => this.#adoptProbe(ep, r))));
    for (const ep of this.#endpoints.values()) this.#emit(ep);
  }

  async #adoptProbe(ep: Endpoint, r: Replica): Promise<void> {
    if (!r.running || r.target === null) return;
    const i = r.target.lastIndexOf(':');
    if (await tcpProbe(r.target.slice(0, i).replace(/^\[|\]$/g, ''), Number(r.target.slice(i + 1)), 1000)) {
      r.state = 'ready';
      r.address = r.target;
      r.readySince = this.#now();
      this.#scheduleProbe(ep, r, r.gen, this.#timing.livenessMs);
    }
  }

  // --- status ---------------------------------------------------------------------------------

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
}
