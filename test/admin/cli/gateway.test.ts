import t from 'tap';
import type { Tap } from '../../gateway/fixtures.ts';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { setTimeout as delay } from 'node:timers/promises';
import { DUPLICATE_SIGNAL_MS } from '../../../admin/cli/signals.ts';
import { RedisRoutingTable } from '../../../gateway/routing/redis.ts';
import { startRedis } from '../../helpers/redis.ts';
import { freePort, processAlive, waitFor } from '../../helpers/poll.ts';
import { deployment, endpoint, metricValue, rawRequest, replica } from '../../gateway/fixtures.ts';

const BIN = fileURLToPath(new URL('../../../bin/portico.ts', import.meta.url));

/** The environment without the caller's PORTICO_* variables, plus `vars`. */
function env(vars: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PORTICO_') && v !== undefined) out[k] = v;
  return { ...out, ...vars };
}

/** `pid` and its descendants with their state letters (R running, S sleeping, T stopped, Z zombie), read from /proc. */
function processTree(pid: number | undefined): string {
  if (pid === undefined) return 'none';
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return `${pid}:${state}${children.length > 0 ? ` [${children.map((c) => processTree(Number(c))).join(', ')}]` : ''}`;
  } catch {
    return `${pid}:gone`;
  }
}

function run(args: string[], vars: Record<string, string>): { proc: ChildProcess; stderr: () => string; exit: Promise<number | null>; exitAfterStop: () => Promise<number | null | string> } {
  const proc = spawn(process.execPath, [BIN, ...args], { env: env(vars), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  // For a stop that must end by itself: the exit code, or what the process said if it has not
  // ended after the drain deadline (30 s), the primary's kill of its workers (5 s more) and a margin.
  const exitAfterStop = (): Promise<number | null | string> =>
    Promise.race([exit, new Promise<string>((resolve) => setTimeout(() => resolve(`still running after 45 s; processes: ${processTree(proc.pid)}; stderr: ${stderr.slice(-3000)}`), 45_000).unref())]);
  return { proc, stderr: () => stderr, exit, exitAfterStop };
}

/** `portico gateway` on `redisUrl` with free gateway and metrics ports, killed at teardown if still running. */
async function gatewayOn(t: Tap, redisUrl: string, vars: Record<string, string>) {
  const port = await freePort();
  const metricsPort = await freePort();
  const gw = run(['gateway'], { PORTICO_REDIS_URL: redisUrl, PORTICO_GATEWAY_PORT: String(port), PORTICO_METRICS_PORT: String(metricsPort), ...vars });
  t.teardown(() => {
    if (gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
  });
  return { ...gw, port, metricsPort, base: `http://127.0.0.1:${port}` };
}

/** A Redis of the test's own holding the route of `deployment()` and `endpoint('v1')` to a replica answering with `handler`. */
async function routedRedis(t: Tap, handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 500 });
  t.teardown(() => writer.close());
  const rep = await replica(t, handler);
  await waitFor(() => writer.isAvailable(), { what: 'redis' });
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  return { redis, writer, rep };
}

/** A Redis of the test's own and `portico gateway` with 2 workers on it, both in its live set. */
async function twoWorkers(t: Tap) {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 500 });
  t.teardown(() => writer.close());
  await waitFor(() => writer.isAvailable(), { what: 'redis' });
  const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: 'off' });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: `both workers in the live set (${gw.stderr()})`, timeoutMs: 20_000 });
  return { writer, gw };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { reset: true });
  return { status: res.statusCode, text: await res.body.text() };
}

t.test('portico gateway refuses to start without PORTICO_REDIS_URL', async (t) => {
  const { exit, stderr } = run(['gateway'], { PORTICO_GATEWAY_PORT: '0' });
  t.equal(await exit, 2);
  t.match(stderr(), /PORTICO_REDIS_URL is not set/);
  t.match(stderr(), /portico start/);
});

t.test('portico gateway --help', async (t) => {
  const { exit } = run(['gateway', '--help'], {});
  t.equal(await exit, 0);
});

