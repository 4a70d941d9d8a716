// `npm run bench`: the proxy comparison, the fixed-rate latency test, the workers comparison,
// the memory test and the control-path latencies (bench/control.ts), then docs/benchmarks.md.
// `node bench/run.ts --help` lists the options.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from '../test/helpers/portico.ts';
import { deployLatency, flipLatency, percentile } from './control.ts';
import { defaultTool, packageVersion, toolVersion, type LoadTool } from './load.ts';
import { memoryTest } from './memory.ts';
import { hasNginx, nginxVersion } from './nginx.ts';
import { benchUserHash } from './portico.ts';
import { Procs, versionOf } from './procs.ts';
import { proxyComparison } from './proxies.ts';
import { fix, progress, table, type Section, type Target } from './report.ts';
import { startUpstream, type BenchEnv } from './setup.ts';
import { workersComparison } from './workers.ts';

const SECTIONS = ['proxies', 'workers', 'memory', 'control'] as const;
type SectionName = (typeof SECTIONS)[number];

const HELP = `Usage: npm run bench -- [options]     (or: node bench/run.ts [options])

Runs the gateway benchmarks and writes docs/benchmarks.md.

Options:
  --quick             Short runs (1 round, 3 s runs, fewer control samples): a smoke test, ~2 min.
  --rounds N          Rounds of each interleaved comparison (default 7; quick 1).
  --duration S        Seconds of each load run (default 6; quick 3).
  --connections N     Connections of full-speed runs (default 50).
  --only LIST         Comma-separated sections to run: ${SECTIONS.join(', ')} (default all).
  --contenders LIST   Proxy comparison contenders among a,b,c,d,e,f (default all; a and e are
                      always run: the fixed-rate test needs them).
  --tool NAME         Load generator: wrk or autocannon (default wrk when installed).
  --out FILE          Where to write the report (default docs/benchmarks.md).
  -h, --help          Show this help.
`;

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${HELP}`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        duration: { type: 'string' },
        connections: { type: 'string' },
        only: { type: 'string' },
        tool: { type: 'string' },
        contenders: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    });
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
})();
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const posInt = (name: string, v: string | undefined, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer`);
  return n;
};
const quick = values.quick === true;
const only = new Set<SectionName>(
  values.only === undefined
    ? SECTIONS
    : values.only.split(',').map((s) => {
        if (!(SECTIONS as readonly string[]).includes(s)) fail(`--only: unknown section ${s}`);
        return s as SectionName;
      }),
);
if (values.tool !== undefined && values.tool !== 'wrk' && values.tool !== 'autocannon') fail('--tool must be wrk or autocannon');
const tool: LoadTool = (values.tool as LoadTool | undefined) ?? defaultTool();
const wrkMissing = defaultTool() !== 'wrk';
if (tool === 'wrk' && wrkMissing) fail('wrk is not installed');
const outFile = values.out ?? join(ROOT, 'docs', 'benchmarks.md');
const rounds = posInt('rounds', values.rounds, quick ? 1 : 7);
const durationS = posInt('duration', values.duration, quick ? 3 : 6);
const connections = posInt('connections', values.connections, 50);
const contenders = new Set(['a', 'e', ...(values.contenders ?? 'a,b,c,d,e,f').split(',')]);
for (const c of contenders) if (!['a', 'b', 'c', 'd', 'e', 'f'].includes(c)) fail(`--contenders: unknown contender ${c}`);

const startedAt = new Date();
const loadStart = loadavg();
const t0 = performance.now();
const procs = new Procs();
const dir = mkdtempSync(join(tmpdir(), 'portico-bench-'));
const twoCpus = availableParallelism() >= 2;

