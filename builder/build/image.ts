import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
import { c as tarCreate, Header } from 'tar';
import {
  IMAGE_CODE_DIR,
  IMAGE_WSGI_RUNNER,
  identityLabels,
  LABEL_DEPLOYMENT,
  LABEL_MANAGED,
  LABEL_OWNER,
  LABEL_PROJECT,
  LABEL_VERSION,
} from '../runtime/docker/labels.ts';
import { EngineStreamError, followProgress, type ProgressMessage } from '../runtime/docker/progress.ts';
import { registryHost } from '../runtime/docker/registry.ts';
import { substitutePort, WSGI_RUNNER } from '../runtime/local/command.ts';
import type { RegistryAuth, ServerCommand } from '../runtime/runtime.ts';
import type { EndpointDefinition } from '../valohai-yaml/index.ts';
import { REQUIREMENT_FILES } from './python-deps.ts';
import { BuildError } from './source.ts';

/** What an endpoint image is made of: the endpoint's identity and its valohai.yaml fields. */
export interface EndpointImageSpec {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly version: string;
  readonly endpoint: string;
  /** The endpoint's `image:` in valohai.yaml: the base image. */
  readonly baseImage: string;
  readonly command: ServerCommand;
  /** The endpoint's `port:`; the image's `PORT`. */
  readonly port: number;
}

/** The image spec of an endpoint of a version, from its valohai.yaml definition. */
export function endpointImageSpec(
  version: { readonly owner: string; readonly project: string; readonly deployment: string; readonly name: string },
  def: Pick<EndpointDefinition, 'name' | 'image' | 'command' | 'port'>,
): EndpointImageSpec {
  return {
    owner: version.owner,
    project: version.project,
    deployment: version.deployment,
    version: version.name,
    endpoint: def.name,
    baseImage: def.image,
    command: def.command,
    port: def.port,
  };
}

/** Options of `buildEndpointImage`. */
export interface BuildEndpointImageOptions {
  readonly docker: Dockerode;
  readonly spec: EndpointImageSpec;
  /** The version's code directory, the endpoint's files already at their declared paths. */
  readonly codeDir: string;
  /** `PORTICO_REGISTRY`: the tag's prefix, and where the image is pushed. */
  readonly registry?: string;
  /** Receives every line of the build (and push) output. */
  readonly log: (line: string) => void;
  /** The build (and push) is aborted after this long. */
  readonly timeoutMs: number;
  /** Build arguments; each is declared (`ARG`) before the pip step, so `PIP_INDEX_URL` & co reach pip. */
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** Network of the build's RUN containers (`host` where the engine has no bridge). Default: the engine's. */
  readonly networkMode?: string;
  /** Credentials for the registry (push, and private base images). Default: none. */
  readonly registryAuth?: Pick<RegistryAuth, 'username' | 'password'>;
  /** Aborts the build (cancellation); the timeout aborts it too. */
  readonly signal?: AbortSignal;
}

/** A built endpoint image. */
export interface BuiltImage {
  /** The tag (with the registry prefix when one is configured). */
  readonly image: string;
  /** The image id (`sha256:...`). */
  readonly id: string;
  /** Whether it was pushed to the registry. */
  readonly pushed: boolean;
}

/** An image build or push failed; the message is the engine's, with the failing step. */
export class ImageBuildError extends BuildError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImageBuildError';
  }
}

const DOCKERFILE = '.portico.Dockerfile';
const CODE_PREFIX = 'code';
const RUNNER_IN_CONTEXT = 'portico/wsgi_runner.py';
/** Top-level folders of the code directory never sent to the engine. */
const SKIP_TOP = new Set(['.git', '.venv']);

const hash8 = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 8);

/**
 * One path component of a repository name: lowercase letters and digits, separated by `.`, `_`,
 * `__` or dashes. A name that had to change gets a hash of the original appended, so two names
 * that differ only in case or in replaced characters never share an image.
 */
