/**
 * The OpenAPI 3.1 document of the admin API, generated from the route declarations: paths,
 * parameters and request bodies come from the same schemas the validator enforces.
 */
import { ControlErrors } from '../../builder/errors.ts';
import { defineRoute, type Route } from './route.ts';
import type { JsonSchema } from './schema.ts';
import { SHAPES } from './shapes.ts';

type ErrorCode = keyof typeof ControlErrors;

function errorCodesOf(route: Route): ErrorCode[] {
  const codes: ErrorCode[] = [];
  const validated = route.paramNames.length > 0 || route.query !== undefined || route.body !== undefined;
  if (validated) codes.push('BAD_REQUEST', 'VALIDATION_FAILED');
  if (route.auth !== false) codes.push('AUTH_REQUIRED');
  if (route.paramNames.length > 0) codes.push('NOT_FOUND');
  if (route.body) codes.push('UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE');
  for (const c of route.errors ?? []) if (!codes.includes(c)) codes.push(c);
  return codes;
}

function errorResponses(route: Route): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(route)) {
    const status = ControlErrors[code].statusCode;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, unknown> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: codes.map((c) => `${c}: ${ControlErrors[c].message}`).join(' '),
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      ...(status === 401 ? { headers: { 'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer realm="portico"' } } } : {}),
    };
  }
  out.default = {
    description: 'Any other error (e.g. 500 INTERNAL, 503 STORE_UNAVAILABLE), in the same shape.',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  };
  return out;
}

function operation(route: Route): Record<string, unknown> {
  const parameters: unknown[] = route.paramNames.map((n) => ({
    name: n,
    in: 'path',
    required: true,
    schema: route.params[n]!.jsonSchema(),
  }));
  if (route.query) {
    for (const [n, schema] of Object.entries(route.query.properties)) {
      const s = schema.jsonSchema();
      parameters.push({ name: n, in: 'query', required: !schema.optional, schema: s, ...(typeof s.description === 'string' ? { description: s.description } : {}) });
    }
  }
  const op: Record<string, unknown> = {
    operationId: route.id,
    summary: route.summary,
    ...(route.description ? { description: route.description } : {}),
    tags: [route.tag],
  };
  if (route.auth === false) op.security = [];
  if (parameters.length > 0) op.parameters = parameters;
  if (route.body) {
    op.requestBody = { required: !route.body.optional, content: { 'application/json': { schema: route.body.jsonSchema() } } };
  } else if (route.rawBody) {
    op.requestBody = {
      required: true,
      description: route.rawBody.description,
      content: { [route.rawBody.contentType]: { schema: { type: 'string', contentMediaType: route.rawBody.contentType } } },
    };
  }
  const res = route.response;
  const content: Record<string, unknown> = {};
  if (res.schema) content['application/json'] = { schema: res.schema };
  for (const [type, description] of Object.entries(res.alternatives ?? {})) content[type] = { schema: { type: 'string', description } };
  op.responses = {
    [String(res.status)]: { description: res.description, ...(Object.keys(content).length > 0 ? { content } : {}) },
    ...errorResponses(route),
  };
  return op;
}

/** Builds the OpenAPI 3.1 document describing `routes`. */
export function openApiDocument(routes: readonly Route[]): JsonSchema {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(route);
  }
  const tags = [...new Set(routes.map((r) => r.tag))].map((name) => ({ name }));
  return {
    openapi: '3.1.0',
    info: {
      title: 'Portico admin API',
      version: '1',
      description: 'Operate Portico: deployments, versions, aliases, logs, tokens. Every request but the ones marked otherwise needs `Authorization: Bearer <token>`. Errors are `{"statusCode", "code", "error", "message"}`; lists are `{"items": [...]}`.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags,
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An admin token (PORTICO_ADMIN_TOKEN, or one created with POST /api/v1/tokens).' } },
      schemas: SHAPES,
    },
  };
}

const cache = new WeakMap<readonly Route[], JsonSchema>();

/** `GET /api/v1/openapi.json`, without auth. */
export const openApiRoutes = [
  defineRoute({
    id: 'getOpenApi',
    method: 'GET',
    path: '/api/v1/openapi.json',
    tag: 'meta',
    summary: 'This document',
    auth: false,
    params: {},
    response: { status: 200, description: 'The OpenAPI 3.1 document of the admin API.', schema: { type: 'object' } },
    handler: async ({ routes }) => {
      let doc = cache.get(routes);
      if (doc === undefined) {
        doc = openApiDocument(routes);
        cache.set(routes, doc);
      }
      return { body: doc };
    },
  }),
];
