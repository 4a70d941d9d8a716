import t, { type Test } from 'tap';
import { createReadStream, mkdtempSync, readFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, type ReadStream } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AccessLog, encodeLine, formatLine, isoTime, type AccessRecord } from '../../gateway/access-log.ts';
import { waitFor } from '../helpers/poll.ts';

function record(i: number): AccessRecord {
  return { time: new Date(0).toISOString(), requestId: `r${i}`, method: 'GET', route: '/a/b/c/d/e', version: 'v1', replica: '127.0.0.1:1', status: 200, bytes: i, durationMs: 1.5 };
}

/** Queues a record as the gateway does (its fields, the duration in microseconds). */
function put(log: AccessLog, r: AccessRecord): void {
  log.appendFields(r.time, r.requestId, r.method, r.route, r.version, r.replica, r.status, r.bytes, Math.round(r.durationMs * 1000), r.error ?? '');
}

/** A record's line as `formatLine` makes it. */
function lineOf(r: AccessRecord): string {
  return formatLine(r.time, r.requestId, r.method, r.route, r.version, r.replica, r.status, r.bytes, r.durationMs, r.error ?? '');
}

/** What the test writes to stderr from now on (not passed through), until its end. */
function captureStderr(t: Test): string[] {
  const errors: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => (errors.push(String(chunk)), true)) as typeof process.stderr.write;
  t.teardown(() => {
    process.stderr.write = write;
  });
  return errors;
}

t.test('stdout: one JSON line per request, written in batches, not per request', async (t) => {
  const writes: string[] = [];
  const out = new Writable({ write(chunk, _enc, cb) { writes.push(String(chunk)); cb(); } });
  const log = new AccessLog('stdout', out);
  // Sixty lines stay under the 16 KiB flush threshold: only the timer writes them.
  for (let i = 0; i < 60; i++) put(log, record(i));
  t.equal(writes.length, 0, 'nothing written synchronously');
  await waitFor(() => writes.length > 0, { what: 'the timed flush' });
  const lines = writes.join('').trimEnd().split('\n');
  t.equal(lines.length, 60);
  t.same(JSON.parse(lines[42] as string), record(42));
  t.ok(writes.length < 10, `sixty lines in ${writes.length} writes`);
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
  put(first, record(1));
  await first.close();
  const second = new AccessLog(path);
  put(second, record(2));
  put(second, record(3));
  await second.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as AccessRecord);
  t.same(lines.map((l) => l.requestId), ['r1', 'r2', 'r3']);
});

t.test('a file is written directly, 16 KiB of lines at a time, nothing held back past a flush', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const log = new AccessLog(path);
  // Enough lines to pass the 16 KiB flush threshold once, and a few more; a multiple of the 64
  // requests whose lines are encoded together.
  const n = 64 * Math.ceil((Math.ceil((16 * 1024) / lineOf(record(100)).length) + 10) / 64);
  for (let i = 0; i < n; i++) put(log, record(i));
  const flushed = statSync(path).size;
  t.ok(flushed >= 16 * 1024 && flushed < n * lineOf(record(100)).length, `a full batch is on disk before any timer or callback (${flushed} bytes)`);
  t.equal(readFileSync(path, 'utf8').split('\n').at(-1), '', 'and it ends with a whole line');
  await waitFor(() => statSync(path).size > flushed, { what: 'the timed flush of the rest' });
  await log.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.same(lines.map((l) => (JSON.parse(l) as AccessRecord).bytes), Array.from({ length: n }, (_, i) => i));
});

t.test('a destination that fails (disk full) drops and counts its lines, reports once, and keeps serving', async (t) => {
  const errors = captureStderr(t);
  // /dev/full: every write(2) fails with ENOSPC.
  const log = new AccessLog('/dev/full');
  t.equal(log.enabled, true);
  for (let i = 0; i < 500; i++) put(log, record(i));
  await log.close();
  t.equal(log.dropped, 500, 'every line counted as dropped');
  t.equal(errors.length, 1, 'one report for a run of the same failure');
  t.match(JSON.parse(errors[0] as string), { level: 'error', msg: 'access log write failed', error: /ENOSPC/ });
});

