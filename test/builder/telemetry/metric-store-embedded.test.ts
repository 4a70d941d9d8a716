import t, { type Test } from 'tap';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedMetricStore } from '../../../builder/telemetry/metric-store-embedded.ts';
import { metricStoreContract } from './metric-store-contract.ts';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-metrics-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('contract', async (t) => {
  metricStoreContract(t, {
    fresh: async (limits) => {
      const dir = await mkdtemp(join(tmpdir(), 'portico-metrics-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      let store = await EmbeddedMetricStore.open({ dir, ...(limits ? { limits } : {}) });
      return {
        store,
        async reopen() {
          await store.close();
          store = await EmbeddedMetricStore.open({ dir, ...(limits ? { limits } : {}) });
          return store;
        },
      };
    },
  });
});

const EP = 'acme/nlp/web/v1/sentiment';

t.test('persistence: one NDJSON file per endpoint, replayed on open; torn lines are skipped', async (t) => {
  const dir = await tempDir(t);
  const a = await EmbeddedMetricStore.open({ dir });
  a.add(EP, { at: 1, replica: 'r1', values: [['score', 3], ['label', 'positive']] });
  a.add(EP, { at: 2, replica: 'r1', values: [['score', 'not a number']] });
  await a.close();
  const files = await readdir(dir);
  t.same(files, ['acme%2Fnlp%2Fweb%2Fv1%2Fsentiment.ndjson']);
  const text = await readFile(join(dir, files[0]!), 'utf8');
  t.equal(text, '{"t":1,"r":"r1","m":{"score":3,"label":"positive"}}\n', 'values of the wrong kind are not written');
  await appendFile(join(dir, files[0]!), '{"t":3,"r":"r1","m":{"score":4}}\n{"t":4,"r":"r1","m":{"sco');
  await writeFile(join(dir, 'unrelated.txt'), 'x');
  const b = await EmbeddedMetricStore.open({ dir });
  t.teardown(() => b.close());
  t.same((await b.points(EP, 'score'))?.points, [{ at: 1, value: 3, replica: 'r1' }, { at: 3, value: 4, replica: 'r1' }]);
});

t.test('bound on disk: a file is compacted to what memory keeps once it holds twice as much', async (t) => {
  const dir = await tempDir(t);
  const s = await EmbeddedMetricStore.open({ dir, limits: { pointsPerSeries: 500 } });
  const file = join(dir, encodeURIComponent(EP).replace(/\./g, '%2E') + '.ndjson');
  let biggest = 0;
  for (let batch = 0; batch < 20; batch++) {
    for (let i = 0; i < 500; i++) s.add(EP, { at: batch * 500 + i, replica: 'r1', values: [['v', batch * 500 + i], ['label', i % 2 ? 'a' : 'b']] });
    await s.flush();
    biggest = Math.max(biggest, (await stat(file)).size);
  }
  const lines = (await readFile(file, 'utf8')).trim().split('\n');
  t.ok(lines.length <= 1000 + 2 * 1000, `the file holds ${lines.length} lines`);
  t.ok(biggest < 200_000, `the file never grew past ${biggest} bytes`);
  await s.close();
  const again = await EmbeddedMetricStore.open({ dir, limits: { pointsPerSeries: 500 } });
  t.teardown(() => again.close());
  const pts = (await again.points(EP, 'v'))!.points;
  t.same(pts.map((p) => p.value), Array.from({ length: 500 }, (_, i) => 9500 + i), 'after a reopen: the newest 500, in order');
  t.same((await again.keys(EP)).map((k) => k.count), [500, 500]);
});

t.test('remove deletes the files too, also of endpoints not loaded', async (t) => {
  const dir = await tempDir(t);
  const s = await EmbeddedMetricStore.open({ dir });
  t.teardown(() => s.close());
  s.add(EP, { at: 1, replica: 'r', values: [['a', 1]] });
  s.add('acme/nlp/web/v2/sentiment', { at: 1, replica: 'r', values: [['a', 1]] });
  await s.flush();
  await writeFile(join(dir, encodeURIComponent('acme/nlp/web/v3/x') + '.ndjson'), '');
  await s.remove('acme/nlp/web/v1/');
  t.same((await readdir(dir)).sort(), ['acme%2Fnlp%2Fweb%2Fv2%2Fsentiment.ndjson', 'acme%2Fnlp%2Fweb%2Fv3%2Fx.ndjson']);
  await s.remove('acme/nlp/web/');
  t.same(await readdir(dir), []);
});
