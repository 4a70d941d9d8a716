import t from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const node = join(root, 'node_modules/.bin/node');
const portico = join(root, 'bin/portico.ts');
const fixtures = join(root, 'test/fixtures/valohai-yaml');

/** Runs `portico <args>` as a real process; resolves with its exit code and output. */
function run(args: string[], cwd = root): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(node, [portico, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'portico-validate-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('a valid file: endpoints as JSON on stdout, exit 0', async (t) => {
  const file = join(fixtures, 'valohai-yaml-repo/endpoint-example.yaml');
  const { code, stdout, stderr } = await run(['validate', file]);
  t.equal(code, 0);
  t.equal(stderr, '');
  const endpoints = JSON.parse(stdout) as { name: string; port: number; command: unknown; location: unknown }[];
  t.strictSame(endpoints.map((e) => e.name), ['server-endpoint', 'wsgi-endpoint', 'limited-endpoint', 'accelerated-endpoint', 'tolerant-endpoint', 'ephemeral-storage-endpoint']);
  t.strictSame(endpoints[0], {
    name: 'server-endpoint',
    image: 'python:3.6',
    port: 1453,
    command: { kind: 'shell', command: 'python run_server.py' },
    serverCommand: 'python run_server.py',
    files: [],
    location: { file, line: 1, column: 3 },
  });
});

t.test('an invalid file: one file:line:column line per problem on stderr, exit 1', async (t) => {
  const { code, stdout, stderr } = await run(['validate', 'test/fixtures/valohai-yaml/valohai-yaml-repo/endpoint-names-invalid.yaml']);
  t.equal(code, 1);
  t.equal(stdout, '');
  const f = 'test/fixtures/valohai-yaml/valohai-yaml-repo/endpoint-names-invalid.yaml';
  t.equal(
    stderr,
    [
      `${f}:2:11: endpoint "Server-endpoint" name: must match ^[a-z][a-z0-9-]+$`,
      `${f}:8:11: endpoint "3-server-endpoint" name: must match ^[a-z][a-z0-9-]+$`,
      `${f}:14:11: endpoint "server@endpoint" name: must match ^[a-z][a-z0-9-]+$`,
      `${f}:20:11: endpoint "wsgi_endpoint" name: must match ^[a-z][a-z0-9-]+$`,
      '',
    ].join('\n'),
  );
});

t.test('default file is ./valohai.yaml', async (t) => {
  const dir = mkdtempSync(join(tmp, 'default-'));
  copyFileSync(join(fixtures, 'real-world/valohai__yolov3-tf2__valohai.yaml'), join(dir, 'valohai.yaml'));
  const { code, stdout } = await run(['validate'], dir);
  t.equal(code, 0);
  t.strictSame(
    (JSON.parse(stdout) as { name: string }[]).map((e) => e.name),
    ['predict'],
  );
});

t.test('a missing file is one clear line, exit 1', async (t) => {
  const { code, stdout, stderr } = await run(['validate'], tmp);
  t.equal(code, 1);
  t.equal(stdout, '');
  t.equal(stderr, 'valohai.yaml: cannot read: no such file\n');
});

t.test('warnings go to stderr and do not fail', async (t) => {
  const file = join(tmp, 'warn.yaml');
  writeFileSync(file, '- endpoint: {name: ex, image: i, wsgi: w}\n- endpiont: {}\n');
  const { code, stdout, stderr } = await run(['validate', file]);
  t.equal(code, 0);
  t.equal(stderr, `${file}:2:3: warning: item 2: unknown kind "endpiont" is ignored (did you mean endpoint?)\n`);
  t.equal((JSON.parse(stdout) as unknown[]).length, 1);
});

t.test('YAML syntax errors are problems too', async (t) => {
  const file = join(tmp, 'syntax.yaml');
  writeFileSync(file, '- endpoint:\n    name: "ex\n');
  const { code, stderr } = await run(['validate', file]);
  t.equal(code, 1);
  t.equal(stderr, `${file}:3:1: invalid YAML: Missing closing "quote\n`);
});

t.test('--help, and portico --help lists validate', async (t) => {
  const help = await run(['validate', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: portico validate \[valohai\.yaml\]/);
  const top = await run(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, /\n {2}validate +Check a valohai\.yaml and print its endpoints as JSON\n/);
});

t.test('bad command lines exit 2', async (t) => {
  const two = await run(['validate', 'a.yaml', 'b.yaml']);
  t.equal(two.code, 2);
  t.match(two.stderr, /^portico validate: takes at most one file\n/);
  const flag = await run(['validate', '--strict', 'x']);
  t.equal(flag.code, 2);
  t.match(flag.stderr, /^portico validate: unknown option --strict\n/);
});