/** A FIFO in a folder of the test's own, and a stream reading it. */
function fifoWithReader(t: Test): { fifo: string; reader: ReadStream } {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'log.fifo');
  execFileSync('mkfifo', [fifo]);
  return { fifo, reader: createReadStream(fifo) };
}

t.test('a disk that fills in the middle of a write: the lines written whole are kept, the cut one ends there, later lines are whole', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const errors = captureStderr(t);
  // write(2) takes half of the first write, then fails with ENOSPC once (the disk filled up),
  // then works again (space was freed).
  const real = fs.writeSync;
  let calls = 0;
  const partial = (fd: number, buf: Buffer, offset: number) => {
    calls++;
    if (calls === 1) return real(fd, buf, offset, Math.floor((buf.length - offset) / 2) - 7);
    if (calls === 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return real(fd, buf, offset);
  };
  (fs as { writeSync: unknown }).writeSync = partial;
  syncBuiltinESMExports();
  t.teardown(() => {
    fs.writeSync = real;
    syncBuiltinESMExports();
  });
  const log = new AccessLog(path);
  for (let i = 0; i < 10; i++) put(log, record(i));
  await waitFor(() => calls >= 2, { what: 'the failed write' });
  for (let i = 10; i < 15; i++) put(log, record(i));
  await log.close();
  const lines = readFileSync(path, 'utf8').split('\n').filter(Boolean);
  const parsed = lines.flatMap((l) => {
    try {
      return [(JSON.parse(l) as AccessRecord).requestId];
    } catch {
      return [];
    }
  });
  t.equal(lines.length - parsed.length, 1, 'one cut line');
  t.same(parsed.slice(-5), ['r10', 'r11', 'r12', 'r13', 'r14'], 'the lines after it are whole');
  t.equal(log.dropped, 10 - (parsed.length - 5), 'only the lines not written whole are counted as dropped');
  t.equal(errors.filter((e) => e !== '').length, 1, 'reported');
});

t.test('a FIFO destination is written through a stream (a reader may be slow)', async (t) => {
  const { fifo, reader } = fifoWithReader(t);
  const chunks: Buffer[] = [];
  reader.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => reader.on('end', () => resolve()));
  const log = new AccessLog(fifo);
  for (let i = 0; i < 3; i++) put(log, record(i));
  // Opened once both ends are (lines for a FIFO nobody has open are dropped at close).
  await new Promise((resolve) => reader.once('open', () => resolve(undefined)));
  await log.close();
  await ended;
  t.same(Buffer.concat(chunks).toString().trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).requestId), ['r0', 'r1', 'r2']);
});


t.test('stdout whose reader went away (EPIPE: a log shipper restarted, `| head`): lines are dropped and counted, the process lives on', async (t) => {
  const errors = captureStderr(t);
  // A real pipe whose reading end is closed by a process that lives on.
  const reader = spawn('sh', ['-c', 'exec 0<&-; echo closed; exec sleep 60'], { stdio: ['pipe', 'pipe', 'ignore'] });
  t.teardown(() => reader.kill());
  await new Promise((resolve) => reader.stdout.once('data', resolve));
  const out = reader.stdin;
  const log = new AccessLog('stdout', out);
  for (let i = 0; i < 10; i++) put(log, record(i));
  await waitFor(() => log.dropped === 10, { what: `the first lines counted as dropped (${log.dropped})` });
  for (let i = 0; i < 5; i++) put(log, record(i));
  await log.close();
  await waitFor(() => log.dropped === 15, { what: `later lines counted too (${log.dropped})` });
  const reports = errors.filter((e) => e !== '');
  t.equal(reports.length, 1, 'one report');
  t.match(JSON.parse(reports[0] as string), { level: 'error', msg: 'access log write failed', error: /EPIPE/ });
});

