import { posix } from 'node:path';
import { isMap, isSeq } from 'yaml';
import type { YAMLMap } from 'yaml';
import type { Resources, ServerCommand, Toleration } from '../runtime/runtime.ts';
import { childPath, describe, numberOf, stringOf } from './nodes.ts';
import type { DocumentReader, Entry, Value } from './nodes.ts';

/**
 * One `- endpoint:` item, validated by hand against docs/endpoint.schema.json (transcribed from
 * valohai-yaml's schema): every keyword of that schema is checked here, in the order of the
 * schema, and each violation is reported with its position and field path. A few checks go
 * beyond the schema because Portico relies on them (see `readEndpoint`).
 */

/** `name` must match this (schema `pattern`). */
export const ENDPOINT_NAME_PATTERN = /^[a-z][a-z0-9-]+$/;

/** `port` when the endpoint does not give one. */
export const DEFAULT_PORT = 8000;

/** A file an endpoint declares: filled in per version, placed at `path` relative to the code. */
export interface EndpointFile {
  readonly name: string;
  readonly path: string;
  readonly description?: string;
}

/** Where something is written in a valohai.yaml (1-based line and column). */
export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

/** A valid `- endpoint:` of a valohai.yaml, in the shape the builder and runtimes use. */
export interface EndpointDefinition {
  readonly name: string;
  readonly image: string;
  readonly description?: string;
  /** The port the app listens on (1025..65535); 8000 when not given. */
  readonly port: number;
  /** `server-command` string -> shell, list -> see `listCommand`, `wsgi` -> wsgi module[:callable]. */
  readonly command: ServerCommand;
  /** `server-command` exactly as written (a string or a list of strings), when given. */
  readonly serverCommand?: string | readonly string[];
  /** `wsgi` exactly as written, when given. */
  readonly wsgi?: string;
  /** The declared files, in file order (empty when none). */
  readonly files: readonly EndpointFile[];
  readonly resources?: Resources;
  readonly nodeSelector?: string;
  readonly tolerations?: readonly Toleration[];
  /** Where the `endpoint:` key of this item is. */
  readonly location: SourceLocation;
}

const ENDPOINT_FIELDS = ['name', 'description', 'image', 'port', 'server-command', 'wsgi', 'files', 'node-selector', 'resources', 'tolerations'];
const FILE_FIELDS = ['name', 'description', 'path'];
const RESOURCE_FIELDS = ['cpu', 'memory', 'ephemeral-storage', 'devices'];
const MINMAX_FIELDS = ['min', 'max'];
const TOLERATION_FIELDS = ['key', 'operator', 'value', 'effect'];
const OPERATORS = ['Exists', 'Equal'] as const;
const EFFECTS = ['PreferNoSchedule', 'NoSchedule', 'NoExecute'] as const;

/** How problems of an endpoint are labelled: `endpoint "predict"`, or `endpoint #2` (its ordinal) without a usable name. */
export function endpointLabel(name: string | undefined, ordinal: number): string {
  if (name === undefined) return `endpoint #${ordinal}`;
  return `endpoint ${JSON.stringify(name.length > 60 ? `${name.slice(0, 57)}...` : name)}`;
}

/**
 * The allowed name a misspelt one most likely meant: the same after lower-casing and `_` -> `-`,
 * or within 1 edit (a swap of neighbours counts as one) for names of 4-5 characters, 2 beyond.
 */
export function suggest(name: string, allowed: readonly string[]): string | undefined {
  const norm = name.toLowerCase().replaceAll('_', '-');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const a of allowed) {
    if (a === norm) return a;
    const limit = Math.min(a.length, norm.length) <= 3 ? 0 : Math.min(a.length, norm.length) <= 5 ? 1 : 2;
    const d = editDistance(norm, a);
    if (d <= limit && d < bestDistance) {
      best = a;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] as number[];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(at(i, j), at(i - 2, j - 2) + 1);
    }
  }
  return at(a.length, b.length);
}

