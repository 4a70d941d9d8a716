import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { appFolder, cliEnv, createDeployment, REF, runCli, startApi, tempDir } from '../harness.ts';

const DSCOPE = ['--owner', 'acme', '--project', 'mnist', '--deployment', 'web'];

t.test('deploy from a local folder: creates the deployment, shows progress, prints version and alias URLs', async (t) => {
  const api = await startApi(t, { fake: { buildStepMs: 30 } });
  const dir = await appFolder(t);
  await writeFile(join(dir, 'model.h5'), 'weights');
  const r = await runCli([
    'deploy', ...DSCOPE, '--path', dir, '--name', 'v1', '--replicas', 'predict=2', '--file', `predict.model=${join(dir, 'model.h5')}`,
    '--env', 'MODE=fast', '--alias', 'production', '--poll-ms', '20',
  ], { env: cliEnv(api) });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'created deployment web on local');
  t.equal(lines[1], 'version v1: building');
  t.ok(lines.includes(`  | fetching source ${JSON.stringify({ path: dir })}`), 'build log lines are shown');
  t.ok(lines.includes('  | valohai.yaml declares predict, greet'));
  t.ok(lines.includes('  | build finished'));
  t.ok(lines.indexOf('version v1: ready') > lines.indexOf('  | build finished'), 'status changes in order');
  t.match(r.stdout, /\nendpoints:\n {2}predict {2}http:\/\/127\.0\.0\.1:8080\/acme\/mnist\/web\/v1\/predict\n {2}greet {2}http:\/\/127\.0\.0\.1:8080\/acme\/mnist\/web\/v1\/greet\n/);
  t.match(r.stdout, /production -> v1 \(acknowledged by gateway-1\)\nendpoints via production:\n {2}predict {2}http:\/\/127\.0\.0\.1:8080\/acme\/mnist\/web\/production\/predict\n/);
  const input = api.fake.calls.find((c) => c.op === 'createVersion')!.args[1];
  t.same(input, {
    name: 'v1',
    source: { path: dir },
    endpoints: { predict: { replicas: 2, files: { model: { path: join(dir, 'model.h5') } } } },
    environment: { MODE: 'fast' },
  }, 'a loopback PORTICO_URL sends the folder path');
  t.equal(api.fake.uploads.size, 0);
  t.same(await api.fake.listAliases(REF), [{ name: 'production', version: 'v1' }]);
});

t.test('deploy --upload packs the folder as .tar.gz; --json prints the result only', async (t) => {
  const api = await startApi(t);
  const dir = await appFolder(t);
  const model = join(await tempDir(t), 'model.h5');
  await writeFile(model, 'weights');
  await api.fake.createDeployment({ owner: 'acme', project: 'mnist' }, { name: 'web' }, 'admin');
  const r = await runCli(['deploy', ...DSCOPE, '--path', dir, '--upload', '--file', `predict.model=${model}`, '--json', '--poll-ms', '20'], { env: cliEnv(api) });
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.equal(out.version.status, 'ready');
  t.same(out.version.endpoints.map((e: { name: string }) => e.name), ['predict', 'greet']);
  t.notMatch(r.stderr, /created deployment/, 'an existing deployment is reused');
  t.match(r.stderr, /uploaded .* as \d+(\.\d)? (B|KiB) \.tar\.gz/);
  t.match(r.stderr, /uploaded .*model\.h5 \(7 B\)/);
  const input = api.fake.calls.find((c) => c.op === 'createVersion')!.args[1] as { source: { upload: string }; endpoints: { predict: { files: { model: { upload: string } } } } };
  t.match(input.source.upload, /^u_/);
  t.equal(api.fake.uploads.get(input.endpoints.predict.files.model.upload)?.toString(), 'weights');
  t.equal(api.fake.uploads.size, 2);
});

t.test('a failing build exits 1 with the reason', async (t) => {
  const api = await startApi(t);
  const dir = await appFolder(t);
  const r = await runCli(['deploy', ...DSCOPE, '--path', dir, '--replicas', 'nope=1', '--poll-ms', '20'], { env: cliEnv(api) });
  t.equal(r.code, 1);
  t.match(r.stdout, /\| build failed: endpoint "nope" is not declared in valohai\.yaml\n/);
  t.match(r.stderr, /^portico deploy: version \d{8}\.0 failed: endpoint "nope" is not declared in valohai\.yaml\n$/);
});

