/**
 * What the operator commands share: flag parsing (with repeatable flags and a refusal of
 * unknown ones, and of those of another sub-command), the `--owner/--project/--deployment` scope, tables or `--json`, and turning
 * API errors into one line on stderr with exit code 1.
 */
import { loadConfig, type Config } from '../../common/config.ts';
import { NAME_PATTERN } from '../api/route.ts';
import { apiPath, clientFromConfig, describeError, type ApiClient } from './client.ts';
import { UsageError, type Command } from './command.ts';

/** How a flag is read: a switch, one value, or a value that may repeat. */
export type FlagKind = 'bool' | 'value' | 'multi';

/** The parsed command line. */
export interface Parsed {
  readonly positionals: string[];
  /** Last value of a `value` flag (`true` for a set `bool` flag). */
  get(name: string): string | undefined;
  has(name: string): boolean;
  /** Every value of a `multi` flag, in order. */
  all(name: string): string[];
}

/**
 * Parses `--flag value`, `--flag=value`, `-x` (a one-letter alias) and positionals; `--`
 * ends the flags. An unknown flag or a missing value is a `UsageError`, unless `lenient`: then
 * an unknown flag is skipped (taking no value) and a missing value ignored.
 */
export function parseFlags(
  args: readonly string[],
  spec: Readonly<Record<string, FlagKind>>,
  aliases: Readonly<Record<string, string>> = {},
  opts: { readonly lenient?: boolean } = {},
): Parsed {
  const values = new Map<string, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    let name: string;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      inline = eq === -1 ? undefined : a.slice(eq + 1);
    } else if (/^-[A-Za-z]$/.test(a)) {
      const alias = aliases[a.slice(1)];
      if (alias === undefined) {
        if (opts.lenient) continue;
        throw new UsageError(`unknown option ${a}`);
      }
      name = alias;
    } else {
      positionals.push(a);
      continue;
    }
    const kind = spec[name];
    if (kind === undefined) {
      if (opts.lenient) continue;
      throw new UsageError(`unknown option --${name}`);
    }
    let value: string;
    if (kind === 'bool') {
      if (inline !== undefined && !['true', 'false'].includes(inline)) {
        if (opts.lenient) continue;
        throw new UsageError(`--${name} takes no value`);
      }
      if (inline === 'false') {
        values.delete(name);
        continue;
      }
      value = 'true';
    } else if (inline !== undefined) value = inline;
    else {
      const next = args[i + 1];
      if (next === undefined) {
        if (opts.lenient) break;
        throw new UsageError(`--${name} needs a value`);
      }
      value = next;
      i++;
    }
    const list = values.get(name) ?? [];
    list.push(value);
    values.set(name, kind === 'multi' ? list : [value]);
  }
  return {
    positionals,
    get: (n) => values.get(n)?.at(-1),
    has: (n) => values.has(n),
    all: (n) => values.get(n) ?? [],
  };
}

/** What an operator command's `run` gets. */
export interface OperatorContext {
  readonly flags: Parsed;
  readonly config: Config;
  readonly client: ApiClient;
  /** `--json` was given. */
  readonly json: boolean;
  /** Writes a line (or lines) to stdout. */
  out(text: string): void;
  /** Writes a line to stderr. */
  err(text: string): void;
}

/** A `portico` operator command over the admin API. */
export interface OperatorSpec {
  readonly name: string;
  readonly help: string;
  /** Accepted flags besides `--json` (added to every operator command). */
  readonly flags: Readonly<Record<string, FlagKind>>;
  readonly aliases?: Readonly<Record<string, string>>;
  run(ctx: OperatorContext): Promise<number>;
}

/** Wraps an operator command: flags, config, client; API errors print one line and exit 1. */
export function operatorCommand(spec: OperatorSpec): Command {
  return {
    name: spec.name,
    help: spec.help,
    // `--contains -h` filters on "-h": only an option position asks for help, whatever else is wrong.
    wantsHelp: (args) => parseFlags(args, { ...spec.flags, json: 'bool', help: 'bool' }, { ...spec.aliases, h: 'help' }, { lenient: true }).has('help'),
    async run(args, env) {
      const flags = parseFlags(args, { ...spec.flags, json: 'bool' }, spec.aliases);
      const config = loadConfig(env);
      const ctx: OperatorContext = {
        flags,
        config,
        client: clientFromConfig(config),
        json: flags.has('json'),
        out: (text) => process.stdout.write(`${text}\n`),
        err: (text) => process.stderr.write(`${text}\n`),
      };
      try {
        return await spec.run(ctx);
      } catch (err) {
        const line = describeError(err, ctx.client);
        if (line === undefined) throw err;
        process.stderr.write(`portico ${spec.name}: ${line}\n`);
        return 1;
      }
    },
  };
}

