/**
 * A small schema language for the admin API. One declaration both validates a request (query
 * strings coerced, JSON bodies checked, every problem named by its path such as
 * `body.endpoints.predict.replicas`) and describes it as JSON Schema (2020-12, as OpenAPI 3.1
 * uses) for the OpenAPI document, so the two cannot drift apart.
 */

/** One thing wrong with a request, at a path like `body.source.git.url`. */
export interface Problem {
  readonly path: string;
  readonly message: string;
}

/** A JSON Schema object (the subset this module writes). */
export type JsonSchema = { readonly [key: string]: unknown };

/** How `check` treats its input. `coerce`: values are query-string strings to convert. */
export interface CheckOptions {
  readonly coerce: boolean;
}

/** A schema for values of type `T`. */
export interface Schema<T> {
  readonly kind: 'string' | 'int' | 'bool' | 'enum' | 'object' | 'record' | 'array' | 'oneOf';
  readonly optional: boolean;
  /** The checked (and, for query strings, converted) value, or `undefined` with `problems` pushed. */
  check(value: unknown, path: string, problems: Problem[], opts: CheckOptions): T | undefined;
  /** The JSON Schema this schema enforces. */
  jsonSchema(): JsonSchema;
}

/** The type a schema checks. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

interface Doc {
  /** Shown in the OpenAPI document. */
  readonly description?: string;
  /** An example value, shown in the OpenAPI document (and used by tests to build valid input). */
  readonly example?: unknown;
}

