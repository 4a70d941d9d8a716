/**
 * Crash safety of the EmbeddedStore: a child (crash-writer.ts) writes concurrently and prints
 * every acknowledged write; it is SIGKILLed at random moments, or kills itself at a chosen step
 * of a compaction. After each kill the store is reopened here and must hold every acknowledged
 * write, consistently, with no half-written snapshot. State accumulates over the rounds.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../../builder/store/embedded.ts';
import type { AuditEntry } from '../../../builder/store/store.ts';

const WRITER = join(import.meta.dirname, 'crash-writer.ts');
const MODES = ['acks', 'timer', 'on-start', 'start', 'snapshot-written', 'snapshot-renamed'] as const;
type Mode = (typeof MODES)[number];
const SELF_KILL: readonly Mode[] = ['start', 'snapshot-written', 'snapshot-renamed'];
const ROUNDS = 24;

const seed = Date.now() % 1_000_000;
t.comment(`seed ${seed} (put it here to repeat a run)`);
let rngState = seed;
/** Deterministic for a seed (mulberry32): an integer in [0, n). */
function rng(n: number): number {
  rngState = (rngState + 0x6d2b79f5) | 0;
  let x = Math.imul(rngState ^ (rngState >>> 15), 1 | rngState);
  x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
  return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n);
}

/** Everything the writers acknowledged, over all rounds. */
const acked = {
  deps: new Set<string>(),
  kv: new Set<string>(),
  tryDel: new Set<string>(),
  del: new Set<string>(),
  audit: new Map<string, string>(),
  /** round -> highest acknowledged replicas of its version `v`. */
  inc: new Map<string, number>(),
  names: [] as string[],
  named: new Set<string>(),
  /** `round/alias` -> acknowledged `by` of its history. */
  alias: new Map<string, Set<string>>(),
  count: 0,
};

function record(line: string): boolean {
  const [kind, ...rest] = line.split(' ');
  if (kind === 'try-del') {
    acked.tryDel.add(rest[0]!);
    return false;
  }
  if (kind !== 'ack') return false;
  acked.count++;
  const [what, a = '', b = '', c = ''] = rest;
  switch (what) {
    case 'dep': acked.deps.add(a); break;
    case 'ver': break;
    case 'kv': acked.kv.add(a); break;
    case 'del': acked.del.add(a); break;
    case 'audit': acked.audit.set(a, b); break;
    case 'inc': acked.inc.set(a, Math.max(acked.inc.get(a) ?? 0, Number(b))); break;
    case 'name': acked.names.push(a); break;
    case 'named': acked.named.add(a); break;
    case 'alias': {
      const key = `${a}/${b}`;
      if (!acked.alias.has(key)) acked.alias.set(key, new Set());
      acked.alias.get(key)!.add(c);
      break;
    }
    default: throw new Error(`unknown ack: ${line}`);
  }
  return true;
}

interface RoundResult {
  signal: NodeJS.Signals | null;
  code: number | null;
  lastPhase: string | null;
  killedMidCompaction: boolean;
  errors: string[];
  stderr: string;
}

function runRound(dir: string, round: number, mode: Mode): Promise<RoundResult> {
  const args = ['--disable-warning=ExperimentalWarning', WRITER, dir, String(round)];
  if (SELF_KILL.includes(mode)) args.push(mode, String(1 + rng(3)));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const killAfterAcks = mode === 'acks' ? 3 + rng(400) : Infinity;
  let acks = 0;
  let buf = '';
  let stderr = '';
  let lastPhase: string | null = null;
  let killed = false;
  let killedMidCompaction = false;
  const errors: string[] = [];
  const kill = () => {
    if (killed) return;
    killed = true;
    killedMidCompaction = lastPhase !== null && lastPhase !== 'done';
    child.kill('SIGKILL');
  };
  // A writer that never reaches its crash point is killed anyway, and the round fails below.
  const guard = setTimeout(() => {
    errors.push(`round ${round} (${mode}) did not crash by itself within 20 s`);
    kill();
  }, 20_000);
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('phase ')) {
        lastPhase = line.slice(6);
        if (lastPhase === 'start' && mode === 'on-start') kill();
      } else if (line === 'ready') {
        // A moment chosen at random, not a wait for anything.
        if (mode === 'timer') setTimeout(kill, rng(400));
      } else if (line.startsWith('error ')) {
        errors.push(line);
      } else if (record(line) && ++acks >= killAfterAcks) {
        kill();
      }
    }
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (!killed) killedMidCompaction = lastPhase !== null && lastPhase !== 'done';
      resolve({ signal, code, lastPhase, killedMidCompaction, errors, stderr });
    });
  });
}

async function allAudit(store: EmbeddedStore): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  let before: string | undefined;
  for (;;) {
    const page = await store.listAudit(before === undefined ? { limit: 1000 } : { limit: 1000, before });
    out.push(...page.items);
    if (page.next === null) return out;
    before = page.next;
  }
}

