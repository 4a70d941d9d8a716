import t from 'tap';
import { cliEnv, createDeployment, readyVersion, REF, runCli, startApi } from '../harness.ts';

const DSCOPE = ['--owner', 'acme', '--project', 'mnist', '--deployment', 'web'];

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

t.test('-h or --help given as an option\'s value is the value, not a request for help', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ref = { ...REF, version: 'v1' };
  api.fake.appendLog(ref, 'predict', 'plain line', { at: 1 });
  api.fake.appendLog(ref, 'predict', 'ran with -h', { at: 2 });
  api.fake.appendLog(ref, 'predict', 'ran with --help', { at: 3 });
  for (const value of ['-h', '--help']) {
    const r = await runCli(['logs', 'v1', 'predict', '--contains', value, ...DSCOPE], { env: cliEnv(api) });
    t.equal(r.code, 0, r.stderr);
    const help = '1970-01-01T00:00:00.003Z predict-0 ran with --help\n';
    t.equal(r.stdout, value === '-h' ? `1970-01-01T00:00:00.002Z predict-0 ran with -h\n${help}` : help, `--contains ${value}`);
  }
  // Anywhere else it still asks for help, even among bad options; after `--` it is an argument.
  for (const args of [['logs', 'v1', 'predict', '-h'], ['logs', '--contains', 'x', '--help'], ['logs', '--bogus', '-h'], ['deploy', '--alias', 'x', '-h']]) {
    const r = await runCli(args, { env: cliEnv(api) });
    t.equal(r.code, 0, args.join(' '));
    t.match(r.stdout, /^Usage:\n/, args.join(' '));
  }
  const literal = await runCli(['validate', '--', '-h']);
  t.equal(literal.code, 1);
  t.equal(literal.stdout, '');
  t.match(literal.stderr, /^-h:/, 'validate reads a file named -h');
});

t.test('start, controller, gateway and validate refuse an option they do not have (exit 2) instead of going on without it', async (t) => {
  // An invalid variable, so that a command which let the option through stops at its configuration.
  const env = { PORTICO_LOG_LEVEL: 'loud' };
  const cases = [
    { args: ['start', '--port', '9000'], option: '--port' },
    { args: ['start', '--port=9000'], option: '--port' },
    { args: ['start', '-d'], option: '-d' },
    { args: ['controller', '--verbose'], option: '--verbose' },
    { args: ['gateway', '--verbose'], option: '--verbose' },
    { args: ['validate', '--json'], option: '--json' },
  ];
  for (const { args, option } of cases) {
    const r = await runCli(args, { env });
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr, `portico ${args[0]}: unknown option ${option}\n(see portico ${args[0]} --help)\n`, args.join(' '));
  }
  const positional = await runCli(['start', 'now'], { env });
  t.equal(positional.code, 2);
  t.match(positional.stderr, /^portico start: unexpected argument now\n/);
});
