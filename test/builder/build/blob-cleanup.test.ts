// The blob cleaner on its own (the controller tests use it through versions and uploads).
import t from 'tap';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { BlobCleaner } from '../../../builder/build/blob-cleanup.ts';
import { BlobStore } from '../../../builder/build/blobs.ts';
import { EmbeddedStore } from '../../../builder/store/embedded.ts';

t.test('after close, a clean asked for resolves at once and removes nothing (a delete answering while the controller stops)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'portico-blob-cleanup-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const blobs = new BlobStore(dir);
  const orphan = await blobs.put(Readable.from(['no record names it']));
  const cleaner = new BlobCleaner({ store: EmbeddedStore.memory(), blobs, graceMs: 1000, now: Date.now, storeIsOurs: async () => true, log: () => undefined });
  await cleaner.close();
  const answered = await Promise.race([cleaner.clean().then(() => 'resolved'), new Promise((resolve) => setTimeout(resolve, 2000, 'pending'))]);
  t.equal(answered, 'resolved');
  t.ok(await stat(orphan.path), 'nothing removed');
});