t.test('portico gateway with 2 workers on Redis: serves, sums metrics, drains on SIGTERM and exits 0', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  // The gateway process reads the default prefix; this Redis is the test's own.
  const { redis, writer, rep } = await routedRedis(t, (req, res) => {
    if (req.url?.endsWith('/slow')) void released.then(() => res.end('slow done'));
    else res.end('ok');
  });

  const gw = await gatewayOn(t, redis.url, {
    PORTICO_GATEWAY_WORKERS: '2',
    PORTICO_DRAIN_SECONDS: '20',
    PORTICO_ACCESS_LOG: 'off',
    PORTICO_HEARTBEAT_MS: '200',
  });
  const { base, metricsPort } = gw;
  await waitFor(async () => (await get(`${base}/readyz`)).status === 200, { what: `the gateway to be ready (${gw.stderr()})`, timeoutMs: 20_000 });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: 'both workers in the live set' });

  for (let i = 0; i < 10; i++) {
    const r = await get(`${base}/acme/mnist/web/production/predict`);
    t.equal(r.status, 200);
  }
  const metrics = await get(`http://127.0.0.1:${metricsPort}/metrics`);
  t.equal(metrics.status, 200);
  const route = { owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict', status_class: '2xx' };
  t.equal(metricValue(metrics.text, 'portico_gateway_requests_total', route), 10, 'the primary serves the sum over both workers');

  const slow = request(`${base}/acme/mnist/web/v1/predict/slow`, { reset: true });
  await waitFor(() => rep.open === 1, { what: 'the slow request at the replica' });
  gw.proc.kill('SIGTERM');
  await waitFor(async () => (await get(`${base}/readyz`).catch(() => ({ status: 0 }))).status === 503, { what: 'readyz 503 while draining' });
  release();
  const res = await slow;
  t.equal(res.statusCode, 200, 'the in-flight request completed');
  t.equal(await res.body.text(), 'slow done');
  t.equal(await gw.exitAfterStop(), 0, `exit 0 (${gw.stderr().slice(-500)})`);
  await waitFor(async () => (await writer.liveGateways()).length === 0, { what: 'the workers to leave the live set' });
});

t.test('portico gateway: a worker that dies leaves the live set at once, not when its heartbeat expires', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 500 });
  t.teardown(() => writer.close());
  await waitFor(() => writer.isAvailable(), { what: 'redis' });
  const gw = await gatewayOn(t, redis.url, {
    PORTICO_GATEWAY_WORKERS: '2',
    PORTICO_ACCESS_LOG: 'off',
    // A registration would take 3 x 10 s to expire by itself.
    PORTICO_HEARTBEAT_MS: '10000',
  });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: `both workers in the live set (${gw.stderr()})`, timeoutMs: 20_000 });
  const [victim] = await writer.liveGateways();
  process.kill(victim!.pid, 'SIGKILL');
  const killed = performance.now();
  await waitFor(async () => !(await writer.liveGateways()).some((g) => g.id === victim!.id), { what: 'the dead worker to leave the live set', timeoutMs: 10_000 });
  t.ok(performance.now() - killed < 10_000, `gone ${Math.round(performance.now() - killed)} ms after the kill (its registration had 30 s to run)`);
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: 'the restarted worker in the live set', timeoutMs: 20_000 });
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0, `exit 0 (${gw.stderr().slice(-500)})`);
});

