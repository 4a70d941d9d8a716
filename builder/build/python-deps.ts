import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BuildError, LEADS_OUT, readsOutOfCode, type BuildLog } from './source.ts';

/**
 * Valohai's Python dependency step for targets that run the code in place (`local`): the
 * version's requirements go into its own virtual environment `<codeDir>/.venv`, which the local
 * runtime puts first on replicas' `PATH` (builder/runtime/local/command.ts knows the same name).
 */

/** The version's virtual environment, relative to its code directory. */
export const VENV_DIR = '.venv';

/** Requirement files looked for, in order: the first that exists is installed. */
export const REQUIREMENT_FILES = ['requirements-deployment.txt', 'requirements.txt'] as const;

/** What `installPythonDeps` did. */
export type PythonDepsResult =
  | { readonly installed: true; readonly file: string; readonly venv: string }
  | { readonly installed: false; readonly reason: string };

/** Options of `installPythonDeps`. */
export interface PythonDepsOptions {
  /** Interpreter creating the venv. Default `python3` (found on `PATH`). */
  readonly python?: string;
  /** Extra `pip install` arguments, e.g. `['--no-index', '--find-links', '/wheels']`. */
  readonly pipArgs?: readonly string[];
  /** The version's environment: its `PIP_*` variables (PIP_INDEX_URL, PIP_FIND_LINKS...) reach pip. */
  readonly env?: Readonly<Record<string, string>>;
  /** Aborting kills pip (the build timed out or was cancelled). */
  readonly signal?: AbortSignal;
}

/** pip (or venv creation) failed; `lines` are the last lines it printed, also in the message. */
export class PythonDepsError extends BuildError {
  readonly lines: readonly string[];
  constructor(message: string, lines: readonly string[], options?: { cause?: unknown }) {
    super(lines.length > 0 ? `${message}:\n${lines.join('\n')}` : message, options);
    this.name = 'PythonDepsError';
    this.lines = lines;
  }
}

const LAST_LINES = 20;

interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly lines: readonly string[];
  readonly spawnError?: NodeJS.ErrnoException;
}

/** Runs a command, passing each output line to `onLine`; keeps the last lines. */
function run(
  file: string,
  args: readonly string[],
  opts: { cwd: string; env: Record<string, string>; signal?: AbortSignal; onLine?: (line: string) => void },
): Promise<RunResult> {
  return new Promise((resolve) => {
    const last: string[] = [];
    const child = spawn(file, [...args], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    let spawnError: NodeJS.ErrnoException | undefined;
    const feed = (stream: NodeJS.ReadableStream) => {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const raw of parts) emit(raw);
      });
      stream.on('end', () => {
        if (partial !== '') emit(partial);
        partial = '';
      });
    };
    const emit = (raw: string) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '') return;
      last.push(line);
      if (last.length > LAST_LINES) last.shift();
      opts.onLine?.(line);
    };
    feed(child.stdout);
    feed(child.stderr);
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      resolve({ code, signal, lines: last, ...(spawnError ? { spawnError } : {}) });
    });
  });
}

/**
 * Installs the code's Python requirements into `<codeDir>/.venv` when there is something to
 * install and a way to install it:
 * - no `requirements-deployment.txt` / `requirements.txt`: `{installed: false, reason}`;
 * - that file a symlink leading out of `codeDir`: throws `BuildError` (nothing read from it);
 * - `python3` missing, or without pip or venv: `{installed: false, reason}`;
 * - else `python3 -m venv` then `pip install -r <file> <pipArgs>` (cwd `codeDir`, the
 *   version's `PIP_*` variables in pip's environment), every output line passed to `log`:
 *   `{installed: true, file, venv}`.
 * Each outcome is also written to `log` in one line saying which happened. A failing venv or pip
 * throws `PythonDepsError` carrying pip's last lines.
 */
export async function installPythonDeps(codeDir: string, log: BuildLog, opts: PythonDepsOptions = {}): Promise<PythonDepsResult> {
  const file = REQUIREMENT_FILES.find((f) => existsSync(join(codeDir, f)));
  if (file === undefined) {
    const reason = 'no requirements-deployment.txt or requirements.txt: no Python dependencies to install';
    log(`Python dependencies: ${reason}`);
    return { installed: false, reason };
  }
  // pip would show what it read there (each line it cannot take as a requirement, in full).
  if (await readsOutOfCode(codeDir, join(codeDir, file))) throw new BuildError(`${file} ${LEADS_OUT}`);
  const python = opts.python ?? 'python3';
  const env = pipEnv(opts.env);
  const base = { cwd: codeDir, env, ...(opts.signal ? { signal: opts.signal } : {}) };

  const pip = await run(python, ['-m', 'pip', '--version'], base);
  throwIfAborted(opts.signal);
  if (pip.spawnError) {
    const reason = `${python} not found (${pip.spawnError.code ?? pip.spawnError.message}): ${file} not installed`;
    log(`Python dependencies: ${reason}`);
    return { installed: false, reason };
  }
  if (pip.code !== 0) {
    const reason = `${python} has no pip (${pip.lines.at(-1) ?? `exit ${pip.code}`}): ${file} not installed`;
    log(`Python dependencies: ${reason}`);
    return { installed: false, reason };
  }
  const venvCheck = await run(python, ['-c', 'import venv, ensurepip'], base);
  if (venvCheck.code !== 0) {
    const reason = `${python} cannot create a virtual environment (${venvCheck.lines.at(-1) ?? `exit ${venvCheck.code}`}): ${file} not installed`;
    log(`Python dependencies: ${reason}`);
    return { installed: false, reason };
  }

  const venv = join(codeDir, VENV_DIR);
  log(`Python dependencies: installing ${file} into ${VENV_DIR} (${pip.lines.at(-1) ?? 'pip'})`);
  log(`$ ${python} -m venv --clear ${VENV_DIR}`);
  const made = await run(python, ['-m', 'venv', '--clear', venv], { ...base, onLine: log });
  throwIfAborted(opts.signal);
  if (made.code !== 0) throw new PythonDepsError(`creating ${VENV_DIR} failed (${exitText(made)})`, made.lines);

  const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--progress-bar', 'off', '-r', file, ...(opts.pipArgs ?? [])];
  log(`$ ${VENV_DIR}/bin/python ${args.join(' ')}`);
  const installed = await run(join(venv, 'bin', 'python'), args, { ...base, onLine: log });
  throwIfAborted(opts.signal);
  if (installed.code !== 0) throw new PythonDepsError(`pip install -r ${file} failed (${exitText(installed)})`, installed.lines);
  log(`Python dependencies: installed ${file} into ${VENV_DIR}`);
  return { installed: true, file, venv };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new PythonDepsError('Python dependency install aborted', [], { cause: signal.reason });
}

function exitText(r: RunResult): string {
  if (r.spawnError) return r.spawnError.message;
  return r.code !== null ? `exit ${r.code}` : `killed by ${r.signal}`;
}

/**
 * pip's environment: the controller's (PATH, HOME, proxies and an operator's own PIP_* settings)
 * without PORTICO_* (the admin token must not reach package build scripts), then the version's
 * PIP_* variables.
 */
function pipEnv(versionEnv: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('PORTICO_')) env[k] = v;
  }
  for (const [k, v] of Object.entries(versionEnv ?? {})) {
    if (k.startsWith('PIP_')) env[k] = v;
  }
  env['PYTHONUNBUFFERED'] = '1';
  return env;
}
