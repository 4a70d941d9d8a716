// Paired CPU-cost measurement for performance work on the gateway (not part of `npm run bench`):
// two contenders run at the same time on the same CPU, each driven by its own wrk at the same
// fixed rate (or both at full speed with --rate 0), and the CPU time each used per request is
// compared. Both see the same background load at the same moment, so their ratio is far steadier
// on a shared machine than throughput measured one after the other.
//   node bench/ab.ts [--a bare] [--b gateway] [--a-flags=<node flags>] [--b-flags=...] [--rate 3000]
//                    [--duration 10] [--rounds 3] [--fresh] [--profile]
// A contender is `bare` (bench/bare-proxy.ts), `fastify` (bench/fastify-proxy.ts), `raw` (the
// bare proxy on a minimal hand-written HTTP/1.1 client, bench/raw-client-proxy.ts), `gateway`
// (this tree's `portico gateway`, set up as contender (e): Redis, basic auth, metrics, access log
// to a file), `gateway:<dir>` (the gateway of another copy of the repository: before/after),
// `gateway-nolog[:<dir>]` (access log off) or `gateway-devnull[:<dir>]` (access log to
// /dev/null). Flags replace the first line of bin/portico.ts (its own Node flags and malloc
// settings): compare flags against flags, or edit that line in a copy. With --profile both run
// under --cpu-prof and their self time per request is listed side by side. With --fresh both
// contenders are started afresh every round (one process is one draw here: identical gateways
// differ by up to 15% for their whole life, bench/README.md), so the result is over as many pairs
// of processes as rounds; use 8 or more.
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/poll.ts';
import { NODE, ROOT } from '../test/helpers/portico.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { defaultTool, runLoad, type LoadResult } from './load.ts';
import { AUTH_HEADERS, ROUTE_PATH, benchUserHash, startGatewayProcess, writeBenchRoute } from './portico.ts';
import { selfTimes, type Profile } from './profile.ts';
import { Procs, cpuMs, waitForHttp, type Proc } from './procs.ts';
import { fix, int, median, ratioInterval } from './report.ts';
import { startUpstream } from './setup.ts';

const { values } = parseArgs({
  options: {
    a: { type: 'string', default: 'bare' },
    b: { type: 'string', default: 'gateway' },
    'a-flags': { type: 'string', default: '' },
    'b-flags': { type: 'string', default: '' },
    rate: { type: 'string', default: '3000' },
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    profile: { type: 'boolean', default: false },
    fresh: { type: 'boolean', default: false },
  },
});
const rate = Number(values.rate);
if (values.fresh && values.profile) throw new Error('--fresh and --profile do not go together');
const durationS = Number(values.duration);
const procs = new Procs();
const dir = mkdtempSync(join(tmpdir(), 'portico-ab-'));
const redis = await startRedis();

interface Side {
  readonly label: string;
  readonly proc: Proc;
  readonly url: string;
  readonly profDir: string;
  readonly accessLog: string | null;
  served: number;
}

async function start(spec: string, label: string, upstream: string): Promise<Side> {
  const port = await freePort();
  const profDir = join(dir, `prof-${label}`);
  const extra = (label === 'a' ? values['a-flags'] : values['b-flags']).split(' ').filter(Boolean);
  const flags = [...extra, ...(values.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])];
  const scripts: Record<string, string> = { bare: 'bare-proxy.ts', fastify: 'fastify-proxy.ts', raw: 'raw-client-proxy.ts' };
  const script = scripts[spec];
  if (script !== undefined) {
    const proc = procs.start(spec, NODE, [...flags, join(ROOT, 'bench', script), upstream, String(port)], { cpus: '1' });
    const url = `http://127.0.0.1:${port}${ROUTE_PATH}`;
    await waitForHttp(url, { proc });
    return { label, proc, url, profDir, accessLog: null, served: 0 };
  }
  const m = /^gateway(-nolog|-devnull)?(?::(.+))?$/.exec(spec);
  if (!m) throw new Error(`unknown contender ${spec}`);
  const accessLog = m[1] ? null : join(dir, `access-${label}.log`);
  const proc = startGatewayProcess(procs, { redisUrl: redis.url, port, metricsPort: await freePort(), accessLog: accessLog ?? (m[1] === '-devnull' ? '/dev/null' : 'off'), cpus: '1', nodeFlags: flags, ...(m[2] ? { root: m[2] } : {}) });
  const url = `http://127.0.0.1:${port}${ROUTE_PATH}`;
  await waitForHttp(url, { headers: AUTH_HEADERS, proc });
  return { label, proc, url, profDir, accessLog, served: 0 };
}

