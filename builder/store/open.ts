/**
 * Chooses the store the configuration asks for: Redis when `PORTICO_REDIS_URL` is set, else the
 * embedded store under `$PORTICO_DATA_DIR/store`.
 */
import { join } from 'node:path';
import { EmbeddedStore } from './embedded.ts';
import { RedisStore } from './redis.ts';
import type { Store, StoreOptions } from './store.ts';

/** Where the embedded store keeps its files inside the data directory. */
export function embeddedStoreDir(dataDir: string): string {
  return join(dataDir, 'store');
}

/**
 * Opens the configured store: `RedisStore` on `redisUrl`, or `EmbeddedStore` in
 * `embeddedStoreDir(dataDir)` (which throws `StoreLockedError` while another process holds it).
 */
export async function openStore(
  config: { readonly redisUrl: string | undefined; readonly dataDir: string },
  options: StoreOptions = {},
): Promise<Store> {
  if (config.redisUrl !== undefined) return new RedisStore({ ...options, url: config.redisUrl });
  return EmbeddedStore.open({ ...options, dir: embeddedStoreDir(config.dataDir) });
}
