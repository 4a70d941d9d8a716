/**
 * Shared set-up of the admin API and CLI tests: a real admin server on port 0 backed by the
 * in-memory fake control plane, a small HTTP helper and a CLI runner.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Test } from 'tap';
import { startAdminServer, type AdminHandlerOptions } from '../../admin/api/server.ts';
import type { Logger } from '../../common/log.ts';
import { FakeControlPlane, type FakeControlPlaneOptions } from '../helpers/fake-control-plane.ts';

/** The token of the fake's default `admin` token. */
export const TOKEN = 'test-token';
/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');

/** An answer, body parsed as JSON when it is JSON. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** Options of one test request. */
export interface Call {
  body?: unknown;
  /** Sent as is (no Content-Type unless given in headers). */
  raw?: string | Buffer | ReadableStream<Uint8Array>;
  headers?: Record<string, string>;
  /** `null`: no Authorization header. */
  token?: string | null;
}

/** A started admin API over a fresh fake. */
export interface Api {
  fake: FakeControlPlane;
  url: string;
  /** Every `error` the server logged. */
  errors: { msg: string; extra: Record<string, unknown> | undefined }[];
  call(method: string, path: string, opts?: Call): Promise<Answer>;
  /** Stops the server and closes every connection (also done on teardown). */
  close(): Promise<void>;
}

/** Starts an admin server over a new `FakeControlPlane`; closed on teardown. */
export async function startApi(
  t: Test,
  opts: { fake?: FakeControlPlaneOptions; server?: Partial<AdminHandlerOptions>; host?: string } = {},
): Promise<Api> {
  const fake = new FakeControlPlane({ buildStepMs: 1, ...opts.fake });
  const errors: Api['errors'] = [];
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg, extra) => errors.push({ msg, extra }),
  };
  const server = await startAdminServer({ control: fake, host: opts.host ?? '127.0.0.1', port: 0, logger, ...opts.server });
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= server.close());
  t.teardown(async () => {
    await close();
    await fake.settled();
  });
  const call = async (method: string, path: string, c: Call = {}): Promise<Answer> => {
    const headers: Record<string, string> = { ...c.headers };
    if (c.token !== null) headers.authorization ??= `Bearer ${c.token ?? TOKEN}`;
    let body: RequestInit['body'];
    if (c.raw !== undefined) body = c.raw as RequestInit['body'];
    else if (c.body !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(c.body);
    }
    const res = await fetch(`${server.url}${path}`, { method, headers, body, ...(c.raw instanceof ReadableStream ? { duplex: 'half' } : {}) } as RequestInit);
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  };
  return { fake, url: server.url, errors, call, close };
}

/** `/api/v1/projects/acme/mnist` + rest. */
export const P = '/api/v1/projects/acme/mnist';
/** `/api/v1/projects/acme/mnist/deployments/web` + rest. */
export const D = `${P}/deployments/web`;
/** The fake's ref of deployment web. */
export const REF = { owner: 'acme', project: 'mnist', deployment: 'web' } as const;

/** A temporary folder removed on teardown. */
export async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portico-admin-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The result of a CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node bin/portico.ts ...args` (Node 24 from node_modules) with only the given PORTICO_
 * variables in its environment.
 */
export function runCli(
  args: readonly string[],
  opts: { env?: Record<string, string>; stdin?: string; cwd?: string; onStdout?: (chunk: string, child: import('node:child_process').ChildProcess) => void } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'bin/portico.ts'), ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      opts.onStdout?.(stdout, child);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

/** The environment the CLI gets to reach `api`. */
export function cliEnv(api: Api, extra: Record<string, string> = {}): Record<string, string> {
  return { PORTICO_URL: api.url, PORTICO_ADMIN_TOKEN: TOKEN, PORTICO_DATA_DIR: '/nonexistent-portico-test', ...extra };
}

/** A folder with a valohai.yaml declaring `predict` (with file `model`) and `greet`. */
export async function appFolder(t: Test, yaml = VALOHAI_YAML): Promise<string> {
  const dir = await tempDir(t);
  const { writeFile, mkdir } = await import('node:fs/promises');
  await writeFile(join(dir, 'valohai.yaml'), yaml);
  await writeFile(join(dir, 'app.py'), 'print("hello")\n');
  await mkdir(join(dir, '.git'));
  await writeFile(join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  return dir;
}

/** The valohai.yaml `appFolder` writes: a step (ignored) and endpoints `predict` and `greet`. */
export const VALOHAI_YAML = `- step:
    name: train
    image: python:3.12
    command: python train.py
- endpoint:
    name: predict
    image: python:3.12
    server-command: python app.py
    files:
      - name: model
        path: model.h5
- endpoint:
    name: greet
    image: python:3.12
    wsgi: greet:app
`;

/** Creates deployment `web` in acme/mnist through the API. */
export async function createDeployment(api: Api, body: Record<string, unknown> = { name: 'web' }): Promise<Answer> {
  const res = await api.call('POST', `${P}/deployments`, { body });
  if (res.status !== 201) throw new Error(`create deployment: ${res.status} ${res.text}`);
  return res;
}

/** Creates a version from a git source (endpoints named by `endpoints`) and polls until it is `ready`. */
export async function readyVersion(api: Api, body: Record<string, unknown> = {}): Promise<any> {
  const res = await api.call('POST', `${D}/versions`, {
    body: { source: { git: { url: 'https://example.com/acme/mnist.git' } }, endpoints: { predict: { replicas: 2 } }, ...body },
  });
  if (res.status !== 202) throw new Error(`create version: ${res.status} ${res.text}`);
  const { waitFor } = await import('../helpers/poll.ts');
  return waitFor(async () => {
    const v = await api.call('GET', `${D}/versions/${res.json.name}`);
    return v.json.status === 'ready' ? v.json : undefined;
  }, { what: `version ${res.json.name} ready` });
}