t.test('portico gateway: a replacement worker killed before it listens is restarted (regression: the whole gateway stopped)', async (t) => {
  const { writer, gw } = await twoWorkers(t);
  const primary = gw.proc.pid!;
  const workers = () => (readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').match(/\d+/g) ?? []).map(Number);
  const first = workers();
  const [victim] = await writer.liveGateways();
  process.kill(victim!.pid, 'SIGKILL');
  // Forked 100 ms after the death; loading its modules alone takes longer than this poll.
  const replacement = await waitFor(() => workers().find((pid) => !first.includes(pid)), { intervalMs: 2, what: 'the replacement worker' });
  process.kill(replacement, 'SIGKILL');
  const restarted = `"msg":"worker died while starting; restarting it","pid":${replacement}`;
  await waitFor(() => gw.proc.exitCode !== null || gw.stderr().includes(restarted), { what: 'the restart or the exit' });
  t.equal(gw.proc.exitCode, null, `the gateway runs on (${gw.stderr().slice(-500)})`);
  t.ok(gw.stderr().includes(restarted), 'the replacement died before it listened, and was restarted');
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: 'two workers in the live set again', timeoutMs: 20_000 });
  t.equal(workers().length, 2, 'two worker processes');
  t.equal((await get(`${gw.base}/readyz`)).status, 200);
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0, `exit 0 (${gw.stderr().slice(-500)})`);
});

t.test('portico gateway with 2 workers: the metrics port answers as a single process\'s does (404 JSON off GET /metrics, JSON 400 for a malformed request)', async (t) => {
  const { gw } = await twoWorkers(t);
  const metrics = `http://127.0.0.1:${gw.metricsPort}/metrics`;
  const scrape = await get(metrics);
  t.equal(scrape.status, 200);
  // The process metrics are the sum over the primary and its workers (a pod's memory is theirs).
  const pid = gw.proc.pid as number;
  const pids = [pid, ...readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number)];
  const rss = pids.reduce((sum, p) => sum + Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]) * 1024, 0);
  const exported = metricValue(scrape.text, 'process_resident_memory_bytes');
  t.ok(exported > 0.85 * rss && exported < 1.15 * rss, `process_resident_memory_bytes ${exported} for ${pids.length} processes of ${rss} bytes`);
  for (const method of ['POST', 'DELETE']) {
    const res = await request(metrics, { method, reset: true });
    t.equal(res.statusCode, 404, `${method} /metrics`);
    t.match(await res.body.json(), { statusCode: 404, code: 'NOT_FOUND' });
  }
  const bad = await rawRequest(`http://127.0.0.1:${gw.metricsPort}`, 'GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n');
  t.match(bad, /^HTTP\/1\.1 400 [\s\S]*\r\n\r\n\{"statusCode":400,"code":"BAD_REQUEST"/, 'a malformed request: the JSON error');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
});

t.test('portico gateway with 2 workers and PORTICO_METRICS_PORT=0 logs the metrics URL it serves on', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const gw = run(['gateway'], { PORTICO_REDIS_URL: redis.url, PORTICO_GATEWAY_PORT: String(await freePort()), PORTICO_METRICS_PORT: '0', PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: 'off' });
  t.teardown(() => {
    if (gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
  });
  const line = await waitFor(() => gw.stderr().split('\n').find((l) => l.includes('"msg":"gateway primary started"')), { what: 'the start line' });
  const url = (JSON.parse(line) as { metrics: string }).metrics;
  t.notMatch(url, /:0\//, `a real port (${url})`);
  t.equal((await get(url)).status, 200);
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
});

t.test('portico gateway with 2 workers stopped while its workers start (a supervisor stops it at once): exit 0', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: 'off' });
    // The workers are forked now; loading their modules alone takes longer than this poll.
    await waitFor(() => gw.stderr().includes('gateway primary started'), { what: 'the primary', intervalMs: 5 });
    gw.proc.kill(signal);
    t.equal(await gw.exitAfterStop(), 0, `${signal}: exit 0 (${gw.stderr().slice(-800)})`);
  }
});