function withDoc(schema: Record<string, unknown>, doc: Doc): JsonSchema {
  const out: Record<string, unknown> = { ...schema };
  if (doc.description !== undefined) out.description = doc.description;
  if (doc.example !== undefined) out.examples = [doc.example];
  return out;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)?.slice(0, 40)}`;
}

/** `a.b`, or `a["odd key"]` for keys that are not plain names. */
export function joinPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z0-9_-]+$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Options of `string()`. Lengths count UTF-16 code units, as JSON Schema validators do not; keep limits generous. */
export interface StringOptions extends Doc {
  readonly min?: number;
  readonly max?: number;
  /** An anchored regular expression source, e.g. `^[a-z]+$`. */
  readonly pattern?: string;
  /** JSON Schema `format` (documentation only). */
  readonly format?: string;
}

/** A string with optional length bounds and pattern. */
export function string(opts: StringOptions = {}): Schema<string> {
  const re = opts.pattern === undefined ? undefined : new RegExp(opts.pattern, 'u');
  const min = opts.min ?? 0;
  return {
    kind: 'string',
    optional: false,
    check(value, path, problems) {
      if (typeof value !== 'string') {
        problems.push({ path, message: `must be a string, not ${describe(value)}` });
        return undefined;
      }
      if (value.length < min) {
        problems.push({ path, message: min === 1 ? 'must not be empty' : `must be at least ${min} characters long` });
        return undefined;
      }
      if (opts.max !== undefined && value.length > opts.max) {
        problems.push({ path, message: `must be at most ${opts.max} characters long` });
        return undefined;
      }
      if (re && !re.test(value)) {
        problems.push({ path, message: `must match ${opts.pattern} (got ${JSON.stringify(value.slice(0, 60))})` });
        return undefined;
      }
      return value;
    },
    jsonSchema() {
      const s: Record<string, unknown> = { type: 'string' };
      if (min > 0) s.minLength = min;
      if (opts.max !== undefined) s.maxLength = opts.max;
      if (opts.pattern !== undefined) s.pattern = opts.pattern;
      if (opts.format !== undefined) s.format = opts.format;
      return withDoc(s, opts);
    },
  };
}

/** Options of `int()`. */
export interface IntOptions extends Doc {
  readonly min?: number;
  readonly max?: number;
}

/** A whole number within `[min, max]` (a query-string value is converted). */
export function int(opts: IntOptions = {}): Schema<number> {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  const range = opts.min !== undefined && opts.max !== undefined ? ` from ${min} to ${max}`
    : opts.min !== undefined ? ` of at least ${min}` : opts.max !== undefined ? ` of at most ${max}` : '';
  return {
    kind: 'int',
    optional: false,
    check(value, path, problems, { coerce }) {
      let v = value;
      if (coerce && typeof v === 'string' && /^-?\d{1,16}$/.test(v)) v = Number(v);
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
        problems.push({ path, message: `must be an integer${range}` });
        return undefined;
      }
      return v;
    },
    jsonSchema() {
      const s: Record<string, unknown> = { type: 'integer' };
      if (opts.min !== undefined) s.minimum = opts.min;
      if (opts.max !== undefined) s.maximum = opts.max;
      return withDoc(s, opts);
    },
  };
}

/** true or false (a query-string `true`/`1`/`yes`/empty or `false`/`0`/`no` is converted). */
export function bool(opts: Doc = {}): Schema<boolean> {
  return {
    kind: 'bool',
    optional: false,
    check(value, path, problems, { coerce }) {
      if (coerce && typeof value === 'string') {
        if (['', 'true', '1', 'yes'].includes(value)) return true;
        if (['false', '0', 'no'].includes(value)) return false;
      }
      if (typeof value !== 'boolean') {
        problems.push({ path, message: 'must be true or false' });
        return undefined;
      }
      return value;
    },
    jsonSchema: () => withDoc({ type: 'boolean' }, opts),
  };
}

/** One of a fixed set of strings. */
export function enumOf<const V extends string>(values: readonly V[], opts: Doc = {}): Schema<V> {
  return {
    kind: 'enum',
    optional: false,
    check(value, path, problems) {
      if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
        problems.push({ path, message: `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` });
        return undefined;
      }
      return value as V;
    },
    jsonSchema: () => withDoc({ type: 'string', enum: [...values] }, opts),
  };
}

/** `schema`, or `null` (a PATCH that puts a setting back to its default). */
export function nullable<T>(schema: Schema<T>, opts: Doc = {}): Schema<T | null> {
  return {
    kind: schema.kind,
    optional: schema.optional,
    check(value, path, problems, checkOpts) {
      return value === null ? null : schema.check(value, path, problems, checkOpts);
    },
    jsonSchema: () => withDoc({ oneOf: [schema.jsonSchema(), { type: 'null' }] }, opts),
  };
}

/** Marks a property of `object()` as optional. */
export function optional<T>(schema: Schema<T>): Schema<T> & { readonly optional: true } {
  return { ...schema, optional: true };
}

type Props = Record<string, Schema<unknown>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** The type `object(props)` checks: optional properties become `?:`. */
export type ObjectOf<P extends Props> = Simplify<
  { [K in keyof P as P[K] extends { readonly optional: true } ? never : K]: Infer<P[K]> } & {
    [K in keyof P as P[K] extends { readonly optional: true } ? K : never]?: Infer<P[K]>;
  }
>;

/** A schema of an object with fixed properties; the properties are readable for documentation. */
export interface ObjectSchema<T> extends Schema<T> {
  readonly properties: Readonly<Record<string, Schema<unknown>>>;
}

/** An object with exactly these properties (unknown ones are refused: a typo must not pass). */
export function object<const P extends Props>(props: P, opts: Doc & { readonly unknownLabel?: string } = {}): ObjectSchema<ObjectOf<P>> {
  const unknownLabel = opts.unknownLabel ?? 'field';
  return {
    kind: 'object',
    optional: false,
    properties: props,
    check(value, path, problems, checkOpts) {
      if (!isPlainObject(value)) {
        problems.push({ path, message: `must be an object, not ${describe(value)}` });
        return undefined;
      }
      const before = problems.length;
      const entries: [string, unknown][] = [];
      for (const [key, schema] of Object.entries(props)) {
        const here = joinPath(path, key);
        if (!Object.hasOwn(value, key) || value[key] === undefined) {
          if (!schema.optional) problems.push({ path: here, message: 'is required' });
          continue;
        }
        const v = schema.check(value[key], here, problems, checkOpts);
        if (v !== undefined) entries.push([key, v]);
      }
      for (const key of Object.keys(value)) {
        if (!Object.hasOwn(props, key)) {
          const known = Object.keys(props).map((k) => JSON.stringify(k)).join(', ');
          problems.push({ path: joinPath(path, key), message: `is not a known ${unknownLabel}${known ? ` (known: ${known})` : ''}` });
        }
      }
      // Object.fromEntries defines own properties, so a "__proto__" key stays plain data.
      return problems.length === before ? (Object.fromEntries(entries) as ObjectOf<P>) : undefined;
    },
    jsonSchema() {
      const required = Object.entries(props).filter(([, s]) => !s.optional).map(([k]) => k);
      const s: Record<string, unknown> = {
        type: 'object',
        properties: Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.jsonSchema()])),
        additionalProperties: false,
      };
      if (required.length > 0) s.required = required;
      return withDoc(s, opts);
    },
  };
}

/** Options of `record()`. */
export interface RecordOptions extends Doc {
  /** Anchored pattern every key must match. */
  readonly keyPattern?: string;
  /** An example key (shown in the document as `propertyNames.examples`). */
  readonly keyExample?: string;
  readonly maxKeys?: number;
}

/** An object used as a map: any keys (matching `keyPattern`), every value checked by `values`. */
export function record<T>(values: Schema<T>, opts: RecordOptions = {}): Schema<Record<string, T>> {
  const re = opts.keyPattern === undefined ? undefined : new RegExp(opts.keyPattern, 'u');
  return {
    kind: 'record',
    optional: false,
    check(value, path, problems, checkOpts) {
      if (!isPlainObject(value)) {
        problems.push({ path, message: `must be an object, not ${describe(value)}` });
        return undefined;
      }
      const keys = Object.keys(value);
      if (opts.maxKeys !== undefined && keys.length > opts.maxKeys) {
        problems.push({ path, message: `must have at most ${opts.maxKeys} entries` });
        return undefined;
      }
      const before = problems.length;
      const entries: [string, T][] = [];
      for (const key of keys) {
        const here = joinPath(path, key);
        if (re && !re.test(key)) {
          problems.push({ path: here, message: `name must match ${opts.keyPattern}` });
          continue;
        }
        const v = values.check(value[key], here, problems, checkOpts);
        if (v !== undefined) entries.push([key, v]);
      }
      return problems.length === before ? Object.fromEntries(entries) : undefined;
    },
    jsonSchema() {
      const s: Record<string, unknown> = { type: 'object', additionalProperties: values.jsonSchema() };
      if (opts.keyPattern !== undefined || opts.keyExample !== undefined) {
        s.propertyNames = {
          ...(opts.keyPattern !== undefined ? { pattern: opts.keyPattern } : {}),
          ...(opts.keyExample !== undefined ? { examples: [opts.keyExample] } : {}),
        };
      }
      if (opts.maxKeys !== undefined) s.maxProperties = opts.maxKeys;
      return withDoc(s, opts);
    },
  };
}

/** Options of `array()`. */
export interface ArrayOptions extends Doc {
  readonly min?: number;
  readonly max?: number;
}

/** An array whose items `items` checks. */
export function array<T>(items: Schema<T>, opts: ArrayOptions = {}): Schema<T[]> {
  return {
    kind: 'array',
    optional: false,
    check(value, path, problems, checkOpts) {
      if (!Array.isArray(value)) {
        problems.push({ path, message: `must be an array, not ${describe(value)}` });
        return undefined;
      }
      if (opts.min !== undefined && value.length < opts.min) {
        problems.push({ path, message: `must have at least ${opts.min} item${opts.min === 1 ? '' : 's'}` });
        return undefined;
      }
      if (opts.max !== undefined && value.length > opts.max) {
        problems.push({ path, message: `must have at most ${opts.max} items` });
        return undefined;
      }
      const before = problems.length;
      const out = value.map((item, i) => items.check(item, joinPath(path, i), problems, checkOpts));
      return problems.length === before ? (out as T[]) : undefined;
    },
    jsonSchema() {
      const s: Record<string, unknown> = { type: 'array', items: items.jsonSchema() };
      if (opts.min !== undefined) s.minItems = opts.min;
      if (opts.max !== undefined) s.maxItems = opts.max;
      return withDoc(s, opts);
    },
  };
}

/**
 * Exactly one of several object shapes. When none fits, the problems reported are those of the
 * alternative whose required fields the value has (so `{"git": {}}` is told `git.url: is required`),
 * else a list of the accepted shapes.
 */
export function oneOf<const A extends readonly ObjectSchema<unknown>[]>(alternatives: A, opts: Doc = {}): Schema<Infer<A[number]>> {
  const requiredOf = (alt: ObjectSchema<unknown>) => Object.entries(alt.properties).filter(([, s]) => !s.optional).map(([k]) => k);
  const shapes = alternatives.map((a) => `{${requiredOf(a).map((k) => JSON.stringify(k)).join(', ')}}`).join(' or ');
  return {
    kind: 'oneOf',
    optional: false,
    check(value, path, problems, checkOpts) {
      if (!isPlainObject(value)) {
        problems.push({ path, message: `must be an object, not ${describe(value)}` });
        return undefined;
      }
      const results = alternatives.map((alt) => {
        const p: Problem[] = [];
        const v = alt.check(value, path, p, checkOpts);
        return { alt, v, p };
      });
      const fits = results.filter((r) => r.p.length === 0);
      if (fits.length === 1) return fits[0]!.v as Infer<A[number]>;
      if (fits.length > 1) {
        problems.push({ path, message: `must be exactly one of ${shapes}, and matches several` });
        return undefined;
      }
      const candidates = results.filter((r) => requiredOf(r.alt).every((k) => Object.hasOwn(value, k)));
      const best = candidates.length === 1 ? candidates[0] : undefined;
      if (best) problems.push(...best.p);
      else problems.push({ path, message: `must be one of ${shapes}` });
      return undefined;
    },
    jsonSchema: () => withDoc({ oneOf: alternatives.map((a) => a.jsonSchema()) }, opts),
  };
}

/**
 * Adds a rule JSON Schema cannot express (weights summing to 100...). `rule` names the problems
 * of an otherwise valid value (`at` is a path relative to the value); `doc` says the rule in
 * the OpenAPI description.
 */
export function refine<T>(
  schema: Schema<T>,
  doc: string,
  rule: (value: T) => { readonly at?: string; readonly message: string }[],
): Schema<T> {
  return {
    ...schema,
    check(value, path, problems, checkOpts) {
      const v = schema.check(value, path, problems, checkOpts);
      if (v === undefined) return undefined;
      const found = rule(v);
      for (const f of found) problems.push({ path: f.at ? `${path}${f.at}` : path, message: f.message });
      return found.length === 0 ? v : undefined;
    },
    jsonSchema() {
      const inner = schema.jsonSchema();
      const description = typeof inner.description === 'string' ? `${inner.description} ${doc}` : doc;
      return { ...inner, description };
    },
  };
}

/** Runs `schema` over `value` and returns the checked value or every problem found. */
export function validate<T>(
  schema: Schema<T>,
  value: unknown,
  path: string,
  opts: CheckOptions = { coerce: false },
): { ok: true; value: T } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  if (value === undefined) {
    if (schema.optional) return { ok: true, value: undefined as T };
    return { ok: false, problems: [{ path, message: 'is required' }] };
  }
  const v = schema.check(value, path, problems, opts);
  if (problems.length > 0 || v === undefined) return { ok: false, problems };
  return { ok: true, value: v };
}
