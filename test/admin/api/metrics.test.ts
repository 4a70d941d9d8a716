// The metrics API through the real controller: `portico start`, the node-sentiment example
// (it prints {"vh_metadata": {"score": N, "label": "..."}} per POST), known texts, exact answers.
import t from 'tap';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { request } from 'undici';
import { waitFor } from '../../helpers/poll.ts';
import { createDeployment, D as FD, readyVersion, REF, startApi } from '../harness.ts';
import { ROOT, removeDataDir, startPortico, type PorticoProcess } from '../../helpers/portico.ts';

const EXAMPLE = join(ROOT, 'examples', 'node-sentiment');
const D = '/projects/acme/nlp/deployments/web';

async function deploy(p: PorticoProcess): Promise<string> {
  const created = await p.api('POST', `${D}/versions`, { source: { path: EXAMPLE } });
  if (created.status !== 202) throw new Error(`POST versions: ${created.status} ${JSON.stringify(created.body)}`);
  const name = created.body.name as string;
  await waitFor(async () => {
    const v = await p.api('GET', `${D}/versions/${name}`);
    if (v.body.status === 'failed') throw new Error(`version failed: ${v.body.reason}`);
    return v.body.status === 'ready';
  }, { timeoutMs: 30_000, what: `version ${name} ready` });
  return name;
}

/** POSTs each text in turn (one replica: its lines arrive in this order). */
async function score(p: PorticoProcess, version: string, texts: readonly string[]): Promise<number[]> {
  const scores: number[] = [];
  for (const text of texts) {
    const res = await request(`${p.gatewayUrl}/acme/nlp/web/${version}/sentiment`, { method: 'POST', body: JSON.stringify({ text }) });
    scores.push(((await res.body.json()) as { score: number }).score);
  }
  return scores;
}

t.test('metrics of an endpoint: keys, exact series, histograms, categories, comparison, restart', async (t) => {
  let p = await startPortico();
  const dataDir = p.dataDir;
  t.teardown(async () => {
    await p.stop();
    await removeDataDir(dataDir);
  });
  t.equal((await p.api('POST', '/projects/acme/nlp/deployments', { name: 'web' })).status, 201);
  const v1 = await deploy(p);
  const v2 = await deploy(p);
  const M = (v: string, q = '') => p.api('GET', `${D}/versions/${v}/endpoints/sentiment/metrics${q}`);

  t.same((await M(v1)).body, { keys: [] }, 'no metrics before any request');
  const texts = ['great and fast', 'bad', 'meh', 'I love it, excellent', 'terrible and slow', 'good'];
  t.same(await score(p, v1, texts), [3, -1, 0, 5, -4, 1]);
  await score(p, v2, ['happy', 'awful']);

  const keys = await waitFor(async () => {
    const r = await M(v1);
    return r.body.keys?.find((k: { name: string }) => k.name === 'score')?.count === 6 ? r.body : undefined;
  }, { what: 'six scores recorded' });
  t.same(keys, { keys: [{ name: 'label', kind: 'string', count: 6 }, { name: 'score', kind: 'number', count: 6 }] });

  const series = (await M(v1, '?key=score')).body;
  t.equal(series.key, 'score');
  t.equal(series.kind, 'number');
  t.same(series.points.map((pt: [number, number]) => pt[1]), [3, -1, 0, 5, -4, 1], 'the exact values, in order');
  const times = series.points.map((pt: [number, number]) => pt[0]);
  t.ok(times.every((at: number, i: number) => Number.isInteger(at) && at > Date.now() - 120_000 && (i === 0 || at >= times[i - 1])), 'epoch-ms times, ascending');
  t.same((await M(v1, '?key=score&mode=series')).body, series, 'mode=series is the default');
  const [first, last] = [times[0] as number, times.at(-1) as number];
  t.same((await M(v1, `?key=score&from=${first}&to=${first + 1}`)).body.points.map((pt: number[]) => pt[1]).slice(0, 1), [3], 'from/to select');

  const one = (await M(v1, '?key=score&points=1')).body;
  t.same(one.buckets, [{ t: first, count: 6, mean: 4 / 6, min: -4, max: 5 }], 'one bucket: mean, min, max');
  t.same(one.points, [[first, 4 / 6]]);
  t.same([one.from, one.to, one.step], [first, last + 1, last + 1 - first]);

  t.same((await M(v1, '?key=score&mode=histogram&bins=3')).body, {
    key: 'score',
    kind: 'number',
    count: 6,
    bins: [{ lo: -4, hi: -1, count: 1 }, { lo: -1, hi: 2, count: 3 }, { lo: 2, hi: 5, count: 2 }],
  });
  t.same((await M(v1, '?key=score&mode=histogram')).body.bins.map((b: { count: number }) => b.count), [1, 3, 2], 'automatic bins (Freedman–Diaconis: 3)');
  t.same((await M(v1, '?key=score&mode=histogram&bins=2&lo=0&hi=4')).body, {
    key: 'score',
    kind: 'number',
    count: 3,
    bins: [{ lo: 0, hi: 2, count: 2 }, { lo: 2, hi: 4, count: 1 }],
  }, 'bounds leave values out');
  t.same((await M(v1, '?key=label&mode=histogram')).body, {
    key: 'label',
    kind: 'string',
    count: 6,
    categories: [{ value: 'positive', count: 3 }, { value: 'negative', count: 2 }, { value: 'neutral', count: 1 }],
  });
  t.same((await M(v1, '?key=label')).body.points.map((pt: unknown[]) => pt[1]), ['positive', 'negative', 'neutral', 'positive', 'negative', 'positive']);

  // Compare the two versions: one set of bins from both.
  await waitFor(async () => (await M(v2)).body.keys?.every((k: { count: number }) => k.count === 2) && (await M(v2)).body.keys.length === 2, { what: 'v2\'s two scores' });
  const cmp = await p.api('GET', `${D}/metrics?endpoint=sentiment&versions=${v1},${v2}&key=score&mode=histogram&bins=2`);
  t.equal(cmp.status, 200);
  t.same(cmp.body, {
    endpoint: 'sentiment',
    key: 'score',
    mode: 'histogram',
    versions: [
      { version: v1, key: 'score', kind: 'number', count: 6, bins: [{ lo: -4, hi: 0.5, count: 3 }, { lo: 0.5, hi: 5, count: 3 }] },
      { version: v2, key: 'score', kind: 'number', count: 2, bins: [{ lo: -4, hi: 0.5, count: 1 }, { lo: 0.5, hi: 5, count: 1 }] },
    ],
  });
  const cmpKeys = await p.api('GET', `${D}/metrics?endpoint=sentiment&versions=${v2}`);
  t.same(cmpKeys.body, { endpoint: 'sentiment', versions: [{ version: v2, keys: [{ name: 'label', kind: 'string', count: 2 }, { name: 'score', kind: 'number', count: 2 }] }] });

  // Validation errors, in the contract's error shape.
  const bad: [string, number, string][] = [
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?mode=bogus`, 400, 'query.mode: must be one of "series", "histogram"'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?mode=histogram`, 400, 'query.mode: needs query.key'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?key=score&mode=histogram&bins=0`, 400, 'query.bins: must be an integer from 1 to 1000'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?key=score&mode=histogram&lo=abc`, 400, 'query.lo: must be a number'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?key=score&step=10&points=5`, 400, 'query.points: give either step or points, not both'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?key=label&points=5`, 400, 'holds strings'],
    [`${D}/versions/${v1}/endpoints/sentiment/metrics?key=nope`, 404, 'metric "nope" was not reported'],
    [`${D}/versions/${v1}/endpoints/other/metrics`, 404, 'endpoint other'],
    [`${D}/versions/nope/endpoints/sentiment/metrics`, 404, 'version nope'],
    [`${D}/metrics?endpoint=sentiment&versions=`, 400, 'query.versions: must not be empty'],
    [`${D}/metrics?endpoint=sentiment&versions=${v1},${v1}`, 400, 'query.versions: must name each version once'],
    [`${D}/metrics?endpoint=sentiment&versions=${v1},nope`, 404, 'version nope'],
    [`${D}/metrics?versions=${v1}`, 400, 'query.endpoint: is required'],
  ];
  for (const [path, status, message] of bad) {
    const r = await p.api('GET', path);
    t.equal(r.status, status, path);
    t.match(r.body, { statusCode: status, code: status === 400 ? 'VALIDATION_FAILED' : 'NOT_FOUND', error: /\w/, message }, path);
  }

  // A restart loses nothing (embedded store: files under the data directory).
  await p.stop();
  p = await startPortico({ dataDir });
  t.same((await M(v1, '?key=score')).body, series, 'the same series after a restart');

  // Deleting a version forgets its metrics.
  t.equal((await p.api('DELETE', `${D}/versions/${v2}`)).status, 204);
  const files = await readdir(join(dataDir, 'metrics'));
  t.same(files.map(decodeURIComponent), [`acme/nlp/web/${v1}/sentiment.ndjson`]);
});

