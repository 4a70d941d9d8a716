import t, { type Test } from 'tap';
import { routes } from '../../../admin/api/routes.ts';
import type { Route } from '../../../admin/api/route.ts';
import { joinPath, validate, type JsonSchema } from '../../../admin/api/schema.ts';
import { SHAPES } from '../../../admin/api/shapes.ts';
import { ControlErrors } from '../../../builder/errors.ts';
import { createDeployment, D, readyVersion, REF, startApi } from '../harness.ts';

type S = Record<string, any>;

async function fetchDoc(t: Test): Promise<S> {
  const api = await startApi(t);
  const res = await api.call('GET', '/api/v1/openapi.json', { token: null });
  t.equal(res.status, 200);
  t.equal(res.headers.get('cache-control'), 'no-store');
  return res.json as S;
}

t.test('the document lists every route, and nothing else', async (t) => {
  const doc = await fetchDoc(t);
  t.equal(doc.openapi, '3.1.0');
  const documented: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, S>)) {
    for (const method of Object.keys(ops)) documented.push(`${method.toUpperCase()} ${path}`);
  }
  t.same(documented.sort(), routes.map((r) => `${r.method} ${r.path}`).sort());
  const ids = routes.map((r) => doc.paths[r.path][r.method.toLowerCase()].operationId);
  t.same(ids, routes.map((r) => r.id));
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique');
});

t.test('every route of the contract is served', async (t) => {
  const contract = [
    'GET /api/v1/openapi.json', 'GET /api/v1/targets',
    'GET /api/v1/projects/{owner}/{project}/environment', 'PUT /api/v1/projects/{owner}/{project}/environment',
    'GET /api/v1/projects/{owner}/{project}/deployments', 'POST /api/v1/projects/{owner}/{project}/deployments',
    'GET {D}', 'PATCH {D}', 'DELETE {D}',
    'GET {D}/users', 'PUT {D}/users/{user}', 'DELETE {D}/users/{user}',
    'GET {D}/versions', 'POST {D}/versions', 'GET {D}/versions/{version}', 'PATCH {D}/versions/{version}',
    'DELETE {D}/versions/{version}', 'GET {D}/versions/{version}/build-log',
    'GET {D}/versions/{version}/endpoints/{endpoint}/logs',
    'GET {D}/aliases', 'PUT {D}/aliases/{alias}', 'DELETE {D}/aliases/{alias}', 'GET {D}/aliases/{alias}/history',
    'POST {D}/test', 'GET /api/v1/audit', 'GET /api/v1/tokens', 'POST /api/v1/tokens', 'DELETE /api/v1/tokens/{name}',
    'POST /api/v1/uploads',
  ].map((s) => s.replace('{D}', '/api/v1/projects/{owner}/{project}/deployments/{deployment}'));
  const served = new Set(routes.map((r) => `${r.method} ${r.path}`));
  for (const c of contract) t.ok(served.has(c), c);
});