t.test('SIGKILL at random moments loses no acknowledged write', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'portico-crash-')), 'store');
  t.teardown(() => rmSync(join(dir, '..'), { recursive: true, force: true }));
  let midCompaction = 0;
  let truncated = 0;
  const started = Date.now();

  for (let round = 0; round < ROUNDS; round++) {
    const mode = MODES[round % MODES.length]!;
    const r = await runRound(dir, round, mode);
    const label = `round ${round} (${mode})`;
    t.same(r.errors, [], `${label}: the writer ran without errors`);
    t.equal(r.signal, 'SIGKILL', `${label}: ended by SIGKILL${r.stderr ? `; stderr: ${r.stderr}` : ''}`);
    if (SELF_KILL.includes(mode)) t.equal(r.lastPhase, mode, `${label}: died at that compaction step`);
    if (r.killedMidCompaction) midCompaction++;

    // No half-written file: the snapshot, if any, is complete JSON (a tmp file may be partial).
    if (existsSync(join(dir, 'snapshot.json'))) {
      t.doesNotThrow(() => JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')), `${label}: snapshot.json is whole`);
    }

    const store = await EmbeddedStore.open({ dir, auditLimit: 1_000_000 });
    try {
      truncated += store.recovery.truncatedBytes;
      const kv = await store.listState('crash');
      t.same([...acked.kv].filter((k) => !acked.tryDel.has(k) && !(k in kv)), [], `${label}: every acknowledged put is there`);
      t.same([...acked.del].filter((k) => k in kv), [], `${label}: every acknowledged delete stuck`);

      const audit = await allAudit(store);
      const byTarget = new Map(audit.map((e) => [e.target, e.id]));
      t.same([...acked.audit].filter(([k, id]) => byTarget.get(k) !== id), [], `${label}: every acknowledged audit entry is there with its id`);
      const ids = audit.map((e) => Number(e.id));
      t.ok(ids.every((id, i) => i === 0 || id < ids[i - 1]!), `${label}: audit ids strictly decrease`);

      for (const name of acked.deps) {
        t.ok(await store.getDeployment({ owner: 'crash', project: 'p', deployment: name }), `${label}: deployment ${name} is there`);
      }
      const low = [];
      for (const [rnd, max] of acked.inc) {
        const v = await store.getVersion({ owner: 'crash', project: 'p', deployment: `r${rnd}`, version: 'v' });
        if (!v || v.endpoints[0]!.replicas < max) low.push(`r${rnd}: ${v?.endpoints[0]?.replicas} < ${max}`);
      }
      t.same(low, [], `${label}: no acknowledged increment lost`);

      t.equal(new Set(acked.names).size, acked.names.length, `${label}: no version name handed out twice, across crashes`);
      const names = { owner: 'crash', project: 'p', deployment: 'names' };
      const versions = new Set((await store.listVersions(names)).map((v) => v.name));
      t.same([...acked.named].filter((n) => !versions.has(n)), [], `${label}: every acknowledged version is there`);

      const lostAlias = [];
      for (const [key, bys] of acked.alias) {
        const [rnd, alias] = key.split('/') as [string, string];
        const ref = { owner: 'crash', project: 'p', deployment: `r${rnd}` };
        const seen = new Set((await store.aliasHistory(ref, alias)).map((h) => h.by));
        for (const by of bys) if (!seen.has(by)) lostAlias.push(`${key} by ${by}`);
        if (!(await store.getAlias(ref, alias))) lostAlias.push(`${key} missing`);
      }
      t.same(lostAlias, [], `${label}: every acknowledged alias change is there`);

      // Consistency: aliases point at versions that exist; history chains from -> to.
      const broken = [];
      for (const d of await store.listDeployments('crash', 'p')) {
        const ref = { owner: 'crash', project: 'p', deployment: d.name };
        const have = new Set((await store.listVersions(ref)).map((v) => v.name));
        for (const a of await store.listAliases(ref)) {
          if ('version' in a && !have.has(a.version)) broken.push(`${d.name}/${a.name} -> ${a.version}`);
          const h = await store.aliasHistory(ref, a.name);
          for (let i = 0; i + 1 < h.length; i++) {
            if (JSON.stringify(h[i]!.from) !== JSON.stringify(h[i + 1]!.to)) broken.push(`${d.name}/${a.name} history ${i}`);
          }
        }
      }
      t.same(broken, [], `${label}: state is consistent`);
    } finally {
      await store.close();
    }
    t.notOk(readdirSync(dir).some((f) => f.endsWith('.tmp')), `${label}: no temporary file left after open`);
  }

  t.ok(acked.count > ROUNDS * 10, `writes were acknowledged (${acked.count})`);
  t.ok(midCompaction >= SELF_KILL.length * (ROUNDS / MODES.length), `${midCompaction} of ${ROUNDS} kills hit a compaction`);
  t.comment(`${acked.count} acknowledged writes, ${midCompaction} kills mid-compaction, ${truncated} torn bytes cut, ${Date.now() - started} ms`);
});
