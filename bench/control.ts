// Control-path benchmarks: how fast a new version serves, and how fast an alias flip is
// acknowledged by several gateway processes on Redis. Run by `npm run bench` (bench/run.ts),
// or alone: `node bench/control.ts`.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, waitFor } from '../test/helpers/poll.ts';
import { NODE, PORTICO, ROOT, killReplicas, removeDataDir, startPortico } from '../test/helpers/portico.ts';
import { startRedis } from '../test/helpers/redis.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');

/** Percentile (nearest rank) of sorted numbers. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

const ms = (n: number) => `${n.toFixed(1)} ms`;

/** Time from `POST versions` to the first 200 through the gateway, `runs` times. */
export async function deployLatency(runs = 10): Promise<{ samples: number[]; markdown: string }> {
  const p = await startPortico({ env: { PORTICO_ACCESS_LOG: 'off' } });
  const samples: number[] = [];
  try {
    await p.api('POST', '/projects/bench/nlp/deployments', { name: 'web' });
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      const r = await p.api('POST', '/projects/bench/nlp/deployments/web/versions', { source: { path: EXAMPLE } });
      if (r.status !== 202) throw new Error(`POST versions: ${r.status} ${JSON.stringify(r.body)}`);
      const url = `${p.gatewayUrl}/bench/nlp/web/${r.body.name}/sentiment`;
      await waitFor(async () => {
        const res = await request(url);
        await res.body.dump();
        return res.statusCode === 200;
      }, { intervalMs: 5, timeoutMs: 30_000, what: 'first 200' });
      samples.push(performance.now() - started);
      // Keep the machine's load steady: only the newest version runs.
      await p.api('PATCH', `/projects/bench/nlp/deployments/web/versions/${r.body.name}`, { enabled: false });
    }
  } finally {
    await p.stop();
    await removeDataDir(p.dataDir);
  }
  const s = [...samples].sort((a, b) => a - b);
  const markdown = [
    `Node example (\`examples/node-sentiment\`, 1 replica, local runtime), ${runs} versions one after the other:`,
    '',
    '| median | p90 | max | target |',
    '|---|---|---|---|',
    `| ${ms(percentile(s, 50))} | ${ms(percentile(s, 90))} | ${ms(s.at(-1) ?? NaN)} | < 3000 ms |`,
  ].join('\n');
  return { samples, markdown };
}

function spawnPortico(command: string, env: Record<string, string>): ChildProcess {
  return spawn(NODE, [PORTICO, command], {
    env: { PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? '/root', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** `PUT alias` latency with `gateways` gateway processes on Redis, every PUT fully acknowledged. */
export async function flipLatency(gateways = 4, flips = 200): Promise<{ samples: number[]; markdown: string }> {
  const redis = await startRedis();
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-bench-'));
  const base = { PORTICO_REDIS_URL: redis.url, PORTICO_DATA_DIR: dataDir, PORTICO_ACCESS_LOG: 'off', PORTICO_ADMIN_TOKEN: 'bench-token-0123456789' };
  const procs: ChildProcess[] = [];
  const samples: number[] = [];
  try {
    const adminPort = await freePort();
    const admin = `http://127.0.0.1:${adminPort}`;
    procs.push(spawnPortico('controller', { ...base, PORTICO_ADMIN_PORT: String(adminPort) }));
    const gatewayUrls: string[] = [];
    for (let i = 0; i < gateways; i++) {
      const port = await freePort();
      gatewayUrls.push(`http://127.0.0.1:${port}`);
      procs.push(spawnPortico('gateway', { ...base, PORTICO_GATEWAY_PORT: String(port), PORTICO_METRICS_PORT: String(await freePort()) }));
    }
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await request(`${admin}/api/v1${path}`, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${base.PORTICO_ADMIN_TOKEN}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.statusCode, body: (await res.body.json()) as any };
    };
    await waitFor(async () => (await request(`${admin}/healthz`).then((r) => r.body.dump().then(() => r.statusCode), () => 0)) === 200, { timeoutMs: 30_000 });
    for (const g of gatewayUrls) {
      await waitFor(async () => (await request(`${g}/readyz`).then((r) => r.body.dump().then(() => r.statusCode), () => 0)) === 200, { timeoutMs: 30_000 });
    }
    await api('POST', '/projects/bench/nlp/deployments', { name: 'web' });
    const versions: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await api('POST', '/projects/bench/nlp/deployments/web/versions', { source: { path: EXAMPLE } });
      versions.push(r.body.name);
      await waitFor(async () => (await api('GET', `/projects/bench/nlp/deployments/web/versions/${r.body.name}`)).body.status === 'ready', { timeoutMs: 30_000 });
    }
    // Every gateway must be live (heartbeating) before flips are measured.
    await waitFor(async () => {
      const r = await api('PUT', '/projects/bench/nlp/deployments/web/aliases/production', { version: versions[0] });
      return r.body.acknowledged?.length === gateways;
    }, { timeoutMs: 30_000, what: `${gateways} gateways acknowledging` });
    let missing = 0;
    for (let i = 0; i < flips; i++) {
      const started = performance.now();
      const r = await api('PUT', '/projects/bench/nlp/deployments/web/aliases/production', { version: versions[(i + 1) % 2] });
      samples.push(performance.now() - started);
      if (r.status !== 200 || r.body.acknowledged.length !== gateways) missing++;
    }
    if (missing > 0) throw new Error(`${missing} flips were not acknowledged by all ${gateways} gateways`);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))));
    killReplicas(dataDir); // `portico controller` leaves its replicas running when stopped
    await redis.stop();
    await removeDataDir(dataDir);
  }
  const s = [...samples].sort((a, b) => a - b);
  const markdown = [
    `\`portico controller\` + ${gateways} \`portico gateway\` processes on one redis-server, ${flips} flips, each acknowledged by all ${gateways}:`,
    '',
    '| p50 | p95 | p99 | max | target |',
    '|---|---|---|---|---|',
    `| ${ms(percentile(s, 50))} | ${ms(percentile(s, 95))} | ${ms(percentile(s, 99))} | ${ms(s.at(-1) ?? NaN)} | p99 < 20 ms |`,
  ].join('\n');
  return { samples, markdown };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log((await deployLatency()).markdown);
  console.log();
  console.log((await flipLatency()).markdown);
}
