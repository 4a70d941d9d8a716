// One load run against one URL: wrk (bench/wrk/bench.lua) when installed, else autocannon
// (bench/autocannon-run.ts), pinned to the load generator's CPU; both report the same shape.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT } from '../test/helpers/portico.ts';
import { hasCommand, Procs, versionOf } from './procs.ts';

/** Which load generator runs. */
export type LoadTool = 'wrk' | 'autocannon';

/** What one load run does. */
export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Fixed arrival rate (req/s) instead of as fast as possible. */
  readonly rate?: number;
  /** `owner/project/deployments/endpoints/distinct`: cycle over distinct endpoint URLs (see wrk/bench.lua). */
  readonly routes?: string;
  /** CPUs of the load generator (taskset list). */
  readonly cpus?: string;
}

/** What one load run measured. Latencies in milliseconds. */
export interface LoadResult {
  readonly rps: number;
  readonly requests: number;
  /** Socket errors, timeouts and responses with status >= 400 (wrk) / not 2xx (autocannon). */
  readonly errors: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** wrk when installed, else autocannon. */
export function defaultTool(): LoadTool {
  return hasCommand('wrk') ? 'wrk' : 'autocannon';
}

/** `wrk 4.1.0`-like version text of the tool. */
export function toolVersion(tool: LoadTool): string {
  if (tool === 'wrk') return versionOf('wrk', ['-v']).replace(/ Copyright.*$/, '').replace(/^wrk /, 'wrk ');
  return `autocannon ${packageVersion('autocannon')}`;
}

/** The installed version of a package of node_modules, or `'?'`. */
export function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

interface Raw {
  requests: number;
  durationUs: number;
  errors: Record<string, number>;
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number };
}

function command(tool: LoadTool, o: LoadOptions): [string, string[]] {
  if (tool === 'autocannon') {
    return [NODE, [join(ROOT, 'bench', 'autocannon-run.ts'), JSON.stringify({ url: o.url, connections: o.connections, durationS: o.durationS, headers: o.headers ?? {}, rate: o.rate, routes: o.routes })]];
  }
  const args = ['-t', '1', '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', '5s', '-s', join(ROOT, 'bench', 'wrk', 'bench.lua')];
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(o.url, '--');
  if (o.rate !== undefined) args.push(`rate=${o.rate}`);
  if (o.routes !== undefined) args.push(`routes=${o.routes}`);
  return ['wrk', args];
}

/** Runs the load generator once and parses its `BENCH_JSON` line. */
export async function runLoad(tool: LoadTool, o: LoadOptions): Promise<LoadResult> {
  const [cmd, args] = command(tool, o);
  const pinned = Procs.canPin && o.cpus !== undefined;
  const child = spawn(pinned ? 'taskset' : cmd, pinned ? ['-c', o.cpus as string, cmd, ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (code !== 0 || line === undefined) throw new Error(`${tool} failed (exit ${code}):\n${out}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length)) as Raw;
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  const ms = (us: number) => us / 1000;
  return {
    rps: r.requests / (r.durationUs / 1e6),
    requests: r.requests,
    errors,
    p50: ms(r.latencyUs.p50),
    p90: ms(r.latencyUs.p90),
    p99: ms(r.latencyUs.p99),
    p999: ms(r.latencyUs.p999),
    max: ms(r.latencyUs.max),
  };
}
