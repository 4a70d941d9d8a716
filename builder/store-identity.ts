/**
 * Which store the controller runs on. An empty store reads as "no replica is wanted": one that
 * was lost (Redis restarted empty, a failover to an empty replica, the embedded store's directory
 * deleted) or replaced (PORTICO_REDIS_URL pointed at another database) would have every running
 * replica removed. The store's id (`Store.getStoreId`) and its copy in the controller's data
 * directory tell such a store apart from the one the replicas came from.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from './store/store.ts';

/** Where the docs say what to do; every message about a lost store names it. */
export const STORE_LOST_HELP = 'see docs/operations.md, section 4, "When the store is lost or replaced"';

/** What the controller found at start. */
export interface StoreIdentity {
  /** The id of the store, which the reconciler checks before each removal; `null` when `problem`. */
  readonly id: string | null;
  /** Why the store is not the one this data directory ran on (nothing may be removed), else `null`. */
  readonly problem: string | null;
}

/**
 * What an operator writes into the `store-id` file to have the next start take the store as it
 * is, id or not, empty or not (see `checkStoreIdentity`).
 */
export const TAKE_STORE = 'new';

/** `$PORTICO_DATA_DIR/store-id`: the id of the store the controller last ran on. */
export function storeIdFile(dataDir: string): string {
  return join(dataDir, 'store-id');
}

/**
 * Compares the store's id with the one the data directory remembers. A store without an id and
 * a data directory without one is a first start (or an upgrade from before ids): the store gets
 * an id and the directory a copy. A store whose id differs from the remembered one, or that lost
 * it, is another store: nothing is written, so every start says so until the operator restores
 * the store or takes the new one (deleting the file). A store without an id that holds no
 * deployment while `hasReplicas()` finds replicas running was lost with the data directory: the
 * replicas came from somewhere. A file reading `new` (`TAKE_STORE`) is the operator's consent to
 * take the store as it is, whatever of the above holds.
 */
export async function checkStoreIdentity(store: Store, dataDir: string, hasReplicas: () => Promise<boolean>): Promise<StoreIdentity> {
  const file = storeIdFile(dataDir);
  const remembered = (await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  })).trim() || null;
  const current = await store.getStoreId();
  if (remembered === TAKE_STORE) {
    // The operator takes the store as it is: its first pass removes what it does not name.
    const id = current ?? (await store.initStoreId());
    await writeFile(file, id + '\n');
    return { id, problem: null };
  }
  if (remembered !== null && current !== remembered) {
    return {
      id: null,
      problem: current === null
        ? `the store has no id, but this controller last ran on store ${remembered} (${file}): it was emptied or replaced`
        : `the store's id is ${current}, but this controller last ran on store ${remembered} (${file}): it is another store`,
    };
  }
  if (current === null && remembered === null && (await store.listAllDeployments()).length === 0 && (await hasReplicas())) {
    return { id: null, problem: 'the store is new and empty, but replicas are running: the store they came from was lost' };
  }
  const id = current ?? (await store.initStoreId());
  if (remembered === null) await writeFile(file, id + '\n');
  return { id, problem: null };
}