t.test('parameters, bodies and security in the document are the validator\'s', async (t) => {
  const doc = await fetchDoc(t);
  for (const route of routes) {
    const op = doc.paths[route.path][route.method.toLowerCase()];
    const label = `${route.method} ${route.path}`;
    const pathParams = (op.parameters ?? []).filter((p: S) => p.in === 'path');
    t.same(pathParams.map((p: S) => p.name), route.paramNames, `${label}: path parameters`);
    for (const p of pathParams) {
      t.equal(p.required, true);
      t.same(p.schema, route.params[p.name]!.jsonSchema(), `${label}: {${p.name}} schema`);
    }
    const queryParams = (op.parameters ?? []).filter((p: S) => p.in === 'query');
    t.same(queryParams.map((p: S) => p.name), Object.keys(route.query?.properties ?? {}), `${label}: query parameters`);
    for (const p of queryParams) {
      const schema = route.query!.properties[p.name]!;
      t.same(p.schema, schema.jsonSchema());
      t.equal(p.required, !schema.optional);
    }
    if (route.body) t.same(op.requestBody.content['application/json'].schema, route.body.jsonSchema(), `${label}: body schema`);
    else if (route.rawBody) t.ok(op.requestBody.content[route.rawBody.contentType], `${label}: raw body`);
    else t.notOk(op.requestBody, `${label}: no body`);
    t.ok(op.responses[String(route.response.status)], `${label}: documents ${route.response.status}`);
    if (route.auth === false) t.same(op.security, [], `${label}: no auth`);
    else {
      t.equal(op.security, undefined, `${label}: the global bearer scheme applies`);
      t.ok(op.responses['401'], `${label}: documents 401`);
    }
    for (const code of route.errors ?? []) t.ok(op.responses[String(ControlErrors[code].statusCode)], `${label}: documents ${code}`);
  }
  t.same(doc.security, [{ bearer: [] }]);
  t.same(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', description: doc.components.securitySchemes.bearer.description });
});

t.test('every $ref resolves', async (t) => {
  const doc = await fetchDoc(t);
  const refs = new Set<string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string') refs.add(x);
        else walk(x);
      }
    }
  };
  walk(doc);
  t.ok(refs.size > 10);
  for (const ref of refs) {
    const name = ref.replace('#/components/schemas/', '');
    t.ok(doc.components.schemas[name], ref);
  }
  t.same(Object.keys(doc.components.schemas).sort(), Object.keys(SHAPES).sort());
});

// ---- the document's schemas accept and refuse exactly what the validator does ----------

interface Case {
  /** The optional property (or oneOf) this instance exercises. */
  target: string;
  choices: Record<string, number>;
}

const isWithin = (at: string, target: string) => target === at || target.startsWith(`${at}.`) || target.startsWith(`${at}[`);

/** Every optional property and every oneOf alternative of a document schema. */
function cases(schema: S, at: string, choices: Record<string, number>, out: Case[]): Case[] {
  if (schema.examples && schema.type === 'object') return out;
  if (schema.oneOf) {
    schema.oneOf.forEach((alt: S, i: number) => {
      const c = { ...choices, [at]: i };
      out.push({ target: at, choices: c });
      cases(alt, at, c, out);
    });
    return out;
  }
  if (schema.type === 'object' && schema.properties) {
    for (const [k, s] of Object.entries(schema.properties as Record<string, S>)) {
      const here = joinPath(at, k);
      if (!(schema.required ?? []).includes(k)) out.push({ target: here, choices });
      cases(s, here, choices, out);
    }
  } else if (schema.type === 'object' && typeof schema.additionalProperties === 'object') {
    cases(schema.additionalProperties, joinPath(at, schema.propertyNames?.examples?.[0] ?? 'key'), choices, out);
  } else if (schema.type === 'array') cases(schema.items, joinPath(at, 0), choices, out);
  return out;
}

/** A value the document says is valid: required properties, plus those on the way to `c.target`. */
function generate(schema: S, at: string, c: Case): unknown {
  if (schema.examples) return structuredClone(schema.examples[0]);
  if (schema.oneOf) return generate(schema.oneOf[c.choices[at] ?? 0], at, c);
  if (schema.enum) return schema.enum[0];
  switch (schema.type) {
    case 'string':
      if (schema.pattern) throw new Error(`${at}: a string with a pattern needs an example in the document`);
      return 'a'.repeat(Math.max(schema.minLength ?? 1, 1));
    case 'integer':
      return schema.minimum ?? 0;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array':
      return Array.from({ length: Math.max(schema.minItems ?? 1, 1) }, (_, i) => generate(schema.items, joinPath(at, i), c));
    case 'object': {
      if (schema.properties) {
        const out: Record<string, unknown> = {};
        for (const [k, s] of Object.entries(schema.properties as Record<string, S>)) {
          const here = joinPath(at, k);
          if ((schema.required ?? []).includes(k) || isWithin(here, c.target)) out[k] = generate(s, here, c);
        }
        return out;
      }
      const key = schema.propertyNames?.examples?.[0] ?? 'key';
      if (schema.propertyNames?.pattern && !schema.propertyNames.examples) throw new Error(`${at}: a key pattern needs an example key`);
      return { [key]: generate(schema.additionalProperties, joinPath(at, key), c) };
    }
    default:
      throw new Error(`${at}: cannot generate ${JSON.stringify(schema)}`);
  }
}

