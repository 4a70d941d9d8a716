import { isAlias, isMap, isScalar, isSeq, isCollection } from 'yaml';
import type { Alias, LineCounter, Node, Scalar, YAMLMap, YAMLSeq } from 'yaml';
import type { Problem } from './problem.ts';

/**
 * Reading a parsed YAML document node by node while keeping positions: alias resolution (one
 * pass, not the `yaml` package's per-alias document walk), `<<` merge keys, duplicate keys, and
 * the problem list with its limits.
 */

/** Problems kept per file; more are counted and summarised in one last problem. */
export const MAX_PROBLEMS = 1000;

/** Nodes read while validating (aliases re-read their target); beyond it the file is refused. */
export const MAX_NODE_VISITS = 1_000_000;

/** A value read from the document: the node with aliases resolved, and where it was written. */
export interface Value {
  /** `null` for a missing or empty value. Never an `Alias`. */
  readonly node: Scalar | YAMLMap | YAMLSeq | null;
  /** Offset to report problems about this value at (the alias itself, or the key of an empty value). */
  readonly at: number;
}

/** One key of a mapping after merges: its name as written, where the key is, and its value. */
export interface Entry {
  readonly name: string;
  readonly keyAt: number;
  readonly value: Value;
}

/** Thrown when aliases make the document expand beyond `MAX_NODE_VISITS`. */
export class ExpansionLimitError extends Error {
  override readonly name = 'ExpansionLimitError';
}

