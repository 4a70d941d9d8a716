// Memory: 100,000 routes in Redis, a gateway with a 10,000-entry route cache, and a load run
// cycling over 20,000 distinct endpoint URLs (every request misses the cache: the worst case of
// an LRU). RSS is read from /proc after the run, and after one /metrics scrape. The gateway runs
// as shipped and, unless quick, once more with process-level memory settings, to show their effect.
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { freePort } from '../test/helpers/poll.ts';
import { startRedis, type RedisServer } from '../test/helpers/redis.ts';
import { runLoad, type LoadResult } from './load.ts';
import { AUTH_HEADERS, startGatewayProcess, writeManyRoutes } from './portico.ts';
import { rssMiB, waitForHttp, type Proc } from './procs.ts';
import { fix, int, progress, table, type Section } from './report.ts';
import type { BenchEnv } from './setup.ts';

const DEPLOYMENTS = 100;
const ENDPOINTS_PER_DEPLOYMENT = 1000;
const DISTINCT = 20_000;
const CACHE_SIZE = 10_000;
// The issue's limit, read strictly: 200 MB = 200 x 10^6 bytes (190.7 MiB).
const LIMIT_MB = 200;
const LIMIT_MIB = (LIMIT_MB * 1e6) / 2 ** 20;
const mb = (mib: number) => fix((mib * 2 ** 20) / 1e6, 1);

/** How the gateway process is started in one memory run. */
interface Setting {
  readonly label: string;
  readonly env: Readonly<Record<string, string>>;
  /** Run as the image does (see `startGatewayProcess`). */
  readonly direct?: boolean;
}