try {
  const upstream = await startUpstream(procs, dir, '0');
  await writeBenchRoute(redis.url, upstream.address, await benchUserHash());
  let a = await start(values.a, 'a', upstream.address);
  let b = await start(values.b, 'b', upstream.address);
  const ratios: number[] = [];
  const run = async (s: Side, seconds: number): Promise<[LoadResult, number]> => {
    const c0 = cpuMs(s.proc.pid);
    // --rate 0: both as fast as they can go, sharing the CPU (each gets about half of it).
    const r = await runLoad(defaultTool(), { url: s.url, connections: rate > 0 ? 16 : 50, durationS: seconds, headers: AUTH_HEADERS, ...(rate > 0 ? { rate } : {}), cpus: '0' });
    const us = ((cpuMs(s.proc.pid) - c0) * 1000) / r.requests;
    if (s.accessLog !== null) truncateSync(s.accessLog, 0);
    s.served += r.requests;
    return [r, us];
  };
  const line = (s: string, r: LoadResult, us: number) => `${s} ${int(r.rps)} req/s ${fix(us, 1)} us/req p50 ${fix(r.p50)} p99 ${fix(r.p99)} ms${r.errors ? ` ${r.errors} errors` : ''}`;
  await Promise.all([run(a, 3), run(b, 3)]); // warm-up
  for (let i = 1; i <= Number(values.rounds); i++) {
    if (values.fresh && i > 1) {
      await Promise.all([procs.stop(a.proc), procs.stop(b.proc)]);
      // Started in turn, first a then b, then b then a: neither is always the older process.
      if (i % 2 === 0) {
        b = await start(values.b, 'b', upstream.address);
        a = await start(values.a, 'a', upstream.address);
      } else {
        a = await start(values.a, 'a', upstream.address);
        b = await start(values.b, 'b', upstream.address);
      }
      await Promise.all([run(a, 3), run(b, 3)]); // warm-up
    }
    const [[ra, ua], [rb, ub]] = await Promise.all([run(a, durationS), run(b, durationS)]);
    ratios.push(ub / ua);
    console.log(`round ${i}: ${line(`a=${values.a}`, ra, ua)} | ${line(`b=${values.b}`, rb, ub)} | b/a ${fix(ub / ua, 3)}`);
  }
  const iv = ratioInterval(ratios);
  console.log(`geometric mean b ÷ a: ${fix(iv.mean, 3)} (95% interval ${fix(iv.lo, 3)}-${fix(iv.hi, 3)}, ${ratios.length} ${values.fresh ? 'fresh pairs' : 'rounds of one pair'})`);
  console.log(`median CPU/req ratio b ÷ a: ${fix(median(ratios), 3)} (${ratios.map((r) => fix(r, 3)).join(', ')})`);
  if (values.profile) {
    await procs.stop(a.proc);
    await procs.stop(b.proc);
    const load = (s: Side) => {
      const f = readdirSync(s.profDir).find((x) => x.endsWith('.cpuprofile')) as string;
      return selfTimes(JSON.parse(readFileSync(join(s.profDir, f), 'utf8')) as Profile);
    };
    const pa = load(a);
    const pb = load(b);
    const diff = (key: 'byFile' | 'byFn', width: number) => {
      const rows = [...new Set([...pb[key].keys(), ...pa[key].keys()])]
        .map((k) => [k, (pa[key].get(k) ?? 0) / a.served, (pb[key].get(k) ?? 0) / b.served] as const)
        .sort((x, y) => y[2] - y[1] - (x[2] - x[1]));
      console.log(`\n${(key === 'byFile' ? 'file' : 'function').padEnd(width)} ${'a'.padStart(7)} ${'b'.padStart(7)} ${'b-a'.padStart(7)}`);
      for (const [k, x, y] of rows.slice(0, 40)) console.log(`${k.slice(0, width).padEnd(width)} ${fix(x).padStart(7)} ${fix(y).padStart(7)} ${fix(y - x).padStart(7)}`);
    };
    console.log(`\nprofiled self time per request (us, wall-clock samples, warm-up included): a ${fix(pa.busy / a.served, 1)}, b ${fix(pb.busy / b.served, 1)}`);
    diff('byFile', 48);
    diff('byFn', 72);
  }
} finally {
  await procs.stopAll();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
