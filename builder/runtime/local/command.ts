import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointSpec } from '../runtime.ts';

/**
 * The Python virtual environment a version may carry: `builder/build/python-deps.ts` creates it
 * at `<codeDir>/.venv`; replicas of that version get its `bin` first on `PATH`.
 */
export const VENV_DIR = '.venv';

/** The bundled WSGI runner (stdlib server, or gunicorn when the version has it). */
export const WSGI_RUNNER = join(import.meta.dirname, '..', 'wsgi_runner.py');

/** A process to start: program, arguments and its whole environment. */
export interface Launch {
  readonly file: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** Replaces `$PORT` and `${PORT}` (not `$PORTAL`) with the replica's port. */
export function substitutePort(text: string, port: number): string {
  return text.replace(/\$\{PORT\}|\$PORT(?![A-Za-z0-9_])/g, String(port));
}

// The variables every runtime sets for a replica, which a list command may name.
const RUNTIME_VARIABLES = new Set(['PORT', 'HOST', 'VH_DEFAULT_PREFIX']);

/**
 * A list `server-command` (exec'd, no shell to expand it) with `$PORT`, `$HOST` and
 * `$VH_DEFAULT_PREFIX` (or `${NAME}`) replaced by their values in the replica's `env`, as a shell
 * would. The version's own variables are left as written: the kubernetes runtime would write
 * secret ones into the Deployment.
 */
export function substituteArgs(argv: readonly string[], env: Readonly<Record<string, string>>): string[] {
  return argv.map((arg) =>
    arg.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? '';
      return RUNTIME_VARIABLES.has(name) ? (env[name] ?? whole) : whole;
    }),
  );
}

/**
 * How to start one replica of `spec` on `port`: a string `server-command` through `/bin/sh -c`,
 * a list exec'd directly, `wsgi` through the bundled runner; `$PORT` substituted in both command
 * forms, `$HOST` and `$VH_DEFAULT_PREFIX` in a list (`substituteArgs`). The environment is the spec's, then `PORT`, `HOST`, `PATH` (the version's venv first),
 * `SCRIPT_NAME` = `VH_DEFAULT_PREFIX` for wsgi, and `PYTHONUNBUFFERED=1` unless the spec sets it
 * (so Python output reaches the logs line by line). Nothing else of the controller's
 * environment leaks into replicas.
 */
export function launchFor(spec: EndpointSpec, port: number, host: string, basePath: string): Launch {
  const venv = join(spec.codeDir, VENV_DIR);
  const hasVenv = existsSync(join(venv, 'bin', 'python'));
  const path = spec.env['PATH'] ?? basePath;
  const env: Record<string, string> = {
    PYTHONUNBUFFERED: '1',
    ...spec.env,
    PORT: String(port),
    HOST: host,
    PATH: hasVenv ? `${join(venv, 'bin')}:${path}` : path,
  };
  if (hasVenv) env['VIRTUAL_ENV'] = venv;
  const cmd = spec.command;
  switch (cmd.kind) {
    case 'shell':
      return { file: '/bin/sh', args: ['-c', substitutePort(cmd.command, port)], env };
    case 'exec': {
      const [file, ...args] = substituteArgs(cmd.argv, env);
      if (file === undefined || file === '') throw new Error('server-command is an empty list');
      return { file, args, env };
    }
    case 'wsgi':
      env['SCRIPT_NAME'] = spec.env['VH_DEFAULT_PREFIX'] ?? '';
      return {
        file: hasVenv ? join(venv, 'bin', 'python') : 'python3',
        args: [WSGI_RUNNER, '--host', host, '--port', String(port), cmd.module],
        env,
      };
  }
}
