import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
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
  /** Starts the server again on the same port (empty: nothing is persisted). */
  start(): Promise<void>;
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
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let proc!: ChildProcess;
  const launch = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    proc.on('error', (err) => { throw new Error(`cannot start redis-server (is it installed?): ${err.message}`); });
    await waitFor(() => ping(port), { timeoutMs: 10_000, what: `redis-server on port ${port}` });
  };
  const kill = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get process() { return proc; },
    pause: () => { proc.kill('SIGSTOP'); },
    resume: () => { proc.kill('SIGCONT'); },
    kill,
    start: launch,
    stop: kill,
  };
}
