import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Dockerode from 'dockerode';
import t, { type Test } from 'tap';
import { buildEndpointImage } from '../../../builder/build/image.ts';
import { DockerRuntime, type DockerRuntimeOptions } from '../../../builder/runtime/docker.ts';
import { LogDemuxer, parseTimestamped, sinceParam } from '../../../builder/runtime/docker/logs.ts';
import type { EndpointSpec, EndpointStatus } from '../../../builder/runtime/runtime.ts';
import { importBusybox, importNode } from '../../helpers/base-image.ts';
import { startDockerd, startFakeRegistry } from '../../helpers/dockerd.ts';
import { freePort, waitFor } from '../../helpers/poll.ts';
import { call, client, deployment, endpoint, gateway } from '../../gateway/fixtures.ts';
import { http, recordingHooks, type LogEntry } from './harness.ts';

const EXAMPLE = resolve(import.meta.dirname, '../../../examples/node-sentiment');
const dockerd = await startDockerd();
t.teardown(() => dockerd.stop());
const docker = dockerd.docker;
await importBusybox(docker, 'portico-test/busybox:1');
await importNode(docker, 'portico-test/node:24');

// The example, built as the docker target builds it (on the assembled Node base image).
const tmp = mkdtempSync(join(tmpdir(), 'portico-docker-rt-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
cpSync(EXAMPLE, join(tmp, 'code'), { recursive: true });
const sentiment = await buildEndpointImage({
  docker,
  spec: { owner: 'acme', project: 'nlp', deployment: 'web', version: 'v1', endpoint: 'sentiment', baseImage: 'portico-test/node:24', command: { kind: 'shell', command: 'node server.js' }, port: 8000 },
  codeDir: join(tmp, 'code'),
  log: () => {},
  timeoutMs: 120_000,
});

let counter = 0;
function spec(over: Partial<EndpointSpec> = {}): EndpointSpec {
  const version = over.version ?? `v${++counter}`;
  const key = `acme/nlp/web/${version}/sentiment`;
  return {
    key,
    owner: 'acme',
    project: 'nlp',
    deployment: 'web',
    version,
    endpoint: 'sentiment',
    replicas: 1,
    codeDir: '',
    image: sentiment.image,
    command: { kind: 'shell', command: 'node server.js' },
    port: 8000,
    env: { VH_DEFAULT_PREFIX: `/${key}`, MODEL_NAME: 'sentiment' },
    specHash: 'h1',
    ...over,
  };
}

interface Harness {
  runtime: DockerRuntime;
  readonly events: string[];
  readonly logs: LogEntry[];
  readonly statuses: EndpointStatus[];
  beforeStop: (key: string, ids: readonly string[]) => Promise<void>;
  status(key: string): Promise<EndpointStatus | undefined>;
  waitReady(key: string, n: number, timeoutMs?: number): Promise<EndpointStatus>;
  /** Closes the runtime and starts a new one on the same engine (a controller restart). */
  reopen(): Promise<DockerRuntime>;
}

async function managedContainers(key?: string) {
  return docker.listContainers({ all: true, filters: { label: ['portico.managed=true', ...(key ? [`portico.key=${key}`] : [])] } });
}

/**
 * A DockerRuntime for one test (host networking unless told otherwise). Teardown removes every
 * endpoint, closes the runtime and fails the test if a container is left behind.
 */
function startRuntime(t: Test, over: Partial<DockerRuntimeOptions> = {}): Harness {
  const events: string[] = [];
  const logs: LogEntry[] = [];
  const statuses: EndpointStatus[] = [];
  const make = () => {
    const rt = new DockerRuntime({
      docker,
      network: 'host',
      stopGraceSeconds: 2,
      restart: { initialMs: 100 },
      ...over,
      hooks: recordingHooks({ events, logs, logEvents: false }, (key, ids) => h.beforeStop(key, ids)),
    });
    rt.onChange((s) => statuses.push(s));
    return rt;
  };
  const h: Harness = {
    runtime: make(),
    events,
    logs,
    statuses,
    beforeStop: async () => {},
    async status(key) {
      return (await h.runtime.list()).find((s) => s.key === key);
    },
    async waitReady(key, n, timeoutMs = 20_000) {
      return waitFor(async () => {
        const s = await h.status(key);
        return s && s.replicas.length === n && s.replicas.every((r) => r.state === 'ready') ? s : undefined;
      }, { timeoutMs, what: `${n} ready replica(s) of ${key}` });
    },
    async reopen() {
      await h.runtime.close();
      h.runtime = make();
      return h.runtime;
    },
  };
  t.teardown(async () => {
    for (const s of await h.runtime.list()) await h.runtime.remove(s.key);
    await h.runtime.close();
    const left = await managedContainers();
    for (const c of left) await docker.getContainer(c.Id).remove({ force: true });
    if (left.length > 0) throw new Error(`containers left behind: ${left.map((c) => c.Names.join(',')).join(' ')}`);
  });
  return h;
}

async function predict(address: string, text: string): Promise<{ score: number; label: string; prefix: string }> {
  const res = await http('POST', `http://${address}/`, JSON.stringify({ text }), { 'content-type': 'application/json' });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body}`);
  return JSON.parse(res.body) as { score: number; label: string; prefix: string };
}

t.test('log frames: split anywhere, lines per stream, engine timestamps', async (t) => {
  const frame = (type: number, text: string) => {
    const payload = Buffer.from(text);
    const head = Buffer.alloc(8);
    head[0] = type;
    head.writeUInt32BE(payload.length, 4);
    return Buffer.concat([head, payload]);
  };
  const got: string[] = [];
  const d = new LogDemuxer((stream, text) => got.push(`${stream}:${text}`));
  const bytes = Buffer.concat([frame(1, 'hello wo'), frame(2, 'oops\r\n'), frame(1, 'rld\nsecond\n'), frame(1, 'partial')]);
  for (let i = 0; i < bytes.length; i += 3) d.push(bytes.subarray(i, i + 3)); // split mid-header and mid-payload
  t.same(got, ['stderr:oops', 'stdout:hello world', 'stdout:second']);
  d.end();
  t.same(got.at(-1), 'stdout:partial', 'a last line without newline is handed on at the end');

  const p = parseTimestamped('2026-11-25T09:40:54.123456789Z model loaded');
  t.same(p, { line: 'model loaded', at: Date.parse('2026-11-25T09:40:54.123Z'), ns: 1795599654123456789n });
  t.equal(parseTimestamped('no timestamp'), null);
  t.equal(sinceParam(1795599654123456789n), '1795599654.123456789');
  t.equal(sinceParam(1795599654000000001n), '1795599654.000000001');
});

t.test('runs 2 replicas with host networking: labelled containers, HTTP, logs', async (t) => {
  const h = startRuntime(t);
  const s = spec({ replicas: 2 });
  await h.runtime.ensure(s);
  const status = await h.waitReady(s.key, 2);
  const addresses = status.replicas.map((r) => r.address!);
  t.same(status.replicas.map((r) => r.id), ['r1', 'r2']);
  t.equal(new Set(addresses).size, 2, 'each replica has its own address');
  for (const a of addresses) t.match(a, /^127\.0\.0\.1:\d+$/);
  for (const a of addresses) {
    const out = await predict(a, 'good');
    t.equal(out.label, 'positive');
    t.type(out.score, 'number');
    t.equal(out.prefix, `/${s.key}`, 'the version env reaches the app');
  }

  const containers = await managedContainers(s.key);
  t.equal(containers.length, 2);
  for (const c of containers) {
    const info = await docker.getContainer(c.Id).inspect();
    const replica = info.Config.Labels['portico.replica']!;
    const address = status.replicas.find((r) => r.id === replica)!.address!;
    const port = address.split(':')[1];
    t.match(info.Config.Labels, {
      'portico.managed': 'true', 'portico.owner': 'acme', 'portico.project': 'nlp', 'portico.deployment': 'web',
      'portico.version': s.version, 'portico.endpoint': 'sentiment', 'portico.key': s.key, 'portico.spec-hash': 'h1', 'portico.port': port,
    });
    t.ok(info.Config.Env.includes(`PORT=${port}`) && info.Config.Env.includes('HOST=127.0.0.1') && info.Config.Env.includes('MODEL_NAME=sentiment'), 'env: the version env plus PORT and HOST');
    t.equal(info.HostConfig.NetworkMode, 'host');
    t.equal(info.HostConfig.RestartPolicy?.Name, 'no', 'restarts are the runtime\'s');
    t.equal(info.Config.Image, sentiment.image);
  }

  // Output of each replica reaches the sink, per replica and stream, with the engine's time.
  await waitFor(() => h.logs.filter((l) => /^sentiment model listening on 127\.0\.0\.1:\d+$/.test(l.line)).length === 2, { what: 'both start lines' });
  await waitFor(() => h.logs.some((l) => l.replica === 'r1' && l.stream === 'stdout' && l.line.includes('"vh_metadata"')), { what: 'a metrics line of r1' });
  const line = h.logs.find((l) => l.line.includes('"vh_metadata"'))!;
  t.equal(line.key, s.key);
  t.ok(Math.abs(line.at - Date.now()) < 60_000, 'timestamped by the engine');
});

t.test('resource limits from spec.resources are set on the container', async (t) => {
  const h = startRuntime(t);
  const s = spec({ resources: { memory: { min: 64, max: 256 }, cpu: { max: 0.5 } } });
  await h.runtime.ensure(s);
  await h.waitReady(s.key, 1);
  const [c] = await managedContainers(s.key);
  const info = await docker.getContainer(c!.Id).inspect();
  t.equal(info.HostConfig.Memory, 256 * 1024 * 1024, 'memory max (MiB) is the memory limit');
  t.equal(info.HostConfig.MemoryReservation, 64 * 1024 * 1024, 'memory min is the reservation');
  t.equal(info.HostConfig.NanoCpus, 500_000_000, 'cpu max is NanoCpus');
});

t.test('a crashing replica is restarted, then a crash loop is the endpoint error', async (t) => {
  const h = startRuntime(t);
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'shell', command: 'echo booting; echo "Error: model file missing" >&2; exit 3' } });
  await h.runtime.ensure(s);
  const status = await waitFor(async () => {
    const st = await h.status(s.key);
    if (st?.error?.startsWith('crash loop')) return st;
    // Thrown, so that a timeout says where the replica got stuck (a full run once timed out here).
    throw new Error(`last status ${JSON.stringify(st)}; states so far ${h.statuses.filter((x) => x.key === s.key).map((x) => x.replicas[0]?.state).join(' ')}`);
  }, { timeoutMs: 20_000, what: 'the crash loop error' });
  t.match(status.error, /^crash loop: replica r1 crashed 3 times in \d+ s, last exited with code 3; last stderr: Error: model file missing$/);
  const r = status.replicas[0]!;
  t.ok(r.restarts >= 2, 'it was restarted');
  t.ok(['crashed', 'starting'].includes(r.state));
  t.equal((await managedContainers(s.key)).length, 1, 'the same container is started again');
  t.ok(h.statuses.some((x) => x.key === s.key && x.replicas[0]?.state === 'crashed' && /exited with code 3/.test(x.replicas[0]?.reason ?? '')), 'crashed with the exit status');
  t.ok(h.logs.filter((l) => l.stream === 'stderr' && l.line === 'Error: model file missing').length >= 3, 'the output of every run is logged once');
  t.equal(h.logs.filter((l) => l.line === 'booting').length, h.logs.filter((l) => l.line === 'Error: model file missing').length, 'no line is repeated across restarts');
});

/** `d`, whose containers have the methods `patch` returns in place of their own (it gets the real container). */
function patchContainers(d: Dockerode, patch: (c: Dockerode.Container, id: string) => Partial<Dockerode.Container>): Dockerode {
  return new Proxy(d, {
    get(target, prop) {
      if (prop === 'getContainer') {
        return (id: string) => {
          const c = target.getContainer(id);
          return Object.assign(c, patch(c, id));
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/**
 * `d`, except that the first inspect of a container after each of its first `starts` starts
 * answers `ms` late, or (`fail`) waits `ms` and then fails as it does while the engine restarts.
 */
function heldInspectAfterStart(d: Dockerode, ms: number, opts: { fail?: boolean; starts?: number } = {}): Dockerode {
  const held = new Set<string>();
  let left = opts.starts ?? Infinity;
  return patchContainers(d, (c, id) => {
    const start = c.start.bind(c) as () => Promise<unknown>;
    const inspect = c.inspect.bind(c) as () => Promise<Dockerode.ContainerInspectInfo>;
    return {
      start: async () => {
        const r = await start();
        if (left > 0) {
          left--;
          held.add(id);
        }
        return r;
      },
      inspect: async () => {
        if (!held.delete(id)) return inspect();
        await new Promise((resolve) => setTimeout(resolve, ms));
        if (opts.fail) throw new Error('connect ECONNREFUSED /var/run/docker.sock');
        return inspect();
      },
    } as Partial<Dockerode.Container>;
  });
}

t.test('a run that exits while its start is still being looked at is restarted all the same (regression: a full run hung here)', async (t) => {
  // The exit is seen and its restart scheduled (2 s later) before the start's own inspect returns
  // (1.5 s); the late start then scheduled a probe of the finished run in the restart's place.
  const h = startRuntime(t, { docker: heldInspectAfterStart(docker, 1500), restart: { initialMs: 2000 } });
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'shell', command: 'echo "Error: model file missing" >&2; exit 3' } });
  await h.runtime.ensure(s);
  const status = await waitFor(async () => {
    const st = await h.status(s.key);
    if (st?.error?.startsWith('crash loop')) return st;
    throw new Error(`last status ${JSON.stringify(st)}`);
  }, { timeoutMs: 20_000, what: 'the crash loop error' });
  t.ok(status.replicas[0]!.restarts >= 2, `restarted each time (${status.replicas[0]!.restarts})`);
});

t.test('a run whose start the engine fails to inspect is probed all the same', async (t) => {
  // The container runs and is watched; only the look at its address failed. That failure was
  // swallowed with the run already marked running: no probe was ever scheduled, so it stayed
  // 'starting' for good while serving.
  const h = startRuntime(t, { docker: heldInspectAfterStart(docker, 0, { fail: true, starts: 1 }) });
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['httpd', '-f', '-p', '127.0.0.1:$PORT', '-h', '/etc'] } });
  await h.runtime.ensure(s);
  const st = await waitFor(async () => {
    const x = await h.status(s.key);
    if (x?.replicas[0]?.state === 'ready') return x;
    throw new Error(`last status ${JSON.stringify(x)}`);
  }, { timeoutMs: 10_000, what: 'the replica ready' });
  t.equal((await http('GET', `http://${st.replicas[0]!.address}/passwd`)).status, 200);
  t.equal(st.replicas[0]!.restarts, 0, 'not restarted');
});

