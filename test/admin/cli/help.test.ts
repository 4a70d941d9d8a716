import t from 'tap';
import { runCli } from '../harness.ts';

const OPERATOR = ['deploy', 'deployments', 'versions', 'alias', 'logs', 'env', 'users', 'tokens'];

t.test('portico --help lists every operator command', async (t) => {
  const r = await runCli(['--help']);
  t.equal(r.code, 0);
  for (const name of OPERATOR) t.match(r.stdout, new RegExp(`^  ${name} +\\S`, 'm'), name);
});

for (const name of OPERATOR) {
  t.test(`portico ${name} --help`, async (t) => {
    const r = await runCli([name, '--help']);
    t.equal(r.code, 0);
    t.equal(r.stderr, '');
    t.match(r.stdout, /^Usage:\n {2}portico /);
    t.match(r.stdout, /--json/);
    t.match(r.stdout, /PORTICO_URL/);
    t.match(r.stdout, /PORTICO_ADMIN_TOKEN/);
    if (name !== 'tokens') {
      t.match(r.stdout, /--owner OWNER/);
      t.match(r.stdout, /--project PROJECT/);
    }
  });
}

t.test('portico logs --help says how many lines it prints without --tail (the API answers the last 200)', async (t) => {
  const r = await runCli(['logs', '--help']);
  t.match(r.stdout, /--tail N +only the last N lines \(default 200, at most 100000\)/);
});
