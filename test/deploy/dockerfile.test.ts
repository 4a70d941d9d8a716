import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { followProgress } from '../../builder/runtime/docker/progress.ts';
import { importBusybox, importNode } from '../helpers/base-image.ts';
import { startDockerd } from '../helpers/dockerd.ts';
import { freePort, waitFor } from '../helpers/poll.ts';

// The project's own image: the repository's Dockerfile built by a real engine, its base image
// (`ARG BASE_IMAGE`) replaced by one assembled here from the Node 24 binary, npm and tini (no
// registry can be pulled from, and the assembled image has no apt: `RUNTIME_PACKAGES` is empty),
// `npm ci` reaching the npm registry over the host's network. Then the image runs `portico start`
// and both ports answer /healthz. It listens on 127.0.0.2, not the loopback address the image's
// HEALTHCHECK would ask by default: the check must follow PORTICO_HOST.

const ROOT = resolve(import.meta.dirname, '../..');
const BASE = 'portico-test/node-npm:24';
const IMAGE = 'portico-test/portico:dev';
// Bounded well inside tap's 300 s per file (a file killed by tap would leave its engine running):
// build 150 s, both ports 45 s, health 25 s.
const BUILD_TIMEOUT_MS = 150_000;
const HOST = '127.0.0.2';

const dockerd = await startDockerd();
t.teardown(() => dockerd.stop());
const docker = dockerd.docker;

/** What `git` would commit: tracked and untracked-not-ignored files that exist (the build context). */
function contextFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  return [...new Set(out.split('\0').filter((f) => f !== '' && existsSync(join(ROOT, f))))].sort();
}

t.test('the repository Dockerfile builds on a Node 24 base and the image serves /healthz', async (t) => {
  t.ok(existsSync(join(ROOT, 'Dockerfile')), 'the repository has a Dockerfile');
  let started = Date.now();
  await importNode(docker, BASE, { npm: true, tini: true });
  t.comment(`base image imported in ${Date.now() - started} ms`);
  started = Date.now();

  const lines: string[] = [];
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), BUILD_TIMEOUT_MS);
  t.teardown(() => clearTimeout(timer));
  try {
    // dockerode packs `src` from `context`, leaving out what the repository's .dockerignore names.
    const stream = await docker.buildImage(
      { context: ROOT, src: contextFiles() },
      {
        t: IMAGE,
        dockerfile: 'Dockerfile',
        buildargs: { BASE_IMAGE: BASE, RUNTIME_PACKAGES: '' },
        networkmode: 'host', // npm ci reaches the registry: no bridge on these machines
        rm: true,
        forcerm: true,
        version: '1',
        abortSignal: abort.signal,
      },
    );
    await followProgress(stream, (m) => {
      if (m.stream) lines.push(...m.stream.split('\n').filter((l) => l.trim() !== ''));
      else if (m.status && !m.progress) lines.push(m.status);
    });
  } catch (err) {
    t.fail(`docker build failed: ${(err as Error).message}\n${lines.slice(-40).join('\n')}`);
    return;
  }
  t.ok(lines.some((l) => /^Successfully tagged portico-test\/portico:dev$/.test(l)), 'built and tagged');
  t.comment(`image built in ${Date.now() - started} ms`);

  const data = mkdtempSync(join(tmpdir(), 'portico-image-data-'));
  chmodSync(data, 0o777); // the image may run as an unprivileged user
  t.teardown(() => rmSync(data, { recursive: true, force: true }));
  const [gateway, admin, metrics] = [await freePort(), await freePort(), await freePort()];
  const container = await docker.createContainer({
    Image: IMAGE,
    Env: [
      `PORTICO_HOST=${HOST}`,
      `PORTICO_GATEWAY_PORT=${gateway}`,
      `PORTICO_ADMIN_PORT=${admin}`,
      `PORTICO_METRICS_PORT=${metrics}`,
      'PORTICO_DATA_DIR=/var/lib/portico-test',
    ],
    HostConfig: { NetworkMode: 'host', Binds: [`${data}:/var/lib/portico-test`] },
  });
  t.teardown(() => container.remove({ force: true }).catch(() => {}));
  await container.start();
  const logs = async () => {
    const buf = (await container.logs({ stdout: true, stderr: true, tail: 40 })) as unknown as Buffer;
    let text = '';
    for (let i = 0; i + 8 <= buf.length;) {
      const size = buf.readUInt32BE(i + 4);
      text += buf.subarray(i + 8, i + 8 + size).toString();
      i += 8 + size;
    }
    return text;
  };
  const deadline = Date.now() + 45_000;
  for (const [name, port] of [['gateway', gateway], ['admin', admin]] as const) {
    try {
      await waitFor(async () => {
        const info = await container.inspect();
        if (!info.State.Running) throw new Error(`the container exited with code ${info.State.ExitCode}`);
        return (await fetch(`http://${HOST}:${port}/healthz`)).status === 200;
      }, { timeoutMs: Math.max(1000, deadline - Date.now()), intervalMs: 200, what: `GET /healthz on the ${name} port` });
      t.pass(`${name} port answers /healthz with 200`);
    } catch (err) {
      t.fail(`${(err as Error).message}\n--- container output ---\n${await logs()}`);
    }
  }
  // The image's HEALTHCHECK agrees, asking PORTICO_HOST (its first check runs one interval after the start).
  await waitFor(async () => (await container.inspect()).State.Health?.Status === 'healthy', { timeoutMs: 25_000, intervalMs: 500, what: 'the HEALTHCHECK to pass' })
    .then(() => t.pass('docker reports the container healthy'), (err: Error) => t.fail(err.message));
  const stopping = Date.now();
  await container.stop({ t: 20 });
  const state = (await container.inspect()).State;
  t.equal(state.ExitCode, 0, `SIGTERM stops it cleanly (exit code 0, not killed), in ${Date.now() - stopping} ms`);
});

