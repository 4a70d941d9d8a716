import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cliEnv, createDeployment, readyVersion, REF, runCli, startApi, tempDir, type Api } from '../harness.ts';

const SCOPE = ['--owner', 'acme', '--project', 'mnist'];
const DSCOPE = [...SCOPE, '--deployment', 'web'];

t.test('deployments: create, list (table and --json), show, update, delete', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const created = await runCli(['deployments', 'create', 'web', '--auth', 'basic', ...SCOPE], { env });
  t.equal(created.code, 0, created.stderr);
  t.equal(created.stdout, 'created deployment web on local: http://127.0.0.1:8080/acme/mnist/web\n');
  const list = await runCli(['deployments', ...SCOPE], { env });
  t.equal(list.code, 0);
  t.match(list.stdout, /^NAME +TARGET +AUTH +URL +CREATED\nweb +local +basic +http:\/\/127\.0\.0\.1:8080\/acme\/mnist\/web +\d{4}-/);
  const json = await runCli(['deployments', 'list', '--json', ...SCOPE], { env });
  t.match(JSON.parse(json.stdout), { items: [{ name: 'web', auth: 'basic' }] });
  const show = await runCli(['deployments', 'show', 'web', ...SCOPE], { env });
  t.match(show.stdout, /auth +basic/);
  const update = await runCli(['deployments', 'update', 'web', '--auth', 'none', ...SCOPE], { env });
  t.equal(update.stdout, 'deployment web: auth none\n');
  const del = await runCli(['deployments', 'delete', 'web', ...SCOPE], { env });
  t.equal(del.code, 0);
  t.equal(del.stdout, 'deleted deployment web\n');
  t.same(await api.fake.listDeployments(REF), []);
});

t.test('errors: one line and exit 1 for the API, exit 2 for usage', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const missing = await runCli(['deployments', 'show', 'web', ...SCOPE], { env });
  t.equal(missing.code, 1);
  t.equal(missing.stdout, '');
  t.equal(missing.stderr, 'portico deployments: NOT_FOUND (404): Deployment acme/mnist/web not found.\n');
  const invalid = await runCli(['deployments', 'create', 'bad name', ...SCOPE], { env });
  t.equal(invalid.code, 1);
  t.equal(invalid.stderr, 'portico deployments: VALIDATION_FAILED (400): body.name: must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ (got "bad name")\n');
  const badToken = await runCli(['tokens'], { env: cliEnv(api, { PORTICO_ADMIN_TOKEN: 'wrong' }) });
  t.equal(badToken.code, 1);
  t.equal(badToken.stderr, 'portico tokens: AUTH_REQUIRED (401): The bearer token is not valid. (set PORTICO_ADMIN_TOKEN)\n');
  const down = await runCli(['tokens'], { env: cliEnv(api, { PORTICO_URL: 'http://127.0.0.1:1' }) });
  t.equal(down.code, 1);
  t.match(down.stderr, /^portico tokens: cannot reach the admin API at http:\/\/127\.0\.0\.1:1 \(PORTICO_URL\): .*\n$/);
  const noOwner = await runCli(['deployments'], { env });
  t.equal(noOwner.code, 2);
  t.match(noOwner.stderr, /^portico deployments: --owner is required\n/);
  const unknown = await runCli(['versions', 'list', '--ownr', 'x'], { env });
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown option --ownr/);
  const sub = await runCli(['alias', 'flip', ...DSCOPE], { env });
  t.equal(sub.code, 2);
  t.match(sub.stderr, /unknown sub-command "flip" \(one of: list, set, history, delete\)/);
  const badConfig = await runCli(['tokens'], { env: cliEnv(api, { PORTICO_URL: 'not a url' }) });
  t.equal(badConfig.code, 2);
  t.match(badConfig.stderr, /PORTICO_URL/);
});

t.test('a refused token: the error says where the CLI looked for one', async (t) => {
  const api = await startApi(t);
  // Run from another folder than npm start's: no ./.portico/admin-token there.
  const none = await runCli(['tokens'], { env: { PORTICO_URL: api.url, PORTICO_DATA_DIR: '/nonexistent-portico-test' } });
  t.equal(none.code, 1);
  t.equal(none.stderr, 'portico tokens: AUTH_REQUIRED (401): Send Authorization: Bearer <token> (PORTICO_ADMIN_TOKEN). (set PORTICO_ADMIN_TOKEN: there is no token file /nonexistent-portico-test/admin-token, PORTICO_DATA_DIR)\n');
  // A token file left from a revoked token.
  const dir = await tempDir(t);
  await writeFile(join(dir, 'admin-token'), 'revoked\n');
  const stale = await runCli(['tokens'], { env: { PORTICO_URL: api.url, PORTICO_DATA_DIR: dir } });
  t.equal(stale.code, 1);
  t.equal(stale.stderr, `portico tokens: AUTH_REQUIRED (401): The bearer token is not valid. (the token in ${join(dir, 'admin-token')} was refused: set PORTICO_ADMIN_TOKEN)\n`);
});