/** What `readEndpoint` found out about one endpoint item. */
export interface EndpointReading {
  /** Prefix of the paths of this endpoint's problems (see `endpointLabel`). */
  readonly label: string;
  /** The `name` it gives, when that is a string (valid or not), and where. */
  readonly name?: { readonly value: string; readonly at: number };
  /** Present when the endpoint has no problem. */
  readonly definition?: EndpointDefinition;
}

/**
 * Validates one endpoint item and, when it has no problem, returns its definition. `item` is
 * the value of the `endpoint:` key at `keyAt`; `ordinal` counts endpoints from 1 (for labels).
 *
 * Beyond the schema (which stays checked exactly): numbers must be finite (YAML's .inf/.nan are
 * not JSON numbers), `port` must be an integer, `server-command` (a string, a list and each of
 * its items) and `wsgi` must not be empty or blank (nothing could run), `wsgi` is `module` or
 * `module:callable` with neither part empty, a file `path` must be a
 * relative path that stays inside the code directory, two files of one endpoint may not share a
 * name or a path, and a resource `min` may not exceed its `max`.
 */
export function readEndpoint(r: DocumentReader, item: Value, keyAt: number, ordinal: number): EndpointReading {
  const nameEntry = isMap(item.node) ? r.entries(item.node, '', true).find((e) => e.name === 'name') : undefined;
  const nameValue = nameEntry === undefined ? undefined : stringOf(nameEntry.value.node);
  const name = nameEntry !== undefined && nameValue !== undefined ? { value: nameValue, at: nameEntry.value.at } : undefined;
  const label = endpointLabel(name?.value, ordinal);
  const definition = new EndpointReader(r, label).read(item, keyAt);
  return { label, ...(name !== undefined && { name }), ...(definition !== undefined && { definition }) };
}

class EndpointReader {
  private readonly r: DocumentReader;
  private readonly label: string;

  constructor(r: DocumentReader, label: string) {
    this.r = r;
    this.label = label;
  }

  private problem(at: number, field: string, message: string): void {
    this.r.problem(at, field === '' ? this.label : `${this.label} ${field}`, message);
  }

  read(item: Value, keyAt: number): EndpointDefinition | undefined {
    const before = this.r.problemCount;
    if (!isMap(item.node)) {
      this.problem(item.at, '', `must be a mapping of endpoint fields such as name, image and server-command (got ${describe(item.node)})`);
      return undefined;
    }
    const fields = this.fields(item.node, '', ENDPOINT_FIELDS, 'an endpoint');
    const get = (name: string): Value | undefined => fields.get(name)?.value;

    for (const required of ['name', 'image']) {
      if (!fields.has(required)) this.problem(keyAt, required, 'is required');
    }
    const name = this.string(get('name'), 'name');
    if (name !== undefined && !ENDPOINT_NAME_PATTERN.test(name)) {
      this.problem((get('name') as Value).at, 'name', `must match ${ENDPOINT_NAME_PATTERN.source}`);
    }
    const description = this.string(get('description'), 'description');
    const image = this.string(get('image'), 'image');
    const port = this.port(get('port'));

    // oneOf [{required: [server-command]}, {required: [wsgi]}]: exactly one of the two keys.
    const sc = fields.get('server-command');
    const ws = fields.get('wsgi');
    if (sc === undefined && ws === undefined) {
      this.problem(keyAt, '', 'needs server-command or wsgi (exactly one of them)');
    } else if (sc !== undefined && ws !== undefined) {
      const [, later] = sc.keyAt < ws.keyAt ? [sc, ws] : [ws, sc];
      const other = later === ws ? 'server-command' : 'wsgi';
      this.problem(later.keyAt, later.name, `cannot be given together with ${other} (exactly one of them)`);
    }
    const serverCommand = this.serverCommand(get('server-command'));
    const wsgi = this.wsgi(get('wsgi'));
    const files = this.files(get('files'));
    const nodeSelector = this.string(get('node-selector'), 'node-selector');
    const nodeSelectorValue = get('node-selector');
    if (nodeSelector !== undefined && nodeSelectorValue !== undefined && !nodeSelector.includes('=')) {
      this.problem(nodeSelectorValue.at, 'node-selector', 'must match = (a node label such as accelerator=tesla-v100)');
    }
    const resources = this.resources(get('resources'));
    const tolerations = this.tolerations(get('tolerations'));

    if (this.r.problemCount !== before || name === undefined || image === undefined) return undefined;
    const command: ServerCommand | undefined =
      serverCommand !== undefined
        ? typeof serverCommand === 'string'
          ? { kind: 'shell', command: serverCommand }
          : listCommand(serverCommand)
        : wsgi !== undefined
          ? { kind: 'wsgi', module: wsgi }
          : undefined;
    if (command === undefined) return undefined;
    const { line, column } = this.r.position(keyAt);
    return {
      name,
      image,
      ...(description !== undefined && { description }),
      port: port ?? DEFAULT_PORT,
      command,
      ...(serverCommand !== undefined && { serverCommand }),
      ...(wsgi !== undefined && { wsgi }),
      files: files ?? [],
      ...(resources !== undefined && { resources }),
      ...(nodeSelector !== undefined && { nodeSelector }),
      ...(tolerations !== undefined && { tolerations }),
      location: { file: this.r.file, line, column },
    };
  }