t.test('stdout that does not drain (a stalled log reader): what waits stays bounded, the rest is dropped and counted', async (t) => {
  // A pipe whose reader stopped reading: Node buffers every write in the stream.
  const out = new Writable({ write(_chunk, _enc, _cb) {} });
  const log = new AccessLog('stdout', out);
  const n = 100_000; // about 19 MB of lines
  for (let i = 0; i < n; i++) {
    put(log, record(i));
    if (i % 5000 === 4999) await new Promise((resolve) => setImmediate(resolve));
  }
  await log.close();
  t.ok(out.writableLength <= 9 * 1024 * 1024, `${out.writableLength} bytes held for stdout`);
  t.ok(log.dropped > n / 2, `${log.dropped} lines counted as dropped`);
});

t.test('a FIFO whose reader went away: lines are dropped and counted, reported once', async (t) => {
  const errors = captureStderr(t);
  const { fifo, reader } = fifoWithReader(t);
  const log = new AccessLog(fifo);
  await new Promise((resolve) => reader.once('open', () => resolve(undefined)));
  reader.destroy();
  await new Promise((resolve) => reader.once('close', () => resolve(undefined)));
  for (let i = 0; i < 10; i++) put(log, record(i));
  await waitFor(() => log.dropped === 10, { what: `the lines counted as dropped (${log.dropped})` });
  for (let i = 0; i < 5; i++) put(log, record(i));
  await log.close();
  t.equal(log.dropped, 15, 'later lines counted too');
  // A destroyed file stream emits its 'error' once its descriptor is closed, maybe later still.
  await waitFor(() => errors.some((e) => e !== ''), { what: 'the report' });
  const reports = errors.filter((e) => e !== '');
  t.equal(reports.length, 1, 'one report');
  t.match(JSON.parse(reports[0] as string), { level: 'error', msg: 'access log write failed', error: /EPIPE/ });
});
/** A FIFO in a folder of the test's own, with no reader. */
function fifoAlone(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'log.fifo');
  execFileSync('mkfifo', [fifo]);
  return fifo;
}

/** Whether `p` settles within `ms` (the test process must not wait forever on it). */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([p.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return settled;
}

t.test('a FIFO nobody reads yet: lines wait for a reader, who gets them all', async (t) => {
  const fifo = fifoAlone(t);
  const log = new AccessLog(fifo);
  for (let i = 0; i < 3; i++) put(log, record(i));
  // The reader comes later (a log shipper starting after the gateway).
  const reader = createReadStream(fifo);
  const chunks: Buffer[] = [];
  reader.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve) => reader.on('end', () => resolve()));
  await waitFor(() => chunks.length > 0, { what: 'the lines at the reader' });
  put(log, record(3));
  await log.close();
  await ended;
  t.same(Buffer.concat(chunks).toString().trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).requestId), ['r0', 'r1', 'r2', 'r3']);
  t.equal(log.dropped, 0);
});

t.test('a FIFO nobody reads: close() does not wait for a reader, the lines are dropped and counted (regression: SIGTERM never ended the gateway)', async (t) => {
  const fifo = fifoAlone(t);
  const log = new AccessLog(fifo);
  for (let i = 0; i < 3; i++) put(log, record(i));
  t.ok(await within(log.close(), 2000), 'closed');
  t.equal(log.dropped, 3);
});

t.test('a FIFO whose reader stopped reading: close() waits at most its time limit, the lines not written are dropped and counted', async (t) => {
  const fifo = fifoAlone(t);
  // A reader that holds the FIFO open and never reads it.
  const reader = spawn('sh', ['-c', `exec sleep 60 < '${fifo}'`], { stdio: 'ignore' });
  t.teardown(() => reader.kill());
  const log = new AccessLog(fifo);
  const n = 2000; // about 380 KB of lines: more than the pipe holds
  for (let i = 0; i < n; i++) put(log, record(i));
  const started = performance.now();
  t.ok(await within(log.close(300), 5000), 'closed');
  t.ok(performance.now() - started < 2000, `within its limit (${Math.round(performance.now() - started)} ms)`);
  t.ok(log.dropped > 0 && log.dropped < n, `the lines beyond what the pipe took are counted as dropped (${log.dropped})`);
});

