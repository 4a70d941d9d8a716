/**
 * From replica output to stored metrics: opens the configured `MetricStore` and turns each
 * stdout line that is a `vh_metadata` object into one row of it, with secrets masked.
 */
import { join } from 'node:path';
import { EmbeddedMetricStore } from './metric-store-embedded.ts';
import { RedisMetricStore } from './metric-store-redis.ts';
import type { MetricLimits, MetricStore } from './metric-store.ts';
import { parseMetadata, type MetricValue } from './vh-metadata.ts';

/** Where the embedded metric store keeps its files inside the data directory. */
export function embeddedMetricsDir(dataDir: string): string {
  return join(dataDir, 'metrics');
}

/**
 * The metric store the configuration asks for: in Redis (prefix `portico:metrics:`) when
 * `redisUrl` is set, else embedded under `embeddedMetricsDir(dataDir)`.
 */
export async function openMetricStore(
  config: { readonly redisUrl: string | undefined; readonly dataDir: string },
  opts: { readonly limits?: Partial<MetricLimits>; readonly prefix?: string } = {},
): Promise<MetricStore> {
  if (config.redisUrl !== undefined) {
    return new RedisMetricStore({ url: config.redisUrl, ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}), ...(opts.limits ? { limits: opts.limits } : {}) });
  }
  return EmbeddedMetricStore.open({ dir: embeddedMetricsDir(config.dataDir), ...(opts.limits ? { limits: opts.limits } : {}) });
}

/** A replica's output line as runtimes report it. */
export interface ReplicaLine {
  readonly key: string;
  readonly replica: string;
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
  readonly at: number;
}

/**
 * A sink for replica lines that records the `vh_metadata` ones (stdout only) in `store`, keyed by
 * the endpoint's runtime key, at the line's time, with key names and string values masked.
 * Other lines cost a substring search.
 */
export function metadataRecorder(store: MetricStore, mask: (text: string) => string): (line: ReplicaLine) => void {
  return (e) => {
    if (e.stream !== 'stdout') return;
    const values = parseMetadata(e.line);
    if (values === null || values.length === 0) return;
    const masked = values.map(([k, v]): [string, MetricValue] => [mask(k), typeof v === 'string' ? mask(v) : v]);
    store.add(e.key, { at: e.at, replica: e.replica, values: masked });
  };
}

/**
 * `store` with key names and string values masked when read, so a secret added to the
 * environment after a value was recorded is hidden too (they are masked when recorded as well).
 * A series is read by its name as listed (masked); a name holding a secret matches nothing.
 */
export function maskedReads(store: MetricStore, mask: (text: string) => string): MetricStore {
  return {
    add: (endpoint, row) => store.add(endpoint, row),
    keys: async (endpoint) => (await store.keys(endpoint)).map((k) => ({ ...k, name: mask(k.name) })),
    async points(endpoint, key, range) {
      if (mask(key) !== key) return null;
      let found = await store.points(endpoint, key, range);
      if (!found) {
        // Recorded before its secret was known: listed masked, read by that name.
        const stored = (await store.keys(endpoint)).find((k) => k.name !== key && mask(k.name) === key);
        if (stored) found = await store.points(endpoint, stored.name, range);
      }
      if (!found || found.kind !== 'string') return found;
      return { kind: found.kind, points: found.points.map((p) => ({ ...p, value: mask(p.value as string) })) };
    },
    remove: (prefix) => store.remove(prefix),
    flush: () => store.flush(),
    close: () => store.close(),
    get counters() {
      return store.counters;
    },
  };
}
