import t, { type Test } from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { maskedReads, metadataRecorder } from '../../../builder/telemetry/collect.ts';
import { EmbeddedMetricStore } from '../../../builder/telemetry/metric-store-embedded.ts';
import type { MetricRow, MetricStore } from '../../../builder/telemetry/metric-store.ts';

t.test('metadataRecorder: stdout vh_metadata lines become rows, masked, at the line\'s time', async (t) => {
  const rows: [string, MetricRow][] = [];
  const store = { add: (e: string, r: MetricRow) => rows.push([e, r]) } as unknown as MetricStore;
  const record = metadataRecorder(store, (s) => s.split('hunter22').join('********'));
  const base = { key: 'o/p/d/v/e', replica: 'e-0', at: 1234 };
  record({ ...base, stream: 'stdout', line: '{"vh_metadata":{"score":2,"label":"positive","pw":"hunter22","hunter22":1}}' });
  record({ ...base, stream: 'stderr', line: '{"vh_metadata":{"score":9}}' });
  record({ ...base, stream: 'stdout', line: 'listening on 8000' });
  record({ ...base, stream: 'stdout', line: '{"vh_metadata":{"ok":true}}' });
  record({ ...base, stream: 'stdout', line: '{"vh_metadata": broken' });
  t.same(rows, [['o/p/d/v/e', { at: 1234, replica: 'e-0', values: [['score', 2], ['label', 'positive'], ['pw', '********'], ['********', 1]] }]]);
});

/** An embedded store, and it read through `maskedReads` with the secrets pushed to `secrets`. */
async function maskedStore(t: Test): Promise<{ store: MetricStore; masked: MetricStore; secrets: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-masked-'));
  const store = await EmbeddedMetricStore.open({ dir });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const secrets: string[] = [];
  const masked = maskedReads(store, (s) => secrets.reduce((o, x) => o.split(x).join('********'), s));
  return { store, masked, secrets };
}

t.test('maskedReads: string values read through it are masked with the secrets known now', async (t) => {
  const { store, masked, secrets } = await maskedStore(t);
  masked.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['who', 'alice-token-123'], ['n', 7]] });
  t.same((await masked.points('o/p/d/v/e', 'who'))?.points[0]?.value, 'alice-token-123');
  secrets.push('token-123');
  t.same((await masked.points('o/p/d/v/e', 'who'))?.points[0]?.value, 'alice-********');
  t.same((await masked.points('o/p/d/v/e', 'n'))?.points[0]?.value, 7);
  t.same(await masked.keys('o/p/d/v/e'), await store.keys('o/p/d/v/e'));
  t.equal(masked.counters.added, 2);
});

t.test('maskedReads: a key name recorded before its secret was known is listed masked, read by that name, never by the secret', async (t) => {
  const { masked, secrets } = await maskedStore(t);
  masked.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['calls-sk-live-42', 3], ['n', 7]] });
  secrets.push('sk-live-42');
  t.same(await masked.keys('o/p/d/v/e'), [{ name: 'calls-********', kind: 'number', count: 1 }, { name: 'n', kind: 'number', count: 1 }]);
  t.same((await masked.points('o/p/d/v/e', 'calls-********'))?.points.map((p) => p.value), [3], 'the listed name reads the series');
  t.equal(await masked.points('o/p/d/v/e', 'calls-sk-live-42'), null, 'a name holding a secret matches nothing');
  t.same((await masked.points('o/p/d/v/e', 'n'))?.points.map((p) => p.value), [7]);
  t.equal(await masked.points('o/p/d/v/e', 'nothing'), null);
});
