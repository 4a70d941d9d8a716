import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Dockerode from 'dockerode';
import { processAlive, waitFor } from './poll.ts';

/** A private Docker engine started for one test file. */
export interface Dockerd {
  /** Its unix socket (what `PORTICO_DOCKER_SOCKET` would name). */
  readonly socket: string;
  readonly docker: Dockerode;
  /** Temporary directory holding its data and exec roots, socket and log. */
  readonly dir: string;
  /** The engine's own log (`dockerd` stdout + stderr). */
  log(): string;
  /** Removes every container and network, stops the engine, unmounts what it mounted, deletes `dir`. Idempotent. */
  stop(): Promise<void>;
}

function alive(pid: number | undefined): boolean {
  return pid !== undefined && processAlive(pid);
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const point = mp.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === dir || point.startsWith(`${dir}/`)) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Starts Debian's `dockerd` on a private unix socket with its own data and exec roots under a
 * temporary directory (no iptables, no bridge: containers use host networking), and waits until
 * `/_ping` answers. Register `stop()` with `t.teardown`: it removes every container and network, stops the
 * engine (SIGTERM, SIGKILL after 20 s, its containerd too), unmounts what the engine left
 * mounted (`exec/netns/default`) and deletes the directory. Throws with the engine's log when
 * it does not come up.
 */
export async function startDockerd(): Promise<Dockerd> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-dockerd-'));
  const socket = join(dir, 'docker.sock');
  const logFile = join(dir, 'dockerd.log');
  const logFd = openSync(logFile, 'a');
  const child = spawn(
    'dockerd',
    [
      '--iptables=false', '--ip6tables=false', '--bridge=none', '--storage-driver=overlay2',
      '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '-p', join(dir, 'dockerd.pid'),
      '-H', `unix://${socket}`,
    ],
    // dockerd finds containerd and runc on PATH: make sure the sbin folders are on it.
    { stdio: ['ignore', logFd, logFd], env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin:/usr/bin:/bin` } },
  );
  closeSync(logFd);
  let spawnError: Error | undefined;
  child.on('error', (err) => {
    spawnError = err;
  });
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const docker = new Dockerode({ socketPath: socket });
  let stopped = false;
  // Last resort when the test process ends without its teardown (killed by a timeout): the
  // engine must not outlive it. SIGTERM makes dockerd stop its containers itself.
  const onExit = () => {
    if (!stopped && child.exitCode === null) child.kill('SIGTERM');
  };
  process.once('exit', onExit);
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', onExit);
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      try {
        const containers = await docker.listContainers({ all: true });
        await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {})));
        // A test's own networks leave bridge interfaces on the host unless removed.
        for (const n of await docker.listNetworks()) {
          if (!['host', 'none', 'bridge'].includes(n.Name)) await docker.getNetwork(n.Id).remove().catch(() => {});
        }
      } catch {
        // the engine is not answering: it is stopped all the same
      }
      const containerdPid = (() => {
        try {
          return Number(readFileSync(join(dir, 'exec', 'containerd', 'containerd.pid'), 'utf8').trim()) || undefined;
        } catch {
          return undefined;
        }
      })();
      child.kill('SIGTERM');
      if (!(await waitExit(child, 20_000))) {
        child.kill('SIGKILL');
        await waitExit(child, 5000);
      }
      // dockerd stops its containerd; after a SIGKILL it could not.
      if (containerdPid !== undefined && alive(containerdPid)) {
        process.kill(containerdPid, 'SIGKILL');
        await waitFor(() => !alive(containerdPid), { timeoutMs: 5000, what: 'containerd to exit' }).catch(() => {});
      }
    }
    for (const point of mountsUnder(dir)) spawnSync('umount', ['-l', point], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (spawnError) throw new Error(`cannot start dockerd (is docker.io installed?): ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`dockerd exited (${child.exitCode ?? child.signalCode})`);
      const ok = await docker.ping().then((r) => String(r) === 'OK', () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`dockerd on ${socket} did not answer /_ping within 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    const tail = log().split('\n').slice(-20).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n--- dockerd log ---\n${tail}`, { cause: err });
  }
  return { socket, docker, dir, log, stop };
}

