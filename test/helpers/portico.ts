import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { freePort, waitFor } from './poll.ts';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Node 24 from the `node` devDependency. */
export const NODE = join(ROOT, 'node_modules', '.bin', 'node');
/** The CLI entry point. */
export const PORTICO = join(ROOT, 'bin', 'portico.ts');

/** A JSON answer of the admin API. */
export interface ApiResponse<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** A `portico` process started by a test. */
export interface PorticoProcess {
  readonly process: ChildProcess;
  readonly gatewayUrl: string;
  readonly adminUrl: string;
  readonly metricsUrl: string;
  readonly dataDir: string;
  readonly token: string;
  /** Everything the process printed so far (stdout + stderr). */
  output(): string;
  /** Calls the admin API with the admin token. */
  api<T = any>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>>;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (replicas of the local runtime keep running). */
  kill(): Promise<void>;
}

/** Calls an admin API at `baseUrl` with a bearer token. */
export async function callApi<T = any>(baseUrl: string, token: string, method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
  const res = await request(`${baseUrl}/api/v1${path}`, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.statusCode, headers: res.headers, body: parsed as T };
}

/**
 * Starts `portico <command>` (default `start`) as a real process on free ports with a fresh data
 * directory (or `opts.dataDir`), and waits until the gateway's `/readyz` and the admin `/healthz`
 * answer 200. The admin token is read from `$PORTICO_DATA_DIR/admin-token` unless given.
 */
export async function startPortico(opts: {
  env?: Record<string, string>;
  dataDir?: string;
  command?: string;
  ports?: { gateway: number; admin: number; metrics: number };
  /** Gets what the process prints as it prints it (before it is ready, too). */
  onOutput?: (text: string) => void;
} = {}): Promise<PorticoProcess> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'portico-e2e-')));
  const ports = opts.ports ?? { gateway: await freePort(), admin: await freePort(), metrics: await freePort() };
  const env: Record<string, string> = {
    PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? '/root',
    PORTICO_DATA_DIR: dataDir,
    PORTICO_GATEWAY_PORT: String(ports.gateway),
    PORTICO_ADMIN_PORT: String(ports.admin),
    PORTICO_METRICS_PORT: String(ports.metrics),
    PORTICO_ACCESS_LOG: join(dataDir, 'access.log'),
    PORTICO_STOP_GRACE_SECONDS: '3',
    PORTICO_DRAIN_SECONDS: '5',
    ...opts.env,
  };
  const child = spawn(NODE, [PORTICO, opts.command ?? 'start'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const take = (d: Buffer) => {
    out += d.toString();
    opts.onOutput?.(d.toString());
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const gatewayUrl = `http://127.0.0.1:${ports.gateway}`;
  const adminUrl = `http://127.0.0.1:${ports.admin}`;
  const ok = async (url: string) => {
    if (child.exitCode !== null) throw new Error(`portico exited with ${child.exitCode}:\n${out}`);
    const res = await request(url).catch(() => null);
    if (!res) return false;
    await res.body.dump();
    return res.statusCode === 200;
  };
  const command = opts.command ?? 'start';
  const hasAdmin = command !== 'gateway';
  const hasGateway = command !== 'controller';
  await waitFor(async () => (!hasAdmin || (await ok(`${adminUrl}/healthz`))) && (!hasGateway || (await ok(`${gatewayUrl}/readyz`))), {
    timeoutMs: 30_000,
    what: 'portico to be ready',
  });
  const token = opts.env?.PORTICO_ADMIN_TOKEN ?? (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  return {
    process: child,
    gatewayUrl,
    adminUrl,
    metricsUrl: `http://127.0.0.1:${ports.metrics}/metrics`,
    dataDir,
    token,
    output: () => out,
    api: (method, path, body) => callApi(adminUrl, token, method, path, body),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * SIGKILLs the replica process groups the local runtime recorded under `dataDir`
 * (`replicas/local-runtime.json`): `portico controller` leaves replicas running when it stops, on
 * purpose (a new controller adopts them), so a test that ran one cleans up with this. Returns how
 * many were still running.
 */
export function killReplicas(dataDir: string): number {
  let state: { endpoints?: Record<string, { replicas?: { pid?: number }[] }> };
  try {
    state = JSON.parse(readFileSync(join(dataDir, 'replicas', 'local-runtime.json'), 'utf8')) as typeof state;
  } catch {
    return 0;
  }
  let killed = 0;
  for (const ep of Object.values(state.endpoints ?? {})) {
    for (const r of ep.replicas ?? []) {
      if (typeof r.pid !== 'number' || r.pid <= 1) continue;
      try {
        process.kill(-r.pid, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
  }
  return killed;
}

/** Removes a data directory made by `startPortico`. */
export function removeDataDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}
