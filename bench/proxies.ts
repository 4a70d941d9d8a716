// The proxy comparison of the issue: (a) the upstream directly, (b) the bare undici proxy,
// (c) @fastify/http-proxy, (d) nginx (when installed), (e) `portico gateway` on a five-segment
// alias URL with basic auth, metrics and a file access log, and (f) the same gateway with its
// access log off (what the log costs). Full-speed runs interleaved in rounds, then (a), (e)
// and (b) (when run) at a fixed rate of half (e)'s peak.
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, ROOT } from '../test/helpers/portico.ts';
import { freePort } from '../test/helpers/poll.ts';
import { startRedis, type RedisServer } from '../test/helpers/redis.ts';
import { runLoad, type LoadResult } from './load.ts';
import { hasNginx, startNginxProxy } from './nginx.ts';
import { AUTH_HEADERS, ROUTE_PATH, startGatewayProcess, writeBenchRoute } from './portico.ts';
import { cpuMs, waitForHttp, type Proc } from './procs.ts';
import { fix, int, intervalText, median, progress, ratio, ratioInterval, table, type Section } from './report.ts';
import { processTree, type BenchEnv } from './setup.ts';

type Key = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';

interface Contender {
  readonly key: Key;
  readonly name: string;
  readonly url: string;
  /** Processes whose CPU time is counted (the proxy; for (a) the upstream). */
  readonly pids: () => number[];
  /** Called after each run (the gateway's access log is emptied so the disk does not fill). */
  readonly afterRun?: () => void;
  /** Stops the contender's process, if any, and starts a fresh one (proxies; not the upstream). */
  readonly restart?: () => Promise<void>;
}

interface Sample extends LoadResult {
  /** CPU time of the contender's processes per request, microseconds. */
  readonly cpuUsPerReq: number;
}

async function measure(env: BenchEnv, c: Contender, opts: { durationS: number; rate?: number; connections: number }): Promise<Sample> {
  const pids = c.pids();
  const before = pids.reduce((s, p) => s + cpuMs(p), 0);
  const r = await runLoad(env.tool, { url: c.url, connections: opts.connections, durationS: opts.durationS, headers: AUTH_HEADERS, rate: opts.rate, cpus: env.loadCpus });
  const after = pids.reduce((s, p) => s + cpuMs(p), 0);
  c.afterRun?.();
  return { ...r, cpuUsPerReq: r.requests > 0 ? ((after - before) * 1000) / r.requests : NaN };
}

/** Results of `proxyComparison`: the report sections and (e)'s median peak (for the workers section). */
export interface ProxyResults {
  readonly sections: Section[];
  readonly porticoPeak: number;
}

