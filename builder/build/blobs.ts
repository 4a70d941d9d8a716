import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, copyFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A file kept in the content-addressed blob store. */
export interface Blob {
  readonly sha256: string;
  readonly size: number;
  /** Absolute path of the stored content (never modify it). */
  readonly path: string;
}

/** Thrown when a stream is larger than the limit it was stored with. */
export class TooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`larger than the limit of ${limit} bytes`);
    this.name = 'TooLargeError';
    this.limit = limit;
  }
}

/** A stream step that hashes and counts what passes, failing with TooLargeError past `maxBytes`. */
function meter(maxBytes: number): { step: Transform; digest: () => { sha256: string; size: number } } {
  const hash = createHash('sha256');
  let size = 0;
  const step = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(new TooLargeError(maxBytes));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  return { step, digest: () => ({ sha256: hash.digest('hex'), size }) };
}

/** The sha256 and size of what `source` streams, without storing it; refuses more than `maxBytes`. */
export async function digestOf(source: Readable, maxBytes = Number.MAX_SAFE_INTEGER): Promise<{ sha256: string; size: number }> {
  const m = meter(maxBytes);
  await pipeline(source, m.step, new Writable({ write: (_chunk, _enc, cb) => cb() }));
  return m.digest();
}

/**
 * Files stored once by their sha256 under `<root>/sha256/ab/abcdef...`. Writes go to a temp file
 * that is renamed into place, so a blob path either holds the whole content or does not exist.
 */
export class BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** Where the blob with this digest lives (whether or not it exists). */
  pathOf(sha256: string): string {
    return join(this.root, 'sha256', sha256.slice(0, 2), sha256);
  }

  /** Streams `source` into the store, hashing it on the way; refuses more than `maxBytes`. */
  async put(source: Readable, maxBytes = Number.MAX_SAFE_INTEGER): Promise<Blob> {
    // An error before the pipeline below is attached (e.g. a file that cannot be opened) must
    // reject this call, not crash the process as an unhandled 'error' event.
    let early: unknown;
    const onEarly = (err: unknown) => (early = err);
    source.once('error', onEarly);
    const tmpDir = join(this.root, 'tmp');
    await mkdir(tmpDir, { recursive: true });
    const tmp = join(tmpDir, randomUUID());
    const m = meter(maxBytes);
    try {
      source.off('error', onEarly);
      if (early !== undefined) throw early;
      await pipeline(source, m.step, createWriteStream(tmp, { flags: 'wx' }));
      const { sha256, size } = m.digest();
      const path = this.pathOf(sha256);
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path);
      return { sha256, size, path };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** The blob with this digest, or null. */
  async get(sha256: string): Promise<Blob | null> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return null;
    const path = this.pathOf(sha256);
    try {
      const s = await stat(path);
      return { sha256, size: s.size, path };
    } catch {
      return null;
    }
  }

  /** The digests of the blobs stored. */
  async list(): Promise<string[]> {
    const top = join(this.root, 'sha256');
    const out: string[] = [];
    for (const dir of await readdir(top).catch(() => [])) {
      for (const name of await readdir(join(top, dir)).catch(() => [])) if (/^[0-9a-f]{64}$/.test(name)) out.push(name);
    }
    return out;
  }

  /** Removes the blob with this digest (none: nothing happens). */
  async remove(sha256: string): Promise<void> {
    if (/^[0-9a-f]{64}$/.test(sha256)) await rm(this.pathOf(sha256), { force: true });
  }

  /** Removes what writes left in the temp folder: only while no `put` runs (a crash's leftovers). */
  async clearTemp(): Promise<void> {
    await rm(join(this.root, 'tmp'), { recursive: true, force: true });
  }

  /**
   * Places a copy of the blob at `dest` (a reflink where the file system can, else a copy; never a
   * hard link, since an app writing to its file must not change the stored blob).
   */
  async placeAt(blob: Blob, dest: string): Promise<void> {
    await mkdir(dirname(dest), { recursive: true });
    await rm(dest, { force: true });
    await copyFile(blob.path, dest, constants.COPYFILE_FICLONE);
  }
}
