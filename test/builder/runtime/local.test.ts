import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { replicaLogDir, sanitiseKey } from '../../../builder/runtime/local.ts';
import type { EndpointSpec, EndpointStatus } from '../../../builder/runtime/runtime.ts';
import { freePort, waitFor } from '../../helpers/poll.ts';
import { APPS, NODE, getJson, http, pidAlive, startRuntime, type Harness } from './harness.ts';

interface Echo {
  pid: number;
  port: number;
  argv: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  keys: string[];
}

const echoDir = join(APPS, 'node-echo');

t.test('N replicas get distinct ports, the right env and $PORT in a string command', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({
    replicas: 3,
    codeDir: echoDir,
    command: { kind: 'shell', command: `"${NODE}" server.mjs --port $PORT` },
    env: { FOO: 'bar' },
  });
  await h.runtime.ensure(spec);
  const status = await h.waitReady(spec.key, 3);
  t.same(status.replicas.map((r) => r.id), ['r1', 'r2', 'r3']);
  const addresses = status.replicas.map((r) => r.address!);
  t.equal(new Set(addresses).size, 3, 'distinct addresses');
  for (const address of addresses) {
    t.match(address, /^127\.0\.0\.1:\d+$/);
    const port = Number(address.split(':')[1]);
    const echo = await getJson<Echo>(address, '/env');
    t.equal(echo.port, port, 'the app listens where it is published');
    t.equal(echo.env.PORT, String(port), 'PORT is the published port');
    t.same(echo.argv, ['--port', String(port)], '$PORT substituted in the shell command');
    t.equal(echo.env.HOST, '127.0.0.1');
    t.equal(echo.env.VH_DEFAULT_PREFIX, `/${spec.key}`);
    t.equal(echo.env.FOO, 'bar');
    t.equal(echo.env.SCRIPT_NAME, undefined, 'SCRIPT_NAME only for wsgi');
    t.ok(echo.env.PATH, 'PATH inherited');
    // (tap's process tracking injects NODE_OPTIONS into every child of a test; the TAP_* variables
    // of the test process show whether the controller's own environment leaks)
    t.same(echo.keys.filter((k) => /^(TAP|PORTICO_)/.test(k)), [], 'nothing of the controller env leaks');
    t.equal(echo.cwd, echoDir, 'runs in codeDir');
  }
});

t.test('$PORT, $HOST and $VH_DEFAULT_PREFIX (or ${NAME}) are substituted in a list command, which is exec\'d directly', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({
    replicas: 2,
    codeDir: echoDir,
    command: { kind: 'exec', argv: [NODE, 'server.mjs', '--port', '$PORT', 'x${PORT}y', '$PORTAL', '--base-url=$VH_DEFAULT_PREFIX', '${HOST}:$PORT', '$FOO'] },
    env: { FOO: 'bar' },
  });
  await h.runtime.ensure(spec);
  const status = await h.waitReady(spec.key, 2);
  for (const r of status.replicas) {
    const port = r.address!.split(':')[1]!;
    const echo = await getJson<Echo>(r.address!, '/env');
    // The version's own variables are not (the kubernetes runtime would write secret ones into the Deployment).
    t.same(echo.argv, ['--port', port, `x${port}y`, '$PORTAL', `--base-url=/${spec.key}`, `127.0.0.1:${port}`, '$FOO']);
  }
});

t.test('a crashing app restarts with exponential backoff, then reports a crash loop', async (t) => {
  const h = await startRuntime(t, { restart: { initialMs: 100, crashLoopCount: 3 } });
  const spec = h.spec({ codeDir: join(APPS, 'crash'), command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const status = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.error ? s : undefined;
  }, { what: 'crash loop error' });
  t.match(status.error, /^crash loop: replica r1 crashed 3 times in \d+ s, last exited with code 3; last stderr: boom: model file \/models\/missing\.pkl not found/);
  const r = status.replicas[0]!;
  t.equal(r.state, 'crashed');
  t.equal(r.address, null);
  t.equal(r.restarts, 2, 'restarted after the first two crashes');
  t.match(r.reason, /exited with code 3; last stderr: boom: .*; restarting in 0\.4 s$/);

  const runs = h.events.filter((e) => e.startsWith('log:r1:stdout:loading model')).length;
  t.ok(runs >= 3, 'every run wrote its output');

  // The stderr lines of each run are logged with their stream.
  t.ok(h.logs.some((l) => l.stream === 'stderr' && l.line.startsWith('boom:') && l.replica === 'r1'));
});

