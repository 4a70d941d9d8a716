import { open } from 'node:fs/promises';
import { LineCounter, isMap, isSeq, parseDocument } from 'yaml';
import type { Node, ScalarTag, Tags } from 'yaml';
import type { Problem } from './problem.ts';
import { sortProblems } from './problem.ts';
import { DocumentReader, ExpansionLimitError, describe } from './nodes.ts';
import { readEndpoint, suggest } from './endpoint.ts';
import type { EndpointDefinition } from './endpoint.ts';
import { MAX_VALOHAI_YAML_BYTES, decodeValohaiYaml, tooLargeMessage } from './text.ts';

/**
 * The valohai.yaml endpoint parser; this module is its public API (the other modules of the
 * folder are its parts). A valohai.yaml is a YAML list of one-key items (`- endpoint:`,
 * `- step:`, `- pipeline:`, `- task:`, `- deployment:`). Endpoints are validated; the other
 * kinds are accepted whatever their contents; an unknown kind is ignored with a warning, as
 * valohai-yaml's linter does ("No parser for ...").
 *
 *   const { endpoints, problems } = await readValohaiYaml('code/valohai.yaml');
 *   if (problems.length > 0) fail(problems.map((p) => formatProblem(p)).join('\n'));
 */

export { formatProblem, sortProblems } from './problem.ts';
export type { Problem } from './problem.ts';
export { DEFAULT_PORT, ENDPOINT_NAME_PATTERN } from './endpoint.ts';
export type { EndpointDefinition, EndpointFile, SourceLocation } from './endpoint.ts';
export { MAX_VALOHAI_YAML_BYTES } from './text.ts';

/** What parsing a valohai.yaml yields. */
export interface ParseResult {
  /**
   * The endpoints that are valid, in file order. Use them only when `problems` is empty: an
   * invalid endpoint (or the second of two with one name) is left out.
   */
  readonly endpoints: EndpointDefinition[];
  /** Every problem, sorted by position; the file is valid when there is none. */
  readonly problems: Problem[];
  /** Things ignored that may be mistakes (unknown item kinds, no endpoint at all); never fatal. */
  readonly warnings: Problem[];
}

/** Top-level item kinds valohai-yaml knows (`blueprint` is its old name for `pipeline`). */
export const ITEM_KINDS = ['endpoint', 'step', 'pipeline', 'blueprint', 'task', 'deployment'];