t.test('reopen: after the file is moved away (log rotation), the next lines go to a new file at the path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const log = new AccessLog(path);
  for (let i = 0; i < 3; i++) put(log, record(i));
  renameSync(path, `${path}.1`);
  log.reopen();
  for (let i = 3; i < 5; i++) put(log, record(i));
  await log.close();
  const ids = (f: string) => readFileSync(f, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).requestId);
  t.same(ids(`${path}.1`), ['r0', 'r1', 'r2'], 'lines queued before the reopen went to the old file');
  t.same(ids(path), ['r3', 'r4'], 'the rest to the new one');
});

t.test('reopen: a path that cannot be opened any more keeps the old file and says so', async (t) => {
  const errors = captureStderr(t);
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'logs', 'access.log');
  const log = new AccessLog(path);
  put(log, record(1));
  renameSync(join(dir, 'logs'), join(dir, 'moved'));
  log.reopen();
  put(log, record(2));
  await log.close();
  t.match(errors.join(''), /cannot reopen the access log .*access\.log: ENOENT/);
  t.same(readFileSync(join(dir, 'moved', 'access.log'), 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).requestId), ['r1', 'r2'], 'every line still written, to the file still open');
});

t.test('reopen does nothing for stdout or off', async (t) => {
  const writes: string[] = [];
  const log = new AccessLog('stdout', new Writable({ write(chunk, _enc, cb) { writes.push(String(chunk)); cb(); } }));
  put(log, record(1));
  log.reopen();
  put(log, record(2));
  await log.close();
  t.equal(writes.join('').trimEnd().split('\n').length, 2);
  const off = new AccessLog('off');
  off.reopen();
  await off.close();
});