t.test('a run that exits while its start fails to be inspected is one crash, not two', async (t) => {
  // The exit is seen (crash 1, restart in 2 s) before the start's inspect fails (1.5 s); that
  // failure was then a second crash of the same run ('cannot start: ...'), restart put off.
  const h = startRuntime(t, { docker: heldInspectAfterStart(docker, 1500, { fail: true, starts: 1 }), restart: { initialMs: 2000, crashLoopCount: 10 } });
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'shell', command: 'echo "Error: model file missing" >&2; exit 3' } });
  await h.runtime.ensure(s);
  await waitFor(() => h.statuses.some((x) => x.key === s.key && (x.replicas[0]?.restarts ?? 0) >= 1), { timeoutMs: 10_000, what: 'the first restart' });
  // What was reported of the first run (before its restart).
  const reasons = h.statuses.filter((x) => x.key === s.key && x.replicas[0]?.state === 'crashed' && x.replicas[0].restarts === 0).map((x) => x.replicas[0]!.reason);
  t.same([...new Set(reasons)], ['exited with code 3; last stderr: Error: model file missing; restarting in 2 s'], 'crashed once, as it exited');
});

t.test('a replica whose container the engine fails to remove stays stopping with the reason, and goes on a later try', async (t) => {
  // The first removal is refused as an engine error would be; the stop ran unawaited, so its
  // rejection was unhandled (the process's end) and the container was forgotten, running.
  let refused = 0;
  const flaky = patchContainers(docker, (c) => {
    const remove = c.remove.bind(c) as (opts: object) => Promise<unknown>;
    return {
      remove: async (opts: object) => {
        if (refused++ === 0) throw Object.assign(new Error('driver overlay2 failed to remove root filesystem'), { statusCode: 500 });
        return remove(opts);
      },
    } as Partial<Dockerode.Container>;
  });
  const h = startRuntime(t, { docker: flaky });
  const s = spec({ replicas: 2 });
  await h.runtime.ensure(s);
  await h.waitReady(s.key, 2);
  await h.runtime.ensure({ ...s, replicas: 1 });
  await waitFor(() => h.statuses.some((x) => x.key === s.key && x.replicas.some((r) => r.id === 'r2' && r.state === 'stopping' && /^could not be stopped: driver overlay2 failed to remove root filesystem; trying again in 2 s$/.test(r.reason ?? ''))), { what: 'the refusal in its status' });
  await waitFor(async () => (await managedContainers(s.key)).length === 1, { what: 'its container removed on the next try' });
  t.same((await h.status(s.key))?.replicas.map((r) => [r.id, r.state]), [['r1', 'ready']]);
  t.equal(refused, 2, 'one refusal, then the removal that went through');
});