/** Values the document says are invalid, each with the path the validator must name. */
function mutations(schema: S, value: unknown, at: string, inOneOf: boolean, set: (v: unknown) => unknown, out: { path: string; instance: unknown; what: string }[], c: Case) {
  const add = (v: unknown, what: string, path = at) => out.push({ path, instance: set(v), what });
  if (schema.oneOf) return mutations(schema.oneOf[c.choices[at] ?? 0], value, at, true, set, out, c);
  if (schema.enum) add('__not_listed__', 'enum');
  switch (schema.type) {
    case 'string':
      add(42, 'type');
      if (schema.maxLength !== undefined && schema.maxLength < 100_000) add('a'.repeat(schema.maxLength + 1), 'maxLength');
      if (schema.minLength) add('', 'minLength');
      break;
    case 'integer':
      add(1.5, 'not an integer');
      add('1', 'type');
      if (schema.maximum !== undefined && schema.maximum < Number.MAX_SAFE_INTEGER) add(schema.maximum + 1, 'maximum');
      if (schema.minimum !== undefined) add(schema.minimum - 1, 'minimum');
      break;
    case 'boolean':
      add('true', 'type');
      break;
    case 'array': {
      const arr = value as unknown[];
      add({}, 'type');
      if (schema.minItems) add([], 'minItems');
      if (schema.maxItems !== undefined) add(Array.from({ length: schema.maxItems + 1 }, () => arr[0]), 'maxItems');
      arr.forEach((item, i) => mutations(schema.items, item, joinPath(at, i), false, (v) => set(arr.map((x, j) => (j === i ? v : x))), out, c));
      break;
    }
    case 'object': {
      const obj = value as Record<string, unknown>;
      add([], 'type');
      if (schema.properties) {
        if (schema.additionalProperties === false) add({ ...obj, zz_unknown: 1 }, 'unknown property', joinPath(at, 'zz_unknown'));
        for (const k of schema.required ?? []) {
          const { [k]: _, ...rest } = obj;
          add(rest, `required ${k}`, inOneOf ? at : joinPath(at, k));
        }
        for (const [k, s] of Object.entries(schema.properties as Record<string, S>)) {
          if (k in obj) mutations(s, obj[k], joinPath(at, k), false, (v) => set({ ...obj, [k]: v }), out, c);
        }
      } else {
        if (schema.propertyNames?.pattern) add({ ...obj, '!bad key': Object.values(obj)[0] }, 'key pattern', joinPath(at, '!bad key'));
        if (schema.maxProperties !== undefined) {
          const first = Object.values(obj)[0];
          add(Object.fromEntries(Array.from({ length: schema.maxProperties + 1 }, (_, i) => [`k${i}`, first])), 'maxProperties');
        }
        for (const [k, v] of Object.entries(obj)) {
          mutations(schema.additionalProperties, v, joinPath(at, k), false, (x) => set({ ...obj, [k]: x }), out, c);
        }
      }
      break;
    }
  }
}

t.test('valid-by-the-document bodies pass the validator; each documented constraint is enforced at its path', async (t) => {
  const doc = await fetchDoc(t);
  let accepted = 0;
  let refused = 0;
  for (const route of routes.filter((r): r is Route & { body: NonNullable<Route['body']> } => !!r.body)) {
    const schema = doc.paths[route.path][route.method.toLowerCase()].requestBody.content['application/json'].schema as S;
    const all = [{ target: '', choices: {} }, ...cases(schema, 'body', {}, [])];
    for (const c of all) {
      const instance = generate(schema, 'body', c);
      const ok = validate(route.body, instance, 'body');
      t.ok(ok.ok, `${route.id} accepts ${JSON.stringify(instance)}${ok.ok ? '' : `: ${JSON.stringify(ok.problems)}`}`);
      accepted++;
      const bad: { path: string; instance: unknown; what: string }[] = [];
      mutations(schema, instance, 'body', false, (v) => v, bad, c);
      for (const m of bad) {
        const r = validate(route.body, m.instance, 'body');
        const paths = r.ok ? [] : r.problems.map((p) => p.path);
        t.ok(paths.includes(m.path), `${route.id}: ${m.what} at ${m.path} is refused (got ${JSON.stringify(paths)})`);
        refused++;
      }
    }
  }
  t.ok(accepted > 40, `${accepted} valid bodies`);
  t.ok(refused > 300, `${refused} invalid bodies`);
});

