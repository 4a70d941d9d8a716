import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import type Dockerode from 'dockerode';
import { buildEndpointImage, buildVersionImages, endpointDockerfile, endpointImageSpec, imageTag, ImageBuildError, removeVersionImages, type EndpointImageSpec } from '../../../builder/build/image.ts';
import { BuildError } from '../../../builder/build/source.ts';
import { busyboxEntries, importBusybox, importNode, importRootfs } from '../../helpers/base-image.ts';
import { startDockerd, startFakeRegistry } from '../../helpers/dockerd.ts';
import { freePort, waitFor } from '../../helpers/poll.ts';

const EXAMPLE = resolve(import.meta.dirname, '../../../examples/node-sentiment');

const dockerd = await startDockerd();
t.teardown(() => dockerd.stop());
const docker = dockerd.docker;
await importBusybox(docker, 'portico-test/busybox:1');
await importNode(docker, 'portico-test/node:24');
// A "python" whose pip records how it was called (and can be told to hang): the pip step's shape.
await importRootfs(docker, 'portico-test/fakepy:1', [
  ...busyboxEntries(),
  {
    type: 'data',
    path: 'usr/bin/python3',
    mode: 0o755,
    data: '#!/bin/sh\necho "fake python $*"\nif [ -f hang ]; then sleep 60; fi\necho "$*" > /pip-args\necho "index=$PIP_INDEX_URL" > /pip-index\n',
  },
]);