  /** The entries of a mapping by name; reports each key not in `allowed` (additionalProperties: false). */
  private fields(map: YAMLMap, path: string, allowed: readonly string[], what: string): Map<string, Entry> {
    const out = new Map<string, Entry>();
    for (const e of this.r.entries(map, path === '' ? this.label : `${this.label} ${path}`)) {
      if (allowed.includes(e.name)) {
        out.set(e.name, e);
        continue;
      }
      const hint = suggest(e.name, allowed);
      this.problem(
        e.keyAt,
        childPath(path, e.name),
        hint === undefined
          ? `is not a field of ${what} (allowed: ${allowed.join(', ')})`
          : `is not a field of ${what}; did you mean ${hint}?`,
      );
    }
    return out;
  }

  private string(v: Value | undefined, path: string): string | undefined {
    if (v === undefined) return undefined;
    const s = stringOf(v.node);
    if (s === undefined) this.problem(v.at, path, `must be a string (got ${describe(v.node)})`);
    return s;
  }

  private number(v: Value | undefined, path: string, integer = false): number | undefined {
    if (v === undefined) return undefined;
    const n = numberOf(v.node);
    if (n === undefined || (integer && !Number.isInteger(n))) {
      this.problem(v.at, path, `must be ${integer ? 'an integer' : 'a number'} (got ${describe(v.node)})`);
      return undefined;
    }
    return n;
  }

  private enumeration<T extends string>(v: Value | undefined, path: string, values: readonly T[]): T | undefined {
    if (v === undefined) return undefined;
    const s = stringOf(v.node);
    if (s !== undefined && (values as readonly string[]).includes(s)) return s as T;
    this.problem(v.at, path, `must be one of ${values.join(', ')} (got ${describe(v.node)})`);
    return undefined;
  }

  private port(v: Value | undefined): number | undefined {
    const port = this.number(v, 'port');
    if (port === undefined || v === undefined) return undefined;
    // The schema's type is "number", but no server listens on port 8000.5.
    if (!Number.isInteger(port)) {
      this.problem(v.at, 'port', `must be an integer from 1025 to 65535 (got ${port})`);
      return undefined;
    }
    if (port < 1025 || port > 65535) {
      this.problem(v.at, 'port', `must be between 1025 and 65535 (got ${port})`);
      return undefined;
    }
    return port;
  }

  /** A string that is something to run: the schema takes `""`, but an empty command runs nothing. */
  private command(v: Value | undefined, path: string): string | undefined {
    const s = this.string(v, path);
    if (s !== undefined && v !== undefined && s.trim() === '') {
      this.problem(v.at, path, `must not be empty or blank (got ${describe(v.node)})`);
      return undefined;
    }
    return s;
  }

  /** `module` or `module:callable` (as gunicorn reads it): neither part may be empty. */
  private wsgi(v: Value | undefined): string | undefined {
    const s = this.command(v, 'wsgi');
    if (s === undefined || v === undefined) return s;
    const [module, ...callable] = s.trim().split(':');
    if (module === '' || (callable.length > 0 && callable.join(':').trim() === '')) {
      this.problem(v.at, 'wsgi', `must be module or module:callable (got ${describe(v.node)})`);
      return undefined;
    }
    return s;
  }

