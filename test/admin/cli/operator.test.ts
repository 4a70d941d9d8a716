import t from 'tap';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { x as untar } from 'tar';
import { aliasTarget, describeTarget } from '../../../admin/cli/alias.ts';
import { ApiClient, ApiError, describeError, UnreachableError } from '../../../admin/cli/client.ts';
import { UsageError } from '../../../admin/cli/command.ts';
import { isLoopbackUrl, packFolder } from '../../../admin/cli/deploy.ts';
import { mergeEnvironment } from '../../../admin/cli/env.ts';
import { parseSince } from '../../../admin/cli/logs.ts';
import { intArg, keyValue, parseFlags, table } from '../../../admin/cli/operator.ts';
import { appFolder, startApi, tempDir } from '../harness.ts';

t.test('parseFlags: values, repeats, switches, aliases, unknown options', async (t) => {
  const f = parseFlags(['set', '--owner', 'acme', '--env=A=1', '--env', 'B=2', '-f', '--json', 'x', '--', '--literal'], {
    owner: 'value', env: 'multi', follow: 'bool', json: 'bool',
  }, { f: 'follow' });
  t.same(f.positionals, ['set', 'x', '--literal']);
  t.equal(f.get('owner'), 'acme');
  t.same(f.all('env'), ['A=1', 'B=2']);
  t.ok(f.has('follow'));
  t.ok(f.has('json'));
  t.notOk(f.has('project'));
  t.throws(() => parseFlags(['--ownr', 'x'], { owner: 'value' }), new UsageError('unknown option --ownr'));
  t.throws(() => parseFlags(['--owner'], { owner: 'value' }), new UsageError('--owner needs a value'));
  t.throws(() => parseFlags(['-x'], {}), new UsageError('unknown option -x'));
  t.throws(() => parseFlags(['--json=yes'], { json: 'bool' }), new UsageError('--json takes no value'));
  t.notOk(parseFlags(['--json=false'], { json: 'bool' }).has('json'));
  t.equal(parseFlags(['--owner', 'a', '--owner', 'b'], { owner: 'value' }).get('owner'), 'b');
});

t.test('small parsers', async (t) => {
  t.same(keyValue('A=b=c', 'x'), ['A', 'b=c']);
  t.throws(() => keyValue('=x', '--env'), /--env must look like KEY=VALUE/);
  t.equal(intArg('7', '--n', 0, 10), 7);
  t.throws(() => intArg('11', '--n', 0, 10), /--n must be a whole number from 0 to 10/);
  t.throws(() => intArg('-1', '--n'), UsageError);
  t.equal(parseSince('10m', 1_000_000), 400_000);
  t.equal(parseSince('2h', 10_000_000), 2_800_000);
  t.equal(parseSince('2024-01-01T00:00:00Z'), Date.UTC(2024, 0, 1));
  t.throws(() => parseSince('soon'), /--since/);
  t.throws(() => parseSince('soon', 0, '--until'), /^--until must be/);
  t.same(aliasTarget(['v1']), { version: 'v1' });
  t.same(aliasTarget(['v1=90', 'v2=10']), { versions: [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }] });
  t.throws(() => aliasTarget([]), UsageError);
  t.throws(() => aliasTarget(['v1=0']), /weight of v1/);
  t.equal(describeTarget({ versions: [{ version: 'a', weight: 60 }, { version: 'b', weight: 40 }] }), 'a=60, b=40');
  t.equal(describeTarget(null), '-');
});

t.test('table', async (t) => {
  t.equal(table(['A', 'LONGER'], [['xyz', '1'], ['q', '22']]), 'A    LONGER\nxyz  1\nq    22');
  t.equal(table(['A'], []), '(none)');
});

t.test('isLoopbackUrl', async (t) => {
  for (const u of ['http://127.0.0.1:8081', 'http://localhost:1', 'http://[::1]:8081', 'http://127.1.2.3']) t.ok(isLoopbackUrl(u), u);
  for (const u of ['http://10.0.0.1:8081', 'https://portico.example.com', 'http://127.0.0.1.example.com']) t.notOk(isLoopbackUrl(u), u);
});

t.test('mergeEnvironment keeps plain variables, and secrets by their mask', async (t) => {
  const current = { A: { value: '1', secret: false }, S: { value: '********', secret: true } };
  t.same(mergeEnvironment(current, { B: { value: '2', secret: false } }, ['S'], false), { A: { value: '1', secret: false }, B: { value: '2', secret: false } });
  t.same(mergeEnvironment(current, { S: { value: 'new', secret: true } }, [], false), { A: { value: '1', secret: false }, S: { value: 'new', secret: true } });
  t.same(mergeEnvironment(current, { B: { value: '2', secret: false } }, [], false), { A: { value: '1', secret: false }, S: { value: '********', secret: true }, B: { value: '2', secret: false } });
  t.same(mergeEnvironment(current, { B: { value: '2', secret: false } }, [], true), { B: { value: '2', secret: false } });
});

t.test('packFolder: a .tar.gz of the folder without .git', async (t) => {
  const dir = await appFolder(t);
  await mkdir(join(dir, 'sub', '__pycache__'), { recursive: true });
  await writeFile(join(dir, 'sub', 'm.py'), 'x = 1\n');
  await writeFile(join(dir, 'sub', '__pycache__', 'm.pyc'), 'junk');
  const out = await tempDir(t);
  await pipeline(packFolder(dir), untar({ cwd: out }));
  t.same((await readdir(out)).sort(), ['app.py', 'sub', 'valohai.yaml']);
  t.same(await readdir(join(out, 'sub')), ['m.py']);
});

t.test('ApiClient: JSON, 204, error bodies as ApiError, unreachable servers', async (t) => {
  const api = await startApi(t);
  const client = new ApiClient({ baseUrl: `${api.url}/`, token: 'test-token' });
  t.same(await client.request('GET', '/api/v1/targets'), { items: [{ name: 'local', kind: 'local', gatewayUrl: 'http://127.0.0.1:8080' }] });
  await client.request('POST', '/api/v1/tokens', { body: { name: 'x' } });
  t.equal(await client.request('DELETE', '/api/v1/tokens/x'), undefined);
  const err = await client.request('GET', '/api/v1/tokens/x').catch((e: unknown) => e);
  t.type(err, ApiError);
  t.equal((err as ApiError).oneLine(), 'METHOD_NOT_ALLOWED (405): GET is not allowed on /api/v1/tokens/x; allowed: DELETE.');
  const anon = new ApiClient({ baseUrl: api.url, token: undefined });
  const denied = await anon.request('GET', '/api/v1/targets').catch((e: unknown) => e);
  t.equal(describeError(denied), 'AUTH_REQUIRED (401): Send Authorization: Bearer <token> (PORTICO_ADMIN_TOKEN). (set PORTICO_ADMIN_TOKEN)');
  const gone = new ApiClient({ baseUrl: 'http://127.0.0.1:1', token: 'x' });
  const unreachable = await gone.request('GET', '/api/v1/targets').catch((e: unknown) => e);
  t.type(unreachable, UnreachableError);
  t.match(describeError(unreachable), /^cannot reach the admin API at http:\/\/127\.0\.0\.1:1 \(PORTICO_URL\): .*ECONNREFUSED/);
  t.equal(describeError(new Error('other')), undefined);
});
