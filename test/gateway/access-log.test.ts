import t from 'tap';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AccessLog, formatRecord, isoTime, type AccessRecord } from '../../gateway/access-log.ts';
import { waitFor } from '../helpers/poll.ts';

function record(i: number): AccessRecord {
  return { time: new Date(0).toISOString(), requestId: `r${i}`, method: 'GET', route: '/a/b/c/d/e', version: 'v1', replica: '127.0.0.1:1', status: 200, bytes: i, durationMs: 1.5 };
}

t.test('stdout: one JSON line per request, written in batches, not per request', async (t) => {
  const writes: string[] = [];
  const out = new Writable({ write(chunk, _enc, cb) { writes.push(String(chunk)); cb(); } });
  const log = new AccessLog('stdout', out);
  for (let i = 0; i < 100; i++) log.log(record(i));
  t.equal(writes.length, 0, 'nothing written synchronously');
  await waitFor(() => writes.length > 0, { what: 'the timed flush' });
  const lines = writes.join('').trimEnd().split('\n');
  t.equal(lines.length, 100);
  t.same(JSON.parse(lines[42] as string), record(42));
  t.ok(writes.length < 10, `a hundred lines in ${writes.length} writes`);
  for (const w of writes) {
    t.ok(w.length <= 4096, 'each write fits PIPE_BUF (workers share stdout)');
    t.ok(w.endsWith('\n'), 'and holds whole lines');
  }
  await log.close();
});

t.test('a file destination is appended to and flushed on close', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  const path = join(dir, 'nested', 'access.log');
  const first = new AccessLog(path);
  first.log(record(1));
  await first.close();
  const second = new AccessLog(path);
  second.log(record(2));
  second.log(record(3));
  await second.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AccessRecord);
  t.same(lines.map((l) => l.requestId), ['r1', 'r2', 'r3']);
});

t.test('encoding buffers are reused only once written: a slow destination gets every line intact', async (t) => {
  // A destination that completes writes late and checks, when it does, that the bytes it was
  // given have not changed meanwhile (a buffer reused too early would overwrite them).
  const pending: { chunk: Buffer; copy: Buffer; cb: () => void }[] = [];
  const received: Buffer[] = [];
  let changed = 0;
  const complete = (keep: number) => {
    for (const p of pending.splice(0, Math.max(0, pending.length - keep))) {
      if (!p.chunk.equals(p.copy)) changed++;
      received.push(p.copy);
      p.cb();
    }
  };
  // Only `write(chunk, cb)` is used: the bytes are copied the moment they are handed over.
  const out = { write: (chunk: Buffer, cb?: () => void) => pending.push({ chunk, copy: Buffer.from(chunk), cb: cb ?? (() => {}) }) < 1e9 };
  const log = new AccessLog('stdout', out as unknown as NodeJS.WritableStream);
  const n = 20_000; // about 3 MB of lines: dozens of encoding buffers, each reused many times
  for (let i = 0; i < n; i++) {
    log.log({ ...record(i), requestId: `r${i}-${'x'.repeat(i % 50)}` });
    if (i % 2000 === 1999) {
      await new Promise((resolve) => setImmediate(resolve)); // let size-triggered flushes run
      complete(3);
    }
  }
  const closed = log.close();
  complete(0);
  await closed;
  complete(0);
  t.equal(changed, 0, 'no byte changed between a write and its completion');
  const lines = Buffer.concat(received).toString().trimEnd().split('\n');
  t.equal(lines.length, n);
  t.same(lines.map((l) => (JSON.parse(l) as AccessRecord).bytes), Array.from({ length: n }, (_, i) => i), 'every line, in order');
});

t.test('off writes nothing', async (t) => {
  const log = new AccessLog('off');
  t.equal(log.enabled, false);
  log.log(record(1));
  await log.close();
  t.notOk(existsSync('off'));
});

t.test('lines are valid JSON whatever the strings hold', async (t) => {
  const odd: AccessRecord = { ...record(1), route: '/a"b\\c/\u0001/é/d/e', error: 'BAD_PATH', version: null, replica: null };
  const line = formatRecord(odd);
  t.ok(line.endsWith('\n'));
  t.same(JSON.parse(line), odd);
  const { error: _e, ...noError } = record(2) as AccessRecord & { error?: string };
  t.same(JSON.parse(formatRecord(noError)), record(2), 'no error field when there is none');
  t.equal(isoTime(0), '1970-01-01T00:00:00.000Z');
  t.equal(isoTime(1), '1970-01-01T00:00:00.001Z');
  t.equal(isoTime(1), '1970-01-01T00:00:00.001Z');
});