/** The CPU time process `pid` has used, in ms (/proc/PID/stat: utime and stime, in 10 ms ticks). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

t.test('portico gateway (one process) stopped while it starts, its modules still loading: exit 0, as with workers (regression: killed by the signal, 143)', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    // Without tap's modules, which it preloads into node processes it sees spawned (NODE_OPTIONS):
    // they handle stop signals themselves.
    const proc = spawn('sh', ['-c', 'exec env -u NODE_OPTIONS "$0" "$@"', process.execPath, BIN, 'gateway'], {
      env: env({ PORTICO_REDIS_URL: redis.url, PORTICO_GATEWAY_PORT: '0', PORTICO_METRICS_PORT: '0', PORTICO_ACCESS_LOG: 'off' }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    t.teardown(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d.toString()));
    const exit = new Promise<number | string | null>((resolve) => proc.once('exit', (code, sig) => resolve(code ?? sig)));
    // Measured in CPU time, steadier than wall time on a loaded machine: node runs portico's first
    // lines after about 0.26 s of it, and the gateway listens after about 0.75 s.
    await waitFor(() => cpuMs(proc.pid as number) >= 450, { what: 'the modules loading', intervalMs: 5 });
    proc.kill(signal);
    t.equal(await exit, 0, `${signal}: exit 0 (${stderr.slice(-800)})`);
    t.match(stderr, /"msg":"stopped before starting"/, 'it did not start');
  }
});

t.test('portico gateway with 2 workers whose primary is killed: the workers free the port at once, finish what is in flight, log it and leave the live set', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const { redis, writer, rep } = await routedRedis(t, (_req, res) => void released.then(() => res.end('slow done')));
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-orphan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'access.log');
  const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: logFile, PORTICO_HEARTBEAT_MS: '10000' });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: `both workers in the live set (${gw.stderr()})`, timeoutMs: 20_000 });
  const workers = (await writer.liveGateways()).map((g) => g.pid);
  t.teardown(() => {
    for (const pid of workers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  });
  const slow = request(`${gw.base}/acme/mnist/web/v1/predict`, { reset: true, headers: { 'x-request-id': 'in-flight' } });
  await waitFor(() => rep.open === 1, { what: 'the request at the replica' });
  // An OOM kill, say: the workers lose their primary.
  gw.proc.kill('SIGKILL');
  // A restarted gateway can take the port at once.
  const taken = createNetServer();
  t.teardown(() => taken.close());
  await waitFor(() => new Promise<boolean>((resolve) => {
    taken.once('error', () => resolve(false));
    taken.listen(gw.port, '127.0.0.1', () => resolve(true));
  }), { what: 'the gateway port to be free', timeoutMs: 5000 });
  release();
  const res = await slow;
  t.equal(res.statusCode, 200, 'the request in flight completed');
  t.equal(await res.body.text(), 'slow done');
  await waitFor(() => !workers.some(processAlive), { what: 'the workers to exit' });
  t.match(readFileSync(logFile, 'utf8'), /"requestId":"in-flight"[^\n]*"status":200/, 'its access log line was written');
  t.same(await writer.liveGateways(), [], 'the workers left the live set (not at their heartbeat\'s expiry, 30 s on)');
});

t.test('portico gateway with 2 workers: no connection hangs when a worker is killed under new-connection load (regression: round-robin handoff)', async (t) => {
  const { writer, gw } = await twoWorkers(t);
  const rep = await replica(t, (_req, res) => res.end('ok'));
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  // A connection the primary handed to a worker as it died was never answered nor closed: the
  // client waited forever. Now it is reset (the worker had accepted it) or served by the other.
  const outcomes = new Map<string, number>();
  const count = (what: string) => outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
  let loading = true;
  const client = async () => {
    while (loading) {
      try {
        const res = await request(`${gw.base}/acme/mnist/web/production/predict`, { reset: true, headersTimeout: 10_000, bodyTimeout: 10_000 });
        await res.body.text();
        count(String(res.statusCode));
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'error';
        count(code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'hung' : code);
      }
    }
  };
  const clients = Array.from({ length: 16 }, client);
  const killed = new Set<number>();
  for (let i = 0; i < 5; i++) {
    // Each kill once the replacement of the last one serves, and requests have gone through it.
    const served = outcomes.get('200') ?? 0;
    const live = await waitFor(
      async () => {
        const l = await writer.liveGateways();
        return l.length === 2 && !l.some((g) => killed.has(g.pid)) && (outcomes.get('200') ?? 0) >= served + 100 && l;
      },
      { what: `two live workers serving (${gw.stderr().slice(-500)})`, timeoutMs: 20_000 },
    );
    killed.add(live[0]!.pid);
    process.kill(live[0]!.pid, 'SIGKILL');
  }
  loading = false;
  await Promise.all(clients);
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  t.equal(outcomes.get('hung') ?? 0, 0, 'no request left without an answer or a reset');
  t.ok((outcomes.get('200') ?? 0) >= 500, 'requests were served throughout');
  t.equal((await get(`${gw.base}/acme/mnist/web/production/predict`)).status, 200, 'served after the kills');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0, `exit 0 (${gw.stderr().slice(-500)})`);
});

t.test('portico gateway with 2 workers: both take a share of new connections', async (t) => {
  const { writer, gw } = await twoWorkers(t);
  // Workers accept from the shared socket (no round-robin by the primary): the kernel wakes
  // whichever waits. 200 connections, one after the other, each answered and kept open.
  const socks: Socket[] = [];
  t.teardown(() => socks.forEach((s) => s.destroy()));
  for (let i = 0; i < 200; i++) {
    socks.push(
      await new Promise<Socket>((resolve, reject) => {
        const s = connect(gw.port, '127.0.0.1', () => s.write('GET /readyz HTTP/1.1\r\nhost: gw\r\n\r\n'));
        s.once('error', reject).once('data', () => resolve(s));
      }),
    );
  }
  // Who holds each one: the sockets of the gateway port in /proc/net/tcp, found among each worker's fds.
  const inodes = new Set(
    readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1]?.endsWith(`:${gw.port.toString(16).toUpperCase().padStart(4, '0')}`) && f[3] === '01')
      .map((f) => f[9]),
  );
  const held = (pid: number) => readdirSync(`/proc/${pid}/fd`).filter((fd) => inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1])).length;
  const split = (await writer.liveGateways()).map((g) => held(g.pid));
  t.comment(`connections per worker: ${split.join(' / ')}`);
  t.equal(split.reduce((a, b) => a + b, 0), 200, 'the workers hold every connection');
  t.ok(split.every((n) => n > 0), 'each worker took some');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
});

t.test('portico gateway with 2 workers: a second SIGTERM during the drain ends it at once, workers included', async (t) => {
  const { writer, gw } = await twoWorkers(t);
  const rep = await replica(t, () => {});
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const pids = (await writer.liveGateways()).map((g) => g.pid);
  const slow = request(`${gw.base}/acme/mnist/web/production/predict`, { reset: true }).then(
    (res) => res.statusCode,
    (err: unknown) => err,
  );
  await waitFor(() => rep.open === 1, { what: 'the request at the replica' });
  gw.proc.kill('SIGTERM');
  const first = performance.now();
  await waitFor(() => gw.stderr().includes('"msg":"draining workers"'), { what: 'the drain' });
  // A second signal within DUPLICATE_SIGNAL_MS is taken for a copy of the first (next test).
  await delay(Math.max(0, first + DUPLICATE_SIGNAL_MS + 100 - performance.now()));
  gw.proc.kill('SIGTERM');
  const second = performance.now();
  t.equal(await gw.exit, null);
  t.equal(gw.proc.signalCode, 'SIGTERM', 'ended by the signal, not after the drain (30 s)');
  t.type(await slow, Error, 'the request in flight was cut');
  t.ok(performance.now() - second < 5000, `at once, not at the workers' drain deadline (${Math.round(performance.now() - second)} ms)`);
  await waitFor(() => !pids.some(processAlive), { what: 'the workers to end with the primary' });
});

t.test('portico gateway with 2 workers: stop signals in quick succession are one stop (Ctrl-C, npm and a supervisor all signal it): the drain finishes', async (t) => {
  const { writer, gw } = await twoWorkers(t);
  let answer: (() => void) | undefined;
  const rep = await replica(t, (_req, res) => {
    answer = () => res.end('late but whole');
  });
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const slow = get(`${gw.base}/acme/mnist/web/production/predict`);
  await waitFor(() => rep.open === 1, { what: 'the request at the replica' });
  // The same signal twice: as npm passes on a Ctrl-C the primary got from the terminal too, and
  // as a supervisor stopping the group reaches the workers, which the primary then signals again.
  const pids = (await writer.liveGateways()).map((g) => g.pid);
  gw.proc.kill('SIGINT');
  gw.proc.kill('SIGINT');
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  await waitFor(() => gw.stderr().includes('"msg":"draining workers"'), { what: 'the drain' });
  answer?.();
  t.same(await slow, { status: 200, text: 'late but whole' }, 'the request in flight finished');
  t.equal(await gw.exitAfterStop(), 0, 'exit 0 after the drain');
});

t.test('portico gateway with one process serves its own metrics and exits 0 on SIGTERM', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const gw = await gatewayOn(t, redis.url, { PORTICO_ACCESS_LOG: 'off' });
  const { base, metricsPort } = gw;
  await waitFor(async () => (await get(`${base}/readyz`)).status === 200, { what: 'ready', timeoutMs: 20_000 });
  const unknown = await get(`${base}/acme/mnist/web/v1/predict`);
  t.equal(unknown.status, 404);
  const m = await get(`http://127.0.0.1:${metricsPort}/metrics`);
  t.equal(metricValue(m.text, 'portico_gateway_requests_total', { status_class: '4xx' }), 1);
  t.match(m.text, /process_cpu_seconds_total/, 'process metrics too');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
  t.match(gw.stderr(), /"msg":"draining"/);
});

t.test('portico gateway whose access log is a FIFO nobody reads: SIGTERM ends it within the drain deadline, the lines it could not write counted (regression: it never exited)', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'access.fifo');
  execFileSync('mkfifo', [fifo]);
  const gw = await gatewayOn(t, redis.url, { PORTICO_ACCESS_LOG: fifo, PORTICO_DRAIN_SECONDS: '2' });
  await waitFor(async () => (await get(`${gw.base}/readyz`)).status === 200, { what: `ready (${gw.stderr()})`, timeoutMs: 20_000 });
  t.equal((await get(`${gw.base}/acme/mnist/web/v1/predict`)).status, 404);
  gw.proc.kill('SIGTERM');
  const exited = await Promise.race([gw.exit, delay(12_000).then(() => `still running 12 s after SIGTERM; stderr: ${gw.stderr().slice(-1000)}`)]);
  t.equal(exited, 0);
  // The readiness probes and the 404.
  t.match(gw.stderr(), /"msg":"access log lines dropped","dropped":[1-9]/);
});

t.test('portico gateway whose Redis hangs (stopped, not down): SIGTERM ends it within the drain deadline, not Redis command timeouts later', async (t) => {
  const { redis } = await routedRedis(t, (_req, res) => res.end('ok'));
  const gw = await gatewayOn(t, redis.url, { PORTICO_ACCESS_LOG: 'off', PORTICO_DRAIN_SECONDS: '2', PORTICO_REDIS_TIMEOUT_MS: '5000' });
  await waitFor(async () => (await get(`${gw.base}/readyz`)).status === 200, { what: `ready (${gw.stderr()})`, timeoutMs: 20_000 });
  // Stats to report at the stop; then Redis stops answering (its commands time out after 5 s).
  t.equal((await get(`${gw.base}/acme/mnist/web/v1/predict`)).status, 200);
  redis.pause();
  t.teardown(() => redis.resume());
  const started = performance.now();
  gw.proc.kill('SIGTERM');
  const exited = await Promise.race([gw.exit, delay(20_000).then(() => `still running 20 s after SIGTERM; stderr: ${gw.stderr().slice(-1000)}`)]);
  const ms = performance.now() - started;
  t.equal(exited, 0, gw.stderr().slice(-800));
  // The drain deadline, 1 s for closing after it, and time for a loaded machine.
  t.ok(ms < 2000 + 1000 + 1500, `exited ${Math.round(ms)} ms after SIGTERM`);
});

/** A path that passes the start-up checks but that open(2) refuses: a symbolic link to itself. */
function loopingPath(t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  symlinkSync(path, path);
  return path;
}

