import t, { type Test } from 'tap';
import { appendFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FOLLOW_QUEUE_MAX, LogStore, MAX_LINE, type StoredLine } from '../../../builder/telemetry/logs.ts';
import { waitFor } from '../../helpers/poll.ts';

const KEY = 'acme/nlp/web/v1/sentiment';
const fileOf = (root: string, key = KEY) => join(root, encodeURIComponent(key).replace(/\./g, '%2E') + '.ndjson');

async function logStore(t: Test, opts: { maxBytes?: number; mask?: (l: string) => string } = {}): Promise<LogStore> {
  const root = await mkdtemp(join(tmpdir(), 'portico-logs-'));
  const logs = new LogStore({ root, maxBytes: opts.maxBytes ?? 1024 * 1024, ...(opts.mask ? { mask: opts.mask } : {}) });
  await logs.init();
  t.teardown(async () => {
    await logs.close();
    await rm(root, { recursive: true, force: true });
  });
  return logs;
}

const line = (at: number, text: string, replica = 'r0', stream: StoredLine['stream'] = 'stdout'): StoredLine => ({ at, stream, replica, line: text });

t.test('query: filters by replica, time (since inclusive, until exclusive), text, and tail', async (t) => {
  const logs = await logStore(t);
  logs.append(KEY, line(1000, 'starting', 'r0'));
  logs.append(KEY, line(2000, 'ERROR one', 'r1', 'stderr'));
  logs.append(KEY, line(3000, 'ok', 'r0'));
  logs.append(KEY, line(4000, 'ERROR two', 'r0'));
  logs.append(KEY, line(5000, 'bye', 'r1'));
  const cases: [string, Parameters<LogStore['query']>[1], string[]][] = [
    ['everything, in order', {}, ['starting', 'ERROR one', 'ok', 'ERROR two', 'bye']],
    ['one replica', { replica: 'r1' }, ['ERROR one', 'bye']],
    ['since', { since: 3000 }, ['ok', 'ERROR two', 'bye']],
    ['until is exclusive', { until: 3000 }, ['starting', 'ERROR one']],
    ['a window', { since: 2000, until: 5000 }, ['ERROR one', 'ok', 'ERROR two']],
    ['contains', { contains: 'ERROR' }, ['ERROR one', 'ERROR two']],
    ['tail of everything', { tail: 2 }, ['ERROR two', 'bye']],
    ['tail of the matches', { tail: 1, contains: 'ERROR' }, ['ERROR two']],
    ['tail 0', { tail: 0 }, []],
    ['tail larger than there is', { tail: 100, replica: 'r0' }, ['starting', 'ok', 'ERROR two']],
    ['nothing matches', { contains: 'nope' }, []],
  ];
  for (const [name, filter, want] of cases) t.same((await logs.query(KEY, filter)).map((l) => l.line), want, name);
  t.same((await logs.query(KEY, { tail: 1 }))[0], { at: 5000, stream: 'stdout', replica: 'r1', line: 'bye' }, 'lines keep their fields');
  t.same(await logs.query('no/such/key'), []);
});

t.test('secrets: masked before storing and again when read; a masked line never matches the secret', async (t) => {
  const secrets = ['hunter22'];
  const mask = (l: string) => secrets.reduce((out, s) => out.split(s).join('********'), l);
  const logs = await logStore(t, { mask });
  logs.append(KEY, line(1, 'password=hunter22 ok'));
  logs.append(KEY, line(2, 'token=sekrit-value'));
  secrets.push('sekrit-value'); // learned later (a new secret in the environment)
  const lines = await logs.query(KEY);
  t.same(lines.map((l) => l.line), ['password=******** ok', 'token=********']);
  await logs.close();
  const disk = await readFile(fileOf(logs.root), 'utf8');
  t.notMatch(disk, /hunter22/, 'never on disk');
  t.same(await logs.query(KEY, { contains: 'hunter22' }), [], 'searching for a secret finds nothing');
  t.same(await logs.query(KEY, { contains: 'sekrit' }), []);

  // Regression: a line was cut to 16 KiB before masking, so a secret across the cut leaked its head.
  const long = `${'x'.repeat(MAX_LINE - 4)}hunter22${'y'.repeat(100)}`;
  logs.append(KEY, line(3, long));
  const [stored] = await logs.query(KEY, { tail: 1 });
  t.notMatch(stored!.line, /hunt/, 'no part of the secret');
  t.equal(stored!.line, `${'x'.repeat(MAX_LINE - 4)}********`.slice(0, MAX_LINE) + '…');
});