t.test('over the fake control plane: query parsing and the comparison\'s versions list', async (t) => {
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  await readyVersion(api, { name: 'v2' });
  for (const [i, v] of [1, 2, 3, 4].entries()) api.fake.appendMetric({ ...REF, version: 'v1' }, 'predict', { loss: v }, { at: 1000 + i });
  api.fake.appendMetric({ ...REF, version: 'v2' }, 'predict', { loss: 0.05 }, { at: 2000 });
  const M = (q: string) => api.call('GET', `${FD}/versions/v1/endpoints/predict/metrics${q}`);
  t.same((await M('?key=loss&mode=histogram&lo=1e0&hi=4.0&bins=3')).json.bins.map((b: { count: number }) => b.count), [1, 1, 2], 'decimal bounds, exponents included');
  t.same((await M('?key=loss&from=1001&to=1003')).json.points, [[1001, 2], [1002, 3]]);
  t.equal((await M('?key=loss&lo=1')).json.message, 'query.lo: applies to mode=histogram');
  t.equal((await M('?key=loss&mode=histogram&hi=1x')).json.message, 'query.hi: must be a number');
  t.equal((await M('?bogus=1')).json.message, 'query.bogus: is not a known query parameter (known: "key", "mode", "from", "to", "step", "points", "bins", "lo", "hi", "replica")');
  const C = (q: string) => api.call('GET', `${FD}/metrics${q}`);
  const eleven = Array.from({ length: 11 }, (_, i) => `v${i}`).join(',');
  t.match((await C(`?endpoint=predict&versions=${eleven}`)).json, { statusCode: 400, problems: [{ path: 'query.versions', message: 'must name at most 10 versions' }] });
  t.match((await C('?endpoint=predict&versions=v1,../x')).json.message, 'query.versions: "../x" is not a version name');
  const both = (await C('?endpoint=predict&versions=v2, v1&key=loss&mode=histogram&bins=1')).json;
  t.same(both.versions.map((v: { version: string; count: number }) => [v.version, v.count]), [['v2', 1], ['v1', 4]], 'in the order asked, spaces allowed');
  t.same(both.versions[0].bins, [{ lo: 0.05, hi: 4, count: 1 }]);
  t.equal((await C('?endpoint=nope&versions=v1')).status, 404);
});