t.test('restart delays double from the initial delay', async (t) => {
  const h = await startRuntime(t, { restart: { initialMs: 150, crashLoopCount: 10 } });
  const spec = h.spec({ codeDir: join(APPS, 'crash'), command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  const seen: { state: string; at: number }[] = [];
  h.runtime.onChange((s) => {
    const state = s.replicas[0]?.state;
    if (state && seen.at(-1)?.state !== state) seen.push({ state, at: performance.now() });
  });
  await h.runtime.ensure(spec);
  await waitFor(() => seen.filter((s) => s.state === 'crashed').length >= 4, { what: '4 crashes' });
  const delays: number[] = [];
  for (let i = 1; i < seen.length; i++) {
    if (seen[i - 1]!.state === 'crashed' && seen[i]!.state === 'starting') delays.push(seen[i]!.at - seen[i - 1]!.at);
  }
  t.ok(delays.length >= 3);
  t.ok(delays[0]! >= 140, `first restart after >= 150 ms (${Math.round(delays[0]!)})`);
  t.ok(delays[1]! >= 290, `second after >= 300 ms (${Math.round(delays[1]!)})`);
  t.ok(delays[2]! >= 590, `third after >= 600 ms (${Math.round(delays[2]!)})`);
  const s = await h.status(spec.key);
  t.match(s?.replicas[0]?.reason, /restarting in (1\.2|2\.4) s$/);
});

t.test('the restart delay resets once a replica was ready for 60 s', async (t) => {
  let skew = 0;
  const h = await startRuntime(t, { restart: { initialMs: 100, crashLoopCount: 10 }, now: () => Date.now() + skew });
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const crashAfterReady = async (expected: string, readyFor = 0) => {
    const s = await h.waitReady(spec.key, 1);
    skew += readyFor;
    await http('GET', `http://${s.replicas[0]!.address}/exit?code=7`);
    const crashed = await waitFor(async () => {
      const r = (await h.status(spec.key))?.replicas[0];
      return r?.state === 'crashed' ? r : undefined;
    }, { what: 'crashed' });
    t.match(crashed.reason, new RegExp(`^exited with code 7; .*restarting in ${expected} s$`));
  };
  await crashAfterReady('0.1');
  await crashAfterReady('0.2');
  await crashAfterReady('0.1', 61_000); // ready for "61 s" before this crash
  t.equal((await h.status(spec.key))?.error, undefined, 'three crashes spread over ready periods: no crash loop yet');
});

t.test('a missing code directory is a crash with a reason, not a throw', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({ codeDir: join(APPS, 'does-not-exist'), command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const r = await waitFor(async () => (await h.status(spec.key))?.replicas[0]?.reason, { what: 'reason' });
  t.match(r, /^code directory .*does-not-exist does not exist/);
});

t.test('scale down calls beforeStop, and only then SIGTERMs the newest replica', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({ replicas: 2, codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const before = await h.waitReady(spec.key, 2);
  const r2 = before.replicas.find((r) => r.id === 'r2')!;
  const r2pid = (await getJson<Echo>(r2.address!, '/env')).pid;

  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let atBeforeStop: { state?: string; answered: boolean } | undefined;
  h.beforeStop = async (key, ids) => {
    t.equal(key, spec.key);
    t.same(ids, ['r2']);
    const s = await h.status(spec.key);
    let answered = false;
    try {
      answered = (await getJson<Echo>(r2.address!, '/env')).pid === r2pid;
    } catch {
      answered = false;
    }
    atBeforeStop = { state: s?.replicas.find((r) => r.id === 'r2')?.state, answered };
    await gate;
  };
  await h.runtime.ensure({ ...spec, replicas: 1 });
  await waitFor(() => atBeforeStop, { what: 'beforeStop' });
  t.same(atBeforeStop, { state: 'ready', answered: true }, 'still ready and serving while beforeStop runs');
  t.notOk(h.events.some((e) => e === 'log:r2:stdout:SIGTERM received'), 'no SIGTERM before beforeStop resolves');
  release();
  await waitFor(() => h.events.includes('log:r2:stdout:SIGTERM received'), { what: 'SIGTERM line' });
  const order = [h.events.indexOf('beforeStop:r2'), h.events.indexOf('log:r2:stdout:SIGTERM received')];
  t.ok(order[0]! >= 0 && order[0]! < order[1]!, 'beforeStop comes before SIGTERM');
  t.ok(h.statuses.some((s) => s.replicas.some((r) => r.id === 'r2' && r.state === 'stopping')), 'r2 was reported stopping');
  const after = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.replicas.length === 1 ? s : undefined;
  }, { what: 'one replica left' });
  t.same(after.replicas.map((r) => [r.id, r.state]), [['r1', 'ready']]);
  await waitFor(() => !pidAlive(r2pid), { what: 'r2 gone' });
  h.beforeStop = async () => {};
  t.same(readdirLogs(h.dataDir, spec.key), ['r1.err.log', 'r1.out.log'], 'the stopped replica\'s log files are deleted');
});

t.test('a replica ignoring SIGTERM is SIGKILLed after the grace period', async (t) => {
  const h = await startRuntime(t, { stopGraceSeconds: 1 });
  const spec = h.spec({ codeDir: join(APPS, 'stubborn'), command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  await h.waitReady(spec.key, 1);
  const pid = [...h.pids][0]!;
  t.ok(pidAlive(pid));
  const started = performance.now();
  await h.runtime.remove(spec.key);
  const took = performance.now() - started;
  t.ok(h.events.includes('log:r1:stdout:ignoring SIGTERM'), 'it got SIGTERM first');
  t.ok(took >= 950, `SIGKILL only after the grace period (${Math.round(took)} ms)`);
  t.notOk(pidAlive(pid), 'gone once remove resolves');
  t.same(await h.runtime.list(), [], 'forgotten');
  t.same(h.statuses.at(-1), { key: spec.key, replicas: [] }, 'removal is reported');
});

t.test('a specHash change starts the replacement first and stops the old replica once it is ready', async (t) => {
  const h = await startRuntime(t);
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] }, env: { FOO: 'v1' } });
  await h.runtime.ensure(spec);
  const first = await h.waitReady(spec.key, 1);
  const oldAddress = first.replicas[0]!.address!;
  const oldPid = (await getJson<Echo>(oldAddress, '/env')).pid;

  let newReadyAtBeforeStop: boolean | undefined;
  h.beforeStop = async (_key, ids) => {
    t.same(ids, ['r1']);
    const s = await h.status(spec.key);
    newReadyAtBeforeStop = s?.replicas.find((r) => r.id === 'r2')?.state === 'ready';
  };
  const mark = h.statuses.length;
  // The new version starts slowly: the old one must keep serving meanwhile.
  await h.runtime.ensure({ ...spec, specHash: 'h2', env: { ...spec.env, FOO: 'v2', START_DELAY_MS: '600' } });
  const done = await waitFor(async () => {
    const s = await h.status(spec.key);
    return s?.replicas.length === 1 && s.replicas[0]!.id === 'r2' && s.replicas[0]!.state === 'ready' ? s : undefined;
  }, { what: 'only the new replica' });
  t.equal(newReadyAtBeforeStop, true, 'the old replica is taken out only once the new one is ready');
  const during = h.statuses.slice(mark).filter((s) => s.key === spec.key);
  t.ok(during.length > 2);
  t.ok(during.every((s) => s.replicas.some((r) => r.state === 'ready')), 'a ready replica at every moment (no gap)');
  const echo = await getJson<Echo>(done.replicas[0]!.address!, '/env');
  t.equal(echo.env.FOO, 'v2');
  await waitFor(() => !pidAlive(oldPid), { what: 'old replica gone' });
  h.beforeStop = async () => {};
});