t.test('versions: list, show, stop, start, scale, build-log, delete', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  await createDeployment(api);
  t.equal((await api.call('PUT', '/api/v1/projects/acme/mnist/environment', { body: { variables: { API_KEY: { value: 'k-0123456789', secret: true }, MODEL: { value: 'small' } } } })).status, 200);
  await readyVersion(api, { name: 'v1', environment: { EXTRA: '1' } });
  const list = await runCli(['versions', ...DSCOPE], { env });
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /^VERSION +STATUS +REPLICAS +ALIASES +CREATED\nv1 +ready +predict 2\/2 +- +\d{4}-/);
  const show = await runCli(['versions', 'show', 'v1', ...DSCOPE], { env });
  t.match(show.stdout, /^version +v1\nstatus +ready\n/);
  t.match(show.stdout, /\nenv +API_KEY \(secret\), EXTRA, MODEL\n/, 'variable names, secrets marked, no values');
  t.notOk(show.stdout.includes('k-0123456789'));
  t.match(show.stdout, /predict +ready +2\/2 +http:\/\/127\.0\.0\.1:8080\/acme\/mnist\/web\/v1\/predict/);
  t.match(show.stdout, /predict +predict-1 +ready +127\.0\.0\.1:20001/);
  const stop = await runCli(['versions', 'stop', 'v1', ...DSCOPE], { env });
  t.equal(stop.stdout, 'stopped v1 (status stopped)\n');
  const start = await runCli(['versions', 'start', 'v1', ...DSCOPE], { env });
  t.equal(start.stdout, 'started v1 (status ready)\n');
  const scale = await runCli(['versions', 'scale', 'v1', '--endpoint', 'predict', '--replicas', '3', ...DSCOPE], { env });
  t.equal(scale.stdout, 'v1/predict: 3 replicas wanted\n');
  t.equal((await api.fake.getVersion({ ...REF, version: 'v1' })).endpoints[0]!.replicaCount, 3);
  const badScale = await runCli(['versions', 'scale', 'v1', '--endpoint', 'predict', ...DSCOPE], { env });
  t.equal(badScale.code, 2);
  const log = await runCli(['versions', 'build-log', 'v1', ...DSCOPE], { env });
  t.match(log.stdout, /build finished/);
  await api.fake.setAlias(REF, 'production', { version: 'v1' }, {}, 'admin');
  const refused = await runCli(['versions', 'delete', 'v1', ...DSCOPE], { env });
  t.equal(refused.code, 1);
  t.match(refused.stderr, /^portico versions: ALIAS_IN_USE \(409\): Version v1 is what production points at/);
  await api.fake.deleteAlias(REF, 'production', 'admin');
  const del = await runCli(['versions', 'delete', 'v1', '--json', ...DSCOPE], { env });
  t.same(JSON.parse(del.stdout), { deleted: 'v1' });
});

t.test('alias: set (acknowledgements, missing gateways), weighted, list, history, delete', async (t) => {
  const api = await startApi(t, { fake: { gateways: ['gw-1'], silentGateways: ['gw-2'] } });
  const env = cliEnv(api);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  await readyVersion(api, { name: 'v2' });
  const set = await runCli(['alias', 'set', 'production', 'v1', ...DSCOPE], { env });
  t.equal(set.code, 0, set.stderr);
  t.equal(set.stdout, 'production -> v1 (acknowledged by gw-1)\n');
  t.equal(set.stderr, 'warning: gw-2 did not acknowledge in time and may still serve the old target\n');
  const canary = await runCli(['alias', 'set', 'production', 'v1=90', 'v2=10', ...DSCOPE], { env });
  t.match(canary.stdout, /^production -> v1=90, v2=10 /);
  const badSum = await runCli(['alias', 'set', 'production', 'v1=90', 'v2=20', ...DSCOPE], { env });
  t.equal(badSum.code, 1);
  t.equal(badSum.stderr, 'portico alias: VALIDATION_FAILED (400): body.versions: weights must sum to 100 (they sum to 110)\n');
  const list = await runCli(['alias', 'list', ...DSCOPE], { env });
  t.equal(list.stdout, 'ALIAS       TARGET\nproduction  v1=90, v2=10\n');
  const history = await runCli(['alias', 'history', 'production', ...DSCOPE], { env });
  t.match(history.stdout, /^AT +BY +FROM +TO\n\S+ +admin +v1 +v1=90, v2=10\n\S+ +admin +- +v1\n$/, 'newest first');
  const json = await runCli(['alias', 'history', 'production', '--json', ...DSCOPE], { env });
  t.equal(JSON.parse(json.stdout).items.length, 2);
  const del = await runCli(['alias', 'delete', 'production', ...DSCOPE], { env });
  t.equal(del.stdout, 'deleted alias production\n');
});