t.test('portico gateway with an access log path it cannot open exits 1 naming the path', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const path = loopingPath(t);
  const gw = await gatewayOn(t, redis.url, { PORTICO_ACCESS_LOG: path });
  t.equal(await gw.exit, 1);
  t.match(gw.stderr(), /"msg":"gateway failed to start"/);
  t.match(gw.stderr(), new RegExp(`cannot open the access log \\(PORTICO_ACCESS_LOG=${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): ELOOP`));
});

t.test('portico gateway with an access log path that cannot work, and the metrics port equal to its own: exit 2 naming both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const gw = run(['gateway'], { PORTICO_REDIS_URL: 'redis://127.0.0.1:1', PORTICO_GATEWAY_PORT: String(port), PORTICO_METRICS_PORT: String(port), PORTICO_ACCESS_LOG: dir });
  t.equal(await gw.exit, 2);
  t.match(gw.stderr(), `portico gateway: invalid configuration:\n  - PORTICO_GATEWAY_PORT, PORTICO_METRICS_PORT: the same port ${port} (each needs its own)\n  - PORTICO_ACCESS_LOG=${dir}: is a directory\n`);
});

t.test('portico gateway with 2 workers that cannot start exits 1 instead of restarting them', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: loopingPath(t) });
  t.equal(await gw.exit, 1);
  t.match(gw.stderr(), /"msg":"worker failed to start; stopping"/);
  t.notMatch(gw.stderr(), /restarting it/);
});

