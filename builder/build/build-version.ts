import { createReadStream } from 'node:fs';
import { access, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CreateVersionInput, EndpointInput } from '../control-plane.ts';
import type { VersionEndpoint } from '../store/store.ts';
import { formatProblem, readValohaiYaml, type EndpointDefinition } from '../valohai-yaml/index.ts';
import { installPythonDeps } from './python-deps.ts';
import { digestOf, type BlobStore } from './blobs.ts';
import {
  BuildError, LEADS_OUT, fetchFile, filePathInCode, inTheWayOf, materializeSource, readsOutOfCode, symlinkOutOfCode, type BuildLog, type UploadResolver,
} from './source.ts';

/** What a successful build produced. */
export interface BuiltVersion {
  readonly codeDir: string;
  readonly endpoints: VersionEndpoint[];
}

/** Replicas per endpoint when the request does not say. */
export const DEFAULT_REPLICAS = 1;

/**
 * Builds a version's code directory: materialises the source, reads its valohai.yaml, places
 * each enabled endpoint's declared files (from the request, else already in the code) and
 * installs Python requirements when the target runs them in place. Throws `BuildError` with a
 * message for the build log; never touches anything outside `versionDir`.
 */
export async function buildVersion(opts: {
  input: CreateVersionInput;
  versionDir: string;
  blobs: BlobStore;
  uploads: UploadResolver;
  log: BuildLog;
  timeoutMs: number;
  maxFileBytes: number;
  /** Install requirements into the code directory (local target). */
  installDeps: boolean;
  pipArgs?: readonly string[];
  /** Aborting stops the build: its git, download and pip processes are ended, it rejects. */
  signal?: AbortSignal;
}): Promise<BuiltVersion> {
  const { input, log, signal } = opts;
  const codeDir = join(opts.versionDir, 'code');
  await rm(codeDir, { recursive: true, force: true });
  await mkdir(opts.versionDir, { recursive: true });
  await materializeSource(input.source, codeDir, { log, uploads: opts.uploads, timeoutMs: opts.timeoutMs, ...(signal && { signal }) });
  signal?.throwIfAborted();

  const yamlPath = join(codeDir, 'valohai.yaml');
  try {
    await access(yamlPath);
  } catch {
    throw new BuildError('the source has no valohai.yaml at its top level');
  }
  if (await readsOutOfCode(codeDir, yamlPath)) throw new BuildError(`valohai.yaml ${LEADS_OUT}`);
  const parsed = await readValohaiYaml(yamlPath);
  if (parsed.problems.length > 0) {
    for (const p of parsed.problems) log(formatProblem({ ...p, file: 'valohai.yaml' }));
    throw new BuildError(`valohai.yaml has ${parsed.problems.length} problem(s): ${parsed.problems.map((p) => formatProblem({ ...p, file: 'valohai.yaml' })).join('; ')}`);
  }
  if (parsed.endpoints.length === 0) throw new BuildError('valohai.yaml declares no endpoint');
  const declared = new Map(parsed.endpoints.map((e) => [e.name, e]));
  for (const name of Object.keys(input.endpoints ?? {})) {
    if (!declared.has(name)) {
      throw new BuildError(`endpoints.${name}: valohai.yaml has no endpoint ${JSON.stringify(name)} (it has ${[...declared.keys()].join(', ')})`);
    }
  }
  log(`valohai.yaml: ${parsed.endpoints.length} endpoint(s): ${parsed.endpoints.map((e) => e.name).join(', ')}`);

  const endpoints: VersionEndpoint[] = [];
  const placed: Placed = new Map();
  for (const def of parsed.endpoints) {
    const req: EndpointInput = input.endpoints?.[def.name] ?? {};
    const enabled = req.enabled ?? true;
    const files = enabled ? await placeFiles(def, req, codeDir, placed, opts) : [];
    signal?.throwIfAborted();
    endpoints.push({
      name: def.name,
      definition: def,
      replicas: req.replicas ?? DEFAULT_REPLICAS,
      enabled,
      timeoutSeconds: req.timeoutSeconds ?? null,
      maxBodyBytes: req.maxBodyBytes ?? null,
      files,
    });
  }

  if (opts.installDeps) {
    const r = await installPythonDeps(codeDir, log, { pipArgs: opts.pipArgs ?? [], ...(signal && { signal }) });
    if (r.installed) log(`installed Python requirements from ${r.file}`);
  }
  return { codeDir, endpoints };
}

/** The files given a source so far, by where they were placed: endpoints share the code. */
type Placed = Map<string, { endpoint: string; file: string; sha256: string }>;

async function placeFiles(
  def: EndpointDefinition,
  req: EndpointInput,
  codeDir: string,
  placed: Placed,
  opts: { blobs: BlobStore; uploads: UploadResolver; log: BuildLog; timeoutMs: number; maxFileBytes: number; signal?: AbortSignal },
): Promise<VersionEndpoint['files']> {
  const declaredNames = new Set(def.files.map((f) => f.name));
  for (const name of Object.keys(req.files ?? {})) {
    if (!declaredNames.has(name)) throw new BuildError(`endpoints.${def.name}.files.${name}: endpoint ${def.name} declares no file ${JSON.stringify(name)}`);
  }
  const out: VersionEndpoint['files'][number][] = [];
  for (const file of def.files) {
    const dest = filePathInCode(codeDir, file.path);
    const source = req.files?.[file.name];
    let blob;
    if (source) {
      const link = await symlinkOutOfCode(codeDir, dest);
      const problem = link !== null ? `${link} in the code is a symlink that leads out of it; the file cannot be placed there` : await inTheWayOf(codeDir, dest);
      if (problem !== null) throw new BuildError(`endpoint ${def.name}: file ${JSON.stringify(file.name)} (path ${file.path}): ${problem}`);
      blob = await fetchFile(source, { ...opts, maxBytes: opts.maxFileBytes });
      const other = placed.get(dest);
      if (other !== undefined && other.sha256 !== blob.sha256) {
        throw new BuildError(
          `endpoint ${def.name}: file ${JSON.stringify(file.name)} (path ${file.path}): endpoint ${other.endpoint}'s file ${JSON.stringify(other.file)} is placed at that path with other content; give both the same file, or declare different paths`,
        );
      }
      placed.set(dest, { endpoint: def.name, file: file.name, sha256: blob.sha256 });
      await opts.blobs.placeAt(blob, dest);
    } else {
      const inCode = await stat(dest).then((s) => s.isFile(), () => false);
      if (!inCode) {
        throw new BuildError(`endpoint ${def.name}: file ${JSON.stringify(file.name)} (path ${file.path}) has no source: give endpoints.${def.name}.files.${file.name}`);
      }
      if (await readsOutOfCode(codeDir, dest)) {
        throw new BuildError(`endpoint ${def.name}: file ${JSON.stringify(file.name)} (path ${file.path}): a symlink in the code leads out of the code; the file cannot be read from there`);
      }
      // Hashed where it is: a copy in the blob store would take its size twice, for nothing.
      blob = await digestOf(createReadStream(dest), opts.maxFileBytes);
    }
    opts.log(`endpoint ${def.name}: file ${file.name} -> ${file.path} (${blob.size} bytes, sha256 ${blob.sha256})`);
    out.push({ name: file.name, path: file.path, sha256: blob.sha256, size: blob.size });
  }
  return out;
}
