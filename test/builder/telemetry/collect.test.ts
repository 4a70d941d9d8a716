import t from 'tap';
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

t.test('maskedReads: string values read through it are masked with the secrets known now', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-masked-'));
  const store = await EmbeddedMetricStore.open({ dir });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const secrets: string[] = [];
  const masked = maskedReads(store, (s) => secrets.reduce((o, x) => o.split(x).join('********'), s));
  masked.add('o/p/d/v/e', { at: 1, replica: 'r', values: [['who', 'alice-token-123'], ['n', 7]] });
  t.same((await masked.points('o/p/d/v/e', 'who'))?.points[0]?.value, 'alice-token-123');
  secrets.push('token-123');
  t.same((await masked.points('o/p/d/v/e', 'who'))?.points[0]?.value, 'alice-********');
  t.same((await masked.points('o/p/d/v/e', 'n'))?.points[0]?.value, 7);
  t.same(await masked.keys('o/p/d/v/e'), await store.keys('o/p/d/v/e'));
  t.equal(masked.counters.added, 2);
});
