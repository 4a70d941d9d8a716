/**
 * The embedded store's on-disk formats: journal records and the snapshot file, and the fsync
 * helpers that make them durable.
 *
 * A journal record is `[length u32 BE][crc32 of payload u32 BE][payload]`, the payload being
 * the JSON of `{lsn, ops}`. A crash can leave a torn or garbled last record; `scanJournal`
 * stops at the first record that is incomplete or fails its checksum, and the store truncates
 * the file there.
 */
import { open, rename, unlink } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { Op } from './state.ts';

/** One journal record: the ops of one store operation, applied together. */
export interface JournalRecord {
  lsn: number;
  ops: Op[];
}

const HEADER = 8;
/** No record is this large; a length field above it means garbage. */
const MAX_RECORD = 256 * 1024 * 1024;

/** The bytes of one record. */
export function encodeRecord(record: JournalRecord): Buffer {
  const payload = Buffer.from(JSON.stringify(record), 'utf8');
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(crc32(payload), 4);
  payload.copy(out, HEADER);
  return out;
}

/** The records of a journal file up to the first bad one, and where the good part ends. */
export function scanJournal(buf: Buffer): { records: JournalRecord[]; validBytes: number } {
  const records: JournalRecord[] = [];
  let off = 0;
  while (off + HEADER <= buf.length) {
    const len = buf.readUInt32BE(off);
    if (len === 0 || len > MAX_RECORD || off + HEADER + len > buf.length) break;
    const payload = buf.subarray(off + HEADER, off + HEADER + len);
    if (crc32(payload) !== buf.readUInt32BE(off + 4)) break;
    let record: JournalRecord;
    try {
      record = JSON.parse(payload.toString('utf8')) as JournalRecord;
    } catch {
      break;
    }
    if (!Number.isSafeInteger(record.lsn) || !Array.isArray(record.ops)) break;
    records.push(record);
    off += HEADER + len;
  }
  return { records, validBytes: off };
}

/** fsync of a directory, so that entries created, renamed or removed in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `path` with `data` so that a crash leaves either the old or the new file, never a
 * mix: write `path.tmp`, fsync it, rename it over `path`, fsync the directory. `hook` is
 * called between the steps (tests crash there on purpose).
 */
export async function writeFileAtomic(
  dir: string,
  path: string,
  data: Buffer,
  hook: (phase: 'written' | 'renamed') => void = () => {},
): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    let off = 0;
    while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  hook('written');
  await rename(tmp, path);
  await fsyncDir(dir);
  hook('renamed');
}
