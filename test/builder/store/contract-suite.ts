/**
 * The Store contract: every implementation runs this same suite (embedded.test.ts,
 * redis.test.ts). `fresh()` gives a new, empty backing per case; `open()` on it may be called
 * again after `close()` and must see what was written (persistence).
 */
import type { Test } from 'tap';
import {
  StoreConflictError,
  StoreNotFoundError,
  StoreUnavailableError,
  type NewVersion,
  type Store,
  type StoreOptions,
  type VersionEndpoint,
} from '../../../builder/store/store.ts';

/** One empty backing (a directory, a key prefix) that stores can be opened on, one at a time. */
export interface StoreBacking {
  open(opts?: StoreOptions): Promise<Store>;
}

/** How the suite gets backings for an implementation. */
export interface ContractTarget {
  /** A new, empty backing. */
  fresh(): Promise<StoreBacking>;
  /** False for a memory-only store: reopening starts empty, so persistence is not checked. */
  readonly persistent: boolean;
}

/** A clock the test moves by hand. */
export function manualClock(start = '2024-03-01T10:00:00.000Z'): { now: () => Date; advance: (ms: number) => void } {
  let t = Date.parse(start);
  return { now: () => new Date(t), advance: (ms) => { t += ms; } };
}

const A = { owner: 'acme', project: 'mnist', deployment: 'web' };

function endpoint(name: string, replicas = 1): VersionEndpoint {
  return {
    name,
    definition: { name, 'server-command': 'python server.py', port: 8000, files: [{ name: 'model', path: 'model.pb' }] },
    replicas,
    enabled: true,
    timeoutSeconds: null,
    maxBodyBytes: 1024,
    files: [{ name: 'model', path: 'model.pb', sha256: 'ab'.repeat(32), size: 12 }],
  };
}

/** A version input of deployment `A` (or `ref`). */
export function newVersion(name: string, ref: { owner: string; project: string; deployment: string } = A): NewVersion {
  return {
    ...ref,
    name,
    status: 'building',
    enabled: true,
    source: { git: { url: 'https://example.com/r.git', ref: 'main' } },
    environment: { A: '1' },
    inheritEnvironment: true,
    endpoints: [endpoint('predict'), endpoint('health', 2)],
  };
}

async function rejectsWith<E extends Error>(t: Test, p: Promise<unknown>, type: new (...args: never[]) => E, check: (err: E) => void = () => {}): Promise<void> {
  try {
    await p;
    t.fail(`expected ${type.name}, got success`);
  } catch (err) {
    t.type(err, type, `rejects with ${type.name}`);
    if (err instanceof type) check(err);
  }
}

