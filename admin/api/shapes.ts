/**
 * JSON Schemas of what the admin API answers (`components/schemas` of the OpenAPI document).
 * Documentation only: responses may gain fields, so these schemas stay open.
 */
import type { JsonSchema } from './schema.ts';

const str: JsonSchema = { type: 'string' };
const int: JsonSchema = { type: 'integer' };
const time: JsonSchema = { type: 'string', format: 'date-time' };
const obj = (properties: Record<string, JsonSchema>, required: string[], description?: string): JsonSchema => ({
  type: 'object',
  properties,
  required,
  ...(description ? { description } : {}),
});
const r = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const aliasTarget: JsonSchema = {
  oneOf: [
    obj({ version: str }, ['version']),
    obj({ versions: { type: 'array', items: r('WeightedVersion') } }, ['versions']),
  ],
};

/** Every response schema, by component name. */
export const SHAPES: Readonly<Record<string, JsonSchema>> = {
  Error: obj(
    {
      statusCode: int,
      code: { type: 'string', description: 'Stable error code, e.g. NOT_FOUND, VALIDATION_FAILED.' },
      error: { type: 'string', description: 'HTTP reason phrase.' },
      message: str,
      problems: { type: 'array', items: obj({ path: str, message: str }, ['path', 'message']), description: 'With VALIDATION_FAILED: each bad field.' },
    },
    ['statusCode', 'code', 'error', 'message'],
    'The error shape of every admin API (and gateway) error.',
  ),
  Health: obj({
    status: { type: 'string', enum: ['ok'] },
    store: { type: 'string', enum: ['ok', 'lost'], description: '`lost`: the store was emptied or replaced; the controller removes no replica and no route on its own until restarted (docs/operations.md, section 4).' },
  }, ['status', 'store']),
  Target: obj({ name: str, kind: { type: 'string', enum: ['local', 'docker', 'kubernetes'] }, gatewayUrl: str }, ['name', 'kind', 'gatewayUrl']),
  Environment: obj(
    {
      variables: {
        type: 'object',
        additionalProperties: obj({ value: { type: 'string', description: 'Secrets read as "********".' }, secret: { type: 'boolean' } }, ['value', 'secret']),
      },
    },
    ['variables'],
  ),
  Deployment: obj(
    { owner: str, project: str, name: str, target: str, auth: { type: 'string', enum: ['none', 'basic'] }, createdAt: time, url: { type: 'string', description: 'Gateway URL of the deployment.' } },
    ['owner', 'project', 'name', 'target', 'auth', 'createdAt', 'url'],
  ),
  User: obj({ name: str }, ['name']),
  Replica: obj(
    { id: str, address: { type: ['string', 'null'], description: '`host:port` the gateways reach the replica at; `null` while the replica is not `ready` (starting, crashed, stopping): it is not to be reached then, and a starting pod or container may have no address yet.' }, state: { type: 'string', enum: ['starting', 'ready', 'crashed', 'stopping'] }, restarts: int, reason: str },
    ['id', 'address', 'state'],
  ),
  Endpoint: obj(
    {
      name: str,
      status: { type: 'string', enum: ['building', 'starting', 'ready', 'failed', 'stopped'] },
      url: { type: 'string', description: 'Version URL of the endpoint.' },
      enabled: { type: 'boolean' },
      replicaCount: { type: 'integer', description: 'Replicas wanted.' },
      replicas: { type: 'array', items: r('Replica') },
      timeoutSeconds: { type: ['integer', 'null'] },
      maxBodyBytes: { type: ['integer', 'null'] },
      error: str,
      files: { type: 'array', items: obj({ name: str, path: str, sha256: str, size: int }, ['name', 'path']) },
    },
    ['name', 'status', 'url', 'replicas'],
  ),
  Version: obj(
    {
      name: str,
      status: { type: 'string', enum: ['building', 'starting', 'ready', 'failed', 'stopped'] },
      reason: { type: 'string', description: 'Why the version failed.' },
      createdAt: time,
      updatedAt: time,
      enabled: { type: 'boolean' },
      createdBy: str,
      source: { type: 'object' },
      environment: { type: 'array', items: str, description: 'Variable names only.' },
      endpoints: { type: 'array', items: r('Endpoint') },
      aliases: { type: 'array', items: str },
    },
    ['name', 'status', 'createdAt', 'endpoints'],
  ),
  LogLine: obj(
    { at: { type: 'integer', description: 'Epoch milliseconds.' }, replica: str, stream: { type: 'string', enum: ['stdout', 'stderr', 'build'] }, line: str },
    ['at', 'stream', 'line'],
  ),
  WeightedVersion: obj({ version: str, weight: int }, ['version', 'weight']),
  Alias: { oneOf: [obj({ name: str, version: str }, ['name', 'version']), obj({ name: str, versions: { type: 'array', items: r('WeightedVersion') } }, ['name', 'versions'])] },
  AliasSetResult: {
    allOf: [
      r('Alias'),
      obj(
        {
          acknowledged: { type: 'array', items: str, description: 'Gateways that applied the change.' },
          missing: { type: 'array', items: str, description: 'Live gateways that did not acknowledge within PORTICO_FLIP_ACK_MS.' },
        },
        ['acknowledged', 'missing'],
      ),
    ],
  },
  AliasHistoryItem: obj({ at: time, by: str, from: { oneOf: [{ type: 'null' }, aliasTarget] }, to: { oneOf: [{ type: 'null' }, aliasTarget] } }, ['at', 'by', 'from', 'to']),
  TestResponse: obj({
    status: int,
    headers: { type: 'object', additionalProperties: str },
    bodyBase64: str,
    durationMs: { type: 'number' },
    truncated: { type: 'boolean', const: true, description: 'Present (true) only when the body was longer than 16 MiB: `bodyBase64` holds its first 16 MiB.' },
  }, ['status', 'headers', 'bodyBase64', 'durationMs']),
  AuditItem: obj({ id: { type: 'string', description: 'Paging cursor (`?before=`).' }, at: time, actor: str, action: str, target: str, details: { type: 'object' } }, ['at', 'actor', 'action', 'target', 'details']),
  Token: obj({ name: str, createdAt: time }, ['name', 'createdAt']),
  NewToken: obj({ name: str, token: { type: 'string', description: 'Shown once; stored only hashed.' } }, ['name', 'token']),
  Upload: obj({ id: str, size: int, sha256: str }, ['id', 'size', 'sha256']),
};
