import { defineRoute, DEPLOYMENT, deploymentParams, listOf, name, ref, VERSION, versionParams } from '../route.ts';
import { bool, int, nullable, object, oneOf, optional, record, string } from '../schema.ts';
import { ENV_NAME_PATTERN } from './environment.ts';

/** Endpoint names as valohai.yaml allows them. */
export const ENDPOINT_NAME_PATTERN = '^[a-z][a-z0-9-]+$';
/** Upload ids (`POST /api/v1/uploads`). */
export const UPLOAD_ID_PATTERN = '^[A-Za-z0-9_-]{1,100}$';

const MAX_REPLICAS = 100;
const absPath = (description: string) => string({ min: 1, max: 4096, pattern: '^/', description, example: '/srv/models/mnist' });
const uploadId = string({ pattern: UPLOAD_ID_PATTERN, description: 'Id answered by POST /api/v1/uploads.', example: 'u_3f2a9c' });
const replicas = int({ min: 0, max: MAX_REPLICAS, description: 'Replicas to run (0 keeps the endpoint without replicas).' });
const timeoutSeconds = int({ min: 1, max: 86400, description: 'Time to first response byte before the gateway answers 504.' });
const maxBodyBytes = int({ min: 0, max: Number.MAX_SAFE_INTEGER, description: 'Largest request body the gateway streams to the endpoint (413 above).' });

const source = oneOf([
  object({ path: absPath('A directory on the controller\'s machine holding valohai.yaml.') }),
  object({
    git: object({
      // Never starting with "-": the value reaches git's command line.
      url: string({ max: 2048, pattern: '^(https?://|ssh://|git://|file:///|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\\S+$', description: 'Repository URL.', example: 'https://github.com/acme/mnist.git' }),
      ref: optional(string({ max: 256, pattern: '^[A-Za-z0-9_][A-Za-z0-9._/-]*$', description: 'Branch, tag or commit (default: the default branch).', example: 'main' })),
    }),
  }),
  object({ upload: uploadId }),
], { description: 'Where the code comes from: a directory, a git commit or an uploaded .tar.gz.' });

const fileSource = oneOf([
  object({ path: absPath('A file on the controller\'s machine.') }),
  object({ url: string({ max: 4096, pattern: '^https?://\\S+$', description: 'Fetched when the version builds.', example: 'https://models.example.com/mnist.h5' }) }),
  object({ upload: uploadId }),
]);

const createBody = object({
  name: optional(name('Version name (default: UTC date + counter, e.g. 20181002.0).', '20181002.0')),
  source,
  endpoints: optional(record(
    object({
      enabled: optional(bool({ description: 'Run this endpoint (default true). false leaves it out of the build (its files, its image): enabling it later needs a new version.' })),
      replicas: optional(replicas),
      files: optional(record(fileSource, {
        keyPattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$',
        keyExample: 'model',
        maxKeys: 100,
        description: 'A source for each file the endpoint declares in valohai.yaml.',
      })),
      timeoutSeconds: optional(timeoutSeconds),
      maxBodyBytes: optional(maxBodyBytes),
    }),
    { keyPattern: ENDPOINT_NAME_PATTERN, keyExample: 'predict', maxKeys: 100, description: 'Settings per endpoint of valohai.yaml (all endpoints run by default).' },
  )),
  environment: optional(record(string({ max: 65536, example: 'v' }), { keyPattern: ENV_NAME_PATTERN, keyExample: 'MODEL_NAME', maxKeys: 1000, description: 'Variables of this version, over the project\'s (names as in the project environment; `__proto__` is refused).' })),
  inheritEnvironment: optional(bool({ description: 'Start from the project environment (default true).' })),
});

const patchBody = object({
  enabled: optional(bool({ description: 'false stops every replica; true starts them again.' })),
  endpoints: optional(record(
    object({
      enabled: optional(bool({ description: 'Stop or start this endpoint (refused, 409, for one disabled when the version was built).' })),
      replicas: optional(replicas),
      timeoutSeconds: optional(nullable(timeoutSeconds, { description: 'null: back to the gateway default (PORTICO_TIMEOUT_SECONDS).' })),
      maxBodyBytes: optional(nullable(maxBodyBytes, { description: 'null: back to the gateway default (PORTICO_MAX_BODY_BYTES).' })),
    }),
    { keyPattern: ENDPOINT_NAME_PATTERN, keyExample: 'predict', maxKeys: 100 },
  )),
});

/** Versions: immutable builds of a deployment, stopped, started and scaled without a rebuild. */
export const versionRoutes = [
  defineRoute({
    id: 'listVersions',
    method: 'GET',
    path: `${DEPLOYMENT}/versions`,
    tag: 'versions',
    summary: 'List the versions of a deployment',
    params: deploymentParams,
    response: { status: 200, description: 'The versions, oldest first.', schema: listOf('Version') },
    handler: async ({ control, params }) => ({ body: { items: await control.listVersions(params) } }),
  }),
  defineRoute({
    id: 'createVersion',
    method: 'POST',
    path: `${DEPLOYMENT}/versions`,
    tag: 'versions',
    summary: 'Build a new version',
    description: 'Records the version as `building` and builds it in the background; poll the version (or its build log) for progress. Refused with 409 CONFLICT when an alias of the deployment has the name asked for (the alias would take its URLs).',
    params: deploymentParams,
    body: createBody,
    response: { status: 202, description: 'Accepted: the version, status `building` (Location names it).', schema: ref('Version') },
    errors: ['ALREADY_EXISTS', 'CONFLICT', 'INVALID_VALOHAI_YAML'],
    handler: async ({ control, params, body, actor }) => {
      const v = await control.createVersion(params, body, actor);
      return { status: 202, body: v, headers: { location: `${versionPath(params, v.name)}` } };
    },
  }),
  defineRoute({
    id: 'getVersion',
    method: 'GET',
    path: VERSION,
    tag: 'versions',
    summary: 'Read a version: status, endpoints, replicas',
    params: versionParams,
    response: { status: 200, description: 'The version.', schema: ref('Version') },
    handler: async ({ control, params }) => ({ body: await control.getVersion(params) }),
  }),
  defineRoute({
    id: 'patchVersion',
    method: 'PATCH',
    path: VERSION,
    tag: 'versions',
    summary: 'Stop, start or scale a version without a rebuild',
    description: 'Refused with 409 CONFLICT when it enables an endpoint that was disabled when the version was built (left out of the build: build a new version).',
    params: versionParams,
    body: patchBody,
    response: { status: 200, description: 'The changed version.', schema: ref('Version') },
    errors: ['CONFLICT'],
    handler: async ({ control, params, body, actor }) => ({ body: await control.patchVersion(params, body, actor) }),
  }),
  defineRoute({
    id: 'deleteVersion',
    method: 'DELETE',
    path: VERSION,
    tag: 'versions',
    summary: 'Delete a version',
    description: 'Refused with 409 ALIAS_IN_USE while an alias points at it.',
    params: versionParams,
    response: { status: 204, description: 'Deleted.' },
    errors: ['ALIAS_IN_USE'],
    handler: async ({ control, params, actor }) => {
      await control.deleteVersion(params, actor);
      return { status: 204 };
    },
  }),
];

/** The API path of a version. */
export function versionPath(ref: { owner: string; project: string; deployment: string }, version: string): string {
  return `/api/v1/projects/${[ref.owner, ref.project].map(encodeURIComponent).join('/')}/deployments/${encodeURIComponent(ref.deployment)}/versions/${encodeURIComponent(version)}`;
}
