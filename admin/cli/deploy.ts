import { createReadStream, existsSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { create as tarCreate } from 'tar';
import type {
  AliasSetResult, CreateVersionInput, DeploymentView, EndpointInput, FileSourceInput, LogLine, SourceInput, VersionView,
} from '../../builder/control-plane.ts';
import { formatProblem, readValohaiYaml } from '../../builder/valohai-yaml/index.ts';
import { reportAliasSet } from './alias.ts';
import { ApiError, type ApiClient } from './client.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, DEPLOYMENT_FLAGS, DEPLOYMENT_HELP, deploymentPath, deploymentScope, intArg, json, keyValue,
  nameArg, noMorePositionals, operatorCommand, projectPath, type Parsed,
} from './operator.ts';

/** Never packed into an uploaded source archive. */
const EXCLUDED = new Set(['.git', '.hg', '.svn', '__pycache__', '.portico', '.venv']);

/**
 * `--auth` and `--target` only shape a deployment `deploy` creates. Given for one that exists with
 * other values they are refused, never ignored: a user who asked for basic auth must not find
 * the version serving without it.
 */
function refuseOtherSettings(flags: Parsed, d: DeploymentView): void {
  const auth = flags.get('auth');
  if (auth !== undefined && auth !== d.auth) {
    throw new UsageError(`deployment ${d.name} exists with --auth ${d.auth}; --auth is only used when deploy creates the deployment (change it with portico deployments update ${d.name} --auth ${auth})`);
  }
  const target = flags.get('target');
  if (target !== undefined && target !== d.target) {
    throw new UsageError(`deployment ${d.name} exists with --target ${d.target}; --target is only used when deploy creates the deployment (a deployment keeps its target: deploy to another deployment)`);
  }
}

/** True for `localhost`, `127.x.x.x` and `::1`: the controller can read this machine's folders. */
export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The folder as a .tar.gz stream (paths relative to it, VCS folders and caches left out). */
export function packFolder(dir: string): Readable {
  const pack = tarCreate({
    gzip: true,
    cwd: dir,
    portable: true,
    filter: (path) => !path.split('/').some((segment) => EXCLUDED.has(segment)),
  }, ['.']);
  return Readable.from(pack as AsyncIterable<Buffer>);
}

function kib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

interface Plan {
  readonly dir: string;
  readonly upload: boolean;
  readonly endpoints: Record<string, { replicas?: number; files?: Record<string, string> }>;
  readonly environment: Record<string, string>;
}

function plan(flags: { all(n: string): string[] }, dir: string, upload: boolean): Plan {
  const endpoints: Plan['endpoints'] = {};
  for (const r of flags.all('replicas')) {
    const [e, n] = keyValue(r, '--replicas');
    (endpoints[e] ??= {}).replicas = intArg(n, `--replicas ${e}`, 0, 100);
  }
  for (const f of flags.all('file')) {
    const [target, path] = keyValue(f, '--file');
    const dot = target.indexOf('.');
    if (dot <= 0 || dot === target.length - 1) throw new UsageError(`--file must look like ENDPOINT.FILE=PATH (got ${JSON.stringify(f)})`);
    ((endpoints[target.slice(0, dot)] ??= {}).files ??= {})[target.slice(dot + 1)] = path;
  }
  const environment: Record<string, string> = {};
  for (const e of flags.all('env')) {
    const [k, v] = keyValue(e, '--env');
    environment[k] = v;
  }
  return { dir, upload, endpoints, environment };
}