t.test('a replica the engine never lets go is given up after 5 tries: the removal of its endpoint returns, the reason says so', async (t) => {
  let refused = 0;
  const stuck = patchContainers(docker, () => ({
    remove: async () => {
      refused++;
      throw Object.assign(new Error('driver overlay2 failed to remove root filesystem'), { statusCode: 500 });
    },
  }) as Partial<Dockerode.Container>);
  const h = startRuntime(t, { docker: stuck });
  const s = spec();
  t.teardown(async () => {
    for (const c of await managedContainers(s.key)) await docker.getContainer(c.Id).remove({ force: true });
  });
  await h.runtime.ensure(s);
  await h.waitReady(s.key, 1);
  await h.runtime.remove(s.key);
  t.equal(refused, 5, 'tried 5 times');
  t.ok(h.statuses.some((x) => x.key === s.key && /^could not be stopped: driver overlay2 failed to remove root filesystem; gave up after 5 tries/.test(x.replicas[0]?.reason ?? '')), 'the reason says it was given up');
  t.equal((await managedContainers(s.key)).length, 1, 'its container is still there, for the next adoption');
});

t.test('scaling down calls beforeStop before the replica is stopped, then removes it', async (t) => {
  const h = startRuntime(t);
  const s = spec({ replicas: 2 });
  await h.runtime.ensure(s);
  await h.waitReady(s.key, 2);
  let runningAtHook: boolean | undefined;
  h.beforeStop = async (_key, ids) => {
    const [c] = await managedContainers(s.key).then((cs) => cs.filter((x) => x.Labels['portico.replica'] === ids[0]));
    runningAtHook = c?.State === 'running';
  };
  await h.runtime.ensure({ ...s, replicas: 1 });
  await waitFor(async () => (await managedContainers(s.key)).length === 1, { what: 'one container left' });
  t.same(h.events, ['beforeStop:r2'], 'beforeStop named the replica going away');
  t.equal(runningAtHook, true, 'the replica was still running while beforeStop ran');
  const st = await h.status(s.key);
  t.same(st?.replicas.map((r) => [r.id, r.state]), [['r1', 'ready']]);
  t.ok(h.statuses.some((x) => x.key === s.key && x.replicas.some((r) => r.id === 'r2' && r.state === 'stopping')), 'it went through stopping');
});