t.test('output lines reach the log sink with stream and timestamp; files stay bounded', async (t) => {
  const h = await startRuntime(t, { logRetentionBytes: 4096 });
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  const t0 = Date.now();
  await h.runtime.ensure(spec);
  const s = await h.waitReady(spec.key, 1);
  const out = await waitFor(() => h.logs.find((l) => l.line.startsWith('listening on')), { what: 'stdout line' });
  const err = await waitFor(() => h.logs.find((l) => l.line === 'hello on stderr'), { what: 'stderr line' });
  t.match(out, { key: spec.key, replica: 'r1', stream: 'stdout' });
  t.match(err, { key: spec.key, replica: 'r1', stream: 'stderr' });
  t.ok(out.at >= t0 && out.at <= Date.now(), 'timestamped when read');

  // 3 x 200 lines of ~60 bytes: 36 KB through a 4 KB bound, none lost, in order.
  for (let round = 0; round < 3; round++) {
    await http('GET', `http://${s.replicas[0]!.address}/spam?lines=200&size=50`);
    await waitFor(() => h.logs.filter((l) => l.line.startsWith('spam ')).length === 200 * (round + 1), { what: 'spam lines' });
  }
  const spam = h.logs.filter((l) => l.line.startsWith('spam ')).map((l) => Number(l.line.split(' ')[1]));
  t.same(spam, [...Array(3)].flatMap(() => [...Array(200).keys()]), 'every line, in order');
  const file = join(replicaLogDir(h.dataDir, spec.key), 'r1.out.log');
  await waitFor(() => statSync(file).size <= 4096, { what: 'log file truncated' });
  t.ok(statSync(file).size <= 4096, 'file bounded by logRetentionBytes');
});

