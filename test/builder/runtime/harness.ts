import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Test } from 'tap';
import { LocalRuntime, type LocalRuntimeOptions } from '../../../builder/runtime/local.ts';
import type { EndpointSpec, EndpointStatus, RuntimeHooks, ServerCommand } from '../../../builder/runtime/runtime.ts';
import { waitFor } from '../../helpers/poll.ts';

/** Fixture apps started as real replicas. */
export const APPS = resolve(import.meta.dirname, '../../fixtures/apps');
/** The Node 24 binary running the tests: replicas use it too. */
export const NODE = process.execPath;

export interface LogEntry {
  readonly key: string;
  readonly replica: string;
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
  readonly at: number;
}

/** A LocalRuntime on a temporary data directory, recording what it reports. */
export interface Harness {
  runtime: LocalRuntime;
  readonly dataDir: string;
  /** Ordered record: `beforeStop:<ids>`, `log:<replica>:<stream>:<line>`, `status`. */
  readonly events: string[];
  readonly logs: LogEntry[];
  readonly statuses: EndpointStatus[];
  /** Every replica pid the runtime ever recorded in its state file. */
  readonly pids: Set<number>;
  /** Replaces what the `beforeStop` hook does (after it is recorded). */
  beforeStop: (key: string, ids: readonly string[]) => Promise<void>;
  spec(over: Partial<EndpointSpec> & { command: ServerCommand; codeDir: string }): EndpointSpec;
  status(key: string): Promise<EndpointStatus | undefined>;
  waitReady(key: string, n: number, timeoutMs?: number): Promise<EndpointStatus>;
  /** Closes the runtime and starts a new one on the same data directory (a controller restart). */
  reopen(over?: Partial<LocalRuntimeOptions>): Promise<LocalRuntime>;
}

let counter = 0;

/**
 * Runtime hooks that record each `beforeStop` in `events` as `beforeStop:<ids>` before running
 * `beforeStop`, and each output line in `logs` (and in `events` as
 * `log:<replica>:<stream>:<line>` when `logEvents`).
 */
export function recordingHooks(
  record: { readonly events: string[]; readonly logs: LogEntry[]; readonly logEvents: boolean },
  beforeStop: (key: string, ids: readonly string[]) => Promise<void>,
): RuntimeHooks {
  return {
    beforeStop: async (key, ids) => {
      record.events.push(`beforeStop:${ids.join(',')}`);
      await beforeStop(key, ids);
    },
    logs: {
      write(e) {
        record.logs.push(e);
        if (record.logEvents) record.events.push(`log:${e.replica}:${e.stream}:${e.line}`);
      },
    },
  };
}

/** Whether `pid` exists (zombies included: they are not gone until reaped). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A replica that exited but that this test process (its parent, when the test spawned it) has
  // not reaped yet is a zombie: it answers kill(0) but runs no more.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Starts a LocalRuntime for one test. Teardown removes every endpoint, closes the runtime and
 * checks every recorded replica pid is gone: leftovers are SIGKILLed (a failure leaks nothing)
 * and fail the test. The data directory is deleted.
 */
export async function startRuntime(t: Test, over: Partial<LocalRuntimeOptions> = {}): Promise<Harness> {
  const dataDir = mkdtempSync(join(tmpdir(), 'portico-local-'));
  const events: string[] = [];
  const logs: LogEntry[] = [];
  const statuses: EndpointStatus[] = [];
  const pids = new Set<number>();
  const recordPids = () => {
    try {
      const state = JSON.parse(readFileSync(join(dataDir, 'replicas', 'local-runtime.json'), 'utf8')) as {
        endpoints: Record<string, { replicas: { pid: number }[] }>;
      };
      for (const ep of Object.values(state.endpoints)) for (const r of ep.replicas) pids.add(r.pid);
    } catch {
      // not written yet
    }
  };
  const h: Harness = {
    runtime: undefined as unknown as LocalRuntime,
    dataDir,
    events,
    logs,
    statuses,
    pids,
    beforeStop: async () => {},
    spec(o) {
      const key = o.key ?? `acme/proj/dep/v${++counter}/predict`;
      return {
        key,
        owner: 'acme',
        project: 'proj',
        deployment: 'dep',
        version: key.split('/')[3] ?? 'v1',
        endpoint: 'predict',
        replicas: 1,
        port: 8000,
        specHash: 'h1',
        ...o,
        env: { VH_DEFAULT_PREFIX: `/${key}`, ...o.env },
      };
    },
    async status(key) {
      return (await h.runtime.list()).find((s) => s.key === key);
    },
    async waitReady(key, n, timeoutMs = 15_000) {
      return waitFor(async () => {
        const s = await h.status(key);
        return s && s.replicas.filter((r) => r.state === 'ready').length === n ? s : undefined;
      }, { timeoutMs, what: `${n} ready replica(s) of ${key}` });
    },
    async reopen(o = {}) {
      await h.runtime.close();
      h.runtime = make(o);
      return h.runtime;
    },
  };
  const make = (o: Partial<LocalRuntimeOptions>) => {
    const rt = new LocalRuntime({
      dataDir,
      stopGraceSeconds: 2,
      logRetentionBytes: 1024 * 1024,
      restart: { initialMs: 100 },
      timing: { logPollMs: 50 },
      ...over,
      ...o,
      hooks: recordingHooks({ events, logs, logEvents: true }, (key, ids) => h.beforeStop(key, ids)),
    });
    rt.onChange((s) => {
      statuses.push(s);
      events.push('status');
      recordPids();
    });
    return rt;
  };
  h.runtime = make({});
  t.teardown(async () => {
    for (const s of await h.runtime.list()) await h.runtime.remove(s.key);
    await h.runtime.close();
    recordPids();
    const left = [...pids].filter(pidAlive);
    for (const pid of left) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
    // Teardown runs after the test's plan: a throw here fails the test.
    if (left.length > 0) throw new Error(`replica processes left behind: ${left.join(', ')}`);
  });
  return h;
}

/** One HTTP request with `Connection: close` (no pooled sockets outlive a test). */
export function http(
  method: string,
  url: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolveP, reject) => {
    const req = request(url, { method, agent: false, headers: { connection: 'close', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveP({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** GET `http://<address>/<path>` and parse the JSON body. */
export async function getJson<T>(address: string, path = '/'): Promise<T> {
  const res = await http('GET', `http://${address}${path}`);
  return JSON.parse(res.body) as T;
}
