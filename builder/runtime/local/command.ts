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

/**
 * How to start one replica of `spec` on `port`: a string `server-command` through `/bin/sh -c`,
 * a list exec'd directly, `wsgi` through the bundled runner; `$PORT` substituted in both command
 * forms. The environment is the spec's, then `PORT`, `HOST`, `PATH` (the version's venv first),
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
      const [file, ...args] = cmd.argv.map((a) => substitutePort(a, port));
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