t.test('portico gateway with 2 workers reopens its access log on SIGHUP (log rotation) in every worker', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 500 });
  t.teardown(() => writer.close());
  const rep = await replica(t, (_req, res) => res.end('ok'));
  await waitFor(() => writer.isAvailable(), { what: 'redis' });
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const dir = mkdtempSync(join(tmpdir(), 'portico-gw-rotate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'access.log');
  const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: logFile });
  const { base } = gw;
  await waitFor(async () => (await get(`${base}/readyz`)).status === 200, { what: `the gateway to be ready (${gw.stderr()})`, timeoutMs: 20_000 });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: 'both workers in the live set' });

  // A new connection per request: both workers take some.
  const send = async (id: string) => {
    const res = await request(`${base}/acme/mnist/web/production/predict`, { reset: true, headers: { 'x-request-id': id } });
    await res.body.text();
    t.equal(res.statusCode, 200);
  };
  const ids = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { requestId: string }).requestId) : []);
  for (let i = 0; i < 10; i++) await send(`before-${i}`);
  await waitFor(() => ids(logFile).length === 10, { what: 'the first ten lines' });

  renameSync(logFile, `${logFile}.1`);
  gw.proc.kill('SIGHUP');
  // Each worker logs the reopen in the same synchronous handler that does it.
  await waitFor(() => gw.stderr().split('SIGHUP: reopening the access log').length - 1 === 2, { what: `both workers to reopen (${gw.stderr().slice(-500)})` });
  for (let i = 0; i < 20; i++) await send(`after-${i}`);
  await waitFor(() => ids(logFile).filter((id) => id.startsWith('after-')).length === 20, { what: 'the last twenty lines in the new file' });
  const old = ids(`${logFile}.1`);
  t.same(old.filter((id) => id.startsWith('before-')).sort(), Array.from({ length: 10 }, (_, i) => `before-${i}`).sort(), 'the rotated file keeps the lines from before');
  t.equal(old.filter((id) => id.startsWith('after-')).length, 0, 'no worker wrote to the rotated file after reopening');
  t.equal(gw.proc.exitCode, null, 'SIGHUP did not stop the gateway');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
});

