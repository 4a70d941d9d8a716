import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { freePort, waitFor } from './poll.ts';

/** A real redis-server started for a test, on a free loopback port. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly process: ChildProcess;
  /** SIGSTOP: the server stops answering but keeps its connections (a "slow" Redis). */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** Kills the server (a Redis that is gone). `start()` brings a fresh one up on the same port. */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same port (empty: nothing is persisted), with `extra`
   * arguments for this run only (`--user default ... -subscribe`: a server that refuses some commands).
   */
  start(extra?: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(500, () => { sock.destroy(); resolve(false); });
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) { sock.destroy(); resolve(buf.startsWith('+PONG')); }
    });
  });
}

/**
 * Starts `redis-server` (Debian's package; `.ci/run` installs it) on a free port and waits
 * until it answers PING. Call `stop()` in `t.teardown`.
 */
export function startRedis(): Promise<RedisServer> {
  return freePort().then((port) => serverOn(port, []));
}

/**
 * `redis-server` on `port` with `extra` arguments (a replica: `--replicaof host port`), working in
 * a directory of its own: a replica stores the master's snapshot there while it syncs, even
 * with `--save ''`, and the directory goes with `stop()`.
 */
async function serverOn(port: number, extra: string[]): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra];
  let proc = await startServer(port, args);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get process() { return proc; },
    pause: () => { proc.kill('SIGSTOP'); },
    resume: () => { proc.kill('SIGCONT'); },
    kill: () => stopProcess(proc),
    start: async (more = []) => { proc = await startServer(port, [...args, ...more]); },
    stop: async () => {
      await stopProcess(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A master, its replica and one Redis Sentinel monitoring them, each on a free loopback port. */
export interface SentinelSet {
  /** The master's name the sentinel monitors. */
  readonly name: string;
  /** `redis+sentinel://127.0.0.1:<sentinel port>/<name>`. */
  readonly url: string;
  readonly master: RedisServer;
  readonly replica: RedisServer;
  readonly sentinelPort: number;
  /** Port of the server the sentinel names as master now. */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

/** Closes, from the server's side, the connection of the client named `name` (CLIENT SETNAME). */
export async function killClient(url: string, name: string): Promise<void> {
  const admin = new Redis(url);
  try {
    const id = new RegExp(`^id=(\\d+) .* name=${name} `, 'm').exec(String(await admin.call('CLIENT', 'LIST')))?.[1];
    if (id === undefined) throw new Error(`no client named ${name}`);
    await admin.call('CLIENT', 'KILL', 'ID', id);
  } finally {
    admin.disconnect();
  }
}

/**
 * Makes the next `apply` of `table` (the only routing table on the server) find its connection
 * closed by the server, as when Redis goes away between two writes of one operation: it rejects,
 * and the table reconnects.
 */
export function dropBeforeNextApply(table: RedisRoutingTable, url: string): void {
  const dropped = new Promise<void>((resolve) => table.onAvailability((up) => up || resolve()));
  const apply = table.apply.bind(table);
  table.apply = async (change) => {
    table.apply = apply;
    await killClient(url, 'portico-routing');
    await dropped;
    return apply(change);
  };
}

function startServer(port: number, args: string[]): Promise<ChildProcess> {
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  proc.on('error', (err) => { throw new Error(`cannot start redis-server (is it installed?): ${err.message}`); });
  return waitFor(() => ping(port), { timeoutMs: 10_000, what: `redis-server on port ${port}` }).then(() => proc);
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGCONT');
  proc.kill('SIGKILL');
  await exited;
}

/**
 * Starts a master, a replica of it and a sentinel (`redis-server --sentinel`, quorum 1, a master
 * is down after `downAfterMs`) in `dir`, and waits until the sentinel knows the replica, so a
 * failover can happen. Call `stop()` in `t.teardown`.
 */
export async function startSentinelSet(dir: string, opts: { name?: string; downAfterMs?: number } = {}): Promise<SentinelSet> {
  const name = opts.name ?? 'portico';
  const master = await startRedis();
  const replicaPort = await freePort();
  const replica = await serverOn(replicaPort, ['--replicaof', '127.0.0.1', String(master.port)]);
  const admin = (port: number) => new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: true });
  const r = admin(replicaPort);
  try {
    await waitFor(async () => /master_link_status:up/.test(await r.info('replication')), { what: 'the replica in sync' });
  } finally {
    r.disconnect();
  }
  const sentinelPort = await freePort();
  const conf = join(dir, `sentinel-${sentinelPort}.conf`);
  writeFileSync(conf, [
    `port ${sentinelPort}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
    `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
    `sentinel failover-timeout ${name} 10000`,
    `sentinel parallel-syncs ${name} 1`,
    '',
  ].join('\n'));
  const sentinel = await startServer(sentinelPort, [conf, '--sentinel']);
  const s = admin(sentinelPort);
  const currentMasterPort = async () => Number(((await s.call('SENTINEL', 'get-master-addr-by-name', name)) as string[])[1]);
  await waitFor(async () => ((await s.call('SENTINEL', 'replicas', name)) as unknown[]).length === 1, { what: 'the sentinel knowing the replica' });
  return {
    name,
    url: `redis+sentinel://127.0.0.1:${sentinelPort}/${name}`,
    master,
    replica,
    sentinelPort,
    currentMasterPort,
    async stop() {
      s.disconnect();
      await Promise.all([stopProcess(sentinel), replica.stop(), master.stop()]);
    },
  };
}
