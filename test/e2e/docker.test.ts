// The docker target through the public interface: `portico start` with PORTICO_DOCKER_SOCKET on
// a private dockerd. The Node example builds unchanged (its `image: node:24-bookworm-slim` is an
// image the test assembles and tags under that name, since nothing can be pulled), runs as
// containers, serves through the gateway, and leaves nothing behind when deleted.
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { importNode } from '../helpers/base-image.ts';
import { startDockerd } from '../helpers/dockerd.ts';
import { waitFor } from '../helpers/poll.ts';
import { ROOT, removeDataDir, startPortico } from '../helpers/portico.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const D = '/projects/acme/nlp/deployments/web';

t.test('a version on the docker target', async (t) => {
  const engine = await startDockerd();
  t.teardown(() => engine.stop());
  await importNode(engine.docker, 'node:24-bookworm-slim');
  const p = await startPortico({ env: { PORTICO_DOCKER_SOCKET: engine.socket, PORTICO_DOCKER_NETWORK: 'host' } });
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });

  const targets = await p.api('GET', '/targets');
  t.same(targets.body.items.map((x: { name: string; kind: string }) => `${x.name}:${x.kind}`), ['local:local', 'docker:docker']);
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web', target: 'docker' })).status, 201);
  const created = await p.api('POST', `${D}/versions`, { source: { path: EXAMPLE }, endpoints: { sentiment: { replicas: 2 } } });
  t.equal(created.status, 202);
  const name = created.body.name as string;
  const v = await waitFor(async () => {
    const r = (await p.api('GET', `${D}/versions/${name}`)).body;
    if (r.status === 'failed') throw new Error(`failed: ${r.reason}`);
    return r.status === 'ready' ? r : undefined;
  }, { timeoutMs: 120_000, what: 'the docker version ready' });
  t.equal(v.endpoints[0].replicaCount, 2);
  await waitFor(async () => {
    const r = (await p.api('GET', `${D}/versions/${name}`)).body;
    return r.endpoints[0].replicas.filter((x: { state: string }) => x.state === 'ready').length === 2;
  }, { timeoutMs: 60_000, what: 'both replicas ready' });

  // The build log shows the engine's build; the image carries Portico's labels.
  const log = (await p.api('GET', `${D}/versions/${name}/build-log`)).body.items.map((l: { line: string }) => l.line).join('\n');
  t.match(log, /Step \d+\/\d+ : FROM node:24-bookworm-slim/);
  const images = await engine.docker.listImages({ filters: { label: [`portico.version=${name}`] } });
  t.equal(images.length, 1, 'one image for the one endpoint');
  const containers = await engine.docker.listContainers({ filters: { label: [`portico.version=${name}`] } });
  t.equal(containers.length, 2, 'two containers running');

  const res = await request(`${p.gatewayUrl}/acme/nlp/web/${name}/sentiment`, { method: 'POST', body: '{"text":"excellent"}' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['x-portico-version'], name);
  t.match(await res.body.json(), { score: 3, label: 'positive', prefix: `/acme/nlp/web/${name}/sentiment` });

  // Container output reaches the logs API.
  await waitFor(async () => {
    const l = await p.api('GET', `${D}/versions/${name}/endpoints/sentiment/logs?tail=50`);
    return l.body.items.some((i: { line: string }) => i.line.includes('vh_metadata'));
  }, { what: 'container logs' });

  // Deleting the version removes its containers and its image.
  t.equal((await p.api('DELETE', `${D}/versions/${name}`)).status, 204);
  await waitFor(async () => (await engine.docker.listContainers({ all: true, filters: { label: [`portico.version=${name}`] } })).length === 0, { what: 'containers removed' });
  t.same(await engine.docker.listImages({ filters: { label: [`portico.version=${name}`] } }), [], 'image removed');
  const gone = await request(`${p.gatewayUrl}/acme/nlp/web/${name}/sentiment`);
  t.equal(gone.statusCode, 404);
  await gone.body.dump();
});