t.test('portico gateway with 2 workers: summed counters never go back when workers die', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const writer = new RedisRoutingTable({ url: redis.url, commandTimeoutMs: 500 });
  t.teardown(() => writer.close());
  const rep = await replica(t);
  await waitFor(() => writer.isAvailable(), { what: 'redis' });
  await writer.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const gw = await gatewayOn(t, redis.url, { PORTICO_GATEWAY_WORKERS: '2', PORTICO_ACCESS_LOG: 'off', PORTICO_HEARTBEAT_MS: '200' });
  await waitFor(async () => (await writer.liveGateways()).length === 2, { what: `both workers in the live set (${gw.stderr()})`, timeoutMs: 20_000 });
  const route = { owner: 'acme', project: 'mnist', deployment: 'web', version: 'v1', endpoint: 'predict', status_class: '2xx' };
  const served = async () => metricValue((await get(`http://127.0.0.1:${gw.metricsPort}/metrics`)).text, 'portico_gateway_requests_total', route);
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) t.equal((await get(`${gw.base}/acme/mnist/web/production/predict`)).status, 200);
  };
  await send(20);
  t.equal(await served(), 20);
  // Kill both original workers, one after the other: whichever served the requests dies.
  const originals = (await writer.liveGateways()).map((g) => g.pid);
  let slowest = 0;
  for (const pid of originals) {
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      // Scrapes while the replacement starts answer at once (one waited for it for 5 s).
      const started = performance.now();
      await served();
      slowest = Math.max(slowest, performance.now() - started);
      const live = await writer.liveGateways();
      return live.length === 2 && !live.some((g) => g.pid === pid);
    }, { what: 'the worker replaced', timeoutMs: 20_000, intervalMs: 20 });
    t.equal(await served(), 20, `after worker ${pid} died, the sum still counts what it had served`);
  }
  t.ok(slowest < 1500, `scrapes during the restarts took at most ${Math.round(slowest)} ms`);
  await send(10);
  t.equal(await served(), 30, 'and new requests add to it');
  const text = (await get(`http://127.0.0.1:${gw.metricsPort}/metrics`)).text;
  t.match(text, /portico_gateway_requests_in_flight(\{[^}]*\})? 0\b/, 'gauges are over the live workers only');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exitAfterStop(), 0);
});

