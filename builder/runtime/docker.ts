import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type Dockerode from 'dockerode';
import { substituteArgs } from './local/command.ts';
import { pickPort, tcpProbeAddress } from './local/net.ts';
import {
  IMAGE_WSGI_RUNNER,
  LABEL_KEY,
  LABEL_MANAGED,
  LABEL_NETWORK,
  LABEL_PORT,
  LABEL_REPLICA,
  LABEL_SPEC_HASH,
  LABEL_TARGET,
  identityLabels,
} from './docker/labels.ts';
import { followContainerLogs, type ContainerLine } from './docker/logs.ts';
import { followProgress } from './docker/progress.ts';
import { registryHost } from './docker/registry.ts';
import type { EndpointSpec, EndpointStatus, RegistryAuth, Runtime, RuntimeHooks } from './runtime.ts';
import { Supervisor, idNumber, type RestartPolicy, type SupervisedEndpoint, type SupervisedReplica } from './supervisor.ts';

/** How often the docker runtime looks at things (ms). */
export interface DockerTiming {
  /** A ready replica's address is probed this often; 3 failures in a row make it `starting` again. Default 2000. */
  readonly livenessMs: number;
  /** Longest wait between readiness probes of a starting replica. Default 1000. */
  readonly probeMaxMs: number;
  /**
   * A started replica that has not answered for this long gets a reason saying where it was
   * looked for (shown as its endpoint's error; it is still waited for). Default 60000.
   */
  readonly quietStartMs: number;
}

/** Construction options of `DockerRuntime`. */
export interface DockerRuntimeOptions {
  readonly docker: Dockerode;
  /**
   * The target's name, on its containers' `portico.target` label: a runtime adopts only its own
   * (and those made before the label was, which have none). Default `docker`.
   */
  readonly target?: string;
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
  /**
   * Credentials for pulling images the engine does not have from `serveraddress` (the host of
   * `PORTICO_REGISTRY`); images of other registries are pulled without them.
   */
  readonly registryAuth?: RegistryAuth;
  /** Log size kept by the engine per container (`json-file` driver `max-size`, 2 files). Default `10m`. */
  readonly logMaxSize?: string;
  readonly restart?: Partial<RestartPolicy>;
  readonly timing?: Partial<DockerTiming>;
  /** Clock for backoff bookkeeping. Default `Date.now`. */
  readonly now?: () => number;
}

const DEFAULT_TIMING: DockerTiming = { livenessMs: 2000, probeMaxMs: 1000, quietStartMs: 60_000 };
const MiB = 1024 * 1024;

interface Replica extends SupervisedReplica {
  /** The spec it was made from; null for an adopted container until `ensure` names its spec. */
  spec: EndpointSpec | null;
  specHash: string;
  network: string;
  containerId: string | null;
  /** The port the app was told (`PORT`). */
  port: number;
  /** Where it is reached (published once ready). */
  target: string | null;
  /** An endpoint-level problem found while starting (no image, pull refused): the crash's issue. */
  startIssue: string | undefined;
  /** Host networking: its port was taken; the restart makes a new container on another port. */
  recreate: boolean;
  /** Aborts the current run's log follow and exit wait. */
  watch: AbortController | null;
  logsDone: Promise<void> | null;
  lastLogNs: bigint;
}

/** Null spec: an endpoint adopted from running containers and not `ensure`d since. */
type Endpoint = SupervisedEndpoint<Replica, EndpointSpec | null>;

/** The engine's message of a dockerode error. */
function message(err: unknown): string {
  const e = err as { json?: { message?: string } | null; message?: string };
  return (e?.json && typeof e.json === 'object' && typeof e.json.message === 'string' ? e.json.message : e?.message ?? String(err)).trim();
}