/** Flags of every command scoped to a project. */
export const PROJECT_FLAGS = { owner: 'value', project: 'value' } as const satisfies Record<string, FlagKind>;
/** Flags of every command scoped to a deployment. */
export const DEPLOYMENT_FLAGS = { ...PROJECT_FLAGS, deployment: 'value' } as const satisfies Record<string, FlagKind>;

/** Help lines of `--owner` and `--project`. */
export const PROJECT_HELP = `  --owner OWNER          owner (namespace) of the project (required)
  --project PROJECT      project name (required)`;
/** Help lines of `--owner`, `--project` and `--deployment`. */
export const DEPLOYMENT_HELP = `${PROJECT_HELP}
  --deployment NAME      deployment name (required)`;
/** Help lines of `--json` and `--help`, the configuration read and the exit codes. */
export const COMMON_HELP = `  --json                 print the API's JSON instead of a table
  --help                 this text

Reads PORTICO_URL (admin API, default http://127.0.0.1:8081) and PORTICO_ADMIN_TOKEN (else the
token file in PORTICO_DATA_DIR). Exit codes: 0 done, 1 the API refused or failed, 2 bad usage.`;

/**
 * `value`, refused when it is `.` or `..`: every required flag and positional names something in
 * the API path, where URL normalisation would resolve such a segment away and send the request
 * to another route (`--deployment .` read "Deployment acme/mnist/versions not found").
 */
function pathSegment(value: string, what: string): string {
  if (value === '.' || value === '..') throw new UsageError(`${what} cannot be "." or ".." (got ${JSON.stringify(value)})`);
  return value;
}

function required(flags: Parsed, name: string): string {
  const v = flags.get(name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return pathSegment(v, `--${name}`);
}

/** `--owner` and `--project`, both required. */
export function projectScope(flags: Parsed): { owner: string; project: string } {
  return { owner: required(flags, 'owner'), project: required(flags, 'project') };
}

/** `--owner`, `--project` and `--deployment`, all required. */
export function deploymentScope(flags: Parsed): { owner: string; project: string; deployment: string } {
  return { ...projectScope(flags), deployment: required(flags, 'deployment') };
}

/** API path of a project's sub-resource: `projectPath(p, 'deployments', name)`. */
export function projectPath(p: { owner: string; project: string }, ...rest: string[]): string {
  return apiPath('projects', p.owner, p.project, ...rest);
}

/** API path of a deployment's sub-resource. */
export function deploymentPath(d: { owner: string; project: string; deployment: string }, ...rest: string[]): string {
  return apiPath('projects', d.owner, d.project, 'deployments', d.deployment, ...rest);
}

/** The positional at `index`, required and not `.` or `..`; `what` names it in the usage error. */
export function positional(flags: Parsed, index: number, what: string): string {
  const v = flags.positionals[index];
  if (v === undefined) throw new UsageError(`${what} is required`);
  return pathSegment(v, what);
}

/** Refuses positionals beyond `count`. */
export function noMorePositionals(flags: Parsed, count: number): void {
  const extra = flags.positionals.slice(count);
  if (extra.length > 0) throw new UsageError(`unexpected argument${extra.length > 1 ? 's' : ''}: ${extra.join(' ')}`);
}

/** A non-negative integer flag or positional. */
export function intArg(value: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) throw new UsageError(`${what} must be a whole number from ${min} to ${max} (got ${JSON.stringify(value)})`);
  return Number(value);
}

const NAME = new RegExp(NAME_PATTERN);

/**
 * A name the API takes (deployment, version, alias...), checked with the API's own rule so that
 * a bad one is a usage error before anything starts.
 */
export function nameArg(value: string, what: string): string {
  if (!NAME.test(value)) throw new UsageError(`${what} must be 1 to 100 letters, digits, ".", "_" or "-", starting with a letter or digit (got ${JSON.stringify(value)})`);
  return value;
}

/** `KEY=VALUE` split at the first `=`. */
export function keyValue(text: string, what: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`${what} must look like KEY=VALUE (got ${JSON.stringify(text)})`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** Left-aligned columns with a header row; empty rows print `(none)`. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '(none)';
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Pretty JSON for `--json`. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/**
 * Dispatches on the first positional (the sub-command); `fallback` when there is none. `only`
 * names the flags that only some sub-commands take: given to another, one is refused rather
 * than ignored (`versions show V --replicas 3` scaled nothing, silently).
 */
export function subcommand(flags: Parsed, known: readonly string[], fallback: string, only: Readonly<Record<string, readonly string[]>> = {}): string {
  const sub = flags.positionals[0] ?? fallback;
  if (!known.includes(sub)) throw new UsageError(`unknown sub-command ${JSON.stringify(sub)} (one of: ${known.join(', ')})`);
  for (const [flag, subs] of Object.entries(only)) {
    if (flags.has(flag) && !subs.includes(sub)) throw new UsageError(`--${flag} does not apply to ${sub} (only to ${subs.join(', ')})`);
  }
  return sub;
}