t.test('sanitiseKey is file-name safe and keeps keys apart', async (t) => {
  t.equal(sanitiseKey('acme/mnist/web/20181002.0/predict'), 'acme+mnist+web+20181002.0+predict');
  t.not(sanitiseKey('a/b'), sanitiseKey('a_b'));
  t.not(sanitiseKey('a/b'), sanitiseKey('a+b'));
  t.equal(sanitiseKey('../x'), '%2E.+x');
  t.notMatch(sanitiseKey('ü é/%'), /[^A-Za-z0-9_.%+-]/);
});

function readdirLogs(dataDir: string, key: string): string[] {
  try {
    return readdirSync(replicaLogDir(dataDir, key)).sort();
  } catch {
    return [];
  }
}

t.test('a ready replica that stops answering goes back to starting (out of routing)', async (t) => {
  const h = await startRuntime(t, { timing: { livenessMs: 100, logPollMs: 50 } });
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const s = await h.waitReady(spec.key, 1);
  const address = s.replicas[0]!.address!;
  await http('GET', `http://${address}/unlisten`);
  const r = await waitFor(async () => {
    const rep = (await h.status(spec.key))?.replicas[0];
    return rep?.state === 'starting' ? rep : undefined;
  }, { what: 'not ready any more' });
  t.equal(r.address, null);
  t.equal(r.reason, `stopped answering on ${address}`);
  t.equal(r.restarts, 0, 'the process was not restarted');
});