t.test("the repository's .dockerignore keeps node_modules, the local store and .git out of the build context", async (t) => {
  // A context laid out like a checkout after `npm ci && npm start`, with the repository's
  // .dockerignore, built by the engine as `docker build .` would send it; the image lists what arrived.
  const ctx = mkdtempSync(join(tmpdir(), 'portico-dockerignore-'));
  t.teardown(() => rmSync(ctx, { recursive: true, force: true }));
  copyFileSync(join(ROOT, '.dockerignore'), join(ctx, '.dockerignore'));
  const files = [
    'package.json', 'package-lock.json', 'bin/portico.ts', 'common/config.ts', 'gateway/main.ts', 'builder/main.ts', 'admin/ui/static/app.js',
    'node_modules/undici/package.json', '.portico/admin-token', '.portico/store/data.json', '.git/HEAD', '.tap/report.json', 'gateway.log', 'test/artifacts/ui/shot.png',
  ];
  for (const f of files) {
    mkdirSync(join(ctx, f, '..'), { recursive: true });
    writeFileSync(join(ctx, f), 'x');
  }
  writeFileSync(join(ctx, 'Dockerfile.list'), 'FROM portico-test/busybox:1\nCOPY . /ctx\nRUN find /ctx -type f | sort\n');
  await importBusybox(docker);
  const lines: string[] = [];
  const stream = await docker.buildImage({ context: ctx, src: [...files, '.dockerignore', 'Dockerfile.list'] }, {
    t: 'portico-test/context:dev', dockerfile: 'Dockerfile.list', networkmode: 'host', rm: true, forcerm: true, version: '1',
  });
  await followProgress(stream, (m) => {
    if (m.stream) lines.push(...m.stream.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/ctx/')));
  });
  t.teardown(() => docker.getImage('portico-test/context:dev').remove({ force: true }).catch(() => {}));
  const arrived = lines.map((l) => l.slice('/ctx/'.length));
  for (const f of ['package.json', 'package-lock.json', 'bin/portico.ts', 'common/config.ts', 'gateway/main.ts', 'builder/main.ts', 'admin/ui/static/app.js']) {
    t.ok(arrived.includes(f), `${f} is sent (the Dockerfile copies it)`);
  }
  for (const f of ['node_modules/undici/package.json', '.portico/admin-token', '.portico/store/data.json', '.git/HEAD', '.tap/report.json', 'gateway.log', 'test/artifacts/ui/shot.png']) {
    t.notOk(arrived.includes(f), `${f} is left out`);
  }
});