let interrupted = false;
const onSignal = () => {
  if (interrupted) return;
  interrupted = true;
  progress('interrupted: stopping the processes this run started');
  void procs.stopAll().finally(() => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const sections: Section[] = [];
const notes: string[] = [];
if (!hasNginx()) notes.push('nginx is not installed: contender (d) is left out and the upstream is a minimal Node HTTP server (`bench/node-upstream.ts`).');
if (wrkMissing) notes.push('wrk is not installed: the load generator is autocannon (latencies at millisecond resolution).');
if (!Procs.canPin) notes.push('taskset is not installed: no process is pinned to a CPU.');
if (!twoCpus) notes.push('one CPU only: the load generator and the proxy share it.');

try {
  progress(`hashing the benchmark user's password; starting the upstream`);
  const env: BenchEnv = {
    procs,
    dir,
    tool,
    quick,
    rounds,
    durationS,
    warmupS: quick ? 1 : 2,
    connections,
    loadCpus: '0',
    proxyCpus: twoCpus ? '1' : '0',
    upstream: await startUpstream(procs, dir, '0'),
    userHash: await benchUserHash(),
  };
  // A section that fails is reported as failed; the others still run.
  const attempt = async (title: string, run: () => Promise<Section[]>) => {
    try {
      sections.push(...(await run()));
    } catch (err) {
      progress(`${title} failed: ${err instanceof Error ? err.stack : String(err)}`);
      sections.push({ title, markdown: `**Failed**: \`${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\``, targets: [{ name: title, met: false, measured: 'failed' }] });
    }
  };
  if (only.has('proxies')) await attempt('Proxy comparison', async () => (await proxyComparison(env, contenders)).sections);
  if (only.has('workers')) await attempt('Gateway workers', async () => [await workersComparison(env)]);
  if (only.has('memory')) await attempt('Memory with many routes', async () => [await memoryTest(env, quick ? 8 : 20)]);
  await procs.stopAll();
  if (only.has('control')) await attempt('Control path', async () => {
    const deploys = quick ? 3 : 10;
    progress(`control path: deploy latency (${deploys} versions)`);
    const deploy = await deployLatency(deploys);
    const gateways = 4;
    const flips = quick ? 50 : 200;
    progress(`control path: alias flip latency (${gateways} gateways, ${flips} flips)`);
    const flip = await flipLatency(gateways, flips);
    const d = [...deploy.samples].sort((a, b) => a - b);
    const f = [...flip.samples].sort((a, b) => a - b);
    return [{
      title: 'Control path',
      markdown: ['### Time to serve a new version', '', deploy.markdown, '', '### Alias flip acknowledged by every gateway', '', flip.markdown].join('\n'),
      targets: [
        { name: 'new version serving (median) < 3000 ms', met: percentile(d, 50) < 3000, measured: `${fix(percentile(d, 50), 1)} ms` },
        { name: 'alias flip p99 < 20 ms (4 gateways)', met: percentile(f, 99) < 20, measured: `${fix(percentile(f, 99), 1)} ms` },
      ],
    }];
  });
} finally {
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}

const loadEnd = loadavg();
const minutes = (performance.now() - t0) / 60_000;
const targets: Target[] = sections.flatMap((s) => [...s.targets]);
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');
const cpu = cpus()[0]?.model ?? 'unknown';

const doc = `# Benchmarks

Written by \`npm run bench\` (\`bench/run.ts\`); do not edit by hand. Run it again to refresh.

- command: \`${command}\`${quick ? ' (quick: a smoke test, not for comparisons)' : ''}
- date: ${startedAt.toISOString()}, took ${minutes.toFixed(1)} min
- machine: ${cpu}, ${availableParallelism()} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Linux ${release()}, Node ${process.version}
- background load average (1, 5, 15 min): ${la(loadStart)} at the start, ${la(loadEnd)} at the end — the machine is shared, so absolute figures move from run to run; compare within one run (ratios)
- tools: ${toolVersion(tool)}${hasNginx() ? `, ${nginxVersion()}` : ''}, ${versionOf('redis-server', ['--version']).split(' ').slice(0, 3).join(' ')}, undici ${packageVersion('undici')}, fastify ${packageVersion('fastify')}, @fastify/http-proxy ${packageVersion('@fastify/http-proxy')}
${notes.map((n) => `- note: ${n}\n`).join('')}
## Targets

${table(['target', 'measured', 'met'], targets.map((t) => [t.name, t.measured, t.met === null ? '—' : t.met ? 'yes' : '**no**']))}

## Method

- One run, one upstream: ${hasNginx() ? 'nginx (1 worker) answering every request with a 34-byte JSON (`return 200`)' : 'a minimal Node HTTP server answering a 34-byte JSON'}, kept-alive connections (\`keepalive_requests\` unlimited).
- Load generator: ${tool === 'wrk' ? '`wrk -t1` with `bench/wrk/bench.lua`' : 'autocannon (`bench/autocannon-run.ts`)'}, ${connections} connections, on loopback. ${Procs.canPin && twoCpus ? 'The load generator and the upstream are pinned to CPU 0 (`taskset -c 0`), the proxy under test to CPU 1, so the proxy has a core of its own and is the bottleneck.' : ''}
- Every request carries the same \`Authorization: Basic\` header, whether or not the contender checks it, so requests are alike.
- Contenders run one after the other in rounds, in the order a, b, e, c, f, d and backwards every other round: (e) always runs right between the two proxies it is held to, so each of its ratios compares runs seconds apart (this machine's speed drifts over tens of seconds), and neither side of a pair always runs first. In every round each proxy is a fresh process, warmed up (${quick ? 1 : 2} s) before it is measured: on this machine one process can run about 15% slower than an identical one for its whole life (four identical gateways side by side: 43.8 to 51.7 µs of CPU per request, each keeping its rank), so one process per contender would make each figure a single draw. Each figure is the median over the rounds; ratios are the median of the per-round ratios, and the targets give the 95% interval of their geometric mean beside it (how much the machine moved during the run).
- Head to head: (e) and (b), then (e) and (c), run at full speed at the same time, sharing the proxy's CPU, each with its own load generator; both are fresh processes every round, started in alternating order. Drift between runs cannot disturb it, but sharing a CPU is a different regime from having it alone (see its section); the targets are read from the runs taken in turn.
- (e) is \`portico gateway\` (\`PORTICO_GATEWAY_WORKERS=1\`) on a real \`redis-server\`, with the deployment, alias and endpoint records written by \`RedisRoutingTable.apply\`, basic auth on (a user hashed by \`hashPassword\` at the production scrypt cost), metrics served on the metrics port, and the access log written to a file (emptied between runs). The URL is the five-segment alias URL \`/bench/models/web/production/predict\`. (f) is the same gateway with \`PORTICO_ACCESS_LOG=off\`: not a target, it shows what the access log costs.
- Fixed-rate latency: wrk2-style constant arrival rate. ${tool === 'wrk' ? "`bench/wrk/bench.lua` gives wrk a `delay()` that hands every request the next slot of one schedule (slot i at start + i/rate, clock from `clock_gettime` through LuaJIT's FFI) and holds the connection until then; a slot already past is sent at once. Latency is wrk's: from writing the request to the end of the response. Unlike wrk2 it is not corrected for coordinated omission (a stalled connection's queued slots are sent late and timed from when they are sent), so stalls show less than they would in wrk2; both contenders are measured the same way." : 'autocannon `overallRate` (per-connection rate, coordinated omission corrected by autocannon; latency at millisecond resolution).'}
- Memory: see its section. RSS is the kernel's (\`VmRSS\`, \`VmHWM\` in \`/proc/<pid>/status\`).
- Workers: the same route through \`portico gateway\` with \`PORTICO_GATEWAY_WORKERS=1\` and \`=2\`, neither pinned (the load generator stays on CPU 0).

${sections.map((s) => `## ${s.title}\n\n${s.markdown}\n`).join('\n')}
## Reading the results

- (e) against (b): per request the gateway does what the bare proxy does, plus the path grammar, two routing-cache lookups, a keyed SHA-256 of the \`Authorization\` header (the verified-credential cache key), five forwarded headers (\`X-Forwarded-For/-Proto/-Host\`, \`X-VH-Prefix\`, \`X-Request-Id\`), two added response headers, per-route metrics and an access-log line. \`node bench/ab.ts\` runs two contenders side by side on one CPU and compares their CPU time per request: steady enough to compare two builds of the gateway, while between different proxies sharing a CPU favours the one with more code per request (Head to head). \`node bench/profile.ts\` profiles the gateway under load (\`--perf\`: CPU time by binary and symbol, the kernel included): the kernel takes about a third of a proxied request's CPU, most of it in the two socket writes, and the gateway's own stages about 13% with what they call.
- Fixed-rate p99: the bare undici proxy (b) runs at the same rate in the same rounds, so the report shows how far above the upstream any Node proxy's p99 sits on this machine. Most of that margin comes from the virtual machine: the proxy works in bursts on a virtual CPU that halts in between, and the host sometimes hands it back several milliseconds late (the guest sees no steal time; an experiment that kept the CPU from halting cut the bare proxy's p99 from 2.1–4.5 ms to 1.2–1.8 ms at 9,000 req/s). Scavenges add a little: at 7,000 req/s the gateway's take 1.3–1.5 ms about eight times a second, the bare proxy's 0.9–1.0 ms about seven times (it allocates 16.0 KB per request to the gateway's 18.6 KB, and half as much survives). The gateway is busy a larger share of the time than the bare proxy, so more of its requests are caught by such gaps. Details and what was tried: bench/README.md (Tail latency).
- Memory: RSS is the sum of the modules \`portico gateway\` loads, V8's young generation (capped at 2 × 16 MiB by \`bin/portico.ts\`'s first line and the image, at 2 × 8 MiB by \`deploy/kubernetes\` for the gateway; V8 would grow it to 2 × 64 MiB on a machine with this much RAM), the old generation, which V8 lets grow far beyond what is live unless the heap is bounded (\`deploy/kubernetes\` sets \`--max-old-space-size=128\`), glibc arenas (capped at 2), the routing cache, and per-route metrics and stats (capped by \`PORTICO_METRICS_MAX_ROUTES\`).
`;

writeFileSync(outFile, doc);
progress(`wrote ${outFile} (${minutes.toFixed(1)} min)`);
process.stdout.write(`${table(['target', 'measured', 'met'], targets.map((t) => [t.name, t.measured, t.met === null ? '—' : t.met ? 'yes' : 'NO']))}\n`);
process.exit(0);