t.test('retention under load: at most about maxBytes per key, newest lines kept in order', async (t) => {
  const maxBytes = 64 * 1024;
  const logs = await logStore(t, { maxBytes });
  let worst = 0;
  let n = 0;
  // Bursts larger than a whole file between flushes, and steady appends across flushes.
  for (let burst = 0; burst < 30; burst++) {
    for (let i = 0; i < 2000; i++, n++) logs.append(KEY, line(n, `line ${n} ${'z'.repeat(n % 50)}`, `r${n % 3}`));
    await new Promise((r) => setTimeout(r, burst % 3 === 0 ? 60 : 0));
    worst = Math.max(worst, await logs.size(KEY));
  }
  const longest = Buffer.byteLength(JSON.stringify(line(n, `line ${n} ${'z'.repeat(49)}`, 'r0'))) + 1;
  t.ok(worst <= maxBytes + longest, `on disk at most ${maxBytes} bytes + one line (worst ${worst})`);
  const files = await readdir(logs.root);
  t.same(files.sort(), [`${encodeURIComponent(KEY)}.ndjson`, `${encodeURIComponent(KEY)}.ndjson.1`], 'the current file and one predecessor');
  const all = await logs.query(KEY);
  const numbers = all.map((l) => Number(l.line.split(' ')[1]));
  t.equal(numbers.at(-1), n - 1, 'the newest line is there');
  t.ok(numbers.every((v, i) => i === 0 || v === numbers[i - 1]! + 1), 'what is kept is contiguous, oldest first');
  const kept = await logs.size(KEY);
  t.ok(kept >= maxBytes / 2 - longest, `at least half of maxBytes is kept (${kept} bytes, ${all.length} lines)`);
  t.same((await logs.query(KEY, { tail: 3 })).map((l) => Number(l.line.split(' ')[1])), [n - 3, n - 2, n - 1]);
});

t.test('many keys: files are closed beyond the open-file bound and lines are not lost', async (t) => {
  const logs = await logStore(t);
  for (let round = 0; round < 3; round++) for (let k = 0; k < 300; k++) logs.append(`o/p/d/v/e${k}`, line(round, `round ${round}`));
  for (const k of [0, 150, 299]) t.same((await logs.query(`o/p/d/v/e${k}`)).map((l) => l.line), ['round 0', 'round 1', 'round 2'], `key ${k}`);
});

t.test('follow: the stored lines, then every new line exactly once, also while lines pour in', async (t) => {
  const logs = await logStore(t);
  let n = 0;
  for (; n < 500; n++) logs.append(KEY, line(n, String(n)));
  let writing = true;
  const writer = (async () => {
    while (writing) {
      for (let i = 0; i < 50; i++, n++) logs.append(KEY, line(n, String(n)));
      await new Promise((r) => setImmediate(r));
    }
  })();
  const ac = new AbortController();
  const seen: number[] = [];
  const reader = (async () => {
    for await (const l of logs.read(KEY, {}, { follow: true, signal: ac.signal })) seen.push(Number(l.line));
  })();
  await waitFor(() => seen.length > 3000, { what: 'followed lines' });
  writing = false;
  await writer;
  const last = n - 1;
  await waitFor(() => seen.at(-1) === last, { what: 'the last line' });
  ac.abort();
  await reader;
  t.equal(seen.length, n, 'no line missing, none twice');
  t.ok(seen.every((v, i) => v === i), 'in order');
});

t.test('follow: filters apply to followed lines; tail only to the stored ones', async (t) => {
  const logs = await logStore(t);
  for (let i = 0; i < 5; i++) logs.append(KEY, line(i, `old ${i}`, i % 2 ? 'r1' : 'r0'));
  const ac = new AbortController();
  const got: string[] = [];
  const reader = (async () => {
    for await (const l of logs.read(KEY, { tail: 1, replica: 'r0' }, { follow: true, signal: ac.signal })) got.push(l.line);
  })();
  await waitFor(() => got.length === 1);
  logs.append(KEY, line(10, 'new a', 'r1'));
  logs.append(KEY, line(11, 'new b', 'r0'));
  logs.append(KEY, line(12, 'new c', 'r0'));
  await waitFor(() => got.length === 3);
  ac.abort();
  await reader;
  t.same(got, ['old 4', 'new b', 'new c']);
});

t.test('follow: a reader that falls behind is told where lines are missing; memory stays bounded', async (t) => {
  const logs = await logStore(t, { maxBytes: 64 * 1024 * 1024 });
  const ac = new AbortController();
  const it = logs.read(KEY, {}, { follow: true, signal: ac.signal })[Symbol.asyncIterator]();
  const first = it.next(); // subscribes, then waits for a line
  logs.append(KEY, line(0, 'first'));
  t.equal((await first).value?.line, 'first');
  for (let i = 1; i <= FOLLOW_QUEUE_MAX + 25; i++) logs.append(KEY, line(i, String(i)));
  const got: string[] = [];
  for (let i = 0; i < FOLLOW_QUEUE_MAX + 1; i++) got.push((await it.next()).value!.line);
  t.equal(got[0], '1');
  t.equal(got[FOLLOW_QUEUE_MAX - 1], String(FOLLOW_QUEUE_MAX));
  t.match(got[FOLLOW_QUEUE_MAX], /^\[portico\] 25 log line\(s\) skipped here/);
  logs.append(KEY, line(99_999, 'after the gap'));
  t.equal((await it.next()).value?.line, 'after the gap');
  ac.abort();
  t.equal((await it.next()).done, true, 'abort ends the follow');
});

