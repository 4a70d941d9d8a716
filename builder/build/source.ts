import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { cp, lstat, mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { x as untar } from 'tar';
import type { FileSourceInput, SourceInput } from '../control-plane.ts';
import type { Blob, BlobStore } from './blobs.ts';

/** A build step failed for a reason the user can act on; the message goes to the build log. */
export class BuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BuildError';
  }
}

/** Writes one line to the version's build log. */
export type BuildLog = (line: string) => void;

/** Folders never copied from a `path` source: VCS data and local environments. */
const SKIP = new Set(['.git', '.hg', '.svn', '.venv', '.portico', '__pycache__']);

/** Where uploads (archives, files) are found, by id. */
export interface UploadResolver {
  (id: string): Promise<Blob | null>;
}

/** Runs a command, logging its output; rejects with its last lines on a non-zero exit. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; log: BuildLog; timeoutMs: number; env?: NodeJS.ProcessEnv; label?: string; signal?: AbortSignal },
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.signal && { signal: opts.signal, killSignal: 'SIGKILL' as const }),
    });
    let out = '';
    const tail: string[] = [];
    const onData = (d: Buffer) => {
      const text = d.toString();
      out += text;
      for (const line of text.split('\n')) {
        if (line.trim() === '') continue;
        opts.log(line);
        tail.push(line);
        if (tail.length > 10) tail.shift();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      if (opts.signal?.aborted) return;
      reject(new BuildError(`${cmd} could not be run: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolvePromise(out);
      const why = signal ? `was killed (${signal}${signal === 'SIGKILL' ? ', timed out?' : ''})` : `exited with ${code}`;
      reject(new BuildError(`${opts.label ?? `${cmd} ${args[0] ?? ''}`} ${why}${tail.length ? `: ${tail.join(' | ')}` : ''}`));
    });
  });
}

async function copyDirectory(from: string, to: string, log: BuildLog): Promise<void> {
  if (!isAbsolute(from)) throw new BuildError(`source.path must be an absolute path, got ${JSON.stringify(from)}`);
  let s;
  try {
    s = await stat(from);
  } catch {
    throw new BuildError(`source.path ${from} does not exist on the controller's machine`);
  }
  if (!s.isDirectory()) throw new BuildError(`source.path ${from} is not a directory`);
  log(`copying ${from}`);
  await cp(from, to, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => {
      const rel = relative(from, src);
      return rel === '' || !rel.split(sep).some((part) => SKIP.has(part));
    },
  });
}

/**
 * A repository URL as it may be shown: credentials in it (`https://user:TOKEN@host/...`, or a
 * token as the user of an http(s) URL) read `********`.
 */
export function redactUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^@/]*)@/, (all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    if (colon !== -1) return `${scheme}${userinfo.slice(0, colon)}:********@`;
    return /^https?:/i.test(scheme) ? `${scheme}********@` : all;
  });
}

/** A version's source as it may be shown (API answers, audit log): a git URL without its credentials. */
export function redactSource(source: SourceInput): SourceInput {
  return 'git' in source ? { git: { ...source.git, url: redactUrl(source.git.url) } } : source;
}