  private serverCommand(v: Value | undefined): string | string[] | undefined {
    if (v === undefined) return undefined;
    if (stringOf(v.node) !== undefined) return this.command(v, 'server-command');
    if (!isSeq(v.node)) {
      this.problem(v.at, 'server-command', `must be a string or a list of strings (got ${describe(v.node)})`);
      return undefined;
    }
    if (v.node.items.length === 0) {
      this.problem(v.at, 'server-command', 'must not be an empty list');
      return undefined;
    }
    const argv: string[] = [];
    v.node.items.forEach((it, i) => {
      const arg = this.command(this.r.item(it, v.at), `server-command[${i}]`);
      if (arg !== undefined) argv.push(arg);
    });
    return argv.length === v.node.items.length ? argv : undefined;
  }

  private files(v: Value | undefined): EndpointFile[] | undefined {
    if (v === undefined) return undefined;
    if (!isSeq(v.node)) {
      this.problem(v.at, 'files', `must be a list of files, each with name and path (got ${describe(v.node)})`);
      return undefined;
    }
    const out: EndpointFile[] = [];
    const names = new Map<string, number>();
    const paths = new Map<string, { name: string; at: number }>();
    v.node.items.forEach((it, i) => {
      const path = `files[${i}]`;
      const item = this.r.item(it, v.at);
      if (!isMap(item.node)) {
        this.problem(item.at, path, `must be a mapping with name and path (got ${describe(item.node)})`);
        return;
      }
      const fields = this.fields(item.node, path, FILE_FIELDS, 'a file');
      for (const required of ['name', 'path']) {
        if (!fields.has(required)) this.problem(item.at, `${path}.${required}`, 'is required');
      }
      const name = this.string(fields.get('name')?.value, `${path}.name`);
      const filePath = this.string(fields.get('path')?.value, `${path}.path`);
      const description = this.string(fields.get('description')?.value, `${path}.description`);
      if (name !== undefined) {
        const at = (fields.get('name') as Entry).value.at;
        const first = names.get(name);
        if (first !== undefined) this.problem(at, `${path}.name`, `duplicate file name ${JSON.stringify(name)}; first at ${this.r.where(first)}`);
        else names.set(name, at);
      }
      if (filePath !== undefined) {
        const at = (fields.get('path') as Entry).value.at;
        const normal = posix.normalize(filePath);
        if (filePath === '' || filePath.includes('\0') || posix.isAbsolute(filePath) || normal === '.' || normal === '..' || normal.startsWith('../')) {
          this.problem(at, `${path}.path`, 'must be a relative file path inside the code directory');
        } else {
          const first = paths.get(normal);
          if (first !== undefined) this.problem(at, `${path}.path`, `same path as file ${JSON.stringify(first.name)} at ${this.r.where(first.at)}`);
          else paths.set(normal, { name: name ?? '', at });
        }
      }
      if (name !== undefined && filePath !== undefined) {
        out.push({ name, path: filePath, ...(description !== undefined && { description }) });
      }
    });
    return out;
  }

  private resources(v: Value | undefined): Resources | undefined {
    if (v === undefined) return undefined;
    if (!isMap(v.node)) {
      this.problem(v.at, 'resources', `must be a mapping of cpu, memory, ephemeral-storage and devices (got ${describe(v.node)})`);
      return undefined;
    }
    const fields = this.fields(v.node, 'resources', RESOURCE_FIELDS, 'resources');
    const cpu = this.minmax(fields.get('cpu')?.value, 'resources.cpu', false);
    const memory = this.minmax(fields.get('memory')?.value, 'resources.memory', false);
    const storage = this.minmax(fields.get('ephemeral-storage')?.value, 'resources.ephemeral-storage', true);
    const devices = this.devices(fields.get('devices')?.value);
    return {
      ...(cpu !== undefined && { cpu }),
      ...(memory !== undefined && { memory }),
      ...(storage !== undefined && { 'ephemeral-storage': storage }),
      ...(devices !== undefined && { devices }),
    };
  }