t.test('deploy: usage errors exit 2, API errors exit 1', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const empty = await tempDir(t);
  const noYaml = await runCli(['deploy', ...DSCOPE, '--path', empty], { env });
  t.equal(noYaml.code, 2);
  t.match(noYaml.stderr, /^portico deploy: no valohai\.yaml in .* \(see --path\)\n/);
  const dir = await appFolder(t);
  const badReplicas = await runCli(['deploy', ...DSCOPE, '--path', dir, '--replicas', 'predict=many'], { env });
  t.equal(badReplicas.code, 2);
  t.match(badReplicas.stderr, /--replicas predict must be a whole number from 0 to 100/);
  const badFile = await runCli(['deploy', ...DSCOPE, '--path', dir, '--file', 'model=/x'], { env });
  t.equal(badFile.code, 2);
  t.match(badFile.stderr, /--file must look like ENDPOINT\.FILE=PATH/);
  const noDeployment = await runCli(['deploy', '--owner', 'acme', '--project', 'mnist', '--path', dir], { env });
  t.equal(noDeployment.code, 2);
  t.match(noDeployment.stderr, /--deployment is required/);
  const badTarget = await runCli(['deploy', ...DSCOPE, '--path', dir, '--target', 'mars'], { env });
  t.equal(badTarget.code, 1);
  t.match(badTarget.stderr, /^portico deploy: VALIDATION_FAILED \(400\): body\.target: no target named "mars"/);
});

t.test('deploy refuses a bad --alias or --name before creating or building anything', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  const dir = await appFolder(t);
  const badAlias = await runCli(['deploy', ...DSCOPE, '--path', dir, '--alias', 'bad name', '--poll-ms', '20'], { env });
  t.equal(badAlias.code, 2);
  t.equal(badAlias.stdout, '');
  t.equal(badAlias.stderr, 'portico deploy: --alias must be 1 to 100 letters, digits, ".", "_" or "-", starting with a letter or digit (got "bad name")\n(see portico deploy --help)\n');
  const badName = await runCli(['deploy', ...DSCOPE, '--path', dir, '--name', '.hidden', '--poll-ms', '20'], { env });
  t.equal(badName.code, 2);
  t.match(badName.stderr, /^portico deploy: --name must be 1 to 100 letters, digits, "\.", "_" or "-", starting with a letter or digit \(got "\.hidden"\)\n/);
  t.same(api.fake.calls.map((c) => c.op), [], 'no deployment created, no version built');
  t.equal(api.fake.uploads.size, 0);
});

t.test('deploy refuses a valohai.yaml portico validate refuses, naming file, line and field, before creating anything', async (t) => {
  const api = await startApi(t);
  const dir = await appFolder(t);
  await writeFile(join(dir, 'valohai.yaml'), '- endpoint:\n    name: predict\n    image: python:3.12\n    server-command: 42\n');
  const r = await runCli(['deploy', ...DSCOPE, '--path', dir, '--poll-ms', '20'], { env: cliEnv(api) });
  t.equal(r.code, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`^${join(dir, 'valohai.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:\\d+: .*server-command`, 'm'), 'file, line and field');
  t.match(r.stderr, /nothing was created, uploaded or built/);
  t.same(api.fake.calls.map((c) => c.op), [], 'no deployment created, no version built');
  t.equal(api.fake.uploads.size, 0);
});

t.test('deploy refuses an --auth or --target the existing deployment does not have, before building anything', async (t) => {
  const api = await startApi(t);
  const env = cliEnv(api);
  await createDeployment(api, { name: 'web', auth: 'none' });
  const dir = await appFolder(t);
  const auth = await runCli(['deploy', ...DSCOPE, '--path', dir, '--auth', 'basic', '--poll-ms', '20'], { env });
  t.equal(auth.code, 2);
  t.equal(auth.stdout, '');
  t.equal(auth.stderr, 'portico deploy: deployment web exists with --auth none; --auth is only used when deploy creates the deployment (change it with portico deployments update web --auth basic)\n(see portico deploy --help)\n');
  const target = await runCli(['deploy', ...DSCOPE, '--path', dir, '--target', 'gpu', '--poll-ms', '20'], { env });
  t.equal(target.code, 2);
  t.equal(target.stderr, 'portico deploy: deployment web exists with --target local; --target is only used when deploy creates the deployment (a deployment keeps its target: deploy to another deployment)\n(see portico deploy --help)\n');
  t.notOk(api.fake.calls.some((c) => c.op === 'createVersion'), 'nothing built');
  const same = await runCli(['deploy', ...DSCOPE, '--path', dir, '--auth', 'none', '--target', 'local', '--name', 'v1', '--no-wait'], { env });
  t.equal(same.code, 0, same.stderr);
  t.equal(same.stdout, 'version v1: building\n', 'the values it has: deploys as usual');
});

t.test('deploy --no-wait returns once accepted', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const api = await startApi(t, { fake: { beforeBuild: () => held } });
  const dir = await appFolder(t);
  const r = await runCli(['deploy', ...DSCOPE, '--path', dir, '--name', 'v1', '--no-wait'], { env: cliEnv(api) });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'created deployment web on local\nversion v1: building\n');
  release();
});
