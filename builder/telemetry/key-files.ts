/**
 * How an endpoint or build key (`owner/project/deployment/version/endpoint`) becomes a file name
 * and back. The log store and the embedded metric store name their files alike, so one length
 * check (`keyFileNameBytes`) covers both.
 */

const SUFFIX = '.ndjson';

/** What a file name may hold on the file systems Portico runs on (ext4, xfs, overlayfs: 255 bytes). */
export const MAX_FILE_NAME_BYTES = 255;

/** The file name of `key`: `/` and `.` escaped, so no key names a folder or a hidden file. */
export function keyFileName(key: string): string {
  return encodeURIComponent(key).replace(/\./g, '%2E') + SUFFIX;
}

/** The key a file name stands for; undefined for any other file. */
export function keyOfFileName(name: string): string | undefined {
  if (!name.endsWith(SUFFIX)) return undefined;
  try {
    return decodeURIComponent(name.slice(0, -SUFFIX.length));
  } catch {
    return undefined;
  }
}

/**
 * The longest file name the logs and metrics of `key` take: its encoded form, `.ndjson` and the
 * longest suffix added to it (`.tmp` of the embedded metric store's rewrite; `.1` of a rotated
 * log). Over `MAX_FILE_NAME_BYTES`, the files cannot be created and their lines are lost.
 */
export function keyFileNameBytes(key: string): number {
  return keyFileName(key).length + '.tmp'.length;
}
