// The load generator when wrk is not installed (or with `--tool autocannon`): one autocannon
// run, its options as JSON in argv[2]; prints the same `BENCH_JSON {...}` line as
// bench/wrk/bench.lua. Run by bench/load.ts in its own process, pinned like wrk.
import { createRequire } from 'node:module';

// autocannon ships no types: the part of its API used here.
interface Request {
  path?: string;
  setupRequest?: (req: Request) => Request;
}
interface Result {
  duration: number;
  requests: { total: number };
  throughput: { total: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  latency: { mean: number; p50: number; p90: number; p99: number; p99_9: number; max: number };
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => Promise<Result>;

interface Options {
  url: string;
  connections: number;
  durationS: number;
  headers: Record<string, string>;
  rate?: number;
  routes?: string;
}

const o = JSON.parse(process.argv[2] as string) as Options;
let requests: Request[] | undefined;
if (o.routes !== undefined) {
  const [owner, project, deployments, endpoints, distinct] = o.routes.split('/') as [string, string, string, string, string];
  let i = 0;
  requests = [{
    setupRequest: (req) => {
      const d = i % Number(deployments);
      const e = Math.floor(i / Number(deployments)) % Number(endpoints);
      i = (i + 1) % Number(distinct);
      return { ...req, path: `/${owner}/${project}/d${String(d).padStart(3, '0')}/production/e${String(e).padStart(4, '0')}` };
    },
  }];
}
const r = await autocannon({
  url: o.url,
  connections: o.connections,
  duration: o.durationS,
  headers: o.headers,
  ...(o.rate !== undefined ? { overallRate: o.rate } : {}),
  ...(requests !== undefined ? { requests } : {}),
});
const us = (ms: number) => Math.round(ms * 1000);
const out = {
  requests: r.requests.total,
  durationUs: Math.round(r.duration * 1e6),
  bytes: r.throughput.total,
  errors: { connect: 0, read: r.errors, write: 0, status: r.non2xx, timeout: r.timeouts },
  latencyUs: { mean: us(r.latency.mean), p50: us(r.latency.p50), p90: us(r.latency.p90), p99: us(r.latency.p99), p999: us(r.latency.p99_9), max: us(r.latency.max) },
};
console.log(`BENCH_JSON ${JSON.stringify(out)}`);
