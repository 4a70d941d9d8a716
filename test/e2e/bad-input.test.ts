// Bad input through the public interfaces gets a clear error and loses nothing: a failed build,
// a bad valohai.yaml or a crashing app never disturbs the version already serving.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { create as createTar } from 'tar';
import { waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir, startPortico, type PorticoProcess } from '../helpers/portico.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const D = '/projects/acme/nlp/deployments/web';

async function settle(p: PorticoProcess, name: string): Promise<{ status: string; reason?: string; endpoints: { error?: string }[] }> {
  return waitFor(async () => {
    const v = (await p.api('GET', `${D}/versions/${name}`)).body;
    return v.status === 'ready' || v.status === 'failed' ? v : undefined;
  }, { timeoutMs: 30_000, what: `version ${name} to settle` });
}

/** A copy of the example with some files changed. */
function variant(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-variant-'));
  cpSync(EXAMPLE, dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

t.test('bad input', async (t) => {
  const p = await startPortico();
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const good = (await p.api('POST', `${D}/versions`, { source: { path: EXAMPLE } })).body.name as string;
  t.equal((await settle(p, good)).status, 'ready');
  t.equal((await p.api('PUT', `${D}/aliases/production`, { version: good })).status, 200);
  const serving = async () => {
    const res = await request(`${p.gatewayUrl}/acme/nlp/web/production/sentiment`);
    await res.body.dump();
    return res.statusCode === 200 && res.headers['x-portico-version'] === good;
  };

  t.test('admin API refuses bad requests with the JSON error shape', async (t) => {
    const dup = await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' });
    t.equal(dup.status, 409);
    t.match(dup.body, { statusCode: 409, code: 'ALREADY_EXISTS', error: 'Conflict' });
    const badField = await p.api('POST', `${D}/versions`, { source: { path: EXAMPLE }, endpoints: { sentiment: { replicas: -1 } } });
    t.equal(badField.status, 400);
    t.match(badField.body.message, /endpoints\.sentiment\.replicas/);
    // A version named like an alias could not be reached (the alias takes its URLs), and the
    // alias could no longer be moved: refused, nothing recorded.
    const clash = await p.api('POST', `${D}/versions`, { name: 'production', source: { path: EXAMPLE } });
    t.equal(clash.status, 409);
    t.match(clash.body, { statusCode: 409, code: 'CONFLICT', message: /^name: alias production of acme\/nlp\/web exists/ });
    t.equal((await p.api('GET', `${D}/versions/production`)).status, 404, 'no version named production recorded');
    const noAuth = await request(`${p.adminUrl}/api/v1/projects/acme/nlp/deployments`);
    t.equal(noAuth.statusCode, 401);
    t.match(await noAuth.body.json(), { code: 'AUTH_REQUIRED' });
    const badJson = await request(`${p.adminUrl}/api/v1/projects/acme/nlp/deployments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
      body: '{"name": ',
    });
    t.equal(badJson.statusCode, 400);
    t.match(await badJson.body.json(), { statusCode: 400 });
  });

  t.test('invalid valohai.yaml: failed with file:line:column, nothing else touched', async (t) => {
    const dir = variant({ 'valohai.yaml': '- endpoint:\n    name: Bad_Name\n    image: node:24\n    server-command: node server.js\n' });
    const name = (await p.api('POST', `${D}/versions`, { source: { path: dir } })).body.name as string;
    const v = await settle(p, name);
    t.equal(v.status, 'failed');
    t.match(v.reason, /valohai\.yaml:2:\d+: .*name/);
    const log = await p.api('GET', `${D}/versions/${name}/build-log`);
    t.match(log.body.items.map((l: { line: string }) => l.line).join('\n'), /build failed/);
    t.ok(await serving(), 'production still serves the good version');
    const alias = await p.api('PUT', `${D}/aliases/production`, { version: name });
    t.equal(alias.status, 409);
    t.equal(alias.body.code, 'VERSION_NOT_READY');
    t.ok(await serving());
  });

  t.test('missing source path and declared file without a source', async (t) => {
    const missing = (await p.api('POST', `${D}/versions`, { source: { path: '/nonexistent/code' } })).body.name as string;
    t.match((await settle(p, missing)).reason, /does not exist/);
    const dir = variant({});
    execFileSync('rm', [join(dir, 'model', 'weights.json')]);
    const noFile = (await p.api('POST', `${D}/versions`, { source: { path: dir } })).body.name as string;
    t.match((await settle(p, noFile)).reason, /file "model".*has no source/);
    // Given as a file source, it builds.
    const withFile = (await p.api('POST', `${D}/versions`, { source: { path: dir }, endpoints: { sentiment: { files: { model: { path: join(EXAMPLE, 'model', 'weights.json') } } } } })).body.name as string;
    t.equal((await settle(p, withFile)).status, 'ready');
  });

  t.test('an app that crashes at start: failed with the crash reason, production unaffected', async (t) => {
    const dir = variant({ 'server.js': 'console.error("model file corrupt"); process.exit(3);\n' });
    const name = (await p.api('POST', `${D}/versions`, { source: { path: dir } })).body.name as string;
    const v = await settle(p, name);
    t.equal(v.status, 'failed');
    t.match(v.reason, /endpoint sentiment: .*(exit|code) .*3/);
    t.ok(await serving());
    // Stopping it stops the restarts; forcing an alias onto it is possible but explicit.
    t.equal((await p.api('PATCH', `${D}/versions/${name}`, { enabled: false })).body.status, 'stopped');
    t.equal((await p.api('PUT', `${D}/aliases/canary`, { version: name, force: true })).status, 200);
    const res = await request(`${p.gatewayUrl}/acme/nlp/web/canary/sentiment`);
    t.equal(res.statusCode, 503);
    t.equal((await res.body.json() as { code: string }).code, 'NO_READY_REPLICA');
    t.equal((await p.api('DELETE', `${D}/aliases/canary`)).status, 204);
  });

  t.test('deleting a version an alias points at is refused', async (t) => {
    const r = await p.api('DELETE', `${D}/versions/${good}`);
    t.equal(r.status, 409);
    t.equal(r.body.code, 'ALIAS_IN_USE');
    t.ok(await serving());
  });

  t.test('git and uploaded archive sources', async (t) => {
    const repo = variant({});
    const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'ignore' });
    git('init', '-q', '-b', 'main');
    git('-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'empty');
    git('add', '.');
    git('-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '-m', 'model');
    const fromGit = (await p.api('POST', `${D}/versions`, { source: { git: { url: `file://${repo}`, ref: 'main' } } })).body.name as string;
    t.equal((await settle(p, fromGit)).status, 'ready');
    const badRef = (await p.api('POST', `${D}/versions`, { source: { git: { url: `file://${repo}`, ref: 'no-such-branch' } } })).body.name as string;
    t.match((await settle(p, badRef)).reason, /git checkout/);

    const archive = join(mkdtempSync(join(tmpdir(), 'portico-tar-')), 'app.tar.gz');
    await createTar({ gzip: true, file: archive, cwd: EXAMPLE }, ['.']);
    const { readFileSync } = await import('node:fs');
    const up = await request(`${p.adminUrl}/api/v1/uploads`, { method: 'POST', headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/octet-stream' }, body: readFileSync(archive) });
    t.equal(up.statusCode, 201);
    const { id } = (await up.body.json()) as { id: string };
    const fromUpload = (await p.api('POST', `${D}/versions`, { source: { upload: id } })).body.name as string;
    t.equal((await settle(p, fromUpload)).status, 'ready');
    const res = await request(`${p.gatewayUrl}/acme/nlp/web/${fromUpload}/sentiment`, { method: 'POST', body: '{"text":"awful"}' });
    t.match(await res.body.json(), { label: 'negative' });
  });
});