function repoComponent(raw: string, maxLength: number): string {
  let s = raw.toLowerCase().replace(/[^a-z0-9._-]+/g, '-');
  s = s.replace(/[._-]{2,}/g, (run) => (run === '__' || /^-+$/.test(run) ? run : '-'));
  s = s.replace(/^[._-]+|[._-]+$/g, '');
  if (s === raw && s.length <= maxLength) return s;
  const suffix = `-${hash8(raw)}`;
  return `${s.slice(0, maxLength - suffix.length).replace(/[._-]+$/, '')}${suffix}`.replace(/^-/, '');
}

/**
 * A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, lowercased; changed ones get a hash appended (of
 * `names`, when given, instead of `raw`).
 */
function tagPart(raw: string, names?: readonly string[]): string {
  let s = raw.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^[.-]+/, '');
  if (names === undefined && s === raw && s.length > 0 && s.length <= 128) return s;
  const suffix = `-${hash8(names === undefined ? raw : JSON.stringify(names))}`;
  s = s.slice(0, 128 - suffix.length);
  return `${s}${suffix}`.replace(/^[.-]+/, '');
}

/**
 * The image reference of an endpoint of a version:
 * `<registry>/<owner>-<project>-<deployment>:<version>-<endpoint>`, lowercased and made a valid
 * reference (without a registry, no prefix). Names that had to be changed to fit get a short hash
 * of the original, so distinct names give distinct tags (`Web` and `web` do not collide). So do
 * names holding a `-`, the separator (a hash of all five, in the tag): owner `acme-ml` with project
 * `nlp` and owner `acme` with project `ml-nlp` never share an image.
 */
export function imageTag(
  spec: Pick<EndpointImageSpec, 'owner' | 'project' | 'deployment' | 'version' | 'endpoint'>,
  registry?: string,
): string {
  const names = [spec.owner, spec.project, spec.deployment, spec.version, spec.endpoint];
  const repo = repoComponent(`${spec.owner}-${spec.project}-${spec.deployment}`, 200);
  const tag = tagPart(`${spec.version}-${spec.endpoint}`, names.some((n) => n.includes('-')) ? names : undefined);
  const prefix = registry ? `${registry.replace(/\/+$/, '')}/` : '';
  return `${prefix}${repo}:${tag}`;
}

/** The requirements file the image installs (first of `REQUIREMENT_FILES` present), or null. */
export async function requirementsFile(codeDir: string): Promise<string | null> {
  for (const f of REQUIREMENT_FILES) {
    try {
      if ((await stat(join(codeDir, f))).isFile()) return f;
    } catch {
      // not there
    }
  }
  return null;
}

/** The image's `CMD` (exec form, JSON) for a server command. */
export function imageCommand(command: ServerCommand, port: number): string[] {
  switch (command.kind) {
    case 'shell':
      // What a Dockerfile's shell form means, written as JSON so any text is safe; the shell
      // expands $PORT from the environment at run time.
      return ['/bin/sh', '-c', command.command];
    case 'exec':
      // No shell to expand $PORT: it is the image's PORT here; the docker runtime passes the
      // command again with the port it assigns.
      if (command.argv.length === 0 || command.argv[0] === '') throw new ImageBuildError('server-command is an empty list');
      return command.argv.map((a) => substitutePort(a, port));
    case 'wsgi':
      return ['python3', IMAGE_WSGI_RUNNER, command.module];
  }
}

/**
 * The generated Dockerfile (classic builder syntax only): FROM the endpoint's image, the code
 * copied to `/valohai/repository` (the working directory), the Python requirements installed
 * when a requirements file exists, the WSGI runner for wsgi endpoints, `PORT`/`HOST` and the
 * command.
 */