t.test('alias set: not ready needs --force', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const api = await startApi(t, { fake: { beforeBuild: () => held } });
  const env = cliEnv(api);
  await createDeployment(api);
  await api.fake.createVersion(REF, { name: 'v1', source: { git: { url: 'https://x/y.git' } } }, 'admin');
  const refused = await runCli(['alias', 'set', 'staging', 'v1', ...DSCOPE], { env });
  t.equal(refused.code, 1);
  t.match(refused.stderr, /^portico alias: VERSION_NOT_READY \(409\): version v1 is building; only a ready version can take an alias unless "force": true/);
  const forced = await runCli(['alias', 'set', 'staging', 'v1', '--force', ...DSCOPE], { env });
  t.equal(forced.code, 0, forced.stderr);
  release();
});

t.test('tokens: create prints the token once, list, revoke', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const created = await runCli(['tokens', 'create', 'ci'], { env });
  t.equal(created.code, 0);
  const token = created.stdout.trim();
  t.match(token, /^[A-Za-z0-9_-]{40,}$/);
  t.equal(created.stderr, 'created token ci; store it now, it is not shown again\n');
  const withNew = await runCli(['tokens', 'list'], { env: cliEnv(api, { PORTICO_ADMIN_TOKEN: token }) });
  t.match(withNew.stdout, /^NAME +CREATED\nadmin +\S+\nci +\S+\n$/);
  const revoke = await runCli(['tokens', 'revoke', 'ci'], { env });
  t.equal(revoke.stdout, 'revoked token ci\n');
  const after = await runCli(['tokens'], { env: cliEnv(api, { PORTICO_ADMIN_TOKEN: token }) });
  t.equal(after.code, 1);
  const last = await runCli(['tokens', 'revoke', 'admin'], { env });
  t.equal(last.code, 1);
  t.equal(last.stderr, 'portico tokens: CONFLICT (409): Token admin is the last admin token; create another token first.\n');
});

t.test('env: get, set merges, secrets masked and kept while others change', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const project = { owner: 'acme', project: 'mnist' };
  const set = await runCli(['env', 'set', 'MODEL=mnist', '--secret', 'KEY=s3cret', ...SCOPE], { env });
  t.equal(set.code, 0, set.stderr);
  t.equal(set.stdout, 'NAME   VALUE     SECRET\nKEY    ********  yes\nMODEL  mnist     no\n');
  // The secret is not given again: the CLI sends its mask, which the API keeps as it was.
  const other = await runCli(['env', 'set', 'OTHER=1', ...SCOPE], { env });
  t.equal(other.code, 0, other.stderr);
  t.equal(other.stdout, 'NAME   VALUE     SECRET\nKEY    ********  yes\nMODEL  mnist     no\nOTHER  1         no\n');
  t.same(api.fake.calls.filter((c) => c.op === 'putEnvironment').at(-1)!.args[1], {
    MODEL: { value: 'mnist', secret: false }, KEY: { value: '********', secret: true }, OTHER: { value: '1', secret: false },
  }, 'the secret is sent back masked, never in clear');
  t.same(api.fake.storedEnvironment(project).KEY, { value: 's3cret', secret: true }, 'and keeps its value');
  const change = await runCli(['env', 'set', '--secret', 'KEY=s3cret2', '--unset', 'MODEL', ...SCOPE], { env });
  t.equal(change.code, 0, change.stderr);
  t.same(api.fake.storedEnvironment(project), { KEY: { value: 's3cret2', secret: true }, OTHER: { value: '1', secret: false } });
  const get = await runCli(['env', ...SCOPE, '--json'], { env });
  t.same(JSON.parse(get.stdout), { variables: { OTHER: { value: '1', secret: false }, KEY: { value: '********', secret: true } } });
  const replace = await runCli(['env', 'set', 'ONLY=1', '--replace', ...SCOPE], { env });
  t.equal(replace.stdout, 'NAME  VALUE  SECRET\nONLY  1      no\n');
  const bad = await runCli(['env', 'set', '1X=1', ...SCOPE], { env });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /body\.variables\.1X: name must match/);
});

