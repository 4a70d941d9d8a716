import t from 'tap';
import {
  array, bool, enumOf, int, nullable, object, oneOf, optional, record, refine, string, validate, type Schema,
} from '../../../admin/api/schema.ts';

const problemsOf = <T>(s: Schema<T>, v: unknown, coerce = false) => {
  const r = validate(s, v, 'body', { coerce });
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

t.test('string: type, length, pattern', async (t) => {
  const s = string({ min: 2, max: 4, pattern: '^[a-z]+$' });
  t.same(validate(s, 'abc', 'body'), { ok: true, value: 'abc' });
  t.same(problemsOf(s, 3), ['body: must be a string, not number 3']);
  t.same(problemsOf(s, 'a'), ['body: must be at least 2 characters long']);
  t.same(problemsOf(s, 'abcde'), ['body: must be at most 4 characters long']);
  t.same(problemsOf(s, 'AB'), ['body: must match ^[a-z]+$ (got "AB")']);
  t.same(problemsOf(string({ min: 1 }), ''), ['body: must not be empty']);
  t.same(string({ min: 1, max: 3, pattern: '^x', format: 'uri', description: 'd', example: 'x' }).jsonSchema(), {
    type: 'string', minLength: 1, maxLength: 3, pattern: '^x', format: 'uri', description: 'd', examples: ['x'],
  });
});

t.test('int: range, integers only, query coercion', async (t) => {
  const s = int({ min: 0, max: 100 });
  t.same(validate(s, 7, 'body'), { ok: true, value: 7 });
  for (const bad of [-1, 101, 1.5, '7', null, true, Number.NaN]) t.same(problemsOf(s, bad), ['body: must be an integer from 0 to 100'], String(bad));
  t.same(validate(s, '42', 'query', { coerce: true }), { ok: true, value: 42 });
  t.same(problemsOf(s, '4x', true), ['body: must be an integer from 0 to 100']);
  t.same(problemsOf(int({ min: 1 }), 0), ['body: must be an integer of at least 1']);
  t.same(problemsOf(int({ max: 1 }), 2), ['body: must be an integer of at most 1']);
  t.same(int({ min: 0, max: 100 }).jsonSchema(), { type: 'integer', minimum: 0, maximum: 100 });
});

t.test('nullable: null or the inner schema, documented as either', async (t) => {
  const s = nullable(int({ min: 1, max: 10 }), { description: 'null: the default' });
  t.same(validate(s, null, 'body'), { ok: true, value: null });
  t.same(validate(s, 3, 'body'), { ok: true, value: 3 });
  t.same(problemsOf(s, 0), ['body: must be an integer from 1 to 10'], 'the inner rules still apply');
  t.same(problemsOf(s, 'x'), ['body: must be an integer from 1 to 10']);
  t.same(s.jsonSchema(), { oneOf: [{ type: 'integer', minimum: 1, maximum: 10 }, { type: 'null' }], description: 'null: the default' });
  const o = object({ limit: optional(nullable(int())) });
  t.same(validate(o, {}, 'body'), { ok: true, value: {} });
  t.same(validate(o, { limit: null }, 'body'), { ok: true, value: { limit: null } });
});

t.test('bool and enum', async (t) => {
  t.same(validate(bool(), false, 'b'), { ok: true, value: false });
  t.same(problemsOf(bool(), 'true'), ['body: must be true or false']);
  for (const v of ['', 'true', '1', 'yes']) t.same(validate(bool(), v, 'q', { coerce: true }), { ok: true, value: true });
  for (const v of ['false', '0', 'no']) t.same(validate(bool(), v, 'q', { coerce: true }), { ok: true, value: false });
  const e = enumOf(['none', 'basic']);
  t.same(validate(e, 'basic', 'b'), { ok: true, value: 'basic' });
  t.same(problemsOf(e, 'Basic'), ['body: must be one of "none", "basic"']);
  t.same(e.jsonSchema(), { type: 'string', enum: ['none', 'basic'] });
});

t.test('object: required, optional, unknown fields, every problem at once', async (t) => {
  const s = object({ name: string(), replicas: optional(int({ min: 0, max: 100 })) });
  t.same(validate(s, { name: 'a' }, 'body'), { ok: true, value: { name: 'a' } });
  t.same(problemsOf(s, { replicas: 200, extra: 1 }), [
    'body.name: is required',
    'body.replicas: must be an integer from 0 to 100',
    'body.extra: is not a known field (known: "name", "replicas")',
  ]);
  t.same(problemsOf(s, []), ['body: must be an object, not an array']);
  t.same(problemsOf(s, null), ['body: must be an object, not null']);
  t.same(s.jsonSchema(), {
    type: 'object',
    properties: { name: { type: 'string' }, replicas: { type: 'integer', minimum: 0, maximum: 100 } },
    additionalProperties: false,
    required: ['name'],
  });
  t.same(validate(s, undefined, 'body'), { ok: false, problems: [{ path: 'body', message: 'is required' }] });
});

t.test('record: key pattern, nested paths, odd keys quoted, __proto__ stays data', async (t) => {
  const s = record(object({ replicas: int({ min: 0, max: 100 }) }), { keyPattern: '^[a-z_]+$', maxKeys: 3 });
  t.same(problemsOf(s, { predict: { replicas: 101 } }), ['body.predict.replicas: must be an integer from 0 to 100']);
  t.same(problemsOf(s, { 'Bad Key': { replicas: 1 } }), ['body["Bad Key"]: name must match ^[a-z_]+$']);
  t.same(problemsOf(s, { a: { replicas: 1 }, b: { replicas: 1 }, c: { replicas: 1 }, d: { replicas: 1 } }), ['body: must have at most 3 entries']);
  const r = validate(record(string()), JSON.parse('{"__proto__": "x"}'), 'body');
  t.ok(r.ok);
  if (r.ok) {
    t.equal(Object.getPrototypeOf(r.value), Object.prototype, 'the prototype is untouched');
    t.equal(Object.getOwnPropertyDescriptor(r.value, '__proto__')?.value, 'x');
  }
  t.same(s.jsonSchema(), {
    type: 'object',
    additionalProperties: { type: 'object', properties: { replicas: { type: 'integer', minimum: 0, maximum: 100 } }, additionalProperties: false, required: ['replicas'] },
    propertyNames: { pattern: '^[a-z_]+$' },
    maxProperties: 3,
  });
});

t.test('array: bounds and item paths', async (t) => {
  const s = array(int({ min: 0, max: 9 }), { min: 1, max: 2 });
  t.same(validate(s, [1, 2], 'body'), { ok: true, value: [1, 2] });
  t.same(problemsOf(s, []), ['body: must have at least 1 item']);
  t.same(problemsOf(s, [1, 2, 3]), ['body: must have at most 2 items']);
  t.same(problemsOf(s, [1, 10]), ['body[1]: must be an integer from 0 to 9']);
  t.same(problemsOf(s, 'x'), ['body: must be an array, not string "x"']);
});

t.test('oneOf: picks the alternative by its required fields', async (t) => {
  const s = oneOf([
    object({ path: string({ pattern: '^/' }) }),
    object({ git: object({ url: string(), ref: optional(string()) }) }),
  ]);
  t.same(validate(s, { path: '/x' }, 'body'), { ok: true, value: { path: '/x' } });
  t.same(problemsOf(s, { git: {} }), ['body.git.url: is required']);
  t.same(problemsOf(s, { path: 'x' }), ['body.path: must match ^/ (got "x")']);
  t.same(problemsOf(s, {}), ['body: must be one of {"path"} or {"git"}']);
  t.same(problemsOf(s, { path: '/x', git: { url: 'u' } }), ['body: must be one of {"path"} or {"git"}']);
  t.same(problemsOf(s, 5), ['body: must be an object, not number 5']);
  const overlapping = oneOf([object({ a: optional(string()) }), object({ b: optional(string()) })]);
  t.same(problemsOf(overlapping, {}), ['body: must be exactly one of {} or {}, and matches several']);
  t.match(s.jsonSchema(), { oneOf: [{ required: ['path'] }, { required: ['git'] }] });
});

t.test('refine: rules beyond JSON Schema, described in the document', async (t) => {
  const s = refine(array(int()), 'Sums to 10.', (v) => (v.reduce((a, b) => a + b, 0) === 10 ? [] : [{ message: 'must sum to 10' }, { at: '[0]', message: 'first' }]));
  t.same(validate(s, [4, 6], 'body'), { ok: true, value: [4, 6] });
  t.same(problemsOf(s, [1]), ['body: must sum to 10', 'body[0]: first']);
  t.same(problemsOf(s, ['x']), ['body[0]: must be an integer'], 'the inner schema runs first');
  t.equal(s.jsonSchema().description, 'Sums to 10.');
});

t.test('optional at the top: undefined passes', async (t) => {
  t.same(validate(optional(string()), undefined, 'body'), { ok: true, value: undefined });
});