/** Registers the contract's cases as subtests of `t`. */
export function storeContract(t: Test, target: ContractTarget): void {
  const fresh = () => target.fresh();
  const openFresh = async (tt: Test, opts?: StoreOptions) => {
    const backing = await fresh();
    const store = await backing.open(opts);
    tt.teardown(() => store.close());
    return { store, backing };
  };

  t.test('environment: empty, replace whole set, per project', async (t) => {
    const { store } = await openFresh(t);
    t.same(await store.getEnvironment('acme', 'mnist'), {});
    await store.putEnvironment('acme', 'mnist', { A: { value: '1', secret: false }, KEY: { value: 's3cret', secret: true } });
    t.same(await store.getEnvironment('acme', 'mnist'), { A: { value: '1', secret: false }, KEY: { value: 's3cret', secret: true } });
    await store.putEnvironment('acme', 'mnist', { B: { value: '2', secret: false } });
    t.same(await store.getEnvironment('acme', 'mnist'), { B: { value: '2', secret: false } }, 'the whole set is replaced');
    t.same(await store.getEnvironment('acme', 'other'), {}, 'another project is separate');
    const got = await store.getEnvironment('acme', 'mnist');
    got.B!.value = 'changed';
    t.equal((await store.getEnvironment('acme', 'mnist')).B?.value, '2', 'returned objects are copies');
  });

  t.test('deployments: create, conflict, get, list, patch, delete', async (t) => {
    const clock = manualClock();
    const { store } = await openFresh(t, { clock: clock.now });
    const d = await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    t.same(d, { owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none', createdAt: '2024-03-01T10:00:00.000Z' });
    await rejectsWith(t, store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'docker', auth: 'basic' }), StoreConflictError, (e) => {
      t.equal(e.entity, 'deployment');
      t.equal(e.reason, 'exists');
      t.equal(e.code, 'STORE_CONFLICT');
    });
    t.same(await store.getDeployment(A), d, 'the conflicting create changed nothing');
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'api', target: 'local', auth: 'basic' });
    await store.createDeployment({ owner: 'acme', project: 'other', name: 'zzz', target: 'local', auth: 'none' });
    t.same((await store.listDeployments('acme', 'mnist')).map((x) => x.name), ['api', 'web'], 'sorted by name, one project only');
    t.equal(await store.getDeployment({ ...A, deployment: 'nope' }), null);

    const patched = await store.updateDeployment(A, { auth: 'basic' });
    t.same(patched, { ...d, auth: 'basic' }, 'only the patched field changes');
    t.same(await store.getDeployment(A), patched);
    t.same(await store.updateDeployment(A, { target: 'docker' }), { ...d, auth: 'basic', target: 'docker' });
    await rejectsWith(t, store.updateDeployment({ ...A, deployment: 'nope' }, { auth: 'none' }), StoreNotFoundError, (e) => t.equal(e.entity, 'deployment'));

    t.equal(await store.deleteDeployment(A), true);
    t.equal(await store.deleteDeployment(A), false, 'a second delete finds nothing');
    t.equal(await store.getDeployment(A), null);
    t.same((await store.listDeployments('acme', 'mnist')).map((x) => x.name), ['api']);
  });

  t.test('every deployment, every project', async (t) => {
    const { store } = await openFresh(t);
    t.same(await store.listAllDeployments(), []);
    t.same(await store.listProjects(), []);
    for (const [owner, project, name] of [['zeta', 'p', 'a'], ['acme', 'mnist', 'web'], ['acme', 'mnist', 'api'], ['acme', 'b/c', 'x']] as const) {
      await store.createDeployment({ owner, project, name, target: 'local', auth: 'none' });
    }
    await store.putEnvironment('acme', 'env-only', {});
    t.same(
      (await store.listAllDeployments()).map((d) => `${d.owner}|${d.project}|${d.name}`),
      ['acme|b/c|x', 'acme|mnist|api', 'acme|mnist|web', 'zeta|p|a'],
      'sorted by owner, project, name',
    );
    t.same(await store.listProjects(), [
      { owner: 'acme', project: 'b/c' },
      { owner: 'acme', project: 'env-only' },
      { owner: 'acme', project: 'mnist' },
      { owner: 'zeta', project: 'p' },
    ], 'with deployments or an environment');
    await store.deleteDeployment({ owner: 'zeta', project: 'p', deployment: 'a' });
    await store.deleteDeployment({ owner: 'acme', project: 'mnist', deployment: 'api' });
    t.same((await store.listProjects()).map((p) => p.project), ['b/c', 'env-only', 'mnist'], 'a project goes with its last deployment');
    t.same((await store.listAllDeployments()).map((d) => d.name), ['x', 'web']);
  });

  t.test('basic-auth users', async (t) => {
    const { store } = await openFresh(t);
    await rejectsWith(t, store.putUser(A, 'alice', 'h1'), StoreNotFoundError, (e) => t.equal(e.entity, 'deployment'));
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'basic' });
    t.same(await store.listUsers(A), []);
    await store.putUser(A, 'bob', 'h-bob');
    await store.putUser(A, 'alice', 'h1');
    await store.putUser(A, 'alice', 'h2');
    t.same(await store.listUsers(A), ['alice', 'bob']);
    t.same(await store.getUserHashes(A), { alice: 'h2', bob: 'h-bob' }, 'a put replaces the hash');
    t.equal(await store.deleteUser(A, 'bob'), true);
    t.equal(await store.deleteUser(A, 'bob'), false);
    t.same(await store.listUsers(A), ['alice']);
    t.same(await store.listUsers({ ...A, deployment: 'nope' }), []);
  });

  t.test('versions: create, conflict, get, list order, update, delete', async (t) => {
    const clock = manualClock();
    const { store } = await openFresh(t, { clock: clock.now });
    await rejectsWith(t, store.createVersion(newVersion('v1')), StoreNotFoundError, (e) => t.equal(e.entity, 'deployment'));
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });

    const input = { ...newVersion('b'), reason: undefined, codeDir: '/data/builds/b' };
    const b = await store.createVersion(input);
    t.same(b, { ...newVersion('b'), codeDir: '/data/builds/b', createdAt: '2024-03-01T10:00:00.000Z', updatedAt: '2024-03-01T10:00:00.000Z' });
    t.notOk('reason' in b, 'undefined fields are dropped (stored as JSON)');
    clock.advance(1000);
    await store.createVersion(newVersion('a'));
    clock.advance(1000);
    await store.createVersion(newVersion('c'));
    await rejectsWith(t, store.createVersion(newVersion('a')), StoreConflictError, (e) => t.equal(e.entity, 'version'));
    t.same((await store.listVersions(A)).map((v) => v.name), ['b', 'a', 'c'], 'listed by creation, not by name');
    t.same(await store.getVersion({ ...A, version: 'b' }), b);
    t.equal(await store.getVersion({ ...A, version: 'nope' }), null);
    t.same(await store.listVersions({ ...A, deployment: 'nope' }), []);

    clock.advance(5000);
    const updated = await store.updateVersion({ ...A, version: 'b' }, (v) => {
      v.status = 'ready';
      v.images = { predict: 'registry/acme:b' };
      v.name = 'renamed';
      v.createdAt = 'never';
    });
    t.equal(updated.status, 'ready');
    t.same(updated.images, { predict: 'registry/acme:b' });
    t.equal(updated.name, 'b', 'identity fields are kept');
    t.equal(updated.createdAt, '2024-03-01T10:00:00.000Z');
    t.equal(updated.updatedAt, '2024-03-01T10:00:07.000Z', 'updatedAt is set by the store');
    t.same(await store.getVersion({ ...A, version: 'b' }), updated);

    clock.advance(1000);
    const replaced = await store.updateVersion({ ...A, version: 'b' }, (v) => ({ ...v, status: 'failed', reason: 'exit 1' }));
    t.equal(replaced.status, 'failed', 'a mutator may return a replacement');
    t.equal(replaced.reason, 'exit 1');

    clock.advance(1000);
    const same = await store.updateVersion({ ...A, version: 'b' }, () => {});
    t.equal(same.updatedAt, replaced.updatedAt, 'a mutator that changes nothing writes nothing');

    await rejectsWith(t, store.updateVersion({ ...A, version: 'b' }, () => { throw new RangeError('no'); }), RangeError);
    t.same(await store.getVersion({ ...A, version: 'b' }), replaced, 'a throwing mutator writes nothing');
    await rejectsWith(t, store.updateVersion({ ...A, version: 'nope' }, () => {}), StoreNotFoundError, (e) => t.equal(e.entity, 'version'));

    const got = await store.getVersion({ ...A, version: 'b' });
    got!.endpoints[0]!.replicas = 99;
    t.equal((await store.getVersion({ ...A, version: 'b' }))!.endpoints[0]!.replicas, 1, 'returned objects are copies');

    t.equal(await store.deleteVersion({ ...A, version: 'a' }), true);
    t.equal(await store.deleteVersion({ ...A, version: 'a' }), false);
    t.same((await store.listVersions(A)).map((v) => v.name), ['b', 'c']);
    await store.createVersion(newVersion('a'));
    t.same((await store.listVersions(A)).map((v) => v.name), ['b', 'c', 'a'], 'a re-created version is newest');
  });

  t.test('updateVersion: 50 concurrent increments lose nothing', async (t) => {
    const { store } = await openFresh(t);
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    await store.createVersion(newVersion('v'));
    const ref = { ...A, version: 'v' };
    const seen = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        store.updateVersion(ref, (v) => {
          v.endpoints[0]!.replicas += 1;
          v.environment[`k${i}`] = String(i);
        }),
      ),
    );
    const final = await store.getVersion(ref);
    t.equal(final!.endpoints[0]!.replicas, 51, 'every increment applied');
    t.equal(Object.keys(final!.environment).length, 51, 'every key added');
    t.same([...new Set(seen.map((v) => v.endpoints[0]!.replicas))].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 2), 'each mutator saw the previous result');
  });

  t.test('allocateVersionName: YYYYMMDD.N, atomic, never reused', async (t) => {
    const { store } = await openFresh(t);
    const day = new Date('2024-01-01T23:30:00-02:00'); // 2024-01-02 01:30 UTC
    await rejectsWith(t, store.allocateVersionName('acme', 'mnist', 'web', day), StoreNotFoundError);
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'api', target: 'local', auth: 'none' });
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240102.0', 'UTC day, counting from 0');
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240102.1');
    t.equal(await store.allocateVersionName('acme', 'mnist', 'api', day), '20240102.0', 'per deployment');
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', new Date('2024-01-03T00:00:00Z')), '20240103.0', 'per day');

    const names = await Promise.all(Array.from({ length: 30 }, () => store.allocateVersionName('acme', 'mnist', 'web', day)));
    t.same([...names].sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])), Array.from({ length: 30 }, (_, i) => `20240102.${i + 2}`), 'concurrent: unique and sequential');

    const handed = await store.allocateVersionName('acme', 'mnist', 'web', day);
    t.equal(handed, '20240102.32');
    await store.createVersion(newVersion(handed));
    await store.deleteVersion({ ...A, version: handed });
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240102.33', 'a deleted version name is not handed out again');
    await store.createVersion(newVersion('20240102.34'));
    await store.createVersion(newVersion('20240102.35'));
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240102.36', 'names taken explicitly are skipped');
  });

  t.test('aliases: set, history from/to, weighted, delete, in-use versions', async (t) => {
    const clock = manualClock();
    const { store } = await openFresh(t, { clock: clock.now });
    await rejectsWith(t, store.setAlias(A, 'production', { version: 'v1' }, 'ops'), StoreNotFoundError, (e) => t.equal(e.entity, 'deployment'));
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    for (const v of ['v1', 'v2', 'v3']) await store.createVersion(newVersion(v));
    await rejectsWith(t, store.setAlias(A, 'production', { version: 'v9' }, 'ops'), StoreNotFoundError, (e) => t.equal(e.entity, 'version'));
    await rejectsWith(t, store.setAlias(A, 'production', { versions: [{ version: 'v1', weight: 50 }, { version: 'v9', weight: 50 }] }, 'ops'), StoreNotFoundError);
    t.equal(await store.getAlias(A, 'production'), null);
    t.same(await store.aliasHistory(A, 'production'), [], 'refused changes leave no history');

    const first = await store.setAlias(A, 'production', { version: 'v1', extra: 'dropped' } as never, 'alice');
    t.same(first, { at: '2024-03-01T10:00:00.000Z', by: 'alice', from: null, to: { version: 'v1' } });
    clock.advance(1000);
    const second = await store.setAlias(A, 'production', { version: 'v2' }, 'bob');
    t.same(second, { at: '2024-03-01T10:00:01.000Z', by: 'bob', from: { version: 'v1' }, to: { version: 'v2' } });
    clock.advance(1000);
    const canary = { versions: [{ version: 'v2', weight: 90 }, { version: 'v3', weight: 10 }] };
    await store.setAlias(A, 'production', canary, 'carol');
    await store.setAlias(A, 'staging', { version: 'v3' }, 'carol');
    t.same(await store.getAlias(A, 'production'), { name: 'production', ...canary });
    t.same(await store.listAliases(A), [{ name: 'production', ...canary }, { name: 'staging', version: 'v3' }]);

    await rejectsWith(t, store.deleteVersion({ ...A, version: 'v3' }), StoreConflictError, (e) => {
      t.equal(e.reason, 'in-use');
      t.equal(e.usedBy, 'production', 'the first alias (by name) using it, weighted ones included');
    });
    await rejectsWith(t, store.deleteVersion({ ...A, version: 'v2' }), StoreConflictError);
    t.ok(await store.getVersion({ ...A, version: 'v3' }), 'refused delete kept the version');
    t.equal(await store.deleteVersion({ ...A, version: 'v1' }), true, 'a version no alias points at can go');

    clock.advance(1000);
    const removed = await store.deleteAlias(A, 'production', 'dave');
    t.same(removed, { at: '2024-03-01T10:00:03.000Z', by: 'dave', from: canary, to: null });
    t.equal(await store.deleteAlias(A, 'production', 'dave'), null, 'deleting a missing alias');
    t.equal(await store.deleteAlias({ ...A, deployment: 'nope' }, 'production', 'dave'), null);
    t.equal(await store.getAlias(A, 'production'), null);
    t.same(await store.aliasHistory(A, 'production'), [
      { at: '2024-03-01T10:00:03.000Z', by: 'dave', from: canary, to: null },
      { at: '2024-03-01T10:00:02.000Z', by: 'carol', from: { version: 'v2' }, to: canary },
      second,
      first,
    ], 'newest first, kept after the alias is deleted');
    t.same(await store.aliasHistory(A, 'staging'), [{ at: '2024-03-01T10:00:02.000Z', by: 'carol', from: null, to: { version: 'v3' } }]);
    t.equal(await store.deleteVersion({ ...A, version: 'v2' }), true, 'free once the alias is gone');
    await rejectsWith(t, store.deleteVersion({ ...A, version: 'v3' }), StoreConflictError, (e) => t.equal(e.usedBy, 'staging'));
  });

  t.test('a version and an alias of one deployment never share a name, even written at once', async (t) => {
    const { store } = await openFresh(t);
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    await store.createVersion(newVersion('v1'));
    await store.setAlias(A, 'production', { version: 'v1' }, 'ops');
    await rejectsWith(t, store.createVersion(newVersion('production')), StoreConflictError, (e) =>
      t.same([e.entity, e.reason, e.message], ['version', 'name-taken', 'version acme/mnist/web/production: an alias has that name']));
    t.equal(await store.getVersion({ ...A, version: 'production' }), null, 'nothing recorded');
    await rejectsWith(t, store.setAlias(A, 'v1', { version: 'v1' }, 'ops'), StoreConflictError, (e) =>
      t.same([e.entity, e.reason, e.message], ['alias', 'name-taken', 'alias acme/mnist/web/v1: a version has that name']));
    t.equal(await store.getAlias(A, 'v1'), null);
    t.same(await store.aliasHistory(A, 'v1'), [], 'no history for the refused alias');
    t.ok(await store.deleteAlias(A, 'production', 'ops'), 'deleting an alias is not checked');
    // At the same moment: exactly one of the two wins, every time.
    for (let i = 0; i < 20; i++) {
      const name = `both-${i}`;
      const [version, alias] = await Promise.allSettled([store.createVersion(newVersion(name)), store.setAlias(A, name, { version: 'v1' }, 'ops')]);
      t.not(version.status, alias.status, `${name}: one of the two was refused`);
      const kinds = [(await store.getVersion({ ...A, version: name })) !== null, (await store.getAlias(A, name)) !== null];
      t.same(kinds.filter(Boolean).length, 1, `${name}: a version or an alias, not both`);
    }
  });

  t.test('an alias set to the target it has is not a change: no history item (a repeated PUT is idempotent)', async (t) => {
    const clock = manualClock();
    const { store } = await openFresh(t, { clock: clock.now });
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    for (const v of ['v1', 'v2']) await store.createVersion(newVersion(v));
    const canary = { versions: [{ version: 'v1', weight: 90 }, { version: 'v2', weight: 10 }] };
    await store.setAlias(A, 'prod', { version: 'v1' }, 'alice');
    clock.advance(1000);
    await store.setAlias(A, 'prod', { version: 'v2' }, 'bob');
    clock.advance(1000);
    const again = await store.setAlias(A, 'prod', { version: 'v2' }, 'carol');
    t.same([again.from, again.to], [{ version: 'v2' }, { version: 'v2' }], 'the answer says nothing changed');
    await store.setAlias(A, 'prod', canary, 'carol');
    await store.setAlias(A, 'prod', canary, 'carol');
    t.same((await store.aliasHistory(A, 'prod')).map((h) => [h.by, h.from, h.to]), [
      ['carol', { version: 'v2' }, canary],
      ['bob', { version: 'v1' }, { version: 'v2' }],
      ['alice', null, { version: 'v1' }],
    ], 'only the changes, so the newest item says what the alias pointed at before');
    t.same(await store.getAlias(A, 'prod'), { name: 'prod', ...canary });
  });

  t.test('alias history is bounded', async (t) => {
    const { store } = await openFresh(t, { aliasHistoryLimit: 3 });
    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    for (let i = 0; i < 6; i++) {
      await store.createVersion(newVersion(`v${i}`));
      await store.setAlias(A, 'prod', { version: `v${i}` }, 'ops');
    }
    t.same((await store.aliasHistory(A, 'prod')).map((h) => h.to), [{ version: 'v5' }, { version: 'v4' }, { version: 'v3' }]);
  });

  t.test('deleting a deployment removes what it holds', async (t) => {
    const { store } = await openFresh(t);
    const other = { ...A, deployment: 'other' };
    for (const ref of [A, other]) {
      await store.createDeployment({ owner: ref.owner, project: ref.project, name: ref.deployment, target: 'local', auth: 'basic' });
      await store.putUser(ref, 'alice', 'h');
      await store.createVersion(newVersion('v1', ref));
      await store.setAlias(ref, 'prod', { version: 'v1' }, 'ops');
      await store.deleteAlias(ref, 'prod', 'ops');
      await store.setAlias(ref, 'staging', { version: 'v1' }, 'ops');
    }
    const day = new Date('2024-05-05T00:00:00Z');
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240505.0');

    t.equal(await store.deleteDeployment(A), true, 'deleted although an alias points at a version');
    t.equal(await store.getDeployment(A), null);
    t.same(await store.listVersions(A), []);
    t.equal(await store.getVersion({ ...A, version: 'v1' }), null);
    t.same(await store.listAliases(A), []);
    t.same(await store.aliasHistory(A, 'prod'), []);
    t.same(await store.aliasHistory(A, 'staging'), []);
    t.same(await store.listUsers(A), []);

    await store.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'none' });
    t.same(await store.listVersions(A), [], 're-created empty');
    t.same(await store.listUsers(A), []);
    t.same(await store.aliasHistory(A, 'prod'), []);
    t.equal(await store.allocateVersionName('acme', 'mnist', 'web', day), '20240505.1', 'version names are still not reused');

    t.equal((await store.listVersions(other)).length, 1, 'other deployments keep everything');
    t.same(await store.listUsers(other), ['alice']);
    t.equal((await store.aliasHistory(other, 'prod')).length, 2);
    t.same(await store.listAliases(other), [{ name: 'staging', version: 'v1' }]);
  });

  t.test('audit: newest first, paging, bounded', async (t) => {
    const clock = manualClock();
    const { store } = await openFresh(t, { auditLimit: 25, clock: clock.now });
    t.same(await store.listAudit(), { items: [], next: null });
    const appended = [];
    for (let i = 0; i < 30; i++) {
      clock.advance(1000);
      appended.push(await store.appendAudit({ actor: 'admin', action: 'version.create', target: `acme/mnist/web/v${i}`, details: { i } }));
    }
    t.same(appended[0], { id: appended[0]!.id, at: '2024-03-01T10:00:01.000Z', actor: 'admin', action: 'version.create', target: 'acme/mnist/web/v0', details: { i: 0 } });
    t.equal(new Set(appended.map((e) => e.id)).size, 30, 'ids are unique');

    const all = await store.listAudit({ limit: 1000 });
    t.equal(all.items.length, 25, 'only the newest auditLimit entries are kept');
    t.same(all.items.map((e) => e.details.i), Array.from({ length: 25 }, (_, k) => 29 - k), 'newest first');
    t.equal(all.next, null);

    const pages: number[][] = [];
    let before: string | undefined;
    for (let guard = 0; guard < 10; guard++) {
      const page: { items: { details: Record<string, unknown> }[]; next: string | null } = await store.listAudit(before === undefined ? { limit: 10 } : { limit: 10, before });
      pages.push(page.items.map((e) => e.details.i as number));
      if (page.next === null) break;
      before = page.next;
    }
    t.same(pages, [
      [29, 28, 27, 26, 25, 24, 23, 22, 21, 20],
      [19, 18, 17, 16, 15, 14, 13, 12, 11, 10],
      [9, 8, 7, 6, 5],
    ], 'pages follow each other without gaps or repeats');
    t.equal((await store.listAudit()).items.length, 25, 'default limit covers it');
    t.same(await store.listAudit({ before: 'not-a-cursor' }), { items: [], next: null });
    const newest = await store.appendAudit({ actor: 'x', action: 'y', target: 'z', details: {} });
    t.equal((await store.listAudit({ limit: 1 })).items[0]?.id, newest.id);
  });

  t.test('admin tokens', async (t) => {
    const { store } = await openFresh(t);
    const hash = (c: string) => c.repeat(64);
    const ci = await store.createToken({ name: 'ci', hash: hash('a') });
    t.same(Object.keys(ci).sort(), ['createdAt', 'hash', 'name']);
    await store.createToken({ name: 'admin', hash: hash('b') });
    await rejectsWith(t, store.createToken({ name: 'ci', hash: hash('c') }), StoreConflictError, (e) => t.equal(e.entity, 'token'));
    await rejectsWith(t, store.createToken({ name: 'other', hash: hash('a') }), StoreConflictError, () => {});
    t.same((await store.listTokens()).map((x) => x.name), ['admin', 'ci']);
    t.same(await store.findTokenByHash(hash('a')), ci);
    t.equal(await store.findTokenByHash(hash('f')), null);
    t.equal(await store.deleteToken('ci'), true);
    t.equal(await store.deleteToken('ci'), false);
    t.equal(await store.findTokenByHash(hash('a')), null, 'a deleted token no longer authenticates');
    const again = await store.createToken({ name: 'ci2', hash: hash('a') });
    t.same(await store.findTokenByHash(hash('a')), again, 'its hash is free again');
  });

  t.test('admin tokens: keepLast refuses to delete the only token, atomically', async (t) => {
    const { store } = await openFresh(t);
    const hash = (c: string) => c.repeat(64);
    await store.createToken({ name: 'admin', hash: hash('a') });
    await store.createToken({ name: 'ci', hash: hash('b') });
    t.equal(await store.deleteToken('none', { keepLast: true }), false, 'an unknown name is still just not there');
    const both = await Promise.allSettled([store.deleteToken('admin', { keepLast: true }), store.deleteToken('ci', { keepLast: true })]);
    t.same(both.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'of two concurrent deletes of the last two, one is refused');
    const refused = both.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    t.match(refused.reason, { name: 'StoreConflictError', entity: 'token', reason: 'last' });
    t.equal((await store.listTokens()).length, 1, 'one token left');
    const last = (await store.listTokens())[0]!.name;
    await rejectsWith(t, store.deleteToken(last, { keepLast: true }), StoreConflictError, (e) => t.same([e.reason, e.key, e.message], ['last', last, `token ${last} is the last one`]));
    t.equal(await store.deleteToken(last), true, 'without keepLast the last token goes');
    t.same(await store.listTokens(), []);
  });

  t.test('uploads', async (t) => {
    const { store } = await openFresh(t);
    const u = await store.createUpload({ id: 'u2', size: 10, sha256: 'cd'.repeat(32), path: '/data/uploads/u2' });
    t.same(u, { id: 'u2', size: 10, sha256: 'cd'.repeat(32), createdAt: u.createdAt, path: '/data/uploads/u2' });
    t.ok(!Number.isNaN(Date.parse(u.createdAt)));
    await store.createUpload({ id: 'u1', size: 1, sha256: 'ef'.repeat(32), path: '/data/uploads/u1' });
    await rejectsWith(t, store.createUpload({ id: 'u2', size: 1, sha256: 'x', path: '/x' }), StoreConflictError, (e) => t.equal(e.entity, 'upload'));
    t.same(await store.getUpload('u2'), u);
    t.equal(await store.getUpload('nope'), null);
    t.same((await store.listUploads()).map((x) => x.id), ['u1', 'u2']);
    t.equal(await store.deleteUpload('u2'), true);
    t.equal(await store.deleteUpload('u2'), false);
    t.equal(await store.getUpload('u2'), null);
  });

  t.test('runtime state KV', async (t) => {
    const { store } = await openFresh(t);
    t.equal(await store.getState('local', 'r1'), undefined);
    await store.putState('local', 'r1', { pid: 123, port: 4000, tags: ['a'] });
    await store.putState('local', 'r0', null);
    await store.putState('docker', 'r1', 'container-id');
    t.same(await store.getState('local', 'r1'), { pid: 123, port: 4000, tags: ['a'] });
    t.equal(await store.getState('local', 'r0'), null, 'null is a value, not absence');
    t.same(await store.listState('local'), { r0: null, r1: { pid: 123, port: 4000, tags: ['a'] } });
    await store.putState('local', 'r1', { pid: 124 });
    t.same(await store.getState('local', 'r1'), { pid: 124 }, 'put replaces');
    t.equal(await store.deleteState('local', 'r1'), true);
    t.equal(await store.deleteState('local', 'r1'), false);
    t.same(await store.listState('local'), { r0: null });
    t.same(await store.listState('docker'), { r1: 'container-id' }, 'namespaces are separate');
    t.same(await store.listState('none'), {});
    await rejectsWith(t, store.putState('local', 'x', undefined), TypeError);
  });

  t.test('store id: none in a new store; initStoreId writes one once, concurrent calls agree; each store has its own', async (t) => {
    const { store } = await openFresh(t);
    t.equal(await store.getStoreId(), null, 'a new store has no id');
    const ids = await Promise.all(Array.from({ length: 5 }, () => store.initStoreId()));
    t.equal(new Set(ids).size, 1, 'concurrent calls get one id');
    const id = ids[0]!;
    t.match(id, /^[0-9a-f-]{36}$/, 'a random UUID');
    t.equal(await store.getStoreId(), id);
    t.equal(await store.initStoreId(), id, 'a second call keeps it');
    const { store: other } = await openFresh(t);
    t.not(await other.initStoreId(), id, 'another store has another id');
  });

  t.test('a closed store refuses operations', async (t) => {
    const backing = await fresh();
    const store = await backing.open();
    await store.close();
    await store.close();
    await rejectsWith(t, store.getDeployment(A), StoreUnavailableError);
    await rejectsWith(t, store.putState('a', 'b', 1), StoreUnavailableError);
  });

  if (!target.persistent) return;

  t.test('everything written is there after close and reopen', async (t) => {
    const backing = await fresh();
    const clock = manualClock();
    const s1 = await backing.open({ clock: clock.now });
    await s1.putEnvironment('acme', 'mnist', { K: { value: 'v', secret: true } });
    await s1.createDeployment({ owner: 'acme', project: 'mnist', name: 'web', target: 'local', auth: 'basic' });
    await s1.putUser(A, 'alice', 'hash');
    await s1.createVersion(newVersion('v1'));
    await s1.createVersion(newVersion('v2'));
    await s1.updateVersion({ ...A, version: 'v1' }, (v) => { v.status = 'ready'; });
    await s1.setAlias(A, 'prod', { version: 'v1' }, 'ops');
    await s1.allocateVersionName('acme', 'mnist', 'web', new Date('2024-03-01T00:00:00Z'));
    const audit = await s1.appendAudit({ actor: 'ops', action: 'alias.set', target: 'acme/mnist/web/prod', details: { to: 'v1' } });
    await s1.createToken({ name: 'ci', hash: 'a'.repeat(64) });
    await s1.createUpload({ id: 'u1', size: 3, sha256: 'b'.repeat(64), path: '/u1' });
    await s1.putState('local', 'r1', { pid: 1 });
    await s1.putState('local', 'gone', 1);
    await s1.deleteState('local', 'gone');
    const id = await s1.initStoreId();
    const before = {
      env: await s1.getEnvironment('acme', 'mnist'),
      deployments: await s1.listDeployments('acme', 'mnist'),
      users: await s1.getUserHashes(A),
      versions: await s1.listVersions(A),
      aliases: await s1.listAliases(A),
      history: await s1.aliasHistory(A, 'prod'),
      audit: await s1.listAudit(),
      tokens: await s1.listTokens(),
      uploads: await s1.listUploads(),
      state: await s1.listState('local'),
    };
    await s1.close();

    const s2 = await backing.open({ clock: clock.now });
    t.teardown(() => s2.close());
    t.same(
      {
        env: await s2.getEnvironment('acme', 'mnist'),
        deployments: await s2.listDeployments('acme', 'mnist'),
        users: await s2.getUserHashes(A),
        versions: await s2.listVersions(A),
        aliases: await s2.listAliases(A),
        history: await s2.aliasHistory(A, 'prod'),
        audit: await s2.listAudit(),
        tokens: await s2.listTokens(),
        uploads: await s2.listUploads(),
        state: await s2.listState('local'),
      },
      before,
    );
    t.equal(before.versions[0]?.status, 'ready');
    t.equal(await s2.getStoreId(), id, 'the store id persists');
    t.equal(await s2.allocateVersionName('acme', 'mnist', 'web', new Date('2024-03-01T00:00:00Z')), '20240301.1', 'counters persist');
    const next = await s2.appendAudit({ actor: 'ops', action: 'x', target: 'y', details: {} });
    t.ok(Number(next.id) > Number(audit.id), 'audit ids keep growing');
    await s2.close();
    const s3 = await backing.open({ clock: clock.now });
    t.teardown(() => s3.close());
    t.equal(await s3.getStoreId(), id, 'and again after a second reopen (the embedded store: from its snapshot)');
  });
}