t.test('users: set from stdin, list, delete', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  await createDeployment(api);
  const set = await runCli(['users', 'set', 'alice', '--password-stdin', ...DSCOPE], { env, stdin: 'correct horse\n' });
  t.equal(set.code, 0, set.stderr);
  t.equal(set.stdout, 'set user alice\n');
  const list = await runCli(['users', ...DSCOPE], { env });
  t.equal(list.stdout, 'USER\nalice\n');
  const short = await runCli(['users', 'set', 'bob', '--password', 'short', ...DSCOPE], { env });
  t.equal(short.code, 1);
  t.match(short.stderr, /body\.password: must be at least 8 characters long/);
  const none = await runCli(['users', 'set', 'bob', ...DSCOPE], { env });
  t.equal(none.code, 2);
  const del = await runCli(['users', 'delete', 'alice', ...DSCOPE], { env });
  t.equal(del.stdout, 'deleted user alice\n');
});

/** Runs `portico ...args` and checks that it is a usage error (exit 2) saying `message`, with no call to the API. */
async function refusedUnsent(t: Test, api: Api, args: string[], message: string): Promise<void> {
  const seen = api.fake.calls.length;
  const r = await runCli(args, { env: cliEnv(api) });
  t.equal(r.code, 2, args.join(' '));
  t.equal(r.stderr, `portico ${args[0]}: ${message}\n(see portico ${args[0]} --help)\n`, args.join(' '));
  t.equal(api.fake.calls.length, seen, 'nothing sent');
}

t.test('a name argument "." or ".." is refused, naming the argument, before any request', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const cases: [string[], string][] = [
    [['alias', 'delete', '..', ...DSCOPE], 'the ALIAS'],
    [['alias', 'set', '.', 'v1', ...DSCOPE], 'the ALIAS'],
    [['alias', 'history', '..', ...DSCOPE], 'the ALIAS'],
    [['versions', 'show', '..', ...DSCOPE], 'the VERSION'],
    [['logs', '.', 'predict', ...DSCOPE], 'the VERSION'],
    [['logs', 'v1', '..', ...DSCOPE], 'the ENDPOINT'],
    [['deployments', 'delete', '..', ...SCOPE], 'the deployment NAME'],
    [['users', 'delete', '.', ...DSCOPE], 'the user NAME'],
    [['tokens', 'revoke', '..'], 'the token NAME'],
    [['alias', 'list', '--owner', '..', '--project', 'mnist', '--deployment', 'web'], '--owner'],
    [['versions', '--owner', 'acme', '--project', 'mnist', '--deployment', '.'], '--deployment'],
  ];
  for (const [args, what] of cases) {
    await refusedUnsent(t, api, args, `${what} cannot be "." or ".." (got ${JSON.stringify(args.find((a) => a === '.' || a === '..'))})`);
  }
});

t.test('a flag of another sub-command is refused, naming it (exit 2), before any request', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const cases: [string[], string][] = [
    [['versions', 'show', 'v1', '--replicas', '3', ...DSCOPE], '--replicas does not apply to show (only to scale)'],
    [['versions', 'stop', 'v1', '--endpoint', 'predict', ...DSCOPE], '--endpoint does not apply to stop (only to scale)'],
    [['alias', 'list', '--force', ...DSCOPE], '--force does not apply to list (only to set)'],
    [['alias', 'delete', 'production', '--force', ...DSCOPE], '--force does not apply to delete (only to set)'],
    [['deployments', 'show', 'web', '--auth', 'basic', ...SCOPE], '--auth does not apply to show (only to create, update)'],
    [['deployments', 'update', 'web', '--auth', 'basic', '--target', 'k8s', ...SCOPE], '--target does not apply to update (only to create)'],
    [['deployments', '--target', 'local', ...SCOPE], '--target does not apply to list (only to create)'],
    [['users', 'list', '--password', 'secret123', ...DSCOPE], '--password does not apply to list (only to set)'],
    [['users', 'delete', 'alice', '--password-stdin', ...DSCOPE], '--password-stdin does not apply to delete (only to set)'],
    [['env', '--unset', 'A', ...SCOPE], '--unset does not apply to get (only to set)'],
    [['env', 'get', '--secret', 'A=b', ...SCOPE], '--secret does not apply to get (only to set)'],
    [['env', 'get', '--replace', ...SCOPE], '--replace does not apply to get (only to set)'],
    [['alias', 'list', '--replicas', '3', ...DSCOPE], 'unknown option --replicas'],
  ];
  for (const [args, message] of cases) await refusedUnsent(t, api, args, message);
  // Where they apply, they still work.
  const scaled = await runCli(['versions', 'scale', 'v1', '--endpoint', 'predict', '--replicas', '2', '--json', ...DSCOPE], { env });
  t.equal(scaled.code, 0, scaled.stderr);
  const forced = await runCli(['alias', 'set', 'production', 'v1', '--force', ...DSCOPE], { env });
  t.equal(forced.code, 0, forced.stderr);
  const listed = await runCli(['alias', 'list', '--json', ...DSCOPE], { env });
  t.equal(listed.code, 0, listed.stderr);
});
