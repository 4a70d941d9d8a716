import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t, { type Test } from 'tap';
import { installPythonDeps, PythonDepsError } from '../../../builder/build/python-deps.ts';
import { BuildError } from '../../../builder/build/source.ts';
import { http, startRuntime } from '../runtime/harness.ts';

// No package index is reachable here: the test writes a tiny package, zips it into a valid
// wheel by hand (pip's own `pip wheel` needs the `wheel` package, which this machine lacks) and
// installs it with --no-index --find-links.

const WSGI_APP = resolve(import.meta.dirname, '../../fixtures/apps/wsgi');

const BUILD_WHEEL = `
import base64, hashlib, sys, zipfile
out = sys.argv[1]
name, version = "porticodep", "0.1.0"
files = {
    f"{name}/__init__.py": 'GREETING = "hello from porticodep"\\n',
    f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n",
    f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: portico-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = []
with zipfile.ZipFile(f"{out}/{name}-{version}-py3-none-any.whl", "w") as z:
    for path, text in files.items():
        data = text.encode()
        z.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    z.writestr(f"{name}-{version}.dist-info/RECORD", "\\n".join(record) + "\\n")
`;

function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function wheelhouse(t: Test): string {
  const dir = tempDir(t, 'portico-wheels-');
  execFileSync('python3', ['-c', BUILD_WHEEL, dir]);
  return dir;
}

t.test('requirements-deployment.txt is installed into .venv from a local wheel, and the wsgi app imports it', async (t) => {
  const wheels = wheelhouse(t);
  const code = tempDir(t, 'portico-code-');
  cpSync(WSGI_APP, code, { recursive: true });
  writeFileSync(join(code, 'requirements-deployment.txt'), 'porticodep==0.1.0\n');
  writeFileSync(join(code, 'requirements.txt'), 'this-must-not-be-used==9\n');
  const log: string[] = [];
  const r = await installPythonDeps(code, (l) => log.push(l), { pipArgs: ['--no-index', '--find-links', wheels] });
  t.same(r, { installed: true, file: 'requirements-deployment.txt', venv: join(code, '.venv') });
  t.ok(log.some((l) => /^Python dependencies: installing requirements-deployment\.txt into \.venv \(pip \d/.test(l)), 'says what it installs');
  t.ok(log.some((l) => /Successfully installed porticodep-0\.1\.0/.test(l)), 'pip output is streamed to the log');
  t.equal(log.at(-1), 'Python dependencies: installed requirements-deployment.txt into .venv');
  const imported = execFileSync(join(code, '.venv', 'bin', 'python'), ['-c', 'import porticodep; print(porticodep.GREETING)']).toString();
  t.equal(imported.trim(), 'hello from porticodep');

  // The local runtime runs the version with its venv: the wsgi runner imports the package.
  const h = await startRuntime(t);
  const spec = h.spec({ codeDir: code, command: { kind: 'wsgi', module: 'uses_dep' }, env: { PYTHONDONTWRITEBYTECODE: '1' } });
  await h.runtime.ensure(spec);
  const s = await h.waitReady(spec.key, 1);
  const res = await http('GET', `http://${s.replicas[0]!.address}/`);
  t.equal(res.body, 'hello from porticodep');
});

t.test('PIP_* variables of the version reach pip (requirements.txt as the fallback file)', async (t) => {
  const wheels = wheelhouse(t);
  const code = tempDir(t, 'portico-code-');
  writeFileSync(join(code, 'requirements.txt'), 'porticodep\n');
  const log: string[] = [];
  const r = await installPythonDeps(code, (l) => log.push(l), {
    env: { PIP_NO_INDEX: '1', PIP_FIND_LINKS: wheels, OTHER: 'ignored' },
  });
  t.match(r, { installed: true, file: 'requirements.txt' });
  t.ok(existsSync(join(code, '.venv', 'lib')), 'venv created');
});

t.test('a pip failure is an error carrying pip\'s last lines', async (t) => {
  const wheels = wheelhouse(t);
  const code = tempDir(t, 'portico-code-');
  writeFileSync(join(code, 'requirements.txt'), 'no-such-package-anywhere==1.0\n');
  const log: string[] = [];
  const err = await installPythonDeps(code, (l) => log.push(l), { pipArgs: ['--no-index', '--find-links', wheels] }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof PythonDepsError, 'a PythonDepsError');
  t.ok(err instanceof BuildError, 'which is a BuildError (the version fails with its message)');
  const e = err as PythonDepsError;
  t.match(e.message, /^pip install -r requirements\.txt failed \(exit 1\):\n/);
  t.match(e.message, /No matching distribution found for no-such-package-anywhere==1\.0/);
  t.ok(e.lines.length > 0 && e.lines.length <= 20);
});

t.test('no requirements file: nothing installed, and the log says so', async (t) => {
  const code = tempDir(t, 'portico-code-');
  const log: string[] = [];
  const r = await installPythonDeps(code, (l) => log.push(l));
  t.same(r, { installed: false, reason: 'no requirements-deployment.txt or requirements.txt: no Python dependencies to install' });
  t.same(log, ['Python dependencies: no requirements-deployment.txt or requirements.txt: no Python dependencies to install']);
  t.notOk(existsSync(join(code, '.venv')));
});

t.test('no python3, or a python3 without pip: nothing installed, and the log says so', async (t) => {
  const code = tempDir(t, 'portico-code-');
  writeFileSync(join(code, 'requirements.txt'), 'porticodep\n');

  const missing = join(code, 'no-such-python');
  const log1: string[] = [];
  const r1 = await installPythonDeps(code, (l) => log1.push(l), { python: missing });
  t.same(r1, { installed: false, reason: `${missing} not found (ENOENT): requirements.txt not installed` });
  t.same(log1, [`Python dependencies: ${r1.installed ? '' : r1.reason}`]);

  const bin = join(code, 'bin');
  mkdirSync(bin);
  const fake = join(bin, 'python3');
  writeFileSync(fake, '#!/bin/sh\necho "/usr/bin/python3: No module named pip" >&2\nexit 1\n');
  chmodSync(fake, 0o755);
  const log2: string[] = [];
  const r2 = await installPythonDeps(code, (l) => log2.push(l), { python: fake });
  t.same(r2, { installed: false, reason: `${fake} has no pip (/usr/bin/python3: No module named pip): requirements.txt not installed` });
  t.equal(log2.length, 1);
  t.notOk(existsSync(join(code, '.venv')));
});
