/**
 * How a resource file declares its routes: as data (method, path template, summary, auth,
 * path parameters, query and body schemas, response) plus a handler. The router, the
 * validator and the OpenAPI document all read the same declarations.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Actor, ControlPlane } from '../../builder/control-plane.ts';
import type { ControlErrors } from '../../builder/errors.ts';
import type { Logger } from '../../common/log.ts';
import { string, type JsonSchema, type ObjectSchema, type Schema } from './schema.ts';

/** HTTP methods routes are declared with (HEAD is answered by the GET route). */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** What a handler answers: status (the route's default when absent), JSON body, extra headers. */
export interface Reply {
  readonly status?: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Returned by a handler that wrote the response itself (log streaming). */
export const STREAMED: unique symbol = Symbol('streamed');

/** The limits a handler may need (uploads stream with their own). */
export interface Limits {
  readonly maxJsonBytes: number;
  readonly maxUploadBytes: number;
}

/** What a handler gets: everything already authenticated and validated. */
export interface RouteContext<P extends string, Q, B> {
  readonly control: ControlPlane;
  /** Name of the token that authenticated the request (`anonymous` on routes without auth). */
  readonly actor: Actor;
  readonly params: Readonly<Record<P, string>>;
  readonly query: Q;
  readonly body: B;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Aborted when the client goes away before the response is finished. */
  readonly signal: AbortSignal;
  readonly limits: Limits;
  /** Every route the server serves (for the OpenAPI document). */
  readonly routes: readonly Route[];
  /** The server's logger (errors after a streamed response started). */
  readonly logger: Logger;
}

/** The success response of a route, for the OpenAPI document. */
export interface ResponseSpec {
  readonly status: number;
  readonly description: string;
  /** JSON Schema of the body (usually a `$ref` into `components/schemas`); none for 204. */
  readonly schema?: JsonSchema;
  /** Media types other than JSON the route may answer with (e.g. log streaming). */
  readonly alternatives?: Readonly<Record<string, string>>;
}

/** One route as declared by a resource file. */
export interface RouteSpec<P extends string, Q, B> {
  /** OpenAPI operationId, unique. */
  readonly id: string;
  readonly method: Method;
  /** Path template, e.g. `/api/v1/projects/{owner}/{project}/deployments`. */
  readonly path: string;
  /** OpenAPI tag (the resource). */
  readonly tag: string;
  readonly summary: string;
  readonly description?: string;
  /** Bearer token required (default true). */
  readonly auth?: boolean;
  /** A schema for each `{name}` of the path template (checked after percent-decoding). */
  readonly params: { readonly [K in P]: Schema<string> };
  readonly query?: ObjectSchema<Q>;
  /** Without `query`: ignore any query string instead of refusing it (probes add cache-busters). */
  readonly ignoresQuery?: boolean;
  /** A JSON body schema. */
  readonly body?: Schema<B>;
  /** Largest JSON body this route takes, when its schema allows more than the server's limit. */
  readonly maxJsonBytes?: number;
  /** A raw body streamed to the handler instead (uploads): its media type and description. */
  readonly rawBody?: { readonly contentType: string; readonly description: string };
  readonly response: ResponseSpec;
  /** Error codes this route may answer with besides the generic ones (documentation). */
  readonly errors?: readonly (keyof typeof ControlErrors)[];
  handler(ctx: RouteContext<P, Q, B>): Promise<Reply | typeof STREAMED>;
}

/** A declared route with its types erased, as the router holds it. */
export interface Route extends Omit<RouteSpec<string, unknown, unknown>, 'handler' | 'params'> {
  readonly params: Readonly<Record<string, Schema<string>>>;
  /** Names of the template's `{params}`, in order. */
  readonly paramNames: readonly string[];
  handler(ctx: RouteContext<string, unknown, unknown>): Promise<Reply | typeof STREAMED>;
}

/**
 * Declares a route, checking at load time that the template's `{params}` and `params` agree
 * and that a JSON body and a raw body are not both declared.
 */
export function defineRoute<P extends string = never, Q = Record<string, never>, B = undefined>(
  spec: RouteSpec<P, Q, B>,
): Route {
  const paramNames = [...spec.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
  const declared = Object.keys(spec.params).sort();
  if (paramNames.slice().sort().join() !== declared.join()) {
    throw new Error(`route ${spec.method} ${spec.path}: params ${declared.join(',')} do not match the template`);
  }
  if (spec.body && spec.rawBody) throw new Error(`route ${spec.method} ${spec.path}: both a JSON and a raw body`);
  return { ...spec, paramNames, handler: spec.handler as Route['handler'] } as Route;
}

/** Names of owners, projects, deployments, versions, aliases, tokens: never `/`, `.` or `..`. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$';

/** A name path parameter or body field. */
export const name = (description: string, example = 'example'): Schema<string> =>
  string({ pattern: NAME_PATTERN, description, example });

/** Basic-auth user names may also hold `@` and `+` (e-mail addresses). */
export const USER_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$';

/** The path parameters of a project. */
export const projectParams = {
  owner: name('Owner (namespace) of the project.', 'acme'),
  project: name('Project name.', 'mnist'),
} as const;

/** The path parameters of a deployment. */
export const deploymentParams = {
  ...projectParams,
  deployment: name('Deployment name.', 'web'),
} as const;

/** The path parameters of a version. */
export const versionParams = {
  ...deploymentParams,
  version: name('Version name.', '20181002.0'),
} as const;

/** The path template of a project. */
export const PROJECT = '/api/v1/projects/{owner}/{project}';
/** The path template of a deployment. */
export const DEPLOYMENT = `${PROJECT}/deployments/{deployment}`;
/** The path template of a version. */
export const VERSION = `${DEPLOYMENT}/versions/{version}`;

/** `$ref` to a schema of the OpenAPI document's components. */
export const ref = (schema: string): JsonSchema => ({ $ref: `#/components/schemas/${schema}` });

/** `{"items": [$ref]}`, the shape of every list. */
export const listOf = (schema: string): JsonSchema => ({
  type: 'object',
  properties: { items: { type: 'array', items: ref(schema) } },
  required: ['items'],
});