// Read plain scalars as valohai-yaml (PyYAML, YAML 1.1) does, where the `yaml` package's 1.1
// schema differs: `y`/`n` are strings, not booleans; a float needs a dot and a signed exponent
// (`e1` and `1e3` are strings); `09` is a string; a plain `2024-01-31` is a date. The tag objects
// are shared by every user of the package in the process (tap's YAML code, for one, turns
// timestamps off), so changed copies are used. A `%YAML 1.2` document keeps the 1.2 rules.
const PYYAML_TESTS = {
  true: /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/,
  false: /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/,
  int: /^[-+]?(?:0|[1-9][0-9_]*)$/,
  float: /^(?:[-+]?[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)$/,
  floatExp: /^(?:[-+]?[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)[eE][-+][0-9]+$/,
};
function pyyamlTags(tags: Tags): Tags {
  const scalar = (t: Tags[number]): ScalarTag | undefined => (typeof t === 'string' || 'collection' in t ? undefined : t);
  const yaml11 = tags.some((t) => scalar(t)?.tag === 'tag:yaml.org,2002:bool' && scalar(t)?.test?.test('y'));
  if (!yaml11) return tags;
  return tags.map((t) => {
    const tag = scalar(t);
    if (tag === undefined) return t;
    const test = (re: RegExp): ScalarTag => ({ ...tag, test: re });
    switch (tag.tag) {
      case 'tag:yaml.org,2002:timestamp':
        return { ...tag, default: true };
      case 'tag:yaml.org,2002:bool':
        return test(tag.identify?.(true) ? PYYAML_TESTS.true : PYYAML_TESTS.false);
      case 'tag:yaml.org,2002:int':
        return tag.format === undefined ? test(PYYAML_TESTS.int) : tag;
      case 'tag:yaml.org,2002:float':
        if (tag.format === 'EXP') return test(PYYAML_TESTS.floatExp);
        return tag.format === undefined && !tag.test?.test('.inf') ? test(PYYAML_TESTS.float) : tag;
      default:
        return tag;
    }
  });
}

// The `yaml` package's messages for the few errors a hand-written file commonly hits, reworded.
const YAML_MESSAGES: Partial<Record<string, string>> = {
  MULTIPLE_DOCS: 'a valohai.yaml holds one YAML document; remove the "---" that starts a second one',
  TAB_AS_INDENT: 'tabs are not allowed as indentation in YAML; indent with spaces',
};

/**
 * Parses and validates a valohai.yaml's text (or bytes, which must be UTF-8). `file` names it
 * in problems (default `valohai.yaml`). Never throws for bad input: a file above
 * `MAX_VALOHAI_YAML_BYTES` is refused before parsing, YAML syntax errors are reported with
 * their positions (and nothing else is checked then), and otherwise every schema problem of
 * every endpoint, duplicate keys anywhere and duplicate endpoint names are all reported.
 */
export function parseValohaiYaml(text: string | Uint8Array, file = 'valohai.yaml'): ParseResult {
  const whole = (message: string, line = 0, column = 0): ParseResult => ({
    endpoints: [],
    problems: [{ file, line, column, path: '', message }],
    warnings: [],
  });
  let source: string;
  if (typeof text === 'string') {
    // Cheap bound first: a string of n UTF-16 units has at most 3n UTF-8 bytes.
    if (text.length * 3 > MAX_VALOHAI_YAML_BYTES) {
      const size = Buffer.byteLength(text, 'utf8');
      if (size > MAX_VALOHAI_YAML_BYTES) return whole(tooLargeMessage(size));
    }
    source = text.startsWith('\uFEFF') ? text.slice(1) : text;
  } else {
    const decoded = decodeValohaiYaml(text);
    if ('problem' in decoded) return whole(decoded.problem.message, decoded.problem.line, decoded.problem.column);
    source = decoded.text;
  }

  const lines = new LineCounter();
  const doc = parseDocument(source, {
    version: '1.1',
    uniqueKeys: false,
    prettyErrors: false,
    lineCounter: lines,
    customTags: pyyamlTags,
  });
  const root = doc.contents as Node | null;
  const r = new DocumentReader(file, lines, doc.errors.length > 0 ? null : root);
  // Syntax errors (aliases to nothing, unknown tags) leave no document worth validating.
  for (const e of doc.errors) r.problem(e.pos[0], '', `invalid YAML: ${YAML_MESSAGES[e.code] ?? e.message}`);
  for (const e of r.aliasErrors) r.problem(e.at, '', `invalid YAML: ${e.message}`);
  // What the `yaml` package only warns about (an unknown !tag) makes PyYAML refuse the file.
  for (const w of doc.warnings) r.problem(w.pos[0], '', `invalid YAML: ${w.message}`);
  if (r.problemCount > 0) return finish(r, []);
  try {
    return finish(r, readItems(r, root));
  } catch (err) {
    if (!(err instanceof ExpansionLimitError)) throw err;
    r.problem(-1, '', err.message);
    return finish(r, []);
  }
}

function finish(r: DocumentReader, endpoints: EndpointDefinition[]): ParseResult {
  const { problems, warnings } = r.finish();
  return { endpoints, problems: sortProblems(problems), warnings: sortProblems(warnings) };
}

function readItems(r: DocumentReader, root: Node | null): EndpointDefinition[] {
  const top = r.value(root, 0);
  if (root === null) {
    r.problem(0, '', 'file is empty; a valohai.yaml is a list of items such as "- endpoint:"');
    return [];
  }
  if (!isSeq(top.node)) {
    r.problem(top.at, '', `file must be a list of items such as "- endpoint:" (got ${describe(top.node)})`);
    return [];
  }
  const endpoints: EndpointDefinition[] = [];
  const names = new Map<string, number>();
  let ordinal = 0;
  top.node.items.forEach((node, i) => {
    const itemPath = `item ${i + 1}`;
    const item = r.item(node, top.at);
    if (!isMap(item.node)) {
      r.problem(item.at, itemPath, `must be a mapping such as "endpoint:" or "step:" (got ${describe(item.node)})`);
      return;
    }
    const entries = r.entries(item.node, itemPath);
    const endpoint = entries.find((e) => e.name === 'endpoint');
    if (endpoint === undefined) {
      r.checkDuplicateKeys(item.node, itemPath);
      if (entries.some((e) => ITEM_KINDS.includes(e.name))) return; // other kinds: not ours to judge
      const first = entries[0];
      if (first === undefined) {
        r.warning(item.at, itemPath, 'empty item is ignored');
        return;
      }
      const hint = suggest(first.name, ITEM_KINDS);
      r.warning(
        first.keyAt,
        itemPath,
        `unknown kind ${JSON.stringify(first.name)} is ignored (${hint === undefined ? `known: ${ITEM_KINDS.join(', ')}` : `did you mean ${hint}?`})`,
      );
      return;
    }
    ordinal++;
    const before = r.problemCount;
    for (const other of entries) {
      if (other === endpoint) continue;
      r.problem(
        other.keyAt,
        itemPath,
        ITEM_KINDS.includes(other.name)
          ? `"${other.name}" cannot share an item with "endpoint"; start a new "- ${other.name}:" item`
          : `"${other.name}" cannot be next to "endpoint" in one item; if it is an endpoint field, indent it under endpoint:`,
      );
    }
    const reading = readEndpoint(r, endpoint.value, endpoint.keyAt, ordinal);
    // Duplicate keys: the item's own keys by item number, the endpoint's by its label.
    r.checkDuplicateKeys(item.node, itemPath, new Map([[endpoint.value.node, reading.label]]));
    // Any problem in the item (a stray key, a duplicate key) leaves its endpoint out.
    let valid = r.problemCount === before;
    if (reading.name !== undefined) {
      const first = names.get(reading.name.value);
      if (first === undefined) names.set(reading.name.value, reading.name.at);
      else {
        valid = false;
        r.problem(reading.name.at, `${reading.label} name`, `duplicate endpoint name; first defined at ${r.where(first)}`);
      }
    }
    if (reading.definition !== undefined && valid) endpoints.push(reading.definition);
  });
  if (ordinal === 0 && r.problemCount === 0) {
    r.warning(-1, '', 'no "- endpoint:" item; there is nothing to serve');
  }
  return endpoints;
}

/**
 * Reads and validates a valohai.yaml from disk; `file` names it in problems (default: `path`
 * as given). Never throws for a bad file: one that cannot be read (missing, a directory,
 * no permission) or is larger than `MAX_VALOHAI_YAML_BYTES` (checked before reading it whole)
 * is a single problem without position.
 */
export async function readValohaiYaml(path: string, file = path): Promise<ParseResult> {
  const whole = (message: string): ParseResult => ({ endpoints: [], problems: [{ file, line: 0, column: 0, path: '', message }], warnings: [] });
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    return whole(readError(err));
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) return whole('cannot read: is a directory, not a file');
    if (stat.size > MAX_VALOHAI_YAML_BYTES) return whole(tooLargeMessage(stat.size));
    // Read one byte past the limit: a file that grew, or a device reporting size 0, is caught too.
    const buffer = Buffer.alloc(MAX_VALOHAI_YAML_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_VALOHAI_YAML_BYTES) return whole(tooLargeMessage(MAX_VALOHAI_YAML_BYTES, true));
    return parseValohaiYaml(buffer.subarray(0, length), file);
  } catch (err) {
    return whole(readError(err));
  } finally {
    await handle.close();
  }
}

function readError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'cannot read: no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot read: permission denied';
  if (code === 'EISDIR') return 'cannot read: is a directory, not a file';
  return `cannot read: ${err instanceof Error ? err.message : String(err)}`;
}
