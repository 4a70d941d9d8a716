// CPU profile of `portico gateway` under load, for performance work on the data path (not part
// of `npm run bench`): the same setup as contender (e) of bench/proxies.ts, the gateway run with
// `--cpu-prof`, then the busiest functions and files by self time. With --perf, `perf record -e
// cpu-clock` samples the process instead (Debian's linux-perf; JIT code named through
// `--perf-basic-prof-only-functions`): CPU time rather than the main thread's wall-clock time,
// the kernel and V8's helper threads included.
//   node bench/profile.ts [--target gateway|bare] [--perf] [--duration 10] [--connections 50] [--top 40] [--keep DIR]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/poll.ts';
import { NODE, ROOT } from '../test/helpers/portico.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { defaultTool, runLoad } from './load.ts';
import { AUTH_HEADERS, ROUTE_PATH, benchUserHash, startGatewayProcess, writeBenchRoute } from './portico.ts';
import { Procs, cpuMs, hasCommand, waitForHttp } from './procs.ts';
import { fix, int } from './report.ts';
import { startUpstream } from './setup.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
/** A `.cpuprofile` (the parts read here). */
export interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (microseconds) by file (node_modules package, repository file or node: module) and by function, idle excluded. */
export function selfTimes(p: Profile): { busy: number; byFile: Map<string, number>; byFn: Map<string, number> } {
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i] as number, (self.get(p.samples[i] as number) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let busy = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    if (n.callFrame.functionName === '(idle)' || t === 0) continue;
    busy += t;
    const url = n.callFrame.url;
    const file = url.includes('node_modules/')
      ? url.replace(/.*node_modules\/((@[^/]+\/)?[^/]+)\/.*/, '$1')
      : url.includes('/bench/') || url.includes('/gateway/') || url.includes('/common/') || url.includes('/admin/')
        ? url.replace(/^.*?\/(gateway|common|admin|bench)\//, '$1/')
        : url || n.callFrame.functionName;
    byFile.set(file, (byFile.get(file) ?? 0) + t);
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${file}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + t);
  }
  return { busy, byFile, byFn };
}

/** The busiest files and functions by self time, in % of busy time and microseconds per request. */
export function summarize(p: Profile, top: number, requests: number): string {
  const { busy, byFile, byFn } = selfTimes(p);
  const list = (m: Map<string, number>, k: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, t]) => `${fix((100 * t) / busy, 1).padStart(5)}% ${fix(t / requests, 2).padStart(6)} us/req  ${name}`).join('\n');
  return `busy ${int(busy / 1000)} ms, ${fix(busy / requests, 1)} us per request (${int(requests)} requests, warm-up included)\n\nby file:\n${list(byFile, 25)}\n\nby function (self):\n${list(byFn, top)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '10' }, connections: { type: 'string', default: '50' }, top: { type: 'string', default: '40' }, target: { type: 'string', default: 'gateway' }, keep: { type: 'string' }, perf: { type: 'boolean', default: false } } });
  if (values.perf && !hasCommand('perf')) throw new Error('--perf needs perf (Debian package linux-perf)');
  const procs = new Procs();
  const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'portico-profile-'));
  const redis = await startRedis();
  try {
    const upstream = await startUpstream(procs, dir, '0');
    await writeBenchRoute(redis.url, upstream.address, await benchUserHash());
    const port = await freePort();
    const accessLog = join(dir, 'access.log');
    const profDir = join(dir, 'prof');
    // With --perf the script's first line is not used: repeat its young-generation size.
    const flags = values.perf ? ['--perf-basic-prof-only-functions', '--max-semi-space-size=16'] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`];
    const gw =
      values.target === 'bare'
        ? procs.start('bare undici proxy', NODE, [...flags, join(ROOT, 'bench', 'bare-proxy.ts'), upstream.address, String(port)], { cpus: '1' })
        : startGatewayProcess(procs, { redisUrl: redis.url, port, metricsPort: await freePort(), accessLog, cpus: '1', nodeFlags: flags });
    const url = `http://127.0.0.1:${port}${ROUTE_PATH}`;
    await waitForHttp(url, { headers: AUTH_HEADERS, proc: gw });
    const warm = await runLoad(defaultTool(), { url, connections: Number(values.connections), durationS: 2, headers: AUTH_HEADERS, cpus: '0' });
    const perfData = join(dir, 'perf.data');
    const perf = values.perf ? spawn('perf', ['record', '-e', 'cpu-clock', '-F', '2999', '-p', String(gw.pid), '-o', perfData], { stdio: 'ignore' }) : null;
    const before = cpuMs(gw.pid);
    const r = await runLoad(defaultTool(), { url, connections: Number(values.connections), durationS: Number(values.duration), headers: AUTH_HEADERS, cpus: '0' });
    const cpu = cpuMs(gw.pid) - before;
    if (perf !== null) {
      perf.kill('SIGINT');
      await new Promise((resolve) => perf.once('exit', resolve));
    }
    if (values.target !== 'bare') truncateSync(accessLog, 0);
    await procs.stop(gw);
    const usPerReq = (cpu * 1000) / r.requests;
    console.log(`${int(r.rps)} req/s, p50 ${fix(r.p50)} ms, p99 ${fix(r.p99)} ms, ${fix(usPerReq, 1)} us CPU/req, ${r.errors} errors\n`);
    if (perf !== null) {
      // perf's percentages of the measured run, as microseconds of CPU per request.
      for (const sort of ['dso', 'sym']) {
        const report = execFileSync('perf', ['report', '-i', perfData, '--stdio', '--no-children', '--sort', sort, '--percent-limit', '0.2'], { encoding: 'utf8', maxBuffer: 1 << 26 });
        const rows = report.split('\n').flatMap((line) => {
          const m = /^\s+([\d.]+)%\s+(.*)$/.exec(line);
          return m ? [`${fix(Number(m[1]), 1).padStart(5)}% ${fix((Number(m[1]) * usPerReq) / 100).padStart(6)} us/req  ${(m[2] as string).trim().slice(0, 120)}`] : [];
        });
        console.log(`by ${sort === 'dso' ? 'binary' : 'symbol'} (CPU time):\n${rows.slice(0, sort === 'dso' ? 8 : Number(values.top)).join('\n')}\n`);
      }
    } else {
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (file === undefined) throw new Error('no profile written');
      console.log(summarize(JSON.parse(readFileSync(join(profDir, file), 'utf8')) as Profile, Number(values.top), warm.requests + r.requests));
      if (values.keep) console.log(`\nprofile: ${join(profDir, file)}`);
    }
  } finally {
    await procs.stopAll();
    await redis.stop();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}