t.test('a new runtime adopts running containers; remove deletes them', async (t) => {
  const h = startRuntime(t);
  const s = spec({ replicas: 2 });
  const gone = spec(); // a version deleted while no controller ran
  await h.runtime.ensure(s);
  await h.runtime.ensure(gone);
  const before = await h.waitReady(s.key, 2);
  await h.waitReady(gone.key, 1);
  const ids = (await managedContainers(s.key)).map((c) => c.Id).sort();

  const rt = await h.reopen();
  t.equal((await managedContainers()).filter((c) => c.State === 'running').length, 3, 'close() leaves containers running');
  const listed = await rt.list();
  const adopted = listed.find((x) => x.key === s.key)!;
  t.same(adopted.replicas.map((r) => [r.id, r.state, r.address]), before.replicas.map((r) => [r.id, 'ready', r.address]), 'list() reports them ready at once, same addresses');
  t.ok(listed.some((x) => x.key === gone.key), 'every labelled container is reported');

  // Their output reaches the new runtime's sink.
  h.logs.length = 0;
  await predict(adopted.replicas[0]!.address!, 'bad');
  await waitFor(() => h.logs.some((l) => l.key === s.key && l.line.includes('"vh_metadata"')), { what: 'a line from an adopted replica' });

  await rt.ensure(s);
  t.same((await managedContainers(s.key)).map((c) => c.Id).sort(), ids, 'ensure keeps the matching containers');
  t.same((await h.waitReady(s.key, 2)).replicas.map((r) => r.id), ['r1', 'r2']);

  await rt.remove(gone.key);
  t.equal((await managedContainers(gone.key)).length, 0, 'remove() deletes an adopted endpoint\'s containers');
  t.same(h.events, ['beforeStop:r1']);

  // A spec change replaces them: new containers, old ones stopped once the new are ready.
  await rt.ensure({ ...s, specHash: 'h2' });
  const replaced = await waitFor(async () => {
    const cs = await managedContainers(s.key);
    return cs.length === 2 && cs.every((c) => c.Labels['portico.spec-hash'] === 'h2') ? cs : undefined;
  }, { timeoutMs: 20_000, what: 'the replacement' });
  t.equal(replaced.filter((c) => ids.includes(c.Id)).length, 0);
  t.same((await h.waitReady(s.key, 2)).replicas.map((r) => r.id), ['r3', 'r4']);
  await rt.remove(s.key);
  t.equal((await managedContainers()).length, 0, 'nothing left');
});