t.test('end: a follow ends after its queued lines; a later follow ends at once, until a new line', async (t) => {
  const logs = await logStore(t);
  const BUILD = 'build/acme/nlp/web/v1';
  logs.append(BUILD, line(1, 'queued', undefined, 'build'));
  const got: string[] = [];
  const reader = (async () => {
    for await (const l of logs.read(BUILD, {}, { follow: true })) got.push(l.line);
  })();
  await waitFor(() => got.length === 1);
  logs.append(BUILD, line(2, 'build finished', undefined, 'build'));
  logs.end(BUILD);
  await reader;
  t.same(got, ['queued', 'build finished']);
  const later: string[] = [];
  for await (const l of logs.read(BUILD, {}, { follow: true })) later.push(l.line);
  t.same(later, ['queued', 'build finished'], 'a follow after the end reads what is stored and ends');
  logs.append(BUILD, line(3, 'controller restarted: building again', undefined, 'build'));
  const ac = new AbortController();
  const again: string[] = [];
  const third = (async () => {
    for await (const l of logs.read(BUILD, { tail: 1 }, { follow: true, signal: ac.signal })) again.push(l.line);
  })();
  await waitFor(() => again.length === 1);
  logs.append(BUILD, line(4, 'more', undefined, 'build'));
  await waitFor(() => again.length === 2);
  ac.abort();
  await third;
  t.same(again, ['controller restarted: building again', 'more'], 'a new line makes the key followable again');
});

t.test('close ends every follow', async (t) => {
  const logs = await logStore(t);
  const got: string[] = [];
  const reader = (async () => {
    for await (const l of logs.read(KEY, {}, { follow: true })) got.push(l.line);
  })();
  logs.append(KEY, line(1, 'x'));
  // Once it has the line the read is following (a follow registers before it reads anything).
  await waitFor(() => got.length === 1, { what: 'the line' });
  await logs.close();
  await reader;
  t.same(got, ['x']);
});

t.test('remove: a key and the keys under it, files included', async (t) => {
  const logs = await logStore(t);
  logs.append('o/p/d/v1/a', line(1, 'x'));
  logs.append('o/p/d/v1/b', line(1, 'x'));
  logs.append('o/p/d/v10/a', line(1, 'x'));
  logs.append('build/o/p/d/v1', line(1, 'x'));
  await logs.size('o/p/d/v1/a');
  await logs.size('o/p/d/v1/b');
  await logs.remove('o/p/d/v1');
  await logs.remove('build/o/p/d/v1');
  t.same(await logs.query('o/p/d/v1/a'), []);
  t.same(await logs.query('build/o/p/d/v1'), []);
  t.equal((await logs.query('o/p/d/v10/a')).length, 1, 'v10 is not under v1');
  t.same((await readdir(logs.root)).map(decodeURIComponent).sort(), ['o/p/d/v10/a.ndjson']);
});

t.test('remove ends the follows of the removed keys (a deleted version), not of others', async (t) => {
  const logs = await logStore(t);
  const follow = (key: string, signal?: AbortSignal) => {
    const got: string[] = [];
    const done = (async () => {
      for await (const l of logs.read(key, {}, { follow: true, ...(signal ? { signal } : {}) })) got.push(l.line);
    })();
    return { got, done };
  };
  logs.append('o/p/d/v1/a', line(1, 'v1'));
  logs.append('o/p/d/v10/a', line(1, 'v10'));
  const ac = new AbortController();
  const removed = follow('o/p/d/v1/a');
  const kept = follow('o/p/d/v10/a', ac.signal);
  await waitFor(() => removed.got.length === 1 && kept.got.length === 1, { what: 'the stored lines' });
  await logs.remove('o/p/d/v1');
  await removed.done;
  t.same(removed.got, ['v1'], 'the follow of the deleted version ends');
  logs.append('o/p/d/v1/a', line(2, 'a version of the same name, created again'));
  logs.append('o/p/d/v10/a', line(2, 'still followed'));
  await waitFor(() => kept.got.length === 2, { what: 'the line of v10' });
  t.same(removed.got, ['v1'], 'the ended follow did not get lines of the new version');
  ac.abort();
  await kept.done;
  t.same(kept.got, ['v10', 'still followed']);
});

t.test('files written before: sizes are picked up, a torn last line is skipped and ended', async (t) => {
  const logs = await logStore(t, { maxBytes: 400 });
  await appendFile(fileOf(logs.root), `${JSON.stringify(line(1, 'from before'))}\n{"at":2,"stre`);
  t.same((await logs.query(KEY)).map((l) => l.line), ['from before']);
  logs.append(KEY, line(3, 'next'));
  t.same((await logs.query(KEY)).map((l) => l.line), ['from before', 'next'], 'the next line is not glued to the torn one');
  logs.append(KEY, line(4, 'x'.repeat(100)));
  await logs.size(KEY);
  t.ok((await stat(fileOf(logs.root))).size < 200, 'the existing size counted toward rotation');
  t.same((await logs.query(KEY)).map((l) => l.line.slice(0, 11)), ['from before', 'next', 'xxxxxxxxxxx']);
});