/** Runs the comparison and the fixed-rate latency test; stops every contender it started. */
export async function proxyComparison(env: BenchEnv, only: ReadonlySet<string> = new Set(['a', 'b', 'c', 'd', 'e', 'f'])): Promise<ProxyResults> {
  const { procs, dir } = env;
  const up = env.upstream;
  const contenders: Contender[] = [];
  let redis: RedisServer | undefined;
  // Each proxy contender's current process: restarted every round (see below), stopped at the end.
  const current = new Map<Key, Proc>();
  try {
    contenders.push({ key: 'a', name: `upstream directly (${up.kind === 'nginx' ? 'nginx, 1 worker' : 'Node http server'})`, url: `http://${up.address}${ROUTE_PATH}`, pids: () => processTree(up.proc.pid) });
    // A proxy contender: `launch` starts a fresh process of it on `port`.
    const proxy = (key: Key, name: string, port: number, launch: () => Proc, extra: Partial<Contender> = {}): void => {
      const url = `http://127.0.0.1:${port}${ROUTE_PATH}`;
      contenders.push({
        key,
        name,
        url,
        pids: () => { const p = current.get(key); return p === undefined ? [] : processTree(p.pid); },
        restart: async () => {
          const before = current.get(key);
          if (before !== undefined) await procs.stop(before);
          const proc = launch();
          current.set(key, proc);
          await waitForHttp(url, { headers: AUTH_HEADERS, proc });
        },
        ...extra,
      });
    };

    if (only.has('b')) {
      const port = await freePort();
      proxy('b', 'bare undici proxy (`bench/bare-proxy.ts`)', port, () => procs.start('bare undici proxy', NODE, [join(ROOT, 'bench', 'bare-proxy.ts'), up.address, String(port)], { cpus: env.proxyCpus }));
    }

    if (only.has('c')) {
      const port = await freePort();
      proxy('c', '`@fastify/http-proxy` (`bench/fastify-proxy.ts`)', port, () => procs.start('fastify proxy', NODE, [join(ROOT, 'bench', 'fastify-proxy.ts'), up.address, String(port)], { cpus: env.proxyCpus }));
    }

    if (hasNginx() && only.has('d')) {
      const port = await freePort();
      proxy('d', 'nginx reverse proxy (1 worker, upstream keep-alive)', port, () => startNginxProxy(procs, dir, port, up.address, env.proxyCpus));
    }

    const rs = await startRedis();
    redis = rs;
    await writeBenchRoute(rs.url, up.address, env.userHash);
    const gwPort = await freePort();
    const gwMetrics = await freePort();
    const accessLog = join(dir, 'access.log');
    proxy('e', '`portico gateway` (Redis, basic auth, metrics, access log to a file)', gwPort,
      () => startGatewayProcess(procs, { redisUrl: rs.url, port: gwPort, metricsPort: gwMetrics, accessLog, cpus: env.proxyCpus }),
      { afterRun: () => truncateSync(accessLog, 0) });

    if (only.has('f')) {
      const port = await freePort();
      const metricsPort = await freePort();
      proxy('f', '`portico gateway` as (e), access log off (`PORTICO_ACCESS_LOG=off`)', port,
        () => startGatewayProcess(procs, { redisUrl: rs.url, port, metricsPort, accessLog: 'off', cpus: env.proxyCpus }));
    }

    // Every round starts each proxy afresh and warms it up: on this machine one process can run
    // about 15% slower than an identical one for its whole life, so a figure taken from one
    // process per contender would be one draw. The median of the rounds is over `rounds` processes.
    progress(`proxy comparison: ${contenders.map((c) => c.key).join(', ')}; ${env.rounds} rounds of ${env.durationS}s, each proxy a fresh process every round, warmed up ${env.warmupS}s`);
    const samples = new Map<Key, Sample[]>(contenders.map((c) => [c.key, []]));
    // (e) runs right between the two proxies it is held to, (b) and (c), so each of its ratios
    // compares runs seconds apart (this machine's speed drifts over tens of seconds), and every
    // other round runs the order backwards, so neither side of a pair always goes first.
    const order = ['a', 'b', 'e', 'c', 'f', 'd'].flatMap((k) => contenders.filter((c) => c.key === k));
    for (let r = 0; r < env.rounds; r++) {
      for (const c of r % 2 === 0 ? order : [...order].reverse()) {
        await c.restart?.();
        await measure(env, c, { durationS: env.warmupS, connections: env.connections });
        const s = await measure(env, c, { durationS: env.durationS, connections: env.connections });
        samples.get(c.key)?.push(s);
        progress(`  round ${r + 1} (${c.key}) ${int(s.rps)} req/s, p50 ${fix(s.p50)} ms, p99 ${fix(s.p99)} ms, ${fix(s.cpuUsPerReq, 1)} us CPU/req${s.errors ? `, ${s.errors} errors` : ''}`);
      }
    }

    const med = (k: Key, f: (s: Sample) => number) => median((samples.get(k) ?? []).map(f));
    const roundRatios = (x: Key, y: Key) => {
      const xs = samples.get(x) ?? [];
      const ys = samples.get(y) ?? [];
      return xs.map((s, i) => s.rps / (ys[i]?.rps ?? NaN));
    };
    const perRound = (x: Key, y: Key) => median(roundRatios(x, y));
    const keys = contenders.map((c) => c.key);
    const peakE = med('e', (s) => s.rps);

    // Fixed rate: half of (e)'s peak, for (a), (b) when it runs (what a bare Node proxy manages at
    // that rate on this machine) and (e).
    const rate = Math.max(100, Math.round(peakE / 2 / 100) * 100);
    const rateConnections = Math.min(env.connections, 32);
    const atRate = contenders.filter((c) => c.key === 'a' || c.key === 'b' || c.key === 'e');
    const rateKeys = atRate.map((c) => `(${c.key})`).join(', ');
    progress(`fixed rate ${int(rate)} req/s: ${rateKeys}, ${env.rounds} rounds of ${env.durationS}s`);
    const fixed = new Map<Key, Sample[]>(atRate.map((c) => [c.key, []]));
    for (let r = 0; r < env.rounds; r++) {
      for (const c of atRate) {
        const s = await measure(env, c, { durationS: env.durationS, rate, connections: rateConnections });
        fixed.get(c.key)?.push(s);
        progress(`  round ${r + 1} (${c.key}) ${int(s.rps)} req/s, p50 ${fix(s.p50)} ms, p99 ${fix(s.p99)} ms${s.errors ? `, ${s.errors} errors` : ''}`);
      }
    }
    // Head to head: (e) and another proxy at full speed at the same time, sharing the proxy's CPU,
    // each driven by its own load generator; fresh processes every round. Both see the same
    // background load at the same moment, so the ratio is steadier than one of runs taken in turn.
    const h2h = new Map<Key, { thr: number[]; cpu: number[]; rows: string[] }>();
    const contender = (k: Key) => contenders.find((c) => c.key === k);
    const e = contender('e') as Contender;
    for (const other of (['b', 'c'] as const).map(contender)) {
      if (other === undefined) continue;
      progress(`head to head: (e) and (${other.key}) at full speed on one CPU, ${env.rounds} rounds of ${env.durationS}s, fresh processes every round`);
      const res = { thr: [] as number[], cpu: [] as number[], rows: [] as string[] };
      for (let r = 0; r < env.rounds; r++) {
        // Started in turn, (e) first, then the other first: neither is always the older process.
        for (const c of r % 2 === 0 ? [e, other] : [other, e]) await c.restart?.();
        const both = (durationS: number) => Promise.all([measure(env, e, { durationS, connections: env.connections }), measure(env, other, { durationS, connections: env.connections })]);
        await both(env.warmupS);
        const [se, so] = await both(env.durationS);
        res.thr.push(se.rps / so.rps);
        res.cpu.push(se.cpuUsPerReq / so.cpuUsPerReq);
        res.rows.push(`${int(se.rps)} / ${int(so.rps)}`);
        progress(`  round ${r + 1}: (e) ${int(se.rps)} req/s ${fix(se.cpuUsPerReq, 1)} us CPU/req, (${other.key}) ${int(so.rps)} req/s ${fix(so.cpuUsPerReq, 1)} us CPU/req`);
      }
      h2h.set(other.key, res);
    }

    const fixedA = fixed.get('a') ?? [];
    const fixedB = fixed.get('b') ?? [];
    const fixedE = fixed.get('e') ?? [];
    const p99a = median(fixedA.map((s) => s.p99));
    const p99e = median(fixedE.map((s) => s.p99));
    const overA = (ss: readonly Sample[]) => median(ss.map((s, i) => s.p99 - (fixedA[i]?.p99 ?? NaN)));
    const p99Delta = overA(fixedE);

    const comparison = [
      table(
        ['', 'contender', 'req/s (median)', 'p50 ms', 'p99 ms', 'CPU µs/req', 'errors', `req/s per round`],
        contenders.map((c) => {
          const ss = samples.get(c.key) ?? [];
          return [`(${c.key})`, c.name, int(med(c.key, (s) => s.rps)), fix(med(c.key, (s) => s.p50)), fix(med(c.key, (s) => s.p99)), fix(med(c.key, (s) => s.cpuUsPerReq), 1), String(ss.reduce((n, s) => n + s.errors, 0)), ss.map((s) => int(s.rps)).join(' / ')];
        }),
      ),
      '',
      'Ratios of throughput, row ÷ column (median of the per-round ratios; each round ran every contender back to back):',
      '',
      table(['', ...keys.map((k) => `(${k})`)], keys.map((x) => [`(${x})`, ...keys.map((y) => (x === y ? '—' : ratio(perRound(x, y))))])),
      '',
      '"CPU µs/req" is the CPU time (user + system, from `/proc`) of the contender\'s own processes divided by the requests served: the cost of a request, which background load disturbs less than throughput. For (a) it is the upstream\'s.',
      ...(keys.includes('f') && keys.includes('b')
        ? [
            '',
            `What the access log costs: (e) ÷ (f) = ${ratio(perRound('e', 'f'))} of the throughput, ${fix(med('e', (s) => s.cpuUsPerReq) - med('f', (s) => s.cpuUsPerReq), 1)} µs of CPU per request. Without it the gateway (auth, metrics, routing cache, headers, request id) runs at (f) ÷ (b) = ${ratio(perRound('f', 'b'))} of the bare undici proxy${keys.includes('c') ? ` and (f) ÷ (c) = ${ratio(perRound('f', 'c'))} of @fastify/http-proxy` : ''}. Before the proxies were restarted every round, one process per contender made this figure a draw: (e) ÷ (f) came out anywhere from 0.8x to 1.0x across runs of the same code.`,
          ]
        : []),
    ].join('\n');

    const headToHead = h2h.size === 0 ? '' : [
      `Both proxies at full speed at the same time on the proxy's CPU, each with its own load generator (${env.connections} connections) on the other CPU, ${env.rounds} rounds of ${env.durationS} s, both fresh processes every round. The ratios are geometric means over the rounds with a 95% interval:`,
      '',
      table(
        ['pair', 'throughput (e) ÷ other', 'CPU per request (e) ÷ other', 'req/s (e) / other, per round'],
        [...h2h].map(([k, v]) => [`(e) and (${k})`, intervalText(ratioInterval(v.thr)), intervalText(ratioInterval(v.cpu)), v.rows.join(', ')]),
      ),
      '',
      'Sharing one CPU is not the same as having it alone, and the targets are read from the runs above, where each proxy has the CPU to itself. Head to head, each process loses its caches to the other at every switch and serves requests in bigger batches when it gets the CPU back; on this machine that favours the gateway, whose per-request code is larger: head to head it has measured ahead of the bare undici proxy (1.06x) in runs where alone it came out behind it (0.85-0.91x). What this measure does show without drift is which of two builds of one proxy does a request with less CPU (`bench/ab.ts`).',
    ].join('\n');

    const latency = [
      `Fixed arrival rate ${int(rate)} req/s (half of (e)'s median peak), ${rateConnections} connections, ${env.rounds} rounds of ${env.durationS} s, ${rateKeys} one after the other in each round:`,
      '',
      table(
        ['', 'achieved req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'p99 per round'],
        [...fixed].map(([k, ss]) => [`(${k})`, int(median(ss.map((s) => s.rps))), fix(median(ss.map((s) => s.p50))), fix(median(ss.map((s) => s.p90))), fix(median(ss.map((s) => s.p99))), fix(median(ss.map((s) => s.p999))), fix(median(ss.map((s) => s.max))), ss.map((s) => fix(s.p99)).join(' / ')]),
      ),
      '',
      `p99 of (e) minus p99 of (a): median over rounds ${fix(p99Delta)} ms (medians: ${fix(p99e)} − ${fix(p99a)} ms).${fixedB.length > 0 ? ` The bare undici proxy (b) at the same rate: ${fix(overA(fixedB))} ms over (a) (p99 ${fix(median(fixedB.map((s) => s.p99)))} ms): the floor for a Node proxy on this machine, to read the target against.` : ''}`,
      '',
      'What drives the tail on this machine, and what was tried: bench/README.md (Tail latency).',
    ].join('\n');

    const eb = perRound('e', 'b');
    const ec = perRound('e', 'c');
    // The target's figure: the median of the per-round ratios, with the 95% interval of their
    // geometric mean (how far this run can be trusted).
    const measured = (x: Key, value: number) => {
      const iv = ratioInterval(roundRatios('e', x));
      return `${fix(value, 3)}x (95% interval of the rounds ${Number.isFinite(iv.lo) ? `${fix(iv.lo)}-${fix(iv.hi)}` : 'n/a'})`;
    };
    return {
      porticoPeak: peakE,
      sections: [
        {
          title: 'Proxy comparison',
          markdown: comparison,
          targets: [
            { name: '(e) >= 0.9 x (b) bare undici proxy', met: Number.isFinite(eb) ? eb >= 0.9 : null, measured: Number.isFinite(eb) ? measured('b', eb) : 'not run' },
            { name: '(e) >= 1.5 x (c) @fastify/http-proxy', met: Number.isFinite(ec) ? ec >= 1.5 : null, measured: Number.isFinite(ec) ? measured('c', ec) : 'not run' },
          ],
        },
        ...(headToHead === '' ? [] : [{ title: 'Head to head on one CPU', markdown: headToHead, targets: [] }]),
        {
          title: 'Latency at a fixed rate',
          markdown: latency,
          targets: [{ name: "p99 of (e) at half its peak <= p99 of (a) + 2 ms at that rate", met: Number.isFinite(p99Delta) ? p99Delta <= 2 : null, measured: `${p99Delta >= 0 ? '+' : ''}${fix(p99Delta)} ms at ${int(rate)} req/s` }],
        },
      ],
    };
  } finally {
    for (const p of current.values()) await procs.stop(p);
    await redis?.stop();
  }
}