t.test('two docker targets on one engine: each adopts (so reports and removes) its own containers only', async (t) => {
  const make = (target: string) => new DockerRuntime({ docker, network: 'host', stopGraceSeconds: 1, target, restart: { initialMs: 100 }, hooks: { beforeStop: async () => {}, logs: { write() {} } } });
  const rts = { a: make('a'), b: make('b') };
  t.teardown(async () => {
    for (const rt of Object.values(rts)) {
      for (const s of await rt.list()) await rt.remove(s.key);
      await rt.close();
    }
  });
  const sa = spec();
  const sb = spec();
  await rts.a.ensure(sa);
  await rts.b.ensure(sb);
  const ready = (rt: DockerRuntime, key: string) => waitFor(async () => (await rt.list()).find((s) => s.key === key)?.replicas[0]?.state === 'ready', { timeoutMs: 20_000, what: `${key} ready` });
  await ready(rts.a, sa.key);
  await ready(rts.b, sb.key);
  const ids = (await managedContainers()).map((c) => c.Id).sort();

  // Both controllers' targets restart: each finds its own endpoint, and only that one.
  for (const name of ['a', 'b'] as const) {
    await rts[name].close();
    rts[name] = make(name);
  }
  t.same((await rts.a.list()).map((s) => s.key), [sa.key], 'target a adopts its own container only');
  t.same((await rts.b.list()).map((s) => s.key), [sb.key], 'target b adopts its own container only');
  t.same((await managedContainers()).map((c) => c.Id).sort(), ids, 'the containers are the same ones');
  t.same((await managedContainers(sb.key))[0]?.Labels['portico.target'], 'b', 'a container names its target');
});