// `bin/portico.ts` itself, so its first line applies: at most two malloc arenas, large blocks
// (scrypt's 16 MiB) returned to the system at once, a young generation of 2 x 16 MiB.
const SHIPPED: Setting = { label: '`bin/portico.ts gateway`, no heap bound', env: {} };
// As deploy/kubernetes runs the gateway in the image (`node bin/portico.ts`, flags from
// NODE_OPTIONS): a heap bound well inside the container's memory limit (the gateway refuses to
// start if its cache settings need more) and a 2 x 8 MiB young generation.
const DEPLOYED_OPTIONS = '--max-old-space-size=128 --max-semi-space-size=8';
const DEPLOYED: Setting = {
  label: `as deploy/kubernetes runs it (\`NODE_OPTIONS=${DEPLOYED_OPTIONS}\`, the image's malloc settings)`,
  env: { NODE_OPTIONS: DEPLOYED_OPTIONS, MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' },
  direct: true,
};

interface Outcome {
  readonly setting: Setting;
  readonly load: LoadResult;
  readonly start: number;
  readonly after: number;
  readonly scraped: number;
  readonly peak: number;
  readonly heapUsed: number;
  readonly cacheEntries: number;
  readonly misses: number;
  readonly metricsMiB: number;
  readonly metricsLines: number;
  /** The gateway's own warnings and errors during the run (JSON log lines). */
  readonly complaints: string[];
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function once(env: BenchEnv, redisUrl: string, setting: Setting, durationS: number): Promise<Outcome> {
  const { procs, dir } = env;
  let gw: Proc | undefined;
  try {
    const port = await freePort();
    const metricsPort = await freePort();
    const log = join(dir, 'access-memory.log');
    gw = startGatewayProcess(procs, { redisUrl, port, metricsPort, accessLog: log, cacheSize: CACHE_SIZE, cpus: env.proxyCpus, env: setting.env, ...(setting.direct ? { direct: true } : {}) });
    await waitForHttp(`http://127.0.0.1:${port}/readyz`, { proc: gw });
    await delay(500);
    const start = rssMiB(gw.pid).rss;
    progress(`memory (${setting.label}): load over ${int(DISTINCT)} distinct endpoints for ${durationS}s (gateway RSS ${fix(start, 1)} MiB)`);
    const load = await runLoad(env.tool, {
      url: `http://127.0.0.1:${port}/`,
      connections: env.connections,
      durationS,
      headers: AUTH_HEADERS,
      routes: `mem/p/${DEPLOYMENTS}/${ENDPOINTS_PER_DEPLOYMENT}/${DISTINCT}`,
      cpus: env.loadCpus,
    });
    truncateSync(log, 0);
    await delay(1000);
    const after = rssMiB(gw.pid).rss;
    const res = await request(`http://127.0.0.1:${metricsPort}/metrics`);
    const text = await res.body.text();
    await delay(1000);
    const scraped = rssMiB(gw.pid);
    progress(`memory (${setting.label}): ${int(load.rps)} req/s, ${load.errors} errors, RSS after ${fix(after, 1)} MiB, after a scrape ${fix(scraped.rss, 1)} MiB, peak ${fix(scraped.peak, 1)} MiB`);
    const complaints = gw.output().split('\n').filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'));
    return {
      setting,
      load,
      start,
      after,
      scraped: scraped.rss,
      peak: scraped.peak,
      heapUsed: metric(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
      cacheEntries: metric(text, 'portico_gateway_route_cache_entries'),
      misses: metric(text, 'portico_gateway_route_cache_misses_total'),
      metricsMiB: text.length / 2 ** 20,
      metricsLines: text.split('\n').length,
      complaints,
    };
  } finally {
    if (gw) await procs.stop(gw);
  }
}

/** Runs the memory test; stops what it started. */
export async function memoryTest(env: BenchEnv, durationS: number): Promise<Section> {
  let redis: RedisServer | undefined;
  try {
    redis = await startRedis();
    const t0 = performance.now();
    const routes = await writeManyRoutes(redis.url, env.upstream.address, env.userHash, DEPLOYMENTS, ENDPOINTS_PER_DEPLOYMENT);
    progress(`memory: ${int(routes)} routes written to Redis in ${fix((performance.now() - t0) / 1000, 1)} s`);
    const outcomes: Outcome[] = [];
    for (const s of env.quick ? [DEPLOYED] : [DEPLOYED, SHIPPED]) outcomes.push(await once(env, redis.url, s, durationS));
    const shipped = outcomes[0] as Outcome;
    const touched = (o: Outcome) => Math.min(o.load.requests, DISTINCT);
    const complaints = outcomes.flatMap((o) => o.complaints.map((c) => `${o.setting.label}: ${c}`));
    const markdown = [
      `${int(routes)} endpoint routes (${DEPLOYMENTS} deployments × ${int(ENDPOINTS_PER_DEPLOYMENT)} endpoints, basic auth, alias \`production\`) in Redis; \`portico gateway\` with \`PORTICO_CACHE_SIZE=${CACHE_SIZE}\`, access log to a file, pinned like (e); ${env.connections} connections for ${durationS} s cycling over ${int(DISTINCT)} distinct endpoint URLs \`/mem/p/dNNN/production/eNNNN\` (each request a cache miss and a Redis read; the first request of each deployment a scrypt verification). Every endpoint has the same replica address, so this measures the routing cache, the auth cache and the per-route metrics, not thousands of upstream pools. RSS is read 1 s after the run, then after one \`/metrics\` scrape.`,
      '',
      table(
        ['gateway process', 'requests', 'req/s', 'errors', 'endpoints touched', 'cache entries', 'cache misses', 'RSS at start', 'RSS after the run', 'RSS after a scrape', 'peak RSS', 'V8 heap used'],
        outcomes.map((o) => [o.setting.label, int(o.load.requests), int(o.load.rps), String(o.load.errors), int(touched(o)), int(o.cacheEntries), int(o.misses), `${fix(o.start, 1)} MiB`, `${fix(o.after, 1)} MiB`, `${fix(o.scraped, 1)} MiB`, `${fix(o.peak, 1)} MiB`, `${fix(o.heapUsed, 1)} MiB`]),
      ),
      '',
      `After the run the \`/metrics\` exposition is ${fix(shipped.metricsMiB, 1)} MiB of text (${int(shipped.metricsLines)} lines): at most \`PORTICO_METRICS_MAX_ROUTES\` (2,000) routes keep their own series, the longest idle are dropped.`,
      ...(complaints.length > 0
        ? ['', `The gateway logged ${complaints.length} warning/error line${complaints.length > 1 ? 's' : ''} during these runs; the first: \`${(complaints[0] as string).slice(0, 300)}\``]
        : []),
    ].join('\n');
    const ok = touched(shipped) >= DISTINCT && shipped.load.errors === 0;
    return {
      title: 'Memory with many routes',
      markdown,
      targets: [
        {
          name: `gateway RSS < ${LIMIT_MB} MB (${fix(LIMIT_MIB, 1)} MiB) after touching ${int(DISTINCT)} endpoints of ${int(routes)} (${shipped.setting.label})`,
          met: ok ? shipped.after < LIMIT_MIB : false,
          measured: `${fix(shipped.after, 1)} MiB = ${mb(shipped.after)} MB (${fix(shipped.scraped, 1)} MiB = ${mb(shipped.scraped)} MB after a scrape)${touched(shipped) < DISTINCT ? `, only ${int(touched(shipped))} touched` : ''}${shipped.load.errors ? `, ${shipped.load.errors} errors` : ''}`,
        },
        ...outcomes.slice(1).map((o) => ({ name: `the same with ${o.setting.label} (no target)`, met: null, measured: `${fix(o.after, 1)} MiB (${fix(o.scraped, 1)} after a scrape)` })),
      ],
    };
  } finally {
    await redis?.stop();
  }
}
