// buildVersion over a real blob store in a temporary folder: where the declared files of an
// endpoint may be placed in the version's code.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore } from '../../../builder/build/blobs.ts';
import { buildVersion } from '../../../builder/build/build-version.ts';
import { BuildError } from '../../../builder/build/source.ts';
import type { CreateVersionInput } from '../../../builder/control-plane.ts';

/** A temporary folder, removed on teardown. */
async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-build-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Builds `input` into `dir`/version with a blob store in `dir`/blobs. */
function build(input: CreateVersionInput, dir: string, opts: { log?: (line: string) => void; installDeps?: boolean } = {}) {
  return buildVersion({
    input,
    versionDir: join(dir, 'version'),
    blobs: new BlobStore(join(dir, 'blobs')),
    uploads: async () => null,
    log: opts.log ?? (() => undefined),
    timeoutMs: 10_000,
    maxFileBytes: 1024 * 1024,
    installDeps: opts.installDeps ?? false,
  });
}

/**
 * Builds `code` (a folder with a valohai.yaml declaring `sentiment` with file `model` at
 * `path`), the file given as a source unless `withSource` is false (then read from the code);
 * resolves with the build's error, if any.
 */
async function buildWithFile(t: Test, code: string, path: string, withSource = true): Promise<unknown> {
  const dir = await tempDir(t);
  await writeFile(join(code, 'valohai.yaml'), `- endpoint:\n    name: sentiment\n    image: node:24\n    server-command: node server.js\n    files:\n      - name: model\n        path: ${path}\n`);
  const model = join(dir, 'weights.json');
  await writeFile(model, '{"good": 1}');
  return build({ source: { path: code }, endpoints: { sentiment: withSource ? { files: { model: { path: model } } } : {} } }, dir)
    .then(() => undefined, (err: unknown) => err);
}

t.test('a declared file is never written outside the code through a symlink in it', async (t) => {
  const outside = await tempDir(t);
  const code = await tempDir(t);
  await symlink(outside, join(code, 'model'));
  await symlink('..', join(code, 'up'));
  for (const path of ['model/weights.json', 'up/weights.json', 'model/deeper/weights.json']) {
    const err = await buildWithFile(t, code, path);
    t.type(err, BuildError, path);
    t.match((err as Error).message, /^endpoint sentiment: file "model" \(path [^)]+\): .*symlink/, path);
  }
  t.same(await readdir(outside), [], 'nothing written outside the code');

  // A symlink to a folder inside the code is followed.
  await mkdir(join(code, 'models', 'v3'), { recursive: true });
  await symlink('models/v3', join(code, 'current'));
  t.equal(await buildWithFile(t, code, 'current/weights.json'), undefined, 'builds');
});

t.test('the file itself being a symlink is replaced, not written through', async (t) => {
  const outside = await tempDir(t);
  const code = await tempDir(t);
  await writeFile(join(outside, 'precious'), 'keep me');
  await symlink(join(outside, 'precious'), join(code, 'weights.json'));
  t.equal(await buildWithFile(t, code, 'weights.json'), undefined);
  t.equal(await readFile(join(outside, 'precious'), 'utf8'), 'keep me');
});

t.test('a declared file whose path a folder or file of the code is in the way of: a build error naming it, not an internal one', async (t) => {
  const code = await tempDir(t);
  await mkdir(join(code, 'model'));
  await writeFile(join(code, 'server.js'), '');
  const cases: [string, RegExp][] = [
    ['model', /^endpoint sentiment: file "model" \(path model\): a folder of the code is at that path$/],
    ['server.js/weights.json', /^endpoint sentiment: file "model" \(path server\.js\/weights\.json\): server\.js in the code is a file, not a folder$/],
    ['server.js/deeper/weights.json', /^endpoint sentiment: file "model" \(path server\.js\/deeper\/weights\.json\): server\.js in the code is a file, not a folder$/],
  ];
  for (const [path, message] of cases) {
    const err = await buildWithFile(t, code, path);
    t.type(err, BuildError, path);
    t.match((err as Error).message, message, path);
  }
});

