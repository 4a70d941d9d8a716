import t from 'tap';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../../builder/store/embedded.ts';
import { encodeRecord } from '../../../builder/store/journal.ts';
import { StoreLockedError } from '../../../builder/store/lock.ts';
import { openStore } from '../../../builder/store/open.ts';
import { StoreUnavailableError } from '../../../builder/store/store.ts';
import { storeContract } from './contract-suite.ts';

const root = mkdtempSync(join(tmpdir(), 'portico-store-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `s${++n}`, 'store');

const journals = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('journal-'));

t.test('contract (durable, in a directory)', async (t) => {
  storeContract(t, {
    persistent: true,
    fresh: async () => {
      const dir = freshDir();
      return { open: (opts) => EmbeddedStore.open({ ...opts, dir }) };
    },
  });
});

t.test('contract (memory only)', async (t) => {
  storeContract(t, { persistent: false, fresh: async () => ({ open: async (opts) => EmbeddedStore.memory(opts) }) });
});

t.test('openStore picks the embedded store under the data dir without a Redis URL', async (t) => {
  const dataDir = join(root, 'data-open');
  const store = await openStore({ redisUrl: undefined, dataDir });
  t.teardown(() => store.close());
  t.type(store, EmbeddedStore);
  t.ok(existsSync(join(dataDir, 'store', 'snapshot.json')));
  t.ok(existsSync(join(dataDir, 'store', 'lock')));
});

t.test('one process at a time: the lock', async (t) => {
  const dir = freshDir();
  const s1 = await EmbeddedStore.open({ dir });
  const lock = JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')) as { pid: number };
  t.equal(lock.pid, process.pid, 'the lock names the owning process');
  try {
    await EmbeddedStore.open({ dir });
    t.fail('a second open must fail');
  } catch (err) {
    t.type(err, StoreLockedError);
    t.match((err as Error).message, new RegExp(`in use by process ${process.pid}.*PORTICO_DATA_DIR`), 'the message says who and what to do');
  }
  await s1.putState('a', 'b', 1);
  await s1.close();
  t.notOk(existsSync(join(dir, 'lock')), 'close releases the lock');
  const s2 = await EmbeddedStore.open({ dir });
  t.equal(await s2.getState('a', 'b'), 1);
  await s2.close();
});

t.test('a lock left by a dead process is taken over; a live one is not', async (t) => {
  const dir = freshDir();
  await (await EmbeddedStore.open({ dir })).close();
  // A process that lives until we end it.
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((r) => child.once('spawn', r));
  const owner = { pid: child.pid, start: null, host: 'h', since: '2024-01-01T00:00:00Z', nonce: 'n' };
  writeFileSync(join(dir, 'lock'), JSON.stringify(owner));
  try {
    await EmbeddedStore.open({ dir });
    t.fail('a live owner keeps the lock');
  } catch (err) {
    t.type(err, StoreLockedError);
    t.equal((err as StoreLockedError).pid, child.pid);
  }
  // The same pid with another start time is a recycled pid: the owner is gone.
  const procStart = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19];
  writeFileSync(join(dir, 'lock'), JSON.stringify({ ...owner, start: `${procStart}0` }));
  const recycled = await EmbeddedStore.open({ dir });
  t.equal(JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')).pid, process.pid, 'a recycled pid does not hold the lock');
  await recycled.close();
  writeFileSync(join(dir, 'lock'), JSON.stringify({ ...owner, start: procStart }));
  await t.rejects(EmbeddedStore.open({ dir }), StoreLockedError, 'the matching start time does');

  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  const s = await EmbeddedStore.open({ dir });
  t.equal(JSON.parse(readFileSync(join(dir, 'lock'), 'utf8')).pid, process.pid, 'taken over');
  await s.close();

  writeFileSync(join(dir, 'lock'), 'garbage, not JSON');
  const s2 = await EmbeddedStore.open({ dir });
  t.pass('an unreadable lock file is stale');
  await s2.close();
});

t.test('a torn or corrupt journal tail is cut off; acknowledged records stay', async (t) => {
  const dir = freshDir();
  const s = await EmbeddedStore.open({ dir });
  for (let i = 0; i < 10; i++) await s.putState('ns', `k${i}`, i);
  await s.close();
  const [journal] = journals(dir);
  t.ok(journal, 'writes went to a journal');
  const path = join(dir, journal!);
  const good = statSync(path).size;
  // A record cut in the middle, as a crash during write() leaves it.
  const next = encodeRecord({ lsn: 11, ops: [{ t: 'kv.put', ns: 'ns', key: 'torn', value: 1 }] });
  appendFileSync(path, next.subarray(0, next.length - 3));

  const s2 = await EmbeddedStore.open({ dir });
  t.equal(s2.recovery.truncatedBytes, next.length - 3);
  t.equal(s2.recovery.replayed, 10);
  t.same(await s2.listState('ns'), Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, i])));
  t.equal(await s2.getState('ns', 'torn'), undefined);
  await s2.putState('ns', 'after', true);
  await s2.close();

  // A complete record whose bytes are damaged (checksum mismatch), followed by garbage.
  const [j2] = journals(dir);
  const bad = encodeRecord({ lsn: 12, ops: [{ t: 'kv.put', ns: 'ns', key: 'bad', value: 1 }] });
  bad.writeUInt8(bad.readUInt8(bad.length - 2) ^ 0xff, bad.length - 2);
  appendFileSync(join(dir, j2!), Buffer.concat([bad, Buffer.from('\0\0\0\x05zzzzzz')]));
  const s3 = await EmbeddedStore.open({ dir });
  t.ok(s3.recovery.truncatedBytes > 0);
  t.equal(await s3.getState('ns', 'bad'), undefined, 'the damaged record is not applied');
  t.equal(await s3.getState('ns', 'after'), true, 'what came before it is');
  await s3.close();
  t.ok(good > 0);
});