t.test('documented query and path parameters are what the validator takes', async (t) => {
  const doc = await fetchDoc(t);
  for (const route of routes) {
    const op = doc.paths[route.path][route.method.toLowerCase()];
    for (const p of (op.parameters ?? []) as S[]) {
      const example = generate(p.schema, p.name, { target: '', choices: {} });
      if (p.in === 'path') {
        t.ok(validate(route.params[p.name]!, String(example), `path.${p.name}`).ok, `${route.id}: {${p.name}} example`);
        for (const bad of ['', '.', '..', 'a/b', 'a\\b', 'a\u0000b', 'x'.repeat(300)]) {
          t.notOk(new RegExp(p.schema.pattern, 'u').test(bad) && validate(route.params[p.name]!, bad, 'p').ok, `${route.id}: {${p.name}} refuses ${JSON.stringify(bad)}`);
        }
      } else {
        const schema = route.query!.properties[p.name]!;
        t.ok(validate(schema, String(example), `query.${p.name}`, { coerce: true }).ok, `${route.id}: ?${p.name}=${example}`);
        if (p.schema.type === 'integer') {
          if (p.schema.maximum !== undefined) t.notOk(validate(schema, String(p.schema.maximum + 1), 'q', { coerce: true }).ok);
          if (p.schema.minimum !== undefined) t.notOk(validate(schema, String(p.schema.minimum - 1), 'q', { coerce: true }).ok);
          t.notOk(validate(schema, 'x', 'q', { coerce: true }).ok);
        }
      }
    }
  }
});

t.test('the document is served without auth and is the same on every call', async (t) => {
  const api = await startApi(t);
  const a = await api.call('GET', '/api/v1/openapi.json', { token: null });
  const b = await api.call('GET', '/api/v1/openapi.json', { token: 'wrong' });
  t.equal(a.status, 200);
  t.equal(b.status, 200, 'a bad token does not matter here');
  t.equal(a.text, b.text);
  t.ok((a.json as JsonSchema).paths);
});

t.test('a replica\'s address: host:port while ready, null in every other state, as the document says', async (t) => {
  const doc = await fetchDoc(t);
  const address = doc.components.schemas.Replica.properties.address as S;
  t.same(address.type, ['string', 'null']);
  t.match(address.description, /^`host:port` .*; `null` while the replica is not `ready` \(starting, crashed, stopping\)/);
  t.ok(doc.components.schemas.Replica.required.includes('address'), 'always present, null or not');
  const api = await startApi(t);
  await createDeployment(api);
  await readyVersion(api, { name: 'v1' });
  const ready = (await api.call('GET', `${D}/versions/v1`)).json.endpoints[0].replicas;
  t.same(ready.map((r: S) => [r.state, r.address]), [['ready', '127.0.0.1:20000'], ['ready', '127.0.0.1:20001']]);
  api.fake.setStatus({ ...REF, version: 'v1' }, 'starting');
  const starting = (await api.call('GET', `${D}/versions/v1`)).json.endpoints[0].replicas;
  t.same(starting.map((r: S) => [r.state, r.address]), [['starting', null], ['starting', null]], 'the fake answers as the controller does');
});

t.test('a version PATCH documents its 409: enabling an endpoint left out of the build', async (t) => {
  const doc = await fetchDoc(t);
  const patch = doc.paths['/api/v1/projects/{owner}/{project}/deployments/{deployment}/versions/{version}'].patch;
  t.ok(patch.responses['409'], 'PATCH version lists 409');
});