t.test('a declared file read from the code is never read outside it through a symlink', async (t) => {
  const outside = await tempDir(t);
  const code = await tempDir(t);
  await writeFile(join(outside, 'secret'), 'the controller host\'s file');
  await symlink(join(outside, 'secret'), join(code, 'weights.json'));
  await symlink(outside, join(code, 'model'));
  for (const path of ['weights.json', 'model/secret']) {
    const err = await buildWithFile(t, code, path, false);
    t.type(err, BuildError, path);
    t.match((err as Error).message, /^endpoint sentiment: file "model" \(path [^)]+\): .*symlink .*leads out of the code/, path);
  }

  // A symlink to a file inside the code is followed.
  await mkdir(join(code, 'models'));
  await writeFile(join(code, 'models', 'w.json'), '{"good": 1}');
  await symlink('models/w.json', join(code, 'current.json'));
  t.equal(await buildWithFile(t, code, 'current.json', false), undefined, 'builds');
});

t.test('valohai.yaml and the requirements file are never read through a symlink leading out of the code', async (t) => {
  const outside = await tempDir(t);
  await writeFile(join(outside, 'secret'), 'ptk_the-controller-hosts-own-secret-token\n');
  const buildCode = async (code: string) => {
    const dir = await tempDir(t);
    const lines: string[] = [];
    const err = await build({ source: { path: code } }, dir, { log: (l) => lines.push(l), installDeps: true }).then(() => undefined, (e: unknown) => e);
    return { err, lines };
  };

  const yamlLink = await tempDir(t);
  await symlink(join(outside, 'secret'), join(yamlLink, 'valohai.yaml'));
  const a = await buildCode(yamlLink);
  t.type(a.err, BuildError);
  t.match((a.err as Error).message, /^valohai\.yaml in the code is a symlink that leads out of it/);
  t.notOk([(a.err as Error).message, ...a.lines].some((l) => l.includes('ptk_')), 'nothing of the file outside is shown');

  const reqLink = await tempDir(t);
  await writeFile(join(reqLink, 'valohai.yaml'), '- endpoint:\n    name: sentiment\n    image: node:24\n    server-command: node server.js\n');
  await symlink(join(outside, 'secret'), join(reqLink, 'requirements.txt'));
  const b = await buildCode(reqLink);
  t.type(b.err, BuildError);
  t.match((b.err as Error).message, /^requirements\.txt in the code is a symlink that leads out of it/);
  t.notOk([(b.err as Error).message, ...b.lines].some((l) => l.includes('ptk_')), 'nothing of the file outside is shown');
});

t.test('two endpoints given different files for one path: a build error, not one file silently replacing the other', async (t) => {
  const code = await tempDir(t);
  const dir = await tempDir(t);
  const endpoint = (name: string) => `- endpoint:\n    name: ${name}\n    image: node:24\n    server-command: node server.js\n    files:\n      - name: model\n        path: models/model.bin\n`;
  await writeFile(join(code, 'valohai.yaml'), endpoint('first') + endpoint('second'));
  await writeFile(join(dir, 'a.bin'), 'weights A');
  await writeFile(join(dir, 'b.bin'), 'weights B');
  const both = (second: string) => build({ source: { path: code }, endpoints: { first: { files: { model: { path: join(dir, 'a.bin') } } }, second: { files: { model: { path: join(dir, second) } } } } }, dir);
  const err = await both('b.bin').then(() => undefined, (e: unknown) => e);
  t.type(err, BuildError);
  t.equal((err as Error).message, 'endpoint second: file "model" (path models/model.bin): endpoint first\'s file "model" is placed at that path with other content; give both the same file, or declare different paths');
  // The same file for both is fine: they share it.
  const built = await both('a.bin');
  t.same(built.endpoints.map((e) => e.files[0]?.sha256), [built.endpoints[0]?.files[0]?.sha256, built.endpoints[0]?.files[0]?.sha256]);
  t.equal(await readFile(join(built.codeDir, 'models', 'model.bin'), 'utf8'), 'weights A');
});

t.test('a declared file read from the code is hashed there, not copied into the blob store (it would take its size twice)', async (t) => {
  const code = await tempDir(t);
  const dir = await tempDir(t);
  await writeFile(join(code, 'valohai.yaml'), '- endpoint:\n    name: sentiment\n    image: node:24\n    server-command: node server.js\n    files:\n      - name: model\n        path: model.bin\n');
  await writeFile(join(code, 'model.bin'), 'weights in the code');
  const built = await build({ source: { path: code } }, dir);
  const sha256 = createHash('sha256').update('weights in the code').digest('hex');
  t.same(built.endpoints[0]?.files, [{ name: 'model', path: 'model.bin', sha256, size: 19 }], 'its digest and size are recorded');
  t.same(await readdir(join(dir, 'blobs', 'sha256')).catch(() => []), [], 'no blob stored');
});