const statusOf = (err: unknown) => (err as { statusCode?: number })?.statusCode;

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
 * `portico.spec-hash`, `portico.port`, `portico.network` and `portico.target`, the version's env,
 * `PORT`, `HOST`, the endpoint's command (`$PORT` substituted in list form), and the limits of
 * `spec.resources`: memory max -> `Memory`, memory min -> `MemoryReservation` (valohai.yaml
 * memory is in MiB), cpu max -> `NanoCpus`. With bridge networking (default) a replica is reached
 * at `containerIP:spec.port` and listens on `0.0.0.0`; with host networking it gets a free port in
 * `PORT` and is reached at `host:PORT`. It is `ready` once a TCP connect to that address succeeds.
 *
 * Restarts are this runtime's, not the engine's (`RestartPolicy: no`): an exit is `crashed`, and
 * the same container is started again after 0.5 s doubling to 30 s (reset after 60 s ready); 3
 * crashes within 5 minutes set the endpoint error with the exit status and the last stderr
 * lines, as the local runtime does (both are driven by the same `Supervisor`). So states, backoff
 * and crash-loop errors read the same on every target; the price is that a replica crashing
 * while no controller runs stays down until a controller adopts it (and starts it again).
 *
 * Stop: `beforeStop` first, then `stopping`, `docker stop -t <grace>`, then the container is
 * removed. Output is followed per container (stdout/stderr, engine timestamps) into the log
 * sink. A new `DockerRuntime` on the same engine adopts the labelled containers it finds (until
 * the engine first answers, `stateUnknown()` says why their state is not known):
 * `list()` reports them, `ensure` keeps those of the same spec hash, `remove` deletes them.
 * `close()` stops watching and leaves every container running.
 */
export class DockerRuntime implements Runtime {
  readonly kind = 'docker' as const;
  readonly #docker: Dockerode;
  readonly #target: string;
  readonly #network: string;
  readonly #hostNetwork: boolean;
  readonly #grace: number;
  readonly #host: string;
  readonly #portRange: { readonly min: number; readonly max: number } | undefined;
  readonly #registryAuth: DockerRuntimeOptions['registryAuth'];
  readonly #logMaxSize: string;
  readonly #timing: DockerTiming;
  readonly #sup: Supervisor<Replica, EndpointSpec | null>;
  #adopting: Promise<void> | null = null;
  /** Why the last adoption failed (the engine does not answer); cleared once one succeeds. */
  #unreachable: string | undefined;
  /** Image pulls under way (one per image, shared by the replicas waiting for it). */
  readonly #pulls = new Map<string, Promise<void>>();

