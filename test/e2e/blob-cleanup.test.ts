// Deleting versions frees the controller's disk (docs/operations.md, "What frees the
// controller's disk"), for real: `portico deploy --upload --file` twice with one model file,
// then the versions deleted through the API, one after the other.
import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from '../helpers/poll.ts';
import { NODE, PORTICO, ROOT, removeDataDir, startPortico } from '../helpers/portico.ts';

const D = '/projects/acme/nlp/deployments/web';

/** Every file under `dir` (none when it does not exist). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

t.test('two versions deployed with one model file: it stays until both are deleted, then the blob store is empty', async (t) => {
  const p = await startPortico();
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(p.dataDir);
  });
  const dir = await mkdtemp(join(tmpdir(), 'portico-e2e-model-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const model = JSON.stringify({ good: 1, bad: -1 });
  await writeFile(join(dir, 'weights.json'), model);
  const sha256 = createHash('sha256').update(model).digest('hex');
  const blobs = join(p.dataDir, 'blobs');
  const file = join(blobs, 'sha256', sha256.slice(0, 2), sha256);

  const deploy = async (name: string) => {
    await promisify(execFile)(NODE, [
      PORTICO, 'deploy', '--owner', 'acme', '--project', 'nlp', '--deployment', 'web', '--path', join(ROOT, 'examples', 'node-sentiment'),
      '--name', name, '--upload', '--file', `sentiment.model=${join(dir, 'weights.json')}`, '--replicas', 'sentiment=0', '--no-wait',
    ], { env: { ...process.env, PORTICO_URL: p.adminUrl, PORTICO_ADMIN_TOKEN: p.token } });
    const v = await waitFor(async () => {
      const r = await p.api('GET', `${D}/versions/${name}`);
      return r.body.status !== 'building' ? r.body : undefined;
    }, { timeoutMs: 30_000, what: `the build of ${name}` });
    t.same(v.endpoints[0].files.map((f: { sha256: string }) => f.sha256), [sha256], `${name} was built with the file`);
  };
  await deploy('v1');
  await deploy('v2');
  t.ok(await stat(file), 'one stored file for both');

  t.equal((await p.api('DELETE', `${D}/versions/v1`)).status, 204);
  t.ok(await stat(file).then(() => true, () => false), 'v2 has it: it stays');
  t.equal((await p.api('DELETE', `${D}/versions/v2`)).status, 204);
  t.same(await filesUnder(blobs), [], 'both gone: the model file and the uploaded code archives are all deleted');
});