export function endpointDockerfile(spec: EndpointImageSpec, opts: { requirements: string | null; buildArgNames?: readonly string[] }): string {
  if (!/^[^\s]+$/.test(spec.baseImage)) throw new ImageBuildError(`image ${JSON.stringify(spec.baseImage)} is not a valid image reference`);
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    `FROM ${spec.baseImage}`,
    `WORKDIR ${IMAGE_CODE_DIR}`,
    `COPY ${CODE_PREFIX}/ ${IMAGE_CODE_DIR}/`,
  ];
  if (opts.requirements !== null) {
    for (const name of opts.buildArgNames ?? []) lines.push(`ARG ${name}`);
    const file = `'${opts.requirements}'`;
    lines.push(
      'RUN set -e; PY="$(command -v python3 || command -v python || true)"; ' +
        'if [ -z "$PY" ]; then echo "portico: the image has neither python3 nor python to install ' + opts.requirements + ' with" >&2; exit 1; fi; ' +
        `"$PY" -m pip install --no-cache-dir --disable-pip-version-check -r ${file}`,
    );
  }
  if (spec.command.kind === 'wsgi') lines.push(`COPY ${RUNNER_IN_CONTEXT} ${IMAGE_WSGI_RUNNER}`);
  const env = [`PORT=${q(String(spec.port))}`, `HOST=${q('0.0.0.0')}`];
  if (spec.command.kind === 'wsgi' || opts.requirements !== null) env.push(`PYTHONUNBUFFERED=${q('1')}`);
  lines.push(`ENV ${env.join(' ')}`, `EXPOSE ${spec.port}`, `CMD ${JSON.stringify(imageCommand(spec.command, spec.port))}`);
  return lines.join('\n') + '\n';
}

/** One regular file as tar header + data blocks (small generated files only). */
function tarFile(path: string, data: Buffer): Buffer {
  const h = new Header({ path, mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: new Date(0), type: 'File' });
  const block = Buffer.alloc(512);
  if (h.encode(block, 0)) throw new Error(`tar: ${path} needs a pax header`);
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(padded);
  return Buffer.concat([block, padded]);
}

/**
 * The build context as a tar stream: the generated Dockerfile and the WSGI runner first, then the
 * code directory under `code/` (symlinks kept as links). Streamed, never staged on disk: model
 * files may be large.
 */
async function buildContext(codeDir: string, dockerfile: string, wsgi: boolean): Promise<Readable> {
  const head = [tarFile(DOCKERFILE, Buffer.from(dockerfile))];
  if (wsgi) head.push(tarFile(RUNNER_IN_CONTEXT, await readFile(WSGI_RUNNER)));
  const entries = (await readdir(codeDir)).filter((n) => !SKIP_TOP.has(n)).sort();
  async function* generate(): AsyncGenerator<Buffer> {
    for (const b of head) yield b;
    if (entries.length === 0) {
      yield Buffer.alloc(1024); // end of archive
      return;
    }
    const pack = tarCreate({ cwd: codeDir, prefix: CODE_PREFIX, portable: true, follow: false }, entries);
    for await (const chunk of pack as AsyncIterable<Buffer>) yield chunk;
  }
  return Readable.from(generate(), { objectMode: false });
}

/** The message of a dockerode error: the engine's JSON `message` when it sent one. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string } | string | null; reason?: string; message?: string; statusCode?: number };
  if (e && typeof e.json === 'object' && e.json && typeof e.json.message === 'string') return e.json.message.trim();
  if (e && typeof e.json === 'string' && e.json.trim() !== '') return e.json.trim();
  return (e?.message ?? String(err)).trim();
}

/** Splits build output (which may break lines anywhere) into whole lines. */
class LineSplitter {
  #partial = '';
  readonly #emit: (line: string) => void;
  constructor(emit: (line: string) => void) {
    this.#emit = emit;
  }
  push(text: string): void {
    const parts = (this.#partial + text).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const p of parts) this.#out(p);
  }
  flush(): void {
    if (this.#partial !== '') this.#out(this.#partial);
    this.#partial = '';
  }
  #out(line: string): void {
    // The engine colours a step's stderr (ANSI escapes); a progress redraw keeps its last state.
    const l = line.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r$/, '').replace(/.*\r/, '');
    if (l.trim() !== '') this.#emit(l);
  }
}

async function removeQuietly(docker: Dockerode, what: 'image' | 'container', id: string): Promise<void> {
  try {
    if (what === 'image') await docker.getImage(id).remove({ noprune: false });
    else await docker.getContainer(id).remove({ force: true, v: true });
  } catch {
    // gone already, or shared with something else (a cached layer another image uses)
  }
}