  constructor(opts: DockerRuntimeOptions) {
    this.#docker = opts.docker;
    this.#target = opts.target ?? 'docker';
    this.#network = opts.network ?? 'bridge';
    this.#hostNetwork = this.#network === 'host';
    this.#grace = opts.stopGraceSeconds;
    this.#host = opts.host ?? '127.0.0.1';
    this.#portRange = opts.portRange;
    this.#registryAuth = opts.registryAuth;
    this.#logMaxSize = opts.logMaxSize ?? '10m';
    this.#timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.#sup = new Supervisor<Replica, EndpointSpec | null>({
      name: 'docker runtime',
      hooks: opts.hooks,
      restart: opts.restart,
      livenessMs: this.#timing.livenessMs,
      now: opts.now,
      message,
      driver: {
        create: (id, spec) => this.#replica(id, spec, spec.specHash, this.#network),
        isCurrent: (ep, r) => ep.spec === null || (r.specHash === ep.spec.specHash && r.network === this.#network),
        ensured: (ep) => {
          for (const r of ep.replicas.values()) {
            if (ep.spec !== null && r.specHash === ep.spec.specHash) r.spec = ep.spec; // adopted ones learn their spec
          }
        },
        start: (ep, r, gen) => this.#startContainer(ep, r, gen),
        probeStarting: (ep, r, gen, lastDelay, stale) => this.#probeStarting(ep, r, gen, lastDelay, stale),
        onCrash: (r, what, crashLoop) => this.#onCrash(r, what, crashLoop),
        terminate: (r) => this.#terminate(r),
        detach: (r) => {
          r.watch?.abort();
          r.watch = null;
        },
      },
    });
    void this.#ready().catch(() => {}); // adoption starts now; a failure is retried by the next call
  }

  /** Adoption, once; retried by the next call after a failure (engine not reachable yet). */
  #ready(): Promise<void> {
    this.#adopting ??= this.#adopt().then(
      () => {
        this.#unreachable = undefined;
      },
      (err: unknown) => {
        this.#adopting = null;
        this.#unreachable = `docker engine unreachable: ${message(err)}`;
        throw new Error(`docker engine: ${message(err)}`, { cause: err });
      },
    );
    return this.#adopting;
  }

  /**
   * Why the replicas' state cannot be told: the engine has not answered since this runtime
   * started (its containers may well be serving). Once it has, replicas are followed as usual.
   */
  stateUnknown(): string | undefined {
    return this.#sup.closed ? undefined : this.#unreachable;
  }

  async ensure(spec: EndpointSpec): Promise<void> {
    await this.#ready();
    await this.#sup.ensure(spec);
  }

  async remove(key: string): Promise<void> {
    await this.#ready();
    await this.#sup.remove(key);
  }

  async list(): Promise<EndpointStatus[]> {
    try {
      await this.#ready();
    } catch {
      // The engine is not reachable: report what is known (nothing yet); ensure() says why.
    }
    return this.#sup.list();
  }

  onChange(listener: (status: EndpointStatus) => void): () => void {
    return this.#sup.onChange(listener);
  }

  async close(): Promise<void> {
    await this.#ready().catch(() => {});
    await this.#sup.close();
  }

  #replica(id: string, spec: EndpointSpec | null, specHash: string, network: string): Replica {
    return {
      ...this.#sup.fresh(id), spec, specHash, network, containerId: null, port: 0, target: null, startIssue: undefined,
      recreate: false, watch: null, logsDone: null, lastLogNs: 0n,
    };
  }

  // --- starting -------------------------------------------------------------------------------

  #usedPorts(except: Replica): Set<number> {
    const used = new Set<number>();
    for (const ep of this.#sup.endpoints()) {
      for (const r of ep.replicas.values()) if (r !== except && r.port && r.network === 'host') used.add(r.port);
    }
    return used;
  }

  async #startContainer(ep: Endpoint, r: Replica, gen: number): Promise<void> {
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
        this.#sup.emit(ep);
        return;
      }
      if (!spec.image) {
        r.startIssue = `no image was built for endpoint ${spec.endpoint} of version ${spec.version} (the docker target runs images)`;
        this.#sup.crashed(ep, r, 'no image');
        return;
      }
      r.port = this.#hostNetwork ? await pickPort(this.#host, this.#usedPorts(r), this.#portRange) : spec.port;
      if (this.#sup.superseded(r, gen)) return;
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
    if (this.#sup.superseded(r, gen)) return;
    r.running = true;
    r.startedAt = this.#sup.now();
    this.#watch(ep, r, gen, container, false);
    // The run is watched: a failed look at its address (engine restarting) must not end the start
    // (no probe ever, or a second crash of a run that exited meanwhile); the first probe looks again.
    const info = await container.inspect().catch(() => null);
    r.target = this.#targetOf(r, info);
    this.#sup.launched(ep, r, gen);
  }

  /** Where a replica is reached: `host:PORT` (host networking) or its IP on the network. */
  #targetOf(r: Replica, info: Dockerode.ContainerInspectInfo | null): string | null {
    if (r.network === 'host') return `${this.#host}:${r.port}`;
    const nets = info?.NetworkSettings?.Networks ?? {};
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
    else if (cmd.kind === 'exec') Cmd = substituteArgs(cmd.argv, env);
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
        [LABEL_TARGET]: this.#target,
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
    this.#sup.emit(ep);
    let pull = this.#pulls.get(image);
    if (!pull) {
      pull = (async () => {
        const auth = this.#registryAuth;
        const stream = await this.#docker.pull(image, auth && registryHost(image) === auth.serveraddress ? { authconfig: { ...auth } } : {});
        await followProgress(stream, () => {});
      })().finally(() => this.#pulls.delete(image));
      this.#pulls.set(image, pull);
    }
    pull.then(
      () => {
        if (!this.#sup.superseded(r, gen)) this.#sup.queueStart(ep, r);
      },
      (err: unknown) => {
        if (this.#sup.superseded(r, gen)) return;
        r.startIssue = `image ${image} is not on the docker engine and cannot be pulled: ${message(err)}`;
        this.#sup.crashed(ep, r, `image ${image} is missing`);
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
        if (signal.aborted || gen !== r.gen || this.#sup.closed) return;
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
        this.#sup.exited(ep, r, gen, what);
      },
      (err: unknown) => {
        if (signal.aborted || gen !== r.gen || this.#sup.closed) return;
        if (statusOf(err) === 404) {
          r.containerId = null;
          this.#sup.exited(ep, r, gen, 'its container was removed outside Portico');
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
    this.#sup.output(ep, r, l.stream, l.line, l.at);
  }

  // --- readiness ------------------------------------------------------------------------------

  async #probeStarting(ep: Endpoint, r: Replica, gen: number, lastDelay: number, stale: () => boolean): Promise<void> {
    if (r.target === null && r.containerId) {
      // No address on the network yet: look again (kept only if this run is still the current one).
      const target = this.#targetOf(r, await this.#docker.getContainer(r.containerId).inspect());
      if (stale()) return;
      r.target = target;
    }
    const target = r.target;
    const ok = target !== null && (await tcpProbeAddress(target, 1000));
    if (stale()) return;
    if (ok && target !== null) {
      this.#sup.ready(ep, r, gen, target);
      return;
    }
    // An app that listens elsewhere (another port, or 127.0.0.1 inside its container) would
    // otherwise stay `starting` for good with no word of why.
    if (r.startedAt !== undefined && this.#sup.now() - r.startedAt >= this.#timing.quietStartMs) {
      const listen = this.#hostNetwork ? `$PORT (${r.port})` : `port ${r.port} on 0.0.0.0, not 127.0.0.1`;
      const why = `replica ${r.id} has not answered on ${target ?? 'its address'} for ${Math.round(this.#timing.quietStartMs / 1000)} s since it started: the app must listen on ${listen} (a slow start, such as a large model loading, is still waited for)`;
      if (r.issue !== why) {
        r.reason = why;
        r.issue = why;
        this.#sup.emit(ep);
      }
    }
    this.#sup.scheduleProbe(ep, r, gen, Math.min(this.#timing.probeMaxMs, Math.round(lastDelay * 1.5)));
  }

  // --- crashes and stopping -------------------------------------------------------------------

  #onCrash(r: Replica, what: string, crashLoop: string | undefined): string | undefined {
    if (r.startIssue !== undefined) return r.startIssue;
    const clash = r.network === 'host' && r.stderrTail.some((l) => /EADDRINUSE|address already in use/i.test(l));
    if (clash) {
      r.recreate = true; // its port may have been taken meanwhile: the restart gets another
      return `a port is already in use on the host (replica ${r.id} ${what}): with host networking the app must listen on $PORT (${r.port})`;
    }
    return crashLoop;
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
      // Another target's on the same engine: not ours to report, keep or remove.
      if (labels[LABEL_TARGET] !== undefined && labels[LABEL_TARGET] !== this.#target) continue;
      const key = labels[LABEL_KEY]!;
      const id = labels[LABEL_REPLICA]!;
      const ep = this.#sup.endpoint(key, null);
      if (ep.replicas.has(id)) continue;
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
        this.#sup.scheduleProbe(ep, r, gen, 0);
      } else {
        // Exited while no controller watched it: start it again.
        this.#sup.queueStart(ep, r);
      }
    }
    // Ready ones are reported ready at once: a restarted controller must not drop them from routing.
    await Promise.all([...this.#sup.endpoints()].flatMap((ep) => [...ep.replicas.values()].map((r) => this.#adoptProbe(ep, r))));
    for (const ep of this.#sup.endpoints()) this.#sup.emit(ep);
  }

  async #adoptProbe(ep: Endpoint, r: Replica): Promise<void> {
    if (!r.running || r.target === null) return;
    const gen = r.gen;
    // Not if it exited during the probe (its crash is reported and its restart scheduled).
    if ((await tcpProbeAddress(r.target, 1000)) && r.running && gen === r.gen) {
      r.state = 'ready';
      r.address = r.target;
      r.readySince = this.#sup.now();
      this.#sup.scheduleProbe(ep, r, r.gen, this.#timing.livenessMs);
    }
  }
}