/** A minimal Docker registry (HTTP API v2) in memory: what a test engine pushes to and pulls from. */
export interface FakeRegistry {
  /** `127.0.0.1:<port>`: engines treat loopback registries as insecure (plain HTTP) by default. */
  readonly host: string;
  /** Manifests pushed, by `name:tag` (and by `name@digest`). */
  readonly manifests: Map<string, { readonly type: string; readonly body: Buffer; readonly digest: string }>;
  readonly blobs: Map<string, Buffer>;
  /** Every request, as `METHOD path`. */
  readonly requests: string[];
  /** The `Authorization` header of every request (`''` when none), in order. */
  readonly authorizations: string[];
  close(): Promise<void>;
}

/**
 * Starts a registry speaking enough of the distribution API v2 for `docker push` and
 * `docker pull` (monolithic and chunked blob uploads, manifests by tag or digest), no auth.
 */
export async function startFakeRegistry(opts: { readonly auth?: { readonly username: string; readonly password: string } } = {}): Promise<FakeRegistry> {
  const { createServer } = await import('node:http');
  const { createHash, randomUUID } = await import('node:crypto');
  const manifests = new Map<string, { type: string; body: Buffer; digest: string }>();
  const blobs = new Map<string, Buffer>();
  const uploads = new Map<string, Buffer[]>();
  const requests: string[] = [];
  const authorizations: string[] = [];
  const expected = opts.auth ? `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}` : undefined;
  const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://x');
      const path = url.pathname;
      requests.push(`${req.method} ${path}`);
      authorizations.push(req.headers.authorization ?? '');
      res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
      const send = (status: number, headers: Record<string, string | number> = {}, data?: Buffer | string) => {
        res.writeHead(status, { 'content-length': data ? Buffer.byteLength(data) : 0, ...headers });
        res.end(req.method === 'HEAD' ? undefined : data);
      };
      // With credentials configured, every request needs them (the engine answers the challenge).
      if (expected !== undefined && req.headers.authorization !== expected) {
        return send(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="fake-registry"' }, '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      }
      if (path === '/v2/' || path === '/v2') return send(200, { 'content-type': 'application/json' }, '{}');
      let m = /^\/v2\/(.+)\/blobs\/uploads\/?$/.exec(path);
      if (m && req.method === 'POST') {
        const id = randomUUID();
        uploads.set(id, body.length > 0 ? [body] : []);
        const digest = url.searchParams.get('digest');
        if (digest) {
          blobs.set(digest, body);
          return send(201, { location: `/v2/${m[1]}/blobs/${digest}`, 'docker-content-digest': digest });
        }
        return send(202, { location: `/v2/${m[1]}/blobs/uploads/${id}`, 'docker-upload-uuid': id, range: '0-0' });
      }
      m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/.exec(path);
      if (m) {
        const parts = uploads.get(m[2]!);
        if (!parts) return send(404);
        parts.push(body);
        const size = parts.reduce((n, p) => n + p.length, 0);
        if (req.method === 'PATCH') return send(202, { location: `/v2/${m[1]}/blobs/uploads/${m[2]}`, range: `0-${Math.max(0, size - 1)}`, 'docker-upload-uuid': m[2]! });
        if (req.method === 'PUT') {
          const data = Buffer.concat(parts);
          const digest = url.searchParams.get('digest') ?? digestOf(data);
          if (digestOf(data) !== digest) return send(400, {}, 'digest mismatch');
          blobs.set(digest, data);
          uploads.delete(m[2]!);
          return send(201, { location: `/v2/${m[1]}/blobs/${digest}`, 'docker-content-digest': digest });
        }
      }
      m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path);
      if (m) {
        const blob = blobs.get(m[2]!);
        if (!blob) return send(404);
        return send(200, { 'content-type': 'application/octet-stream', 'docker-content-digest': m[2]! }, blob);
      }
      m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
      if (m) {
        const ref = m[2]!.startsWith('sha256:') ? `${m[1]}@${m[2]}` : `${m[1]}:${m[2]}`;
        if (req.method === 'PUT') {
          const digest = digestOf(body);
          const entry = { type: String(req.headers['content-type'] ?? ''), body, digest };
          manifests.set(ref, entry);
          manifests.set(`${m[1]}@${digest}`, entry);
          return send(201, { location: `/v2/${m[1]}/manifests/${digest}`, 'docker-content-digest': digest });
        }
        const entry = manifests.get(ref);
        if (!entry) return send(404, { 'content-type': 'application/json' }, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
        return send(200, { 'content-type': entry.type, 'docker-content-digest': entry.digest }, entry.body);
      }
      send(404);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    manifests,
    blobs,
    requests,
    authorizations,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
