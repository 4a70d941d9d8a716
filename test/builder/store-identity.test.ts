import t, { type Test } from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkStoreIdentity, storeIdFile, TAKE_STORE } from '../../builder/store-identity.ts';
import { EmbeddedStore } from '../../builder/store/embedded.ts';

/** A data directory and an embedded store in it (`store` reopened empty by `replace`). */
async function setup(t: Test): Promise<{ dataDir: string; store: () => EmbeddedStore; replace: () => Promise<void> }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'portico-store-identity-'));
  let store = await EmbeddedStore.open({ dir: join(dataDir, 'store') });
  t.teardown(async () => {
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return {
    dataDir,
    store: () => store,
    replace: async () => {
      await store.close();
      await rm(join(dataDir, 'store'), { recursive: true, force: true });
      store = await EmbeddedStore.open({ dir: join(dataDir, 'store') });
    },
  };
}

const none = async () => false;
const some = async () => true;

t.test('first start: the store gets an id and the data directory a copy; later starts agree', async (t) => {
  const { dataDir, store } = await setup(t);
  const first = await checkStoreIdentity(store(), dataDir, none);
  t.equal(first.problem, null);
  t.ok(first.id);
  t.equal(await store().getStoreId(), first.id);
  t.equal((await readFile(storeIdFile(dataDir), 'utf8')).trim(), first.id);
  t.same(await checkStoreIdentity(store(), dataDir, some), first, 'a restart on the same store, replicas running');
});

t.test('a store that lost its id, or has another, is refused; nothing is written', async (t) => {
  const { dataDir, store, replace } = await setup(t);
  const { id } = await checkStoreIdentity(store(), dataDir, none);
  await replace();
  const emptied = await checkStoreIdentity(store(), dataDir, none);
  t.equal(emptied.id, null);
  t.match(emptied.problem, /has no id, but this controller last ran on store .*emptied or replaced/);
  t.equal(await store().getStoreId(), null, 'the new store gets no id');
  const other = await store().initStoreId();
  const replaced = await checkStoreIdentity(store(), dataDir, none);
  t.match(replaced.problem, new RegExp(`id is ${other}, but this controller last ran on store ${id}.*another store`));
  t.equal((await readFile(storeIdFile(dataDir), 'utf8')).trim(), id, 'the data directory keeps the old id');

  // The operator takes the new store: deleting the file.
  await rm(storeIdFile(dataDir));
  t.same(await checkStoreIdentity(store(), dataDir, some), { id: other, problem: null }, 'taken over');
});

t.test('a new, empty store while replicas run (the data directory lost too) is refused; with deployments, or no replicas, it is taken', async (t) => {
  const { dataDir, store } = await setup(t);
  const lost = await checkStoreIdentity(store(), dataDir, some);
  t.equal(lost.id, null);
  t.match(lost.problem, /new and empty, but replicas are running/);
  t.equal(await store().getStoreId(), null);

  // A store from before ids existed, with deployments: an upgrade, not a loss.
  await store().createDeployment({ owner: 'a', project: 'b', name: 'c', target: 'local', auth: 'none' });
  const upgraded = await checkStoreIdentity(store(), dataDir, some);
  t.equal(upgraded.problem, null);
  t.equal(upgraded.id, await store().getStoreId());
});

t.test('the operator takes an empty store while replicas run: "new" in the id file', async (t) => {
  const { dataDir, store, replace } = await setup(t);
  await checkStoreIdentity(store(), dataDir, none);
  await replace();
  t.match((await checkStoreIdentity(store(), dataDir, some)).problem, /emptied or replaced/);
  // Deleting the file is not enough here: a new, empty store while replicas run is refused too.
  await rm(storeIdFile(dataDir));
  t.match((await checkStoreIdentity(store(), dataDir, some)).problem, /new and empty, but replicas are running/);
  await writeFile(storeIdFile(dataDir), `${TAKE_STORE}\n`);
  const taken = await checkStoreIdentity(store(), dataDir, some);
  t.equal(taken.problem, null, 'taken');
  t.ok(taken.id);
  t.equal(await store().getStoreId(), taken.id, 'the store gets an id');
  t.equal((await readFile(storeIdFile(dataDir), 'utf8')).trim(), taken.id, 'the file holds it again');
  t.same(await checkStoreIdentity(store(), dataDir, some), taken, 'later starts agree');
});

t.test('an unreadable id file is an error, not a first start', async (t) => {
  const { dataDir, store } = await setup(t);
  await mkdir(storeIdFile(dataDir));
  await t.rejects(checkStoreIdentity(store(), dataDir, none), { code: 'EISDIR' });
});