/** A file source for `--file`: a URL as is, a local file by path (loopback) or uploaded. */
async function fileSource(client: ApiClient, path: string, upload: boolean, say: (s: string) => void): Promise<FileSourceInput> {
  if (/^https?:\/\//.test(path)) return { url: path };
  const abs = resolve(path);
  if (!existsSync(abs) || !statSync(abs).isFile()) throw new UsageError(`--file: ${path} is not a file`);
  if (!upload) return { path: abs };
  const u = await client.request<{ id: string; size: number }>('POST', '/api/v1/uploads', {
    raw: { body: createReadStream(abs), contentType: 'application/octet-stream' },
  });
  say(`uploaded ${path} (${kib(u.size)})`);
  return { upload: u.id };
}

/** `portico deploy`: build a version of the folder's valohai.yaml and wait until it serves. */
export const deployCommand = operatorCommand({
  name: 'deploy',
  help: `Usage:
  portico deploy --owner O --project P --deployment D [--path DIR] [options]

Creates the deployment when it does not exist, builds a new version from DIR (default: the
current folder, which must hold valohai.yaml), shows the build's progress and log, and prints
the endpoint URLs once the version is ready. With --alias, the alias then points at it.
When PORTICO_URL is a loopback address the controller reads DIR directly; otherwise (or with
--upload) DIR is packed as .tar.gz (without .git and caches) and uploaded. A --name or --alias
the API would refuse (1 to 100 letters, digits, ".", "_" or "-", starting with a letter or
digit) is refused (exit 2) before anything is created, uploaded or built. So is a valohai.yaml
portico validate refuses: its problems are printed as file:line:column: message (exit 1).

Options:
${DEPLOYMENT_HELP}
  --path DIR             folder with valohai.yaml (default .)
  --name NAME            version name (default: UTC date + counter, e.g. 20181002.0)
  --replicas E=N         replicas of endpoint E (repeatable; default 1 each)
  --file E.F=PATH        source of file F declared by endpoint E: a local file or an http(s) URL
                         (repeatable)
  --env K=V              environment variable of this version (repeatable)
  --no-inherit-env       do not start from the project's environment
  --alias ALIAS          point ALIAS at the version once it is ready
  --target T, --auth A   used when the deployment is created (see portico deployments); for
                         one that exists with other values, refused (exit 2)
  --upload               always pack and upload DIR
  --no-wait              return once the version is accepted
  --timeout SECONDS      give up waiting after this long (default 1800; the build goes on)
  --poll-ms MS           how often progress is polled (default 500)
${COMMON_HELP}
Exit code 1 when the build fails, with the reason.`,
  flags: {
    ...DEPLOYMENT_FLAGS, path: 'value', name: 'value', replicas: 'multi', file: 'multi', env: 'multi', alias: 'value',
    target: 'value', auth: 'value', upload: 'bool', 'no-wait': 'bool', 'no-inherit-env': 'bool', timeout: 'value', 'poll-ms': 'value',
  },
  async run(ctx) {
    const { flags, client, config, json: asJson } = ctx;
    noMorePositionals(flags, 0);
    const scope = deploymentScope(flags);
    // With --json, stdout carries only the final JSON: progress goes to stderr.
    const say = asJson ? ctx.err : ctx.out;
    const dir = resolve(flags.get('path') ?? '.');
    if (!existsSync(resolve(dir, 'valohai.yaml'))) throw new UsageError(`no valohai.yaml in ${dir} (see --path)`);
    // The build would refuse it too, after creating (and failing) a version of its own.
    const yaml = await readValohaiYaml(resolve(dir, 'valohai.yaml'));
    if (yaml.problems.length > 0) {
      for (const problem of yaml.problems) ctx.err(formatProblem(problem));
      ctx.err('portico deploy: nothing was created, uploaded or built (portico validate checks the file)');
      return 1;
    }
    const p = plan(flags, dir, flags.has('upload') || !isLoopbackUrl(config.url));
    const timeoutMs = intArg(flags.get('timeout') ?? '1800', '--timeout', 1, 7 * 86400) * 1000;
    const pollMs = intArg(flags.get('poll-ms') ?? '500', '--poll-ms', 10, 60_000);
    // Checked now, not when the API refuses them after the upload or the whole build.
    const alias = flags.has('alias') ? nameArg(flags.get('alias')!, '--alias') : undefined;
    if (flags.has('name')) nameArg(flags.get('name')!, '--name');

    let deployment: DeploymentView;
    try {
      deployment = await client.request<DeploymentView>('GET', deploymentPath(scope));
      refuseOtherSettings(flags, deployment);
    } catch (err) {
      if (!(err instanceof ApiError && err.statusCode === 404 && err.code === 'NOT_FOUND')) throw err;
      deployment = await client.request<DeploymentView>('POST', projectPath(scope, 'deployments'), {
        body: {
          name: scope.deployment,
          ...(flags.has('target') ? { target: flags.get('target') } : {}),
          ...(flags.has('auth') ? { auth: flags.get('auth') } : {}),
        },
      });
      say(`created deployment ${deployment.name} on ${deployment.target}`);
    }

    let source: SourceInput;
    if (p.upload) {
      const u = await client.request<{ id: string; size: number }>('POST', '/api/v1/uploads', {
        raw: { body: packFolder(dir), contentType: 'application/gzip' },
      });
      say(`uploaded ${dir}${sep} as ${kib(u.size)} .tar.gz`);
      source = { upload: u.id };
    } else source = { path: dir };

    const endpoints: Record<string, EndpointInput> = {};
    for (const [e, spec] of Object.entries(p.endpoints)) {
      const files: Record<string, FileSourceInput> = {};
      for (const [f, path] of Object.entries(spec.files ?? {})) files[f] = await fileSource(client, path, p.upload, say);
      endpoints[e] = { ...(spec.replicas !== undefined ? { replicas: spec.replicas } : {}), ...(spec.files ? { files } : {}) };
    }
    const input: CreateVersionInput = {
      ...(flags.has('name') ? { name: flags.get('name')! } : {}),
      source,
      ...(Object.keys(endpoints).length > 0 ? { endpoints } : {}),
      ...(Object.keys(p.environment).length > 0 ? { environment: p.environment } : {}),
      ...(flags.has('no-inherit-env') ? { inheritEnvironment: false } : {}),
    };
    let version = await client.request<VersionView>('POST', deploymentPath(scope, 'versions'), { body: input });
    const versionPath = deploymentPath(scope, 'versions', version.name);
    say(`version ${version.name}: ${version.status}`);
    if (flags.has('no-wait')) {
      if (asJson) ctx.out(json({ version }));
      return 0;
    }

    let printed = 0;
    let status = version.status;
    const deadline = Date.now() + timeoutMs;
    const printLog = async () => {
      const { items } = await client.request<{ items: LogLine[] }>('GET', `${versionPath}/build-log`);
      for (const l of items.slice(printed)) say(`  | ${l.line}`);
      printed = Math.max(printed, items.length);
    };
    for (;;) {
      await printLog();
      if (version.status !== status) {
        status = version.status;
        say(`version ${version.name}: ${status}${version.reason ? ` (${version.reason})` : ''}`);
      }
      if (status === 'ready' || status === 'failed' || status === 'stopped') break;
      if (Date.now() > deadline) {
        ctx.err(`portico deploy: gave up waiting after ${timeoutMs / 1000} s; version ${version.name} is still ${status} (portico versions show ${version.name})`);
        return 1;
      }
      await delay(pollMs);
      version = await client.request<VersionView>('GET', versionPath);
    }
    if (status !== 'ready') {
      if (asJson) ctx.out(json({ version }));
      ctx.err(`portico deploy: version ${version.name} ${status === 'failed' ? 'failed' : 'stopped before it was ready'}${version.reason ? `: ${version.reason}` : ''}`);
      return 1;
    }

    say('endpoints:');
    for (const e of version.endpoints) say(`  ${e.name}  ${e.url}`);
    let aliasResult: AliasSetResult | undefined;
    if (alias !== undefined) {
      aliasResult = await client.request<AliasSetResult>('PUT', deploymentPath(scope, 'aliases', alias), { body: { version: version.name } });
      reportAliasSet({ out: say, err: ctx.err }, aliasResult);
      say(`endpoints via ${alias}:`);
      for (const e of version.endpoints) say(`  ${e.name}  ${deployment.url}/${alias}/${e.name}`);
    }
    if (asJson) ctx.out(json({ version, ...(aliasResult ? { alias: aliasResult } : {}) }));
    return 0;
  },
});