t.test('an image the engine does not have and cannot pull is the endpoint error', async (t) => {
  const h = startRuntime(t);
  const s = spec({ image: 'portico-test/absent:1' });
  await h.runtime.ensure(s);
  const st = await waitFor(async () => {
    const x = await h.status(s.key);
    return x?.error ? x : undefined;
  }, { what: 'the endpoint error' });
  t.match(st.error, /^image portico-test\/absent:1 is not on the docker engine and cannot be pulled: /);
  t.equal(st.replicas[0]?.state, 'crashed');
  t.equal((await managedContainers(s.key)).length, 0);
});

t.test('bridge networking: each replica at its own IP on the declared port', async (t) => {
  await docker.createNetwork({ Name: 'portico-rt-test', Driver: 'bridge' });
  t.teardown(() => docker.getNetwork('portico-rt-test').remove());
  const h = startRuntime(t, { network: 'portico-rt-test' });
  const s = spec({ replicas: 2 });
  await h.runtime.ensure(s);
  const st = await h.waitReady(s.key, 2);
  const addresses = st.replicas.map((r) => r.address!);
  for (const a of addresses) t.match(a, /^\d+\.\d+\.\d+\.\d+:8000$/);
  t.equal(new Set(addresses).size, 2);
  t.equal((await predict(addresses[1]!, 'good')).label, 'positive');
  const [c] = await managedContainers(s.key);
  const info = await docker.getContainer(c!.Id).inspect();
  t.ok(info.Config.Env.includes('PORT=8000') && info.Config.Env.includes('HOST=0.0.0.0'), 'the app listens on its declared port on all interfaces');
});

t.test('exec form: $PORT and $VH_DEFAULT_PREFIX are substituted in the command', async (t) => {
  const h = startRuntime(t);
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['httpd', '-f', '-p', '127.0.0.1:$PORT', '-h', '/etc', '-r', '$VH_DEFAULT_PREFIX'] } });
  await h.runtime.ensure(s);
  const st = await h.waitReady(s.key, 1);
  const res = await http('GET', `http://${st.replicas[0]!.address}/passwd`);
  t.equal(res.status, 200);
  t.match(res.body, /^root:x:0:0:/);
  const [c] = await managedContainers(s.key);
  const info = await docker.getContainer(c!.Id).inspect();
  t.same(info.Config.Cmd, ['httpd', '-f', '-p', `${st.replicas[0]!.address}`, '-h', '/etc', '-r', `/${s.key}`]);
});