/**
 * Builds the image of one endpoint of a version on the engine (classic builder, no BuildKit),
 * tags it `imageTag(spec, registry)` and pushes it when a registry is given. Every output line
 * goes to `log`. A failure (missing base image, failing RUN, push refused, timeout or abort)
 * rejects with an `ImageBuildError` carrying the engine's message and leaves nothing behind: no
 * image under the tag, no intermediate containers (`forcerm`), and the untagged layers this
 * build made removed. The caller limits concurrency; `timeoutMs` aborts the build stream.
 */
export async function buildEndpointImage(opts: BuildEndpointImageOptions): Promise<BuiltImage> {
  const { docker, spec, log } = opts;
  const tag = imageTag(spec, opts.registry);
  const buildArgs = opts.buildArgs ?? {};
  for (const name of Object.keys(buildArgs)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ImageBuildError(`build argument ${JSON.stringify(name)}: a name is letters, digits and _`);
  }
  const requirements = await requirementsFile(opts.codeDir);
  const dockerfile = endpointDockerfile(spec, { requirements, buildArgNames: Object.keys(buildArgs) });

  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, opts.timeoutMs);
  timer.unref();
  const onOuterAbort = () => abort.abort();
  if (opts.signal?.aborted) abort.abort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const seenImages: string[] = [];
  const seenContainers: string[] = [];
  let step = '';
  let builtId: string | undefined;
  let tagged = false;
  const out = new LineSplitter((line) => {
    const stepMatch = /^Step \d+\/\d+ : /.exec(line);
    if (stepMatch) step = line;
    const layer = /^ ---> ([0-9a-f]{12,64})$/.exec(line);
    // The FROM step names the base image: never ours to remove.
    if (layer?.[1] && !step.startsWith('Step 1/')) seenImages.push(layer[1]);
    const running = /^ ---> Running in ([0-9a-f]{12,64})$/.exec(line);
    if (running?.[1]) seenContainers.push(running[1]);
    log(line);
  });
  const failure = (what: string, err: unknown): ImageBuildError => {
    if (timedOut) return new ImageBuildError(`image build timed out after ${Math.round(opts.timeoutMs / 1000)} s${step ? ` (at ${step})` : ''}`, { cause: err });
    if (abort.signal.aborted) return new ImageBuildError(`image build aborted${step ? ` (at ${step})` : ''}`, { cause: err });
    const msg = err instanceof EngineStreamError ? err.message : engineMessage(err);
    return new ImageBuildError(`${what}${step && what.startsWith('image build') ? ` at ${step.replace(/^Step /, 'step ')}` : ''}: ${msg}`, { cause: err });
  };

  log(`building image ${tag} from ${spec.baseImage}`);
  try {
    // A tag left by an earlier attempt of this same build must not survive a failure of this one.
    await removeQuietly(docker, 'image', tag);
    try {
      const context = await buildContext(opts.codeDir, dockerfile, spec.command.kind === 'wsgi');
      const stream = await docker.buildImage(context, {
        t: tag,
        dockerfile: DOCKERFILE,
        labels: identityLabels(spec),
        rm: true,
        forcerm: true,
        version: '1',
        ...(Object.keys(buildArgs).length > 0 ? { buildargs: { ...buildArgs } } : {}),
        ...(opts.networkMode ? { networkmode: opts.networkMode } : {}),
        ...(opts.registryAuth ? { registryconfig: { [registryHost(tag)]: { ...opts.registryAuth } } } : {}),
        abortSignal: abort.signal,
      });
      await followProgress(stream, (m: ProgressMessage) => {
        if (m.stream !== undefined) out.push(m.stream);
        else if (m.status !== undefined && m.progress === undefined) out.push(`${m.id ? `${m.id}: ` : ''}${m.status}\n`);
        if (m.aux?.ID) builtId = m.aux.ID;
      });
      out.flush();
      const info = await docker.getImage(tag).inspect();
      tagged = true;
      if (builtId !== undefined && builtId !== info.Id) throw new Error(`tag ${tag} points at ${info.Id}, not at the built ${builtId}`);
      builtId = info.Id;
    } catch (err) {
      out.flush();
      throw failure('image build failed', err);
    }

    let pushed = false;
    if (opts.registry) {
      log(`pushing ${tag}`);
      try {
        // The engine wants an X-Registry-Auth header even when the registry needs no credentials.
        const stream = await docker.getImage(tag).push({
          authconfig: (opts.registryAuth ? { ...opts.registryAuth, serveraddress: registryHost(tag) } : {}) as Dockerode.AuthConfig,
          abortSignal: abort.signal,
        });
        await followProgress(stream, (m) => {
          if (m.status !== undefined && m.progress === undefined) log(`${m.id ? `${m.id}: ` : ''}${m.status}`);
        });
      } catch (err) {
        throw failure(`push of ${tag} failed`, err);
      }
      pushed = true;
    }
    log(`built image ${tag} (${builtId})`);
    return { image: tag, id: builtId, pushed };
  } catch (err) {
    // Clean up after ourselves: the RUN container of an aborted step, the tag, our untagged layers.
    for (const id of seenContainers) await removeQuietly(docker, 'container', id);
    if (tagged) await removeQuietly(docker, 'image', tag);
    for (const id of [...seenImages].reverse()) {
      try {
        const info = await docker.getImage(id).inspect();
        if ((info.RepoTags ?? []).filter((t) => t !== '<none>:<none>').length === 0) await removeQuietly(docker, 'image', info.Id);
      } catch {
        // gone already (removed with a child)
      }
    }
    throw err instanceof BuildError ? err : new ImageBuildError(engineMessage(err), { cause: err });
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/**
 * Builds the image of every enabled endpoint of a version, one after the other, all within one
 * `timeoutMs`: endpoint name -> image reference (what `Version.images` holds). The first
 * failure rejects (an `ImageBuildError`), and the images built before it are removed, so a
 * failed version leaves no image.
 */
export async function buildVersionImages(opts: Omit<BuildEndpointImageOptions, 'spec'> & {
  readonly version: { readonly owner: string; readonly project: string; readonly deployment: string; readonly name: string };
  readonly endpoints: readonly { readonly name: string; readonly enabled: boolean; readonly definition: Pick<EndpointDefinition, 'name' | 'image' | 'command' | 'port'> }[];
}): Promise<Record<string, string>> {
  const deadline = Date.now() + opts.timeoutMs;
  const images: Record<string, string> = {};
  try {
    for (const e of opts.endpoints) {
      if (!e.enabled) continue;
      const timeoutMs = Math.max(1, deadline - Date.now());
      const built = await buildEndpointImage({ ...opts, spec: endpointImageSpec(opts.version, { ...e.definition, name: e.name }), timeoutMs });
      images[e.name] = built.image;
    }
  } catch (err) {
    for (const image of Object.values(images)) await removeQuietly(opts.docker, 'image', image);
    throw err;
  }
  return images;
}

/**
 * Removes the images built for a version (every endpoint; found by their `portico.*` labels),
 * e.g. when the version is deleted. An image a container still uses is left (and named in the
 * result); layers other images share stay. Resolves with the tags that could not be removed.
 */
export async function removeVersionImages(
  docker: Dockerode,
  version: { readonly owner: string; readonly project: string; readonly deployment: string; readonly version: string },
): Promise<string[]> {
  const images = await docker.listImages({
    filters: {
      label: [
        `${LABEL_MANAGED}=true`, `${LABEL_OWNER}=${version.owner}`, `${LABEL_PROJECT}=${version.project}`,
        `${LABEL_DEPLOYMENT}=${version.deployment}`, `${LABEL_VERSION}=${version.version}`,
      ],
    },
  });
  const kept: string[] = [];
  for (const img of images) {
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    for (const ref of tags.length > 0 ? tags : [img.Id]) {
      try {
        await docker.getImage(ref).remove({ noprune: false });
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) kept.push(ref);
      }
    }
  }
  return kept;
}
