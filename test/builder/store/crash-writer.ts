/**
 * Child process of crash.test.ts: writes to an EmbeddedStore from several concurrent workers
 * and prints one line per acknowledged write the moment its promise resolves (stdout to a pipe
 * is synchronous on Linux, so a printed line survives the SIGKILL that follows). Compaction is
 * made frequent; with a phase argument the process SIGKILLs itself at that step of its n-th
 * compaction.
 *
 * Usage: crash-writer.ts <dir> <round> [<phase> <n>]
 * Lines: `ready`, `phase <p>`, `ack <kind> ...`, `try-del <key>`, `error <message>`.
 */
import { EmbeddedStore, type CompactionPhase } from '../../../builder/store/embedded.ts';

const [dir, round, crashPhase, crashNth] = process.argv.slice(2);
if (!dir || !round) throw new Error('usage: crash-writer.ts <dir> <round> [<phase> <n>]');

const say = (line: string) => process.stdout.write(`${line}\n`);
let compactions = 0;

const store = await EmbeddedStore.open({
  dir,
  compactBytes: 12 * 1024,
  auditLimit: 1_000_000,
  onCompaction: (phase: CompactionPhase) => {
    if (phase === 'start') compactions++;
    say(`phase ${phase}`);
    if (phase === crashPhase && compactions === Number(crashNth)) process.kill(process.pid, 'SIGKILL');
  },
});

const ref = { owner: 'crash', project: 'p', deployment: `r${round}` };
/** Shared by every round: names allocated before a crash must never be handed out again. */
const names = { owner: 'crash', project: 'p', deployment: 'names' };
const pad = 'x'.repeat(120);
if (!(await store.getDeployment(names))) {
  await store.createDeployment({ owner: names.owner, project: names.project, name: names.deployment, target: 'local', auth: 'none' });
}
await store.createDeployment({ owner: ref.owner, project: ref.project, name: ref.deployment, target: 'local', auth: 'none' });
say(`ack dep ${ref.deployment}`);
await store.createVersion({
  ...ref,
  name: 'v',
  status: 'ready',
  enabled: true,
  source: { path: '/code' },
  environment: {},
  inheritEnvironment: false,
  endpoints: [{ name: 'e', definition: {}, replicas: 0, enabled: true, timeoutSeconds: null, maxBodyBytes: null, files: [] }],
});
say(`ack ver ${round} v`);
say('ready');

async function worker(w: number): Promise<void> {
  for (let i = 0; ; i++) {
    const key = `${round}.${w}.${i}`;
    switch (i % 6) {
      case 0:
        await store.putState('crash', key, { w, i, pad });
        say(`ack kv ${key}`);
        break;
      case 1: {
        const e = await store.appendAudit({ actor: 'crash', action: 'write', target: key, details: { pad } });
        say(`ack audit ${key} ${e.id}`);
        break;
      }
      case 2: {
        const v = await store.updateVersion({ ...ref, version: 'v' }, (d) => {
          d.endpoints[0]!.replicas += 1;
        });
        say(`ack inc ${round} ${v.endpoints[0]!.replicas}`);
        break;
      }
      case 3: {
        const name = await store.allocateVersionName(names.owner, names.project, names.deployment, new Date());
        say(`ack name ${name}`);
        await store.createVersion({
          ...names,
          name,
          status: 'building',
          enabled: true,
          source: { path: `/code/${key}` },
          environment: { PAD: pad },
          inheritEnvironment: true,
          endpoints: [],
        });
        say(`ack named ${name}`);
        break;
      }
      case 4: {
        const victim = `${round}.${w}.${i - 4}`;
        say(`try-del ${victim}`);
        await store.deleteState('crash', victim);
        say(`ack del ${victim}`);
        break;
      }
      case 5:
        // Alternating targets: every write is a change, recorded in the alias's history.
        await store.setAlias(ref, `a${w}`, (i / 6) % 2 < 1 ? { version: 'v' } : { versions: [{ version: 'v', weight: 100 }] }, key);
        say(`ack alias ${round} a${w} ${key}`);
        break;
    }
  }
}

try {
  await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
} catch (err) {
  say(`error ${(err as Error).stack ?? String(err)}`.replaceAll('\n', ' | '));
  process.exit(1);
}
