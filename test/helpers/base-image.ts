import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { c as tarCreate, Header, type HeaderData } from 'tar';
import { followProgress } from '../../builder/runtime/docker/progress.ts';

/**
 * Base images for tests, assembled from this machine's files and `docker import`ed (no registry
 * is reachable here): busybox (Debian's busybox-static) and Node 24 (the `node` devDependency's
 * binary plus the libraries `ldd` lists, optionally with npm).
 */

/** The Node 24 binary of the `node` devDependency. */
export const NODE_BINARY = resolve(import.meta.dirname, '../../node_modules/node/bin/node');
/** Where Debian keeps the machine's CA certificates (those `update-ca-certificates` added included). */
export const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
/** Debian's static tini (package `tini`, which docker.io depends on: it is the engine's docker-init). */
export const TINI = '/usr/bin/tini-static';
/** Debian's busybox-static. */
export const BUSYBOX = '/bin/busybox';

/** One entry of a root filesystem. */
export type RootfsEntry =
  | { readonly type: 'file'; readonly path: string; readonly source: string; readonly mode?: number }
  | { readonly type: 'data'; readonly path: string; readonly data: string | Buffer; readonly mode?: number }
  | { readonly type: 'dir'; readonly path: string; readonly mode?: number; readonly uid?: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string };

function header(h: HeaderData): Buffer {
  const block = Buffer.alloc(512);
  const hd = new Header({ uid: 0, gid: 0, mtime: new Date(0), ...h });
  if (hd.encode(block, 0)) throw new Error(`tar: ${h.path} needs a pax header`);
  return block;
}

const pad = (size: number) => Buffer.alloc((512 - (size % 512)) % 512);

/**
 * A tar stream of `entries` (paths relative to `/`, parents created by the engine), followed by
 * host directories copied whole (`trees`: host dir -> path in the image).
 */
export function rootfsTar(entries: readonly RootfsEntry[], trees: readonly { readonly from: string; readonly to: string }[] = []): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (const e of entries) {
      const path = e.path.replace(/^\/+/, '');
      if (e.type === 'dir') {
        yield header({ path: `${path}/`, mode: e.mode ?? 0o755, size: 0, type: 'Directory', uid: e.uid ?? 0, gid: e.uid ?? 0 });
      } else if (e.type === 'symlink') {
        yield header({ path, mode: 0o777, size: 0, type: 'SymbolicLink', linkpath: e.target });
      } else if (e.type === 'data') {
        const data = Buffer.from(e.data);
        yield header({ path, mode: e.mode ?? 0o644, size: data.length, type: 'File' });
        yield data;
        yield pad(data.length);
      } else {
        const size = statSync(e.source).size;
        yield header({ path, mode: e.mode ?? (statSync(e.source).mode & 0o7777), size, type: 'File' });
        for await (const chunk of createReadStream(e.source)) yield chunk as Buffer;
        yield pad(size);
      }
    }
    if (trees.length === 0) {
      yield Buffer.alloc(1024);
      return;
    }
    // Each tree is a tar of its own; only the last may keep its end-of-archive blocks.
    for (const [i, t] of trees.entries()) {
      const chunks: Buffer[] = [];
      for await (const c of tarCreate({ cwd: dirname(t.from), prefix: dirname(t.to.replace(/^\/+/, '')), portable: true }, [t.from.split('/').pop()!]) as AsyncIterable<Buffer>) {
        chunks.push(c);
      }
      let all = Buffer.concat(chunks);
      if (i < trees.length - 1) all = all.subarray(0, all.length - 1024);
      yield all;
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

/** `docker import`s a root filesystem as `ref` (`repo:tag`); resolves with the image id. */
export async function importRootfs(
  docker: Dockerode,
  ref: string,
  entries: readonly RootfsEntry[],
  trees: readonly { readonly from: string; readonly to: string }[] = [],
): Promise<string> {
  const i = ref.lastIndexOf(':');
  const repo = i > ref.lastIndexOf('/') ? ref.slice(0, i) : ref;
  const tag = i > ref.lastIndexOf('/') ? ref.slice(i + 1) : 'latest';
  const stream = await docker.importImage(rootfsTar(entries, trees), { repo, tag });
  await followProgress(stream, () => {});
  return (await docker.getImage(ref).inspect()).Id;
}

/** busybox with every applet linked in /bin (and /usr/bin/env), /tmp, users root and node (1000, as in Node's images). */
export function busyboxEntries(): RootfsEntry[] {
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  return [
    { type: 'file', path: 'bin/busybox', source: BUSYBOX, mode: 0o755 },
    ...applets.map((a): RootfsEntry => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    { type: 'symlink', path: 'usr/bin/env', target: '/bin/busybox' },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'data', path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' },
    { type: 'data', path: 'etc/group', data: 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'home/node', mode: 0o755, uid: 1000 },
  ];
}

/** The shared libraries a binary loads, as `ldd` lists them (absolute host paths). */
export function lddLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.add(m[1]);
  }
  return [...libs];
}

/** Imports busybox as `ref` (default `portico-test/busybox:1`); resolves with the image id. */
export function importBusybox(docker: Dockerode, ref = 'portico-test/busybox:1'): Promise<string> {
  return importRootfs(docker, ref, busyboxEntries());
}

/** Where npm lives on this machine (the package folder of the `npm` on PATH). */
export function hostNpmDir(): string {
  const cli = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
  return resolve(dirname(cli), '..');
}

/**
 * Imports a Node 24 image as `ref` (default `portico-test/node:24`): busybox (a shell for
 * `server-command` strings), `/usr/local/bin/node` and the libraries it loads at their host
 * paths; with `npm`, this machine's npm in `/usr/local/lib/node_modules/npm` (`npm`, `npx` on
 * PATH) and this machine's CA bundle as npm's `cafile`; with `tini`, Debian's static tini as
 * `/usr/bin/tini`. Resolves with the image id.
 */
export function importNode(docker: Dockerode, ref = 'portico-test/node:24', opts: { npm?: boolean; tini?: boolean } = {}): Promise<string> {
  const entries: RootfsEntry[] = [
    ...busyboxEntries(),
    { type: 'file', path: 'usr/local/bin/node', source: NODE_BINARY, mode: 0o755 },
    ...lddLibraries(NODE_BINARY).map((lib): RootfsEntry => ({ type: 'file', path: lib, source: realpathSync(lib), mode: 0o755 })),
  ];
  const trees: { from: string; to: string }[] = [];
  if (opts.tini) entries.push({ type: 'file', path: 'usr/bin/tini', source: TINI, mode: 0o755 });
  if (opts.npm) {
    trees.push({ from: hostNpmDir(), to: '/usr/local/lib/node_modules/npm' });
    entries.push(
      { type: 'symlink', path: 'usr/local/bin/npm', target: '../lib/node_modules/npm/bin/npm-cli.js' },
      { type: 'symlink', path: 'usr/local/bin/npx', target: '../lib/node_modules/npm/bin/npx-cli.js' },
    );
    // This machine's CA bundle, and npm told to use it: where the way out to the registry passes
    // a TLS-inspecting proxy, its CA is in there (as it is for the host's own npm).
    if (existsSync(HOST_CA_BUNDLE)) {
      entries.push(
        { type: 'file', path: HOST_CA_BUNDLE, source: realpathSync(HOST_CA_BUNDLE), mode: 0o644 },
        { type: 'data', path: 'usr/local/etc/npmrc', data: `cafile=${HOST_CA_BUNDLE}\n` },
      );
    }
  }
  return importRootfs(docker, ref, entries, trees);
}