const tmp = mkdtempSync(join(tmpdir(), 'portico-image-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
/** A fresh code directory: a copy of `from` (if given) plus `files`. */
function codeDir(files: Record<string, string>, from?: string): string {
  const dir = join(tmp, `code${++dirs}`);
  mkdirSync(dir, { recursive: true });
  if (from) cpSync(from, dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
const emptyDir = (files: Record<string, string>) => codeDir(files);

function spec(over: Partial<EndpointImageSpec> = {}): EndpointImageSpec {
  return {
    owner: 'acme',
    project: 'nlp',
    deployment: 'web',
    version: '20240101.0',
    endpoint: 'sentiment',
    baseImage: 'portico-test/node:24',
    command: { kind: 'shell', command: 'node server.js' },
    port: 8000,
    ...over,
  };
}

/** Everything on the engine that a failed build could leave behind. */
async function engineState(d: Dockerode): Promise<{ images: string[]; containers: string[]; tags: string[] }> {
  const images = await d.listImages({ all: true });
  const containers = await d.listContainers({ all: true });
  return {
    images: images.map((i) => i.Id).sort(),
    tags: images.flatMap((i) => i.RepoTags ?? []).filter((x) => x !== '<none>:<none>').sort(),
    containers: containers.map((c) => c.Id).sort(),
  };
}

async function runOnce(image: string, cmd: string[]): Promise<string> {
  const c = await docker.createContainer({ Image: image, Cmd: cmd, HostConfig: { NetworkMode: 'host' } });
  try {
    await c.start();
    await c.wait();
    const buf = (await c.logs({ stdout: true, stderr: true })) as unknown as Buffer;
    // Multiplexed frames: 8-byte header, then the payload.
    let out = '';
    for (let i = 0; i + 8 <= buf.length;) {
      const size = buf.readUInt32BE(i + 4);
      out += buf.subarray(i + 8, i + 8 + size).toString();
      i += 8 + size;
    }
    return out;
  } finally {
    await c.remove({ force: true });
  }
}

t.test('imageTag: a valid, lowercased reference per endpoint of a version', async (t) => {
  const cases: [Parameters<typeof imageTag>[0], string | undefined, RegExp | string][] = [
    [spec(), undefined, 'acme-nlp-web:20240101.0-sentiment'],
    [spec(), 'registry.example.com:5000/team', 'registry.example.com:5000/team/acme-nlp-web:20240101.0-sentiment'],
    [spec(), 'registry.example.com/', 'registry.example.com/acme-nlp-web:20240101.0-sentiment'],
    [spec({ owner: 'Acme', version: 'V2' }), undefined, /^acme-nlp-web-[0-9a-f]{8}:v2-sentiment-[0-9a-f]{8}$/],
    [spec({ deployment: 'web__app..x' }), undefined, /^acme-nlp-web__app-x-[0-9a-f]{8}:/],
    [spec({ version: 'x'.repeat(140) }), undefined, /^acme-nlp-web:x{119}-[0-9a-f]{8}$/],
  ];
  for (const [s, reg, want] of cases) {
    const got = imageTag(s, reg);
    if (typeof want === 'string') t.equal(got, want);
    else t.match(got, want);
    const [, tag] = /:([^:/]+)$/.exec(got) ?? [];
    t.ok(tag !== undefined && tag.length <= 128, `tag of ${got} is at most 128 characters`);
    t.match(got.replace(/^.*\//, '').replace(/:.*$/, ''), /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/, `${got}: valid repository component`);
  }
  t.not(imageTag(spec({ deployment: 'Web' })), imageTag(spec({ deployment: 'web' })), 'names differing in case do not share an image');
  t.not(imageTag(spec({ owner: 'acme-ml', project: 'nlp' })), imageTag(spec({ owner: 'acme', project: 'ml-nlp' })), 'names holding a dash do not share an image');
  t.not(imageTag(spec({ version: 'v1', endpoint: 'x-y' })), imageTag(spec({ version: 'v1-x', endpoint: 'y' })), 'versions and endpoints holding a dash do not share an image');
});

t.test('endpoints whose names join to the same text each keep their own image', async (t) => {
  const build = async (over: Partial<EndpointImageSpec>, text: string) =>
    buildEndpointImage({ docker, spec: spec({ baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['cat', 'which'] }, ...over }), codeDir: emptyDir({ which: text }), log: () => {}, timeoutMs: 60_000 });
  // Two owners' deployments, then two versions of one deployment.
  const pairs: [Partial<EndpointImageSpec>, Partial<EndpointImageSpec>][] = [
    [{ owner: 'acme-ml', project: 'nlp' }, { owner: 'acme', project: 'ml-nlp' }],
    [{ version: 'v1', endpoint: 'x-y' }, { version: 'v1-x', endpoint: 'y' }],
  ];
  for (const [a, b] of pairs) {
    const first = await build(a, 'first');
    const second = await build(b, 'second');
    t.teardown(async () => {
      for (const ref of [first.image, second.image]) await docker.getImage(ref).remove().catch(() => {});
    });
    t.equal(await runOnce(first.image, ['cat', 'which']), 'first', `${first.image} still runs the first one's code`);
    t.equal(await runOnce(second.image, ['cat', 'which']), 'second', `${second.image} runs the second one's code`);
  }
});

t.test('endpointDockerfile: classic syntax, requirements, wsgi, exec form', async (t) => {
  const shell = endpointDockerfile(spec(), { requirements: null });
  t.match(shell, /^FROM portico-test\/node:24\nWORKDIR \/valohai\/repository\nCOPY code\/ \/valohai\/repository\/\n/);
  t.notMatch(shell, /RUN/);
  t.match(shell, /ENV PORT="8000" HOST="0.0.0.0"\n/);
  t.match(shell, /CMD \["\/bin\/sh","-c","node server.js"\]\n$/);
  const exec = endpointDockerfile(spec({ command: { kind: 'exec', argv: ['node', 'server.js', '--port', '$PORT'] }, port: 9000 }), { requirements: null });
  t.match(exec, /CMD \["node","server.js","--port","9000"\]/);
  const wsgi = endpointDockerfile(spec({ command: { kind: 'wsgi', module: 'predict:application' } }), { requirements: 'requirements.txt', buildArgNames: ['PIP_INDEX_URL'] });
  t.match(wsgi, /ARG PIP_INDEX_URL\nRUN .*-m pip install --no-cache-dir --disable-pip-version-check -r 'requirements.txt'\n/);
  t.match(wsgi, /COPY portico\/wsgi_runner.py \/opt\/portico\/wsgi_runner.py/);
  t.match(wsgi, /CMD \["python3","\/opt\/portico\/wsgi_runner.py","predict:application"\]/);
  t.throws(() => endpointDockerfile(spec({ baseImage: 'x\nRUN rm -rf /' }), { requirements: null }), ImageBuildError);
});

t.test('builds the Node example: tag, labels, command, streamed log; the image serves', async (t) => {
  const dir = codeDir({}, EXAMPLE);
  const lines: string[] = [];
  const built = await buildEndpointImage({ docker, spec: spec(), codeDir: dir, log: (l) => lines.push(l), timeoutMs: 120_000 });
  t.equal(built.image, 'acme-nlp-web:20240101.0-sentiment');
  t.equal(built.pushed, false);
  t.match(built.id, /^sha256:[0-9a-f]{64}$/);
  const info = await docker.getImage(built.image).inspect();
  t.equal(info.Id, built.id);
  t.match(info.Config.Labels, {
    'portico.managed': 'true', 'portico.owner': 'acme', 'portico.project': 'nlp', 'portico.deployment': 'web',
    'portico.version': '20240101.0', 'portico.endpoint': 'sentiment',
  });
  t.same(info.Config.Cmd, ['/bin/sh', '-c', 'node server.js']);
  t.ok(info.Config.Env?.includes('PORT=8000'), 'PORT is the endpoint port');
  t.equal(info.Config.WorkingDir, '/valohai/repository');
  t.ok(lines.some((l) => /^Step 1\/\d+ : FROM portico-test\/node:24$/.test(l)), 'build steps are logged');
  t.ok(lines.some((l) => /^Successfully tagged acme-nlp-web:20240101.0-sentiment$/.test(l)), 'the engine output is logged line by line');
  t.notOk(lines.some((l) => l.includes('{"stream"')), 'JSON is parsed, not logged raw');
  t.same((await docker.listContainers({ all: true })).length, 0, 'intermediate containers are removed');

  // The image serves the model on $PORT.
  const port = await freePort();
  const c = await docker.createContainer({ Image: built.image, Env: [`PORT=${port}`], HostConfig: { NetworkMode: 'host' } });
  await c.start();
  const res = await waitFor(
    () => fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: JSON.stringify({ text: 'good' }) }).then((r) => r.json() as Promise<{ score: number; label: string }>),
    { timeoutMs: 15_000, what: 'the example to answer' },
  );
  t.equal(res.label, 'positive');
  t.type(res.score, 'number');
  await c.remove({ force: true });
  await docker.getImage(built.image).remove();
});

t.test('requirements: the pip step runs the first requirements file with the build arguments', async (t) => {
  const dir = emptyDir({ 'requirements-deployment.txt': 'numpy\n', 'requirements.txt': 'ignored\n', 'app.sh': 'echo hi\n' });
  const lines: string[] = [];
  const built = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/fakepy:1', endpoint: 'pip' }), codeDir: dir, log: (l) => lines.push(l), timeoutMs: 60_000,
    buildArgs: { PIP_INDEX_URL: 'http://pypi.internal/simple' },
  });
  t.ok(lines.includes('fake python -m pip install --no-cache-dir --disable-pip-version-check -r requirements-deployment.txt'), 'pip ran on requirements-deployment.txt');
  t.equal((await runOnce(built.image, ['cat', '/pip-index'])).trim(), 'index=http://pypi.internal/simple', 'build arguments reach pip');
  const info = await docker.getImage(built.image).inspect();
  t.notOk(info.Config.Env?.some((e) => e.startsWith('PIP_INDEX_URL')), 'build arguments are not kept in the image');
  await docker.getImage(built.image).remove();
});

t.test('wsgi endpoints get the bundled runner as their command', async (t) => {
  const dir = emptyDir({ 'predict.py': 'def application(environ, start_response): pass\n' });
  const built = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/busybox:1', endpoint: 'predict', command: { kind: 'wsgi', module: 'predict:application' } }),
    codeDir: dir, log: () => {}, timeoutMs: 60_000,
  });
  const info = await docker.getImage(built.image).inspect();
  t.same(info.Config.Cmd, ['python3', '/opt/portico/wsgi_runner.py', 'predict:application']);
  const out = await runOnce(built.image, ['sh', '-c', 'head -c 40 /opt/portico/wsgi_runner.py; echo; ls /valohai/repository']);
  t.match(out, /^"""Serves a WSGI application/);
  t.match(out, /predict\.py/);
  await docker.getImage(built.image).remove();
});

t.test('a missing base image rejects with the engine message and leaves nothing', async (t) => {
  const before = await engineState(docker);
  const lines: string[] = [];
  const err = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/missing:1' }), codeDir: codeDir({}, EXAMPLE), log: (l) => lines.push(l), timeoutMs: 60_000,
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof ImageBuildError && err instanceof BuildError, 'an ImageBuildError (a BuildError: the version fails with its message)');
  // Offline the engine cannot reach the registry; online it is told the repository does not exist.
  t.match((err as Error).message, /^image build failed at step 1\/\d+ : FROM portico-test\/missing:1: .*(registry-1\.docker\.io|pull access denied|not found|does not exist)/);
  t.same(await engineState(docker), before, 'no image, tag or container left');
});

t.test('a failing RUN rejects with the engine message and leaves nothing', async (t) => {
  const before = await engineState(docker);
  const lines: string[] = [];
  const err = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/busybox:1' }), codeDir: emptyDir({ 'requirements.txt': 'flask\n' }), log: (l) => lines.push(l), timeoutMs: 60_000,
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof ImageBuildError);
  t.match((err as Error).message, /^image build failed at step \d+\/\d+ : RUN .*: The command .* returned a non-zero code: 1$/);
  t.ok(lines.includes("portico: the image has neither python3 nor python to install requirements.txt with"), `the step output is logged: ${JSON.stringify(lines)}`);
  t.same(await engineState(docker), before, 'no image, tag, layer or intermediate container left');
});

t.test('the timeout aborts the build and leaves nothing', async (t) => {
  const before = await engineState(docker);
  const started = Date.now();
  const err = await buildEndpointImage({
    // 5 s: on a busy machine the steps before the hanging RUN took over 2 s (the abort then
    // came at COPY, whose layer the engine still commits after the client has gone).
    docker, spec: spec({ baseImage: 'portico-test/fakepy:1' }), codeDir: emptyDir({ 'requirements.txt': 'x\n', hang: '' }), log: () => {}, timeoutMs: 5000,
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof ImageBuildError);
  t.match((err as Error).message, /^image build timed out after 5 s \(at Step \d+\/\d+ : RUN /);
  t.ok(Date.now() - started < 20_000, 'it did not wait for the step to finish');
  await waitFor(async () => JSON.stringify(await engineState(docker)) === JSON.stringify(before), { timeoutMs: 20_000, what: 'the aborted build to be cleaned up' });
  t.pass('no image or container left');
});

t.test('a push the registry refuses fails the build and leaves no tagged image', async (t) => {
  const before = await engineState(docker);
  const port = await freePort(); // nobody listens there
  const lines: string[] = [];
  const err = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['sleep', '1'] } }), codeDir: emptyDir({ a: '1' }),
    registry: `127.0.0.1:${port}/portico`, log: (l) => lines.push(l), timeoutMs: 60_000,
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof ImageBuildError);
  t.match((err as Error).message, new RegExp(`^push of 127\\.0\\.0\\.1:${port}/portico/acme-nlp-web:20240101\\.0-sentiment failed: .*(connection refused|connect)`));
  t.ok(lines.includes(`pushing 127.0.0.1:${port}/portico/acme-nlp-web:20240101.0-sentiment`));
  t.same(await engineState(docker), before, 'the tag and its layers are removed');
});

t.test('with a registry the image is tagged under it and pushed', async (t) => {
  const registry = await startFakeRegistry();
  t.teardown(() => registry.close());
  const lines: string[] = [];
  const built = await buildEndpointImage({
    docker, spec: spec({ baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['sleep', '1'] } }), codeDir: emptyDir({ a: '1' }),
    registry: `${registry.host}/portico`, log: (l) => lines.push(l), timeoutMs: 60_000,
  });
  t.equal(built.image, `${registry.host}/portico/acme-nlp-web:20240101.0-sentiment`);
  t.equal(built.pushed, true);
  const manifest = registry.manifests.get('portico/acme-nlp-web:20240101.0-sentiment');
  t.ok(manifest, 'the registry holds the manifest under the tag');
  const layers = (JSON.parse(manifest!.body.toString()) as { layers: { digest: string }[] }).layers;
  t.ok(layers.length > 0 && layers.every((l) => registry.blobs.has(l.digest)), 'and every layer');
  t.ok(lines.includes(`pushing ${built.image}`));
  t.ok(lines.some((l) => /^20240101\.0-sentiment: digest: sha256:[0-9a-f]{64} size: \d+$/.test(l)), `the push is logged: ${lines.slice(-3).join(' | ')}`);
  await docker.getImage(built.image).remove();
});

t.test('a registry that wants credentials: refused without them (nothing left), pushed with them', async (t) => {
  const auth = { username: 'ci-bot', password: 's3cret-token' };
  const registry = await startFakeRegistry({ auth });
  t.teardown(() => registry.close());
  const base = {
    docker, spec: spec({ version: 'private', baseImage: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['sleep', '1'] } as const }),
    codeDir: emptyDir({ a: '1' }), registry: `${registry.host}/private`, timeoutMs: 60_000,
  };
  const tag = `${registry.host}/private/acme-nlp-web:private-sentiment`;

  const err = await buildEndpointImage({ ...base, log: () => {} }).then(() => null, (e: unknown) => e);
  t.type(err, ImageBuildError);
  t.match((err as Error).message, /^push of .* failed: .*(unauthorized|authentication required|no basic auth credentials)/i);
  t.equal(await docker.getImage(tag).inspect().then(() => 'present', () => 'absent'), 'absent', 'a refused push leaves no tagged image');
  t.equal(registry.manifests.size, 0);

  const lines: string[] = [];
  const built = await buildEndpointImage({ ...base, registryAuth: auth, log: (l) => lines.push(l) });
  t.equal(built.pushed, true);
  t.ok(registry.manifests.get('private/acme-nlp-web:private-sentiment'), 'pushed under the tag');
  t.ok(registry.authorizations.includes(`Basic ${Buffer.from('ci-bot:s3cret-token').toString('base64')}`), 'the engine answered the challenge with the credentials');
  t.notOk(lines.some((l) => l.includes(auth.password)), 'the password is not in the build log');
  await docker.getImage(built.image).remove();
});

t.test('endpointImageSpec and removeVersionImages: the images of one version, and only those, are removed', async (t) => {
  const def = { name: 'echo', image: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['sleep', '1'] } as const, port: 8001 };
  t.same(endpointImageSpec({ owner: 'acme', project: 'nlp', deployment: 'web', name: 'v7' }, def), {
    owner: 'acme', project: 'nlp', deployment: 'web', version: 'v7', endpoint: 'echo', baseImage: 'portico-test/busybox:1', command: def.command, port: 8001,
  });
  const before = await engineState(docker);
  const dir = emptyDir({ a: '1' });
  const build = (version: string, endpoint: string) =>
    buildEndpointImage({ docker, spec: endpointImageSpec({ owner: 'acme', project: 'nlp', deployment: 'web', name: version }, { ...def, name: endpoint }), codeDir: dir, log: () => {}, timeoutMs: 60_000 });
  const a = await build('v7', 'echo');
  const b = await build('v7', 'other');
  const keep = await build('v8', 'echo');
  t.same(await removeVersionImages(docker, { owner: 'acme', project: 'nlp', deployment: 'web', version: 'v7' }), []);
  const tags = (await engineState(docker)).tags;
  t.notOk(tags.includes(a.image) || tags.includes(b.image), 'both endpoints of v7 are gone');
  t.ok(tags.includes(keep.image), 'v8 stays');
  await docker.getImage(keep.image).remove();
  t.same(await engineState(docker), before);
});

t.test('buildVersionImages: every enabled endpoint; a failure leaves none of them', async (t) => {
  const before = await engineState(docker);
  const version = { owner: 'acme', project: 'nlp', deployment: 'web', name: 'v9' };
  const ok = { image: 'portico-test/busybox:1', command: { kind: 'exec', argv: ['sleep', '1'] } as const, port: 8000 };
  const dir = emptyDir({ a: '1' });
  const images = await buildVersionImages({
    docker, version, codeDir: dir, log: () => {}, timeoutMs: 60_000,
    endpoints: [
      { name: 'one', enabled: true, definition: { ...ok, name: 'one' } },
      { name: 'off', enabled: false, definition: { ...ok, name: 'off' } },
      { name: 'two', enabled: true, definition: { ...ok, name: 'two' } },
    ],
  });
  t.same(images, { one: 'acme-nlp-web:v9-one', two: 'acme-nlp-web:v9-two' });
  await removeVersionImages(docker, { owner: 'acme', project: 'nlp', deployment: 'web', version: 'v9' });

  const err = await buildVersionImages({
    docker, version, codeDir: dir, log: () => {}, timeoutMs: 60_000,
    endpoints: [
      { name: 'one', enabled: true, definition: { ...ok, name: 'one' } },
      { name: 'bad', enabled: true, definition: { ...ok, name: 'bad', image: 'portico-test/missing:2' } },
    ],
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof ImageBuildError);
  t.same(await engineState(docker), before, 'the image built before the failure is removed too');
});
