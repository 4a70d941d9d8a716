import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { launchFor, substitutePort, WSGI_RUNNER } from '../../../../builder/runtime/local/command.ts';
import type { EndpointSpec } from '../../../../builder/runtime/runtime.ts';

const spec = (over: Partial<EndpointSpec>): EndpointSpec => ({
  key: 'a/p/d/v1/e', owner: 'a', project: 'p', deployment: 'd', version: 'v1', endpoint: 'e', replicas: 1,
  codeDir: '/code', command: { kind: 'shell', command: 'serve --port $PORT' }, port: 8000,
  env: { VH_DEFAULT_PREFIX: '/a/p/d/v1/e', FOO: 'bar' }, specHash: 'h', ...over,
});

t.test('substitutePort', async (t) => {
  const cases: [string, string][] = [
    ['$PORT', '4100'],
    ['${PORT}', '4100'],
    ['--port=$PORT', '--port=4100'],
    ['0.0.0.0:$PORT/x', '0.0.0.0:4100/x'],
    ['$PORTAL $PORT_X', '$PORTAL $PORT_X'],
    ['$PORT$PORT', '41004100'],
    ['no port', 'no port'],
  ];
  for (const [input, want] of cases) t.equal(substitutePort(input, 4100), want, input);
});

t.test('shell, exec and wsgi commands with their environment', async (t) => {
  const shell = launchFor(spec({}), 4100, '127.0.0.1', '/usr/bin:/bin');
  t.same(shell, {
    file: '/bin/sh',
    args: ['-c', 'serve --port 4100'],
    env: { PYTHONUNBUFFERED: '1', VH_DEFAULT_PREFIX: '/a/p/d/v1/e', FOO: 'bar', PORT: '4100', HOST: '127.0.0.1', PATH: '/usr/bin:/bin' },
  });
  const exec = launchFor(spec({ command: { kind: 'exec', argv: ['gunicorn', '-b', ':${PORT}'] }, env: { PORT: '1', PYTHONUNBUFFERED: '0' } }), 4100, '127.0.0.1', '/bin');
  t.same(exec.file, 'gunicorn');
  t.same(exec.args, ['-b', ':4100']);
  const prefixed = launchFor(spec({ command: { kind: 'exec', argv: ['streamlit', '--server.baseUrlPath=$VH_DEFAULT_PREFIX', '${VH_DEFAULT_PREFIX}/x', '$HOST', '$VH_DEFAULT_PREFIXES', '$FOO', '$constructor'] } }), 4100, '127.0.0.1', '/bin');
  t.same(prefixed.args, ['--server.baseUrlPath=/a/p/d/v1/e', '/a/p/d/v1/e/x', '127.0.0.1', '$VH_DEFAULT_PREFIXES', '$FOO', '$constructor'], 'the variables the runtime sets, not the version\'s own');
  t.equal(exec.env['PORT'], '4100', 'the runtime\'s PORT wins over the spec\'s');
  t.equal(exec.env['PYTHONUNBUFFERED'], '0', 'the spec may set PYTHONUNBUFFERED');
  t.throws(() => launchFor(spec({ command: { kind: 'exec', argv: [] } }), 1, '127.0.0.1', '/bin'), /empty list/);
  const wsgi = launchFor(spec({ command: { kind: 'wsgi', module: 'app:predict' } }), 4100, '127.0.0.1', '/bin');
  t.same(wsgi.file, 'python3');
  t.same(wsgi.args, [WSGI_RUNNER, '--host', '127.0.0.1', '--port', '4100', 'app:predict']);
  t.equal(wsgi.env['SCRIPT_NAME'], '/a/p/d/v1/e');
});

t.test('a version with a .venv gets its bin first on PATH and its python for wsgi', async (t) => {
  const code = mkdtempSync(join(tmpdir(), 'portico-cmd-'));
  t.teardown(() => rmSync(code, { recursive: true, force: true }));
  mkdirSync(join(code, '.venv', 'bin'), { recursive: true });
  writeFileSync(join(code, '.venv', 'bin', 'python'), '');
  const l = launchFor(spec({ codeDir: code, command: { kind: 'wsgi', module: 'app' } }), 1, '127.0.0.1', '/usr/bin');
  t.equal(l.file, join(code, '.venv', 'bin', 'python'));
  t.equal(l.env['PATH'], `${join(code, '.venv', 'bin')}:/usr/bin`);
  t.equal(l.env['VIRTUAL_ENV'], join(code, '.venv'));
});
