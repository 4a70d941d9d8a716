import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readState, writeState, type StateFile } from '../../../../builder/runtime/local/state-file.ts';

t.test('written atomically with mode 0600, read back; missing or torn files are empty', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sub', 'local-runtime.json');
  t.same(readState(file), { version: 1, endpoints: {} }, 'missing');
  const state: StateFile = {
    version: 1,
    endpoints: {
      'a/p/d/v1/e': {
        spec: {
          key: 'a/p/d/v1/e', owner: 'a', project: 'p', deployment: 'd', version: 'v1', endpoint: 'e', replicas: 1,
          codeDir: '/code', command: { kind: 'wsgi', module: 'app' }, port: 8000, env: { SECRET: 's' }, specHash: 'h',
        },
        nextId: 2,
        replicas: [{ id: 'r1', pid: 123, startTime: '456', port: 4100, address: '127.0.0.1:4100', specHash: 'h', restarts: 0, startedAt: 1 }],
      },
    },
  };
  writeState(file, state);
  t.same(readState(file), state);
  t.equal(statSync(file).mode & 0o777, 0o600, 'the env (secrets) is readable by the owner only');
  t.same(readdirSync(join(dir, 'sub')), ['local-runtime.json'], 'no temporary file left');
  writeFileSync(file, '{"version": 1, "endpoi');
  t.same(readState(file), { version: 1, endpoints: {} }, 'torn');
});