t.test('a crash while the state file cannot be written restarts the replica all the same, and says why', async (t) => {
  const h = await startRuntime(t, { restart: { initialMs: 100 } });
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'exec', argv: [NODE, 'server.mjs'] } });
  await h.runtime.ensure(spec);
  const first = await h.waitReady(spec.key, 1);
  const { pid } = await getJson<Echo>(first.replicas[0]!.address!);
  // The state file's place taken by a directory: every write fails (as on a full disk), and the
  // write in the crash's handler threw there, uncaught, before the restart was scheduled.
  const stateFile = join(h.dataDir, 'replicas', 'local-runtime.json');
  rmSync(stateFile, { force: true });
  mkdirSync(join(stateFile, 'taken'), { recursive: true });
  process.kill(pid, 'SIGKILL');
  const again = await waitFor(async () => {
    const s = await h.status(spec.key);
    if (s?.replicas[0]?.state === 'ready' && s.replicas[0].restarts === 1) return s;
    throw new Error(`last status ${JSON.stringify(s)}`);
  }, { what: 'the replica restarted and ready' });
  t.match(again.error, /^local runtime: cannot record its replicas: .*local-runtime\.json/, 'the endpoint error says why');
  t.not((await getJson<Echo>(again.replicas[0]!.address!)).pid, pid, 'a new process');
  t.same(readdirSync(join(h.dataDir, 'replicas')).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left by the failed writes');
  // Once the file can be written again, the error goes with the next write.
  rmSync(stateFile, { recursive: true });
  await h.runtime.ensure({ ...spec, replicas: 2 });
  await waitFor(async () => ((await h.status(spec.key))?.error === undefined ? true : undefined), { what: 'the error gone' });
});

/** A replica that is a group of two: `sh` (the leader the runtime spawned) and the server it started. */
async function groupReplica(t: Test, h: Harness): Promise<{ spec: EndpointSpec; leader: number; server: number }> {
  const spec = h.spec({ codeDir: echoDir, command: { kind: 'shell', command: `"${NODE}" server.mjs & wait` } });
  await h.runtime.ensure(spec);
  const s = await h.waitReady(spec.key, 1);
  const server = (await getJson<Echo>(s.replicas[0]!.address!, '/env')).pid;
  const leader = [...h.pids][0]!;
  t.not(leader, server);
  // Never leak the server, whatever the outcome.
  t.teardown(() => {
    try {
      process.kill(server, 'SIGKILL');
    } catch {
      // gone
    }
  });
  return { spec, leader, server };
}

t.test('a replica whose leader died is restarted without what is left of its group', async (t) => {
  const h = await startRuntime(t);
  const { spec, leader, server } = await groupReplica(t, h);
  process.kill(leader, 'SIGKILL'); // as the OOM killer would
  const again = await waitFor(async () => {
    const r = (await h.status(spec.key))?.replicas[0];
    return r?.state === 'ready' && r.restarts === 1 ? r : undefined;
  }, { what: 'restarted and ready' });
  t.not((await getJson<Echo>(again.address!, '/env')).pid, server, 'a new server');
  // It was left running for good, holding its port, and no remove() ever stopped it.
  await waitFor(() => !pidAlive(server), { timeoutMs: 3000, what: 'the old server gone' });
});

t.test('a replica whose leader dies while beforeStop runs is stopped whole', async (t) => {
  const h = await startRuntime(t);
  const { spec, leader, server } = await groupReplica(t, h);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let entered = false;
  h.beforeStop = async () => {
    entered = true;
    await gate;
  };
  await h.runtime.ensure({ ...spec, replicas: 0 });
  await waitFor(() => entered, { what: 'beforeStop' });
  process.kill(leader, 'SIGKILL');
  await waitFor(() => !pidAlive(leader), { what: 'the leader reaped (its exit seen)' });
  release();
  await waitFor(async () => (await h.status(spec.key))?.replicas.length === 0, { what: 'the replica stopped' });
  // The stop skipped a replica whose leader had exited: the server kept running, unrecorded.
  await waitFor(() => !pidAlive(server), { timeoutMs: 3000, what: 'the server gone' });
  t.ok(h.events.includes('log:r1:stdout:SIGTERM received'), 'the server got its SIGTERM');
  h.beforeStop = async () => {};
});