/** Appends a key to a field path: `a.b`, or `a["odd key"]` when the key is not a plain word. */
export function childPath(path: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return path === '' ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

/** Describes a value for messages: `a number (80)`, `a string ("8000")`, `a mapping`, `an empty value`. */
export function describe(node: Value['node']): string {
  if (node === null) return 'an empty value';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  const v = node.value;
  const shown = (s: string): string => (s.length > 40 ? `${s.slice(0, 37)}...` : s);
  const src = typeof node.source === 'string' ? shown(node.source) : shown(String(v));
  if (v === null || v === undefined) return 'an empty value';
  if (typeof v === 'string') return `a string (${JSON.stringify(shown(v))})`;
  if (typeof v === 'number' || typeof v === 'bigint') return Number.isFinite(Number(v)) ? `a number (${src})` : `a non-finite number (${src})`;
  if (typeof v === 'boolean') return `a boolean (${src})`;
  if (v instanceof Date) return `a date (${src})`;
  if (v instanceof Uint8Array) return 'binary data';
  return `a value of tag ${node.tag ?? 'unknown'}`;
}

/** A finite number (JSON Schema's `number`: YAML's .inf and .nan are not JSON numbers). */
export function numberOf(node: Value['node']): number | undefined {
  if (!isScalar(node)) return undefined;
  return typeof node.value === 'number' && Number.isFinite(node.value) ? node.value : undefined;
}

/** The string a scalar holds, if it is a string. */
export function stringOf(node: Value['node']): string | undefined {
  return isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
}

function keyName(key: Scalar): string {
  if (typeof key.value === 'string') return key.value;
  return typeof key.source === 'string' ? key.source : String(key.value);
}

function isMergeKey(key: unknown): boolean {
  return isScalar(key) && typeof key.value === 'symbol' && key.value.description === '<<';
}

/**
 * The reading state of one document: its file name, line counter, resolved anchors and the
 * problems and warnings found so far.
 */
export class DocumentReader {
  readonly file: string;
  private readonly lines: LineCounter;
  private readonly problemList: Problem[] = [];
  private readonly warningList: Problem[] = [];
  private readonly anchors = new Map<Alias, Node>();
  private readonly badAliases: { at: number; message: string }[] = [];
  private dropped = 0;
  private visits = 0;

  constructor(file: string, lines: LineCounter, root: Node | null) {
    this.file = file;
    this.lines = lines;
    this.resolveAnchors(root);
  }

  /** Aliases that name no anchor before them, or the node they are in (a cycle): YAML errors. */
  get aliasErrors(): readonly { readonly at: number; readonly message: string }[] {
    return this.badAliases;
  }

  /** 1-based line and column of a source offset. */
  position(offset: number): { line: number; column: number } {
    const { line, col } = this.lines.linePos(offset);
    return { line: Math.max(line, 1), column: col };
  }

  /** `file:line:column` of a source offset, for messages naming a second position. */
  where(offset: number): string {
    const { line, column } = this.position(offset);
    return `${this.file}:${line}:${column}`;
  }

  /** Records a problem at a source offset (`offset` -1: the whole file). */
  problem(offset: number, path: string, message: string): void {
    if (this.problemList.length >= MAX_PROBLEMS) {
      this.dropped++;
      return;
    }
    this.problemList.push(this.make(offset, path, message));
  }

  /** Records a warning: something ignored that may be a mistake. */
  warning(offset: number, path: string, message: string): void {
    if (this.warningList.length < MAX_PROBLEMS) this.warningList.push(this.make(offset, path, message));
  }

  /** How many problems were recorded (including those dropped beyond `MAX_PROBLEMS`). */
  get problemCount(): number {
    return this.problemList.length + this.dropped;
  }

  /** The problems and warnings, the summary of dropped problems last. */
  finish(): { problems: Problem[]; warnings: Problem[] } {
    const problems = [...this.problemList];
    if (this.dropped > 0) {
      problems.push({ file: this.file, line: 0, column: 0, path: '', message: `${this.dropped} more problems not shown` });
    }
    return { problems, warnings: [...this.warningList] };
  }

  private make(offset: number, path: string, message: string): Problem {
    const { line, column } = offset < 0 ? { line: 0, column: 0 } : this.position(offset);
    return { file: this.file, line, column, path, message };
  }

  /** Reads a list item: like `value`, an empty item reported where it is (else at `listAt`). */
  item(node: unknown, listAt: number): Value {
    const n = node as Node | null | undefined;
    return this.value(n, n?.range?.[0] ?? listAt);
  }

  /**
   * Reads a node: resolves an alias to its anchor and counts the visit. `keyAt` is where to
   * report an empty value (which has no text of its own).
   */
  value(node: Node | null | undefined, keyAt: number): Value {
    if (++this.visits > MAX_NODE_VISITS) {
      throw new ExpansionLimitError(`aliases expand the file to more than ${MAX_NODE_VISITS} values`);
    }
    if (node === null || node === undefined) return { node: null, at: keyAt };
    const at = node.range?.[0] ?? keyAt;
    const target = isAlias(node) ? this.anchors.get(node) : node;
    if (target === undefined || isAlias(target)) return { node: null, at };
    if (isScalar(target) && (target.value === null || target.value === undefined) && target.source === '') {
      return { node: null, at: isAlias(node) ? at : keyAt };
    }
    return { node: target, at };
  }

  /**
   * The entries of a mapping as YAML 1.1 reads it: the last of duplicate keys wins (duplicates
   * are reported by `checkDuplicateKeys`), then `<<` merges add the keys not given (earlier
   * merge sources first). Reports non-scalar keys and bad merge values under `path`, unless `quiet`.
   */
  entries(map: YAMLMap, path: string, quiet = false, depth = 0): Entry[] {
    const out = new Map<string, Entry>();
    const merges: { value: Node | null; keyAt: number }[] = [];
    for (const pair of map.items) {
      const keyNode = pair.key as Node | null;
      const keyAt = keyNode?.range?.[0] ?? map.range?.[0] ?? 0;
      if (isMergeKey(keyNode)) {
        merges.push({ value: pair.value as Node | null, keyAt });
        continue;
      }
      const key = this.value(keyNode, keyAt).node;
      if (key !== null && !isScalar(key)) {
        if (!quiet) this.problem(keyAt, path, `keys must be plain strings (got ${describe(key)})`);
        continue;
      }
      const name = key === null ? '' : keyName(key);
      out.delete(name);
      out.set(name, { name, keyAt, value: this.value(pair.value as Node | null, keyAt) });
    }
    for (const merge of merges) {
      const v = this.value(merge.value, merge.keyAt);
      const sources = isSeq(v.node) ? v.node.items.map((it) => this.item(it, v.at)) : [v];
      for (const source of sources) {
        if (!isMap(source.node) || depth > 20) {
          if (!quiet) this.problem(source.at, `${path} <<`, `must merge a mapping or a list of mappings (got ${describe(source.node)})`);
          continue;
        }
        for (const e of this.entries(source.node, path, quiet, depth + 1)) if (!out.has(e.name)) out.set(e.name, e);
      }
    }
    return [...out.values()];
  }

  /**
   * Reports every key written twice in one mapping, anywhere below `node` (aliases are not
   * followed), at the second key and naming the first. Paths start with `prefix`; a node found in
   * `prefixes` starts a new prefix (an endpoint's label for its mapping).
   */
  checkDuplicateKeys(node: Node | null | undefined, prefix: string, prefixes: ReadonlyMap<unknown, string> = new Map()): void {
    type Frame = { node: Node | null | undefined; prefix: string; field: string };
    const show = (f: { prefix: string; field: string }): string => (f.field === '' ? f.prefix : `${f.prefix} ${f.field}`);
    const child = (n: Node | null | undefined, f: Frame, field: string): Frame => {
      const renamed = n === null || n === undefined ? undefined : prefixes.get(n);
      return renamed === undefined ? { node: n, prefix: f.prefix, field } : { node: n, prefix: renamed, field: '' };
    };
    const stack: Frame[] = [{ node, prefix, field: '' }];
    while (stack.length > 0) {
      const f = stack.pop() as Frame;
      const n = f.node;
      if (isMap(n)) {
        const seen = new Map<string, number>();
        const children: Frame[] = [];
        for (const pair of n.items) {
          const key = pair.key as Node | null;
          if (isScalar(key) && !isMergeKey(key)) {
            const name = keyName(key);
            const field = childPath(f.field, name);
            const at = key.range?.[0] ?? 0;
            const first = seen.get(name);
            if (first === undefined) seen.set(name, at);
            else this.problem(at, show({ prefix: f.prefix, field }), `duplicate key; first written at ${this.where(first)}`);
            children.push(child(pair.value as Node | null, f, field));
          } else {
            children.push(child(pair.value as Node | null, f, f.field));
          }
        }
        stack.push(...children.reverse());
      } else if (isSeq(n)) {
        stack.push(...n.items.map((it, i) => child(it as Node, f, `${f.field}[${i}]`)).reverse());
      }
    }
  }

  /** One walk in document order: each alias resolves to the last node anchored with its name before it. */
  private resolveAnchors(root: Node | null): void {
    const current = new Map<string, Node>();
    const stack: (Node | null | undefined)[] = [root];
    while (stack.length > 0) {
      const n = stack.pop();
      if (n === null || n === undefined) continue;
      if (isAlias(n)) {
        const target = current.get(n.source);
        const at = n.range?.[0] ?? 0;
        if (target === undefined) this.badAliases.push({ at, message: `alias *${n.source} has no anchor &${n.source} before it` });
        else if (contains(target, n)) this.badAliases.push({ at, message: `alias *${n.source} is inside the node it names (a cycle)` });
        else this.anchors.set(n, target);
        continue;
      }
      if (n.anchor) current.set(n.anchor, n);
      if (isMap(n)) {
        for (let i = n.items.length - 1; i >= 0; i--) {
          const pair = n.items[i];
          if (!pair) continue;
          stack.push(pair.value as Node | null, pair.key as Node | null);
        }
      } else if (isSeq(n)) {
        for (let i = n.items.length - 1; i >= 0; i--) stack.push(n.items[i] as Node);
      }
    }
  }
}

function contains(outer: Node, inner: Node): boolean {
  if (!isCollection(outer)) return false;
  const [s, , e] = outer.range ?? [0, 0, 0];
  const at = inner.range?.[0] ?? -1;
  return at >= s && at < e;
}