t.test('a path that cannot be opened is refused at once, naming the path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a-directory'));
  t.throws(() => new AccessLog(join(dir, 'a-directory')), { code: 'EISDIR', message: /^cannot open the access log \(PORTICO_ACCESS_LOG=.*a-directory\): EISDIR$/ });
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
  const out = { on: () => out, write: (chunk: Buffer, cb?: () => void) => pending.push({ chunk, copy: Buffer.from(chunk), cb: cb ?? (() => {}) }) < 1e9 };
  const log = new AccessLog('stdout', out as unknown as NodeJS.WritableStream);
  const n = 20_000; // about 3 MB of lines: dozens of encoding buffers, each reused many times
  for (let i = 0; i < n; i++) {
    put(log, { ...record(i), requestId: `r${i}-${'x'.repeat(i % 50)}` });
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

t.test('encodeLine writes exactly the bytes of formatLine, or declines', async (t) => {
  const buf = Buffer.alloc(4096);
  type Fields = [string, string, string, string | null, string | null, string | null, number, number, number, string];
  const check = (f: Fields, expectEncoded: boolean, what: string) => {
    const [time, id, method, route, version, replica, status, bytes, micros, error] = f;
    const end = encodeLine(buf, 7, time, id, method, route, version, replica, status, bytes, micros, error);
    const want = formatLine(time, id, method, route, version, replica, status, bytes, micros / 1000, error);
    if (!expectEncoded) return t.equal(end, -1, `${what}: left to formatLine`);
    t.equal(buf.toString('utf8', 7, end), want, what);
  };
  const base: Fields = ['2026-11-25T13:00:48.520Z', '99a46ce3-52e0-416d-b375-1a8ede09565a', 'POST', '/acme/nlp/web/production/iris', '20261125.2', '127.0.0.1:34127', 200, 55, 49021, ''];
  check(base, true, 'a proxied request');
  check([...base.slice(0, 3), null, null, null, 401, 131, 744, 'AUTH_REQUIRED'] as Fields, true, 'a refused one, with nulls and an error');
  for (const micros of [0, 1, 10, 100, 999, 1000, 1001, 1010, 1100, 1500, 12_345, 100_000, 3_600_000_000, 9_007_199_254_740]) {
    check([...base.slice(0, 8), micros, ''] as Fields, true, `${micros} us`);
  }
  for (let i = 0; i < 2000; i++) {
    const micros = Math.floor(Math.random() * 10 ** (1 + (i % 10)));
    check([...base.slice(0, 6), 100 + (i % 500), Math.floor(Math.random() * 1e9), micros, i % 3 === 0 ? 'UPSTREAM_TIMEOUT' : ''] as Fields, true, 'random numbers');
  }
  check([base[0], 'id-"quoted"', ...base.slice(2)] as Fields, false, 'a quote in the request id');
  check([base[0], 'id\\back', ...base.slice(2)] as Fields, false, 'a backslash');
  check([base[0], base[1], base[2], '/acme/caf\u00e9/x/y/z', ...base.slice(4)] as Fields, false, 'non-ASCII');
  check([base[0], 'tab\there', ...base.slice(2)] as Fields, false, 'a control character');
  check([...base.slice(0, 8), 1.5, ''] as Fields, false, 'a fractional microsecond count');
});

t.test('appendFields: the same lines as append(formatLine(...)), escaped or not', async (t) => {
  const a: string[] = [];
  const b: string[] = [];
  const sink = (into: string[]) => new Writable({ write(chunk, _enc, cb) { into.push(String(chunk)); cb(); } });
  const fast = new AccessLog('stdout', sink(a));
  const slow = new AccessLog('stdout', sink(b));
  const ids = ['plain-id', 'with "quotes"', 'caf\u00e9', 'emoji \ud83d\ude00', 'ctl\u0001'];
  for (let i = 0; i < 500; i++) {
    const f = ['2026-11-25T13:00:48.520Z', ids[i % ids.length] as string, 'GET', i % 7 === 0 ? null : `/o/p/d/a/e${i}`, 'v1', '127.0.0.1:1', 200, i, i * 37, i % 4 === 0 ? 'NO_ROUTE' : ''] as const;
    fast.appendFields(...f);
    slow.append(formatLine(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8] / 1000, f[9]));
  }
  await fast.close();
  await slow.close();
  t.equal(a.join(''), b.join(''));
  t.equal(a.join('').trimEnd().split('\n').length, 500);
});

t.test('lines keep the order of the calls, whether from fields (encoded 64 at a time) or whole', async (t) => {
  const writes: string[] = [];
  const log = new AccessLog('stdout', new Writable({ write(chunk, _enc, cb) { writes.push(String(chunk)); cb(); } }));
  const expected: number[] = [];
  for (let i = 0; i < 300; i++) {
    if (i % 37 === 5) log.append(lineOf(record(i)));
    else put(log, record(i));
    expected.push(i);
  }
  await log.close();
  t.same(writes.join('').trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).bytes), expected);
});

t.test('off writes nothing', async (t) => {
  const log = new AccessLog('off');
  t.equal(log.enabled, false);
  put(log, record(1));
  await log.close();
  t.notOk(existsSync('off'));
});

t.test('lines are valid JSON whatever the strings hold', async (t) => {
  const odd: AccessRecord = { ...record(1), route: '/a"b\\c/\u0001/é/d/e', error: 'BAD_PATH', version: null, replica: null };
  const line = lineOf(odd);
  t.ok(line.endsWith('\n'));
  t.same(JSON.parse(line), odd);
  const { error: _e, ...noError } = record(2) as AccessRecord & { error?: string };
  t.same(JSON.parse(lineOf(noError)), record(2), 'no error field when there is none');
  t.equal(isoTime(0), '1970-01-01T00:00:00.000Z');
  t.equal(isoTime(1), '1970-01-01T00:00:00.001Z');
  t.equal(isoTime(1), '1970-01-01T00:00:00.001Z');
});