t.test('with host networking an app ignoring $PORT is a clear endpoint error', async (t) => {
  const h = startRuntime(t);
  const fixed = await freePort();
  const s = spec({
    replicas: 2,
    image: 'portico-test/busybox:1',
    command: { kind: 'exec', argv: ['sh', '-c', `httpd -f -p 127.0.0.1:${fixed} -h /etc || { echo "bind: Address already in use" >&2; exit 1; }`] },
  });
  await h.runtime.ensure(s);
  const st = await waitFor(async () => {
    const x = await h.status(s.key);
    return x?.error?.includes('port is already in use') ? x : undefined;
  }, { timeoutMs: 20_000, what: 'the port clash error' });
  t.match(st.error, /a port is already in use on the host \(replica r\d exited with code 1\): with host networking the app must listen on \$PORT \(\d+\)/);
  t.notOk(st.replicas.some((r) => r.state === 'ready'), 'an address nobody was assigned is never published');
});

t.test('a replica that has not answered for a while says where it is looked for, and is still waited for', async (t) => {
  const h = startRuntime(t, { timing: { quietStartMs: 1000 } });
  const s = spec({
    replicas: 1,
    image: 'portico-test/busybox:1',
    // Listens only once a file appears (a model still loading), on $PORT.
    command: { kind: 'exec', argv: ['sh', '-c', 'while [ ! -e /tmp/loaded ]; do sleep 0.1; done; exec httpd -f -p "$PORT" -h /etc'] },
  });
  await h.runtime.ensure(s);
  const quiet = await waitFor(async () => {
    const x = await h.status(s.key);
    return x?.error?.includes('has not answered') ? x : undefined;
  }, { timeoutMs: 20_000, what: 'the quiet start to be reported' });
  t.match(quiet.error, /^replica r\d has not answered on 127\.0\.0\.1:(\d+) for 1 s since it started: the app must listen on \$PORT \(\1\) \(a slow start, such as a large model loading, is still waited for\)$/);
  t.equal(quiet.replicas[0]?.state, 'starting', 'still starting');
  const [c] = await managedContainers(s.key);
  const exec = await docker.getContainer(c!.Id).exec({ Cmd: ['touch', '/tmp/loaded'] });
  await exec.start({});
  const ready = await h.waitReady(s.key, 1);
  t.equal(ready.error, undefined, 'once it answers, the error is gone');
});

t.test('a replica ignoring SIGTERM is killed after the grace period and removed', async (t) => {
  const h = startRuntime(t, { stopGraceSeconds: 1 });
  const s = spec({ image: 'portico-test/busybox:1', command: { kind: 'shell', command: "trap '' TERM; httpd -p 127.0.0.1:$PORT -h /etc; while true; do sleep 1; done" } });
  await h.runtime.ensure(s);
  await h.waitReady(s.key, 1);
  const started = Date.now();
  await h.runtime.remove(s.key);
  const took = Date.now() - started;
  t.ok(took >= 900 && took < 15_000, `stopped after the grace period (${took} ms)`);
  t.equal((await managedContainers(s.key)).length, 0, 'its container is removed');
  t.same(h.events, ['beforeStop:r1']);
  t.same(h.statuses.at(-1), { key: s.key, replicas: [] }, 'the endpoint is forgotten');
});

t.test('an image the engine lacks is pulled from the registry, then runs', async (t) => {
  const registry = await startFakeRegistry();
  t.teardown(() => registry.close());
  const code = join(tmp, 'httpd');
  cpSync(join(EXAMPLE, 'model'), join(code, 'model'), { recursive: true });
  const built = await buildEndpointImage({
    docker,
    spec: { owner: 'acme', project: 'nlp', deployment: 'web', version: 'pulled', endpoint: 'files', baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['httpd', '-f', '-p', '127.0.0.1:$PORT', '-h', '/valohai/repository'] }, port: 8000 },
    codeDir: code, registry: registry.host, log: () => {}, timeoutMs: 60_000,
  });
  await docker.getImage(built.image).remove();
  const h = startRuntime(t);
  const s = spec({ image: built.image, command: { kind: 'exec', argv: ['httpd', '-f', '-p', '127.0.0.1:$PORT', '-h', '/valohai/repository'] } });
  await h.runtime.ensure(s);
  const st = await h.waitReady(s.key, 1);
  const res = await http('GET', `http://${st.replicas[0]!.address}/model/weights.json`);
  t.equal(res.status, 200, 'the pulled image serves its files');
  t.ok(h.statuses.some((x) => x.key === s.key && x.replicas[0]?.reason === `pulling image ${built.image}`), 'the replica said it was pulling');
  t.ok(registry.requests.some((r) => r.startsWith('GET /v2/acme-nlp-web/manifests/')), 'from the registry');
});