  private minmax(v: Value | undefined, path: string, integer: boolean): { min?: number; max?: number } | undefined {
    if (v === undefined) return undefined;
    if (!isMap(v.node)) {
      this.problem(v.at, path, `must be a mapping with min and/or max (got ${describe(v.node)})`);
      return undefined;
    }
    const fields = this.fields(v.node, path, MINMAX_FIELDS, path);
    const min = this.number(fields.get('min')?.value, `${path}.min`, integer);
    const max = this.number(fields.get('max')?.value, `${path}.max`, integer);
    if (min !== undefined && max !== undefined && min > max) {
      this.problem((fields.get('min') as Entry).value.at, `${path}.min`, `must not be larger than max (${min} > ${max})`);
    }
    return { ...(min !== undefined && { min }), ...(max !== undefined && { max }) };
  }

  private devices(v: Value | undefined): Record<string, number> | undefined {
    if (v === undefined) return undefined;
    if (!isMap(v.node)) {
      this.problem(v.at, 'resources.devices', `must be a mapping of device name to count (got ${describe(v.node)})`);
      return undefined;
    }
    const out: Record<string, number> = {};
    for (const e of this.r.entries(v.node, `${this.label} resources.devices`)) {
      const path = childPath('resources.devices', e.name);
      // patternProperties "^.+$": a name that does not match (the empty one) is not constrained.
      if (!/^.+$/.test(e.name)) {
        this.r.warning(e.keyAt, `${this.label} ${path}`, 'a device without a name is ignored');
        continue;
      }
      const n = numberOf(e.value.node);
      if (n === undefined || n < 1) {
        this.problem(e.value.at, path, `must be a number of at least 1 (got ${describe(e.value.node)})`);
        continue;
      }
      out[e.name] = n;
    }
    return out;
  }

  private tolerations(v: Value | undefined): Toleration[] | undefined {
    if (v === undefined) return undefined;
    if (!isSeq(v.node)) {
      this.problem(v.at, 'tolerations', `must be a list of tolerations (got ${describe(v.node)})`);
      return undefined;
    }
    const out: Toleration[] = [];
    v.node.items.forEach((it, i) => {
      const path = `tolerations[${i}]`;
      const item = this.r.item(it, v.at);
      if (!isMap(item.node)) {
        this.problem(item.at, path, `must be a mapping of key, operator, value and effect (got ${describe(item.node)})`);
        return;
      }
      const fields = this.fields(item.node, path, TOLERATION_FIELDS, 'a toleration');
      const key = this.string(fields.get('key')?.value, `${path}.key`);
      const operatorValue = fields.get('operator')?.value;
      const operator = this.enumeration(operatorValue, `${path}.operator`, OPERATORS);
      const value = this.string(fields.get('value')?.value, `${path}.value`);
      const effect = this.enumeration(fields.get('effect')?.value, `${path}.effect`, EFFECTS);
      // oneOf [{required: [key]}, {key absent, operator (if any) const Exists}]: without a key
      // the operator may only be Exists. (An operator that is not Exists/Equal was reported above.)
      if (!fields.has('key') && operator === 'Equal' && operatorValue !== undefined) {
        this.problem(operatorValue.at, `${path}.operator`, 'must be Exists when the toleration has no key');
      }
      out.push({
        ...(key !== undefined && { key }),
        ...(operator !== undefined && { operator }),
        ...(value !== undefined && { value }),
        ...(effect !== undefined && { effect }),
      });
    });
    return out;
  }
}

/**
 * A `server-command` list. Items that are single words (`[node, server.js]`) are exec'd as an
 * argv, with no shell in between. A list with an item holding spaces
 * (`["python run_server.py"]`, as in valohai-yaml's own example) is a list of shell command
 * lines, as Valohai runs a step's command list: run in order through the shell, stopping at the
 * first that fails, the last one being the server.
 */
export function listCommand(items: readonly string[]): ServerCommand {
  if (items.some((i) => /\s/.test(i))) return { kind: 'shell', command: items.join(' && ') };
  return { kind: 'exec', argv: items };
}
