// What every benchmark section shares: the settings of the run, the processes, the upstream.
import { join } from 'node:path';
import { NODE, ROOT } from '../test/helpers/portico.ts';
import { freePort } from '../test/helpers/poll.ts';
import type { LoadTool } from './load.ts';
import { hasNginx, startNginxUpstream } from './nginx.ts';
import { childPids, waitForHttp, type Proc, type Procs } from './procs.ts';

/** Settings and shared processes of one `npm run bench`. */
export interface BenchEnv {
  readonly procs: Procs;
  /** Private scratch directory (configs, logs, access log), removed at the end. */
  readonly dir: string;
  readonly tool: LoadTool;
  readonly quick: boolean;
  /** Rounds of each interleaved comparison (medians are reported). */
  readonly rounds: number;
  /** Seconds of each load run. */
  readonly durationS: number;
  /** Seconds of each contender's warm-up run (not counted). */
  readonly warmupS: number;
  /** Connections of each full-speed load run. */
  readonly connections: number;
  /** CPU of the load generator and the upstream (taskset list). */
  readonly loadCpus: string;
  /** CPU of the proxy under test. */
  readonly proxyCpus: string;
  readonly upstream: Upstream;
  /** Stored hash of the benchmark user (hashed once). */
  readonly userHash: string;
}

/** The one upstream every contender proxies to. */
export interface Upstream {
  readonly kind: 'nginx' | 'node';
  /** `127.0.0.1:port` */
  readonly address: string;
  readonly proc: Proc;
}

/** Pids of a process and its direct children (nginx workers, cluster workers). */
export function processTree(pid: number): number[] {
  return [pid, ...childPids(pid)];
}

/**
 * Starts the upstream on `cpus`: nginx (1 worker, small JSON) when installed, else
 * bench/node-upstream.ts.
 */
export async function startUpstream(procs: Procs, dir: string, cpus: string): Promise<Upstream> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const nginx = hasNginx();
  const proc = nginx ? startNginxUpstream(procs, dir, port, cpus) : procs.start('node upstream', NODE, [join(ROOT, 'bench', 'node-upstream.ts'), String(port)], { cpus });
  await waitForHttp(`http://${address}/`, { proc });
  return { kind: nginx ? 'nginx' : 'node', address, proc };
}
