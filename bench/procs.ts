// Child processes of the benchmark: started pinned to a CPU (taskset) when possible, polled
// until they answer, their CPU time read from /proc, and always stopped at the end (only the
// processes started here, by their own pid).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { waitFor } from '../test/helpers/poll.ts';

/** Whether a command is on PATH (`<cmd> -v`/`--version` or `which`). */
export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** First line of a command's version output (stdout or stderr), or `''`. */
export function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

const TASKSET = hasCommand('taskset');

/** A process started by `Procs.start`. */
export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything it printed (the last 64 KiB). */
  output(): string;
}

/** CPU time (user + system) a process and its waited-for children used, in milliseconds. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** `VmRSS` and `VmHWM` (peak RSS) of a process, in MiB. */
export function rssMiB(pid: number): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
  } catch {
    return { rss: NaN, peak: NaN };
  }
}

/** Pids of a process's direct children (e.g. the workers of `portico gateway`). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Resolves when `url` answers `status` (GET, optional headers), polling for at most `timeoutMs`. */
export async function waitForHttp(url: string, opts: { headers?: Record<string, string>; status?: number; timeoutMs?: number; proc?: Proc } = {}): Promise<void> {
  await waitFor(
    async () => {
      if (opts.proc && opts.proc.child.exitCode !== null) throw new Error(`${opts.proc.name} exited (${opts.proc.child.exitCode}):\n${opts.proc.output()}`);
      const res = await request(url, { headers: opts.headers ?? {} }).catch(() => null);
      if (res === null) return false;
      await res.body.dump();
      return res.statusCode === (opts.status ?? 200);
    },
    { timeoutMs: opts.timeoutMs ?? 30_000, intervalMs: 50, what: `${url} to answer` },
  );
}

/** The processes one benchmark run started; `stopAll` ends every one still running. */
export class Procs {
  readonly #running = new Set<Proc>();
  /** Whether processes can be pinned to CPUs (taskset is installed). */
  static readonly canPin = TASKSET;

  /**
   * Starts `cmd args` pinned to `cpus` (a taskset list such as `"1"` or `"0,1"`; ignored
   * without taskset). `env` replaces the environment entirely when given.
   */
  start(name: string, cmd: string, args: readonly string[], opts: { cpus?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
    const pinned = TASKSET && opts.cpus !== undefined;
    const child = spawn(pinned ? 'taskset' : cmd, pinned ? ['-c', opts.cpus as string, cmd, ...args] : [...args], {
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const keep = (d: Buffer) => {
      out += d.toString();
      if (out.length > 65536) out = out.slice(-65536);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.on('error', (err) => keep(Buffer.from(`spawn failed: ${err.message}\n`)));
    if (child.pid === undefined) throw new Error(`cannot start ${name} (${cmd})`);
    const proc: Proc = { name, child, pid: child.pid, output: () => out };
    this.#running.add(proc);
    child.once('exit', () => this.#running.delete(proc));
    return proc;
  }

  /** Sends `signal` (default SIGTERM) and waits for the exit; SIGKILL after `graceMs`. */
  async stop(proc: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    const child = proc.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Stops every process still running. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#running].map((p) => this.stop(p)));
  }
}