t.test('corruption that is not a torn tail stops open with a clear error', async (t) => {
  const dir = freshDir();
  const s = await EmbeddedStore.open({ dir });
  await s.putState('ns', 'k', 1);
  await s.close();

  // A gap: record 5 after the snapshot's last lsn (a journal lost in the middle).
  writeFileSync(join(dir, 'journal-0000000099.log'), encodeRecord({ lsn: 5, ops: [{ t: 'kv.put', ns: 'ns', key: 'x', value: 1 }] }));
  await t.rejects(EmbeddedStore.open({ dir }), StoreUnavailableError);
  await t.rejects(EmbeddedStore.open({ dir }), /record 5 follows 1/, 'the lock was released after the failed open');
  rmSync(join(dir, 'journal-0000000099.log'));

  writeFileSync(join(dir, 'snapshot.json'), '{"format":1,"lsn":3,"state":{"env":[');
  await t.rejects(EmbeddedStore.open({ dir }), /snapshot\.json is corrupt/);
});

t.test('compaction: frequent snapshots keep the journal small and lose nothing', async (t) => {
  const dir = freshDir();
  const phases: string[] = [];
  const s = await EmbeddedStore.open({ dir, compactBytes: 2048, onCompaction: (p) => phases.push(p) });
  const writes = [];
  for (let i = 0; i < 300; i++) {
    writes.push(s.putState('ns', `k${i}`, { i, pad: 'x'.repeat(50) }));
    if (i % 25 === 0) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  await s.close();
  t.ok(phases.filter((p) => p === 'done').length >= 3, `compacted several times (${phases.filter((p) => p === 'done').length})`);
  t.same(phases.slice(0, 4), ['start', 'snapshot-written', 'snapshot-renamed', 'done'], 'in this order');
  t.ok(journals(dir).length <= 2, 'old journals were removed');
  t.notOk(readdirSync(dir).some((f) => f.endsWith('.tmp')), 'no temporary file left');

  const s2 = await EmbeddedStore.open({ dir });
  t.ok(s2.recovery.snapshotLsn > 0, 'reopen starts from a snapshot');
  const all = await s2.listState('ns');
  t.equal(Object.keys(all).length, 300);
  t.same(all.k299, { i: 299, pad: 'x'.repeat(50) });
  t.same(journals(dir), [], 'open compacts the directory to one snapshot');
  await s2.close();
});

t.test('group commit: concurrent writes share fsyncs', async (t) => {
  const dir = freshDir();
  const s = await EmbeddedStore.open({ dir });
  await Promise.all(Array.from({ length: 200 }, (_, i) => s.putState('ns', `k${i}`, i)));
  const stats = s.journalStats;
  t.equal(stats.records, 200);
  t.ok(stats.syncs < 50, `200 writes took ${stats.syncs} syncs`);
  await s.close();
});

t.test('a failed write stops the store until it is reopened', async (t) => {
  const dir = freshDir();
  const s = await EmbeddedStore.open({ dir });
  t.equal(s.failure(), null);
  rmSync(dir, { recursive: true }); // the journal cannot be created any more
  await t.rejects(s.putState('ns', 'k', 1), StoreUnavailableError);
  t.match(s.failure(), { name: 'StoreUnavailableError', needsRestart: true, message: /failed to write and must be reopened/ }, 'it says so (the controller\'s /healthz)');
  await t.rejects(s.getState('ns', 'k'), /failed to write and must be reopened/, 'reads are refused too: memory may hold what the disk does not');
  await s.close();
  const s2 = await EmbeddedStore.open({ dir });
  t.equal(await s2.getState('ns', 'k'), undefined, 'the unacknowledged write is not there');
  await s2.close();
});

t.test('reads wait until what they saw is durable', async (t) => {
  const dir = freshDir();
  const s = await EmbeddedStore.open({ dir });
  const write = s.putState('ns', 'k', 'v');
  const read = s.getState('ns', 'k');
  const order: string[] = [];
  await Promise.all([write.then(() => order.push('write')), read.then(() => order.push('read'))]);
  t.same(order, ['write', 'read'], 'the read of an unsynced write resolves after that write is acknowledged');
  t.equal(await read, 'v');
  await s.close();
});