t.test('portico gateway on a port in use exits 1 naming the variable', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const taken = createNetServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = String((taken.address() as AddressInfo).port);
  for (const [vars, variable] of [
    [{ PORTICO_GATEWAY_PORT: port }, 'PORTICO_GATEWAY_PORT'],
    [{ PORTICO_METRICS_PORT: port }, 'PORTICO_METRICS_PORT'],
    [{ PORTICO_METRICS_PORT: port, PORTICO_GATEWAY_WORKERS: '2' }, 'PORTICO_METRICS_PORT'],
  ] as const) {
    const gw = await gatewayOn(t, redis.url, { PORTICO_ACCESS_LOG: 'off', ...vars });
    t.equal(await gw.exit, 1, `exit 1 with ${JSON.stringify(vars)}`);
    t.match(gw.stderr(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(PORTICO_HOST, ${variable}\\): .*EADDRINUSE`));
  }
});

t.test('portico start on an admin port in use exits 1 naming the variable', async (t) => {
  const taken = createNetServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const dataDir = mkdtempSync(join(tmpdir(), 'portico-start-port-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const start = run(['start'], {
    PORTICO_DATA_DIR: dataDir,
    PORTICO_GATEWAY_PORT: String(await freePort()),
    PORTICO_METRICS_PORT: String(await freePort()),
    PORTICO_ADMIN_PORT: String(port),
    PORTICO_ACCESS_LOG: 'off',
  });
  t.teardown(() => {
    if (start.proc.exitCode === null) start.proc.kill('SIGKILL');
  });
  t.equal(await start.exit, 1);
  t.match(start.stderr(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(PORTICO_HOST, PORTICO_ADMIN_PORT\\): .*EADDRINUSE`));
});