async function gitCheckout(url: string, ref: string | undefined, to: string, opts: { log: BuildLog; timeoutMs: number; signal?: AbortSignal }): Promise<void> {
  if (url.startsWith('-') || /\s/.test(url)) throw new BuildError(`source.git.url is not a repository URL: ${JSON.stringify(url)}`);
  if (ref !== undefined && (ref.startsWith('-') || /\s/.test(ref))) throw new BuildError(`source.git.ref is not valid: ${JSON.stringify(ref)}`);
  const env = { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' };
  const { log } = opts;
  log(`git clone ${redactUrl(url)}${ref ? ` (ref ${ref})` : ''}`);
  await run('git', ['clone', '--quiet', '--no-checkout', '--', url, to], { ...opts, env, label: 'git clone' });
  await run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', ref ?? 'HEAD', '--'], { ...opts, cwd: to, env, label: 'git checkout' });
  const commit = (await run('git', ['rev-parse', 'HEAD'], { ...opts, cwd: to, log: () => {}, env })).trim();
  log(`checked out commit ${commit}`);
}

async function extractArchive(blob: Blob, to: string, log: BuildLog): Promise<void> {
  const fh = await open(blob.path, 'r');
  const head = Buffer.alloc(262);
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const tar = head.subarray(257, 262).toString('latin1') === 'ustar';
  if (!gzip && !tar) {
    const zip = head[0] === 0x50 && head[1] === 0x4b;
    throw new BuildError(zip ? 'uploaded archive is a zip file: send a .tar or .tar.gz archive' : 'uploaded source is not a .tar or .tar.gz archive');
  }
  log(`extracting uploaded archive (${blob.size} bytes, sha256 ${blob.sha256})`);
  await mkdir(to, { recursive: true });
  try {
    // tar refuses absolute paths and `..` entries by default (strict turns its warnings into errors).
    await untar({ file: blob.path, cwd: to, strict: true, preserveOwner: false });
  } catch (err) {
    throw new BuildError(`uploaded archive cannot be extracted: ${(err as Error).message}`, { cause: err });
  }
  // An archive holding one top-level folder (e.g. `tar czf app.tgz app/`) is unwrapped.
  const entries = await readdir(to);
  if (entries.length === 1 && !entries.includes('valohai.yaml')) {
    const only = join(to, entries[0] as string);
    if ((await stat(only)).isDirectory()) {
      const inner = `${to}.inner`;
      await cp(only, inner, { recursive: true, verbatimSymlinks: true });
      await rm(to, { recursive: true, force: true });
      await rename(inner, to);
    }
  }
}

/** Puts the version's code into `to` (which must not exist yet) from any kind of source. */
export async function materializeSource(
  source: SourceInput,
  to: string,
  opts: { log: BuildLog; uploads: UploadResolver; timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  if ('path' in source) return copyDirectory(source.path, to, opts.log);
  if ('git' in source) return gitCheckout(source.git.url, source.git.ref, to, opts);
  const blob = await opts.uploads(source.upload);
  if (!blob) throw new BuildError(`source.upload ${JSON.stringify(source.upload)}: no such upload`);
  return extractArchive(blob, to, opts.log);
}

/**
 * Resolves a declared file's `path` inside the code directory, refusing absolute paths and any
 * path that leaves the directory.
 */
export function filePathInCode(codeDir: string, declared: string): string {
  const full = resolve(codeDir, declared);
  const rel = relative(codeDir, full);
  if (isAbsolute(declared) || rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw new BuildError(`file path ${JSON.stringify(declared)} must stay inside the code directory`);
  }
  return full;
}

/**
 * The folder on the way to `dest` (from `filePathInCode`) that is a symlink leading out of the
 * code directory, relative to it; `null` when writing `dest` stays inside. A repository or an
 * archive may hold such symlinks: a file placed through one would land anywhere, even in
 * another version.
 */
export async function symlinkOutOfCode(codeDir: string, dest: string): Promise<string | null> {
  const root = await realpath(codeDir);
  // The deepest folder on the way that exists: the build creates the rest inside it.
  for (let dir = dirname(dest); ; dir = dirname(dir)) {
    let real;
    try {
      real = await realpath(dir);
    } catch {
      continue;
    }
    const rel = relative(root, real);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return null;
    // The symlink is the first folder on the way whose own path leads out.
    for (let at = dir; ; at = dirname(at)) {
      const parent = relative(root, await realpath(dirname(at)));
      if (parent === '' || (!parent.startsWith('..') && !isAbsolute(parent))) return relative(codeDir, at);
    }
  }
}

/** Why a file of the code that Portico itself reads (valohai.yaml, requirements) is refused: after its name. */
export const LEADS_OUT = 'in the code is a symlink that leads out of it; it is not read from there';

/**
 * Whether reading `path` (from `filePathInCode`) would leave the code directory through a
 * symlink (the file itself, or a folder on the way): a file declared without a source is read
 * from the code, and a link to `/var/run/secrets/...` or the controller's data would copy the
 * controller host's file into the version (and its image).
 */
export async function readsOutOfCode(codeDir: string, path: string): Promise<boolean> {
  const rel = relative(await realpath(codeDir), await realpath(path));
  return rel.startsWith('..') || isAbsolute(rel);
}

/**
 * What in the code stands where a file must be placed at `dest` (from `filePathInCode`), as
 * the end of a build error: a folder at its path, or a file where one of its folders must be;
 * `null` when nothing does (a file there is replaced).
 */
export async function inTheWayOf(codeDir: string, dest: string): Promise<string | null> {
  const parts = relative(codeDir, dest).split(sep);
  for (let i = 1; i <= parts.length; i++) {
    const at = join(codeDir, ...parts.slice(0, i));
    const last = i === parts.length;
    // The file itself is not followed: a symlink there is replaced, not written through.
    const s = await (last ? lstat(at) : stat(at)).catch(() => null);
    if (s === null) return null;
    if (last) return s.isDirectory() ? 'a folder of the code is at that path' : null;
    if (!s.isDirectory()) return `${parts.slice(0, i).join('/')} in the code is a file, not a folder`;
  }
  return null;
}

/** Fetches one file source into the blob store. */
export async function fetchFile(
  source: FileSourceInput,
  opts: { blobs: BlobStore; uploads: UploadResolver; log: BuildLog; maxBytes: number; timeoutMs: number; signal?: AbortSignal },
): Promise<Blob> {
  if ('upload' in source) {
    const blob = await opts.uploads(source.upload);
    if (!blob) throw new BuildError(`upload ${JSON.stringify(source.upload)}: no such upload`);
    return blob;
  }
  if ('path' in source) {
    if (!isAbsolute(source.path)) throw new BuildError(`file path ${JSON.stringify(source.path)} must be absolute`);
    try {
      const s = await stat(source.path);
      if (!s.isFile()) throw new BuildError(`${source.path} is not a file`);
    } catch (err) {
      if (err instanceof BuildError) throw err;
      throw new BuildError(`${source.path} does not exist on the controller's machine`);
    }
    return opts.blobs.put(createReadStream(source.path), opts.maxBytes);
  }
  let url: URL;
  try {
    url = new URL(source.url);
  } catch {
    throw new BuildError(`file url ${JSON.stringify(source.url)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BuildError(`file url ${source.url}: only http and https`);
  opts.log(`downloading ${url.origin}${url.pathname}`);
  let res: Response;
  try {
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    res = await fetch(url, { signal: opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout, redirect: 'follow' });
  } catch (err) {
    throw new BuildError(`downloading ${url.origin}${url.pathname} failed: ${(err as Error).message}`, { cause: err });
  }
  if (!res.ok || !res.body) throw new BuildError(`downloading ${url.origin}${url.pathname} failed: HTTP ${res.status}`);
  try {
    return await opts.blobs.put(Readable.fromWeb(res.body as WebReadableStream), opts.maxBytes);
  } catch (err) {
    throw new BuildError(`downloading ${url.origin}${url.pathname} failed: ${(err as Error).message}`, { cause: err });
  }
}