t.test('a private registry: its images are pulled with the credentials, other registries never see them', async (t) => {
  const auth = { username: 'puller', password: 'pull-token' };
  const privateRegistry = await startFakeRegistry({ auth });
  const openRegistry = await startFakeRegistry();
  t.teardown(() => Promise.all([privateRegistry.close(), openRegistry.close()]));
  const code = join(tmp, 'httpd');
  cpSync(join(EXAMPLE, 'model'), join(code, 'model'), { recursive: true });
  const argv = ['httpd', '-f', '-p', '127.0.0.1:$PORT', '-h', '/valohai/repository'];
  const build = async (registry: string, version: string, registryAuth?: typeof auth) => {
    const built = await buildEndpointImage({
      docker,
      spec: { owner: 'acme', project: 'nlp', deployment: 'web', version, endpoint: 'files', baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv }, port: 8000 },
      codeDir: code, registry, log: () => {}, timeoutMs: 60_000, ...(registryAuth ? { registryAuth } : {}),
    });
    await docker.getImage(built.image).remove();
    return built.image;
  };
  const privateImage = await build(privateRegistry.host, 'private', auth);
  const openImage = await build(openRegistry.host, 'open');
  openRegistry.authorizations.length = 0;
  privateRegistry.authorizations.length = 0;

  const h = startRuntime(t, { registryAuth: { ...auth, serveraddress: privateRegistry.host } });
  for (const image of [privateImage, openImage]) {
    const s = spec({ image, command: { kind: 'exec', argv } });
    await h.runtime.ensure(s);
    const st = await h.waitReady(s.key, 1);
    t.equal((await http('GET', `http://${st.replicas[0]!.address}/model/weights.json`)).status, 200, `${image} pulled and serving`);
  }
  const basic = `Basic ${Buffer.from('puller:pull-token').toString('base64')}`;
  t.ok(privateRegistry.authorizations.includes(basic), 'the private registry got the credentials');
  t.same(openRegistry.authorizations.filter((a) => a !== ''), [], 'another registry never sees them');
});

t.test('through the gateway: an alias reaches the docker replicas; a scale-down leaves routing first', async (t) => {
  const h = startRuntime(t);
  const s = spec({ replicas: 2 });
  const { gw, table } = await gateway(t);
  const route = (st: EndpointStatus) => endpoint(s.version, [], {
    project: 'nlp', endpoint: 'sentiment',
    replicas: st.replicas.filter((r) => r.state === 'ready').map((r) => ({ id: r.id, address: r.address! })),
  });
  // What the controller's hook does: the replicas leave the routing table before they stop.
  h.beforeStop = async (_key, ids) => {
    const st = (await h.status(s.key))!;
    await table.apply({ putEndpoints: [route({ ...st, replicas: st.replicas.filter((r) => !ids.includes(r.id)) })] });
  };
  await h.runtime.ensure(s);
  const st = await h.waitReady(s.key, 2);
  await table.apply({ putDeployments: [deployment({ project: 'nlp', aliases: { production: { version: s.version } } })], putEndpoints: [route(st)] });
  const agent = client(t);
  const url = `${gw.url}/acme/nlp/web/production/sentiment`;
  for (let i = 0; i < 4; i++) {
    const res = await call(agent, url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"good"}' });
    t.equal(res.status, 200);
    t.equal(res.headers['x-portico-version'], s.version);
    t.equal(res.json().label, 'positive');
  }
  await h.runtime.ensure({ ...s, replicas: 1 });
  await waitFor(async () => (await managedContainers(s.key)).length === 1, { what: 'the scale-down' });
  for (let i = 0; i < 3; i++) {
    const res = await call(agent, url, { method: 'POST', body: '{"text":"bad"}' });
    t.equal(res.status, 200, 'served by the replica left');
  }
});

t.test('an engine that cannot be reached: list() is empty, stateUnknown() and ensure() say why', async (t) => {
  const rt = new DockerRuntime({
    docker: new Dockerode({ socketPath: join(tmp, 'no-such.sock') }),
    hooks: { beforeStop: async () => {}, logs: { write() {} } },
    stopGraceSeconds: 1,
  });
  t.same(await rt.list(), []);
  t.match(rt.stateUnknown(), /^docker engine unreachable: connect ENOENT .*no-such\.sock/, 'the replicas\' state is unknown, and why');
  await t.rejects(rt.ensure(spec()), /^docker engine: connect ENOENT .*no-such\.sock/);
  await rt.close();
  t.equal(rt.stateUnknown(), undefined, 'not once closed');
});
