// PORTICO_GATEWAY_WORKERS=1 vs 2: the same route through `portico gateway` with one process and
// with a cluster of two workers, both free to run on every CPU, interleaved in rounds.
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/poll.ts';
import { startRedis, type RedisServer } from '../test/helpers/redis.ts';
import { runLoad, type LoadResult } from './load.ts';
import { AUTH_HEADERS, ROUTE_PATH, startGatewayProcess, writeBenchRoute } from './portico.ts';
import { waitForHttp, type Proc } from './procs.ts';
import { fix, int, median, progress, ratio, table, type Section } from './report.ts';
import type { BenchEnv } from './setup.ts';

/** Runs the workers comparison; stops what it started. */
export async function workersComparison(env: BenchEnv): Promise<Section> {
  const { procs, dir } = env;
  let redis: RedisServer | undefined;
  const started: Proc[] = [];
  try {
    redis = await startRedis();
    await writeBenchRoute(redis.url, env.upstream.address, env.userHash);
    const runs: { workers: number; url: string; log: string; samples: LoadResult[] }[] = [];
    for (const workers of [1, 2]) {
      const port = await freePort();
      const log = join(dir, `access-workers-${workers}.log`);
      // No CPU given: every worker may run on every CPU (the load generator stays on its own).
      const gw = startGatewayProcess(procs, { redisUrl: redis.url, port, metricsPort: await freePort(), accessLog: log, workers });
      started.push(gw);
      const url = `http://127.0.0.1:${port}${ROUTE_PATH}`;
      await waitForHttp(url, { headers: AUTH_HEADERS, proc: gw });
      runs.push({ workers, url, log, samples: [] });
    }
    progress(`workers 1 vs 2: warm-up ${env.warmupS}s each, then ${env.rounds} rounds of ${env.durationS}s`);
    for (const r of runs) {
      // Several warm-up runs: a cluster's connections are spread over its workers as they arrive.
      await runLoad(env.tool, { url: r.url, connections: env.connections, durationS: env.warmupS, headers: AUTH_HEADERS, cpus: env.loadCpus });
      truncateSync(r.log, 0);
    }
    for (let i = 0; i < env.rounds; i++) {
      for (const r of runs) {
        const s = await runLoad(env.tool, { url: r.url, connections: env.connections, durationS: env.durationS, headers: AUTH_HEADERS, cpus: env.loadCpus });
        truncateSync(r.log, 0);
        r.samples.push(s);
        progress(`  round ${i + 1} (workers=${r.workers}) ${int(s.rps)} req/s, p99 ${fix(s.p99)} ms${s.errors ? `, ${s.errors} errors` : ''}`);
      }
    }
    const [one, two] = runs as [(typeof runs)[0], (typeof runs)[0]];
    const speedup = median(two.samples.map((s, i) => s.rps / (one.samples[i]?.rps ?? NaN)));
    const markdown = [
      table(
        ['PORTICO_GATEWAY_WORKERS', 'req/s (median)', 'p50 ms', 'p99 ms', 'errors', 'req/s per round'],
        runs.map((r) => [String(r.workers), int(median(r.samples.map((s) => s.rps))), fix(median(r.samples.map((s) => s.p50))), fix(median(r.samples.map((s) => s.p99))), String(r.samples.reduce((n, s) => n + s.errors, 0)), r.samples.map((s) => int(s.rps)).join(' / ')]),
      ),
      '',
      `2 workers ÷ 1 worker: ${ratio(speedup)} (median of the per-round ratios).`,
    ].join('\n');
    return { title: 'Gateway workers', markdown, targets: [{ name: 'PORTICO_GATEWAY_WORKERS=2 vs 1 (measured, no target)', met: null, measured: ratio(speedup) }] };
  } finally {
    for (const p of started) await procs.stop(p);
    await redis?.stop();
  }
}
