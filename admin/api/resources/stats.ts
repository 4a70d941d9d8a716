import { defineRoute, DEPLOYMENT, deploymentParams } from '../route.ts';
import { int, object, optional, type JsonSchema } from '../schema.ts';

const query = object({
  window: optional(int({ min: 10, max: 3600, description: 'Seconds to look back (default 300; the gateways keep 1 hour in 10-second buckets).' })),
}, { unknownLabel: 'query parameter' });

const ms: JsonSchema = { type: ['number', 'null'], description: 'Milliseconds; null without requests.' };
const item: JsonSchema = {
  type: 'object',
  properties: {
    version: { type: 'string' },
    endpoint: { type: 'string' },
    requests: { type: 'integer', description: 'Requests answered in the window.' },
    requestsPerSecond: { type: 'number' },
    statuses: { type: 'object', properties: Object.fromEntries(['1xx', '2xx', '3xx', '4xx', '5xx'].map((c) => [c, { type: 'integer' }])) },
    errorRate: { type: 'number', description: '5xx answers / requests (gateway errors such as 502, 503, 504 included).' },
    clientErrorRate: { type: 'number', description: '4xx answers / requests.' },
    meanMs: ms,
    p50: ms,
    p95: ms,
    p99: ms,
    series: { type: 'array', description: 'Per 10-second bucket with requests: [start epochMillis, requests, 5xx].', items: { type: 'array', items: { type: 'number' } } },
  },
  required: ['version', 'endpoint', 'requests', 'requestsPerSecond', 'errorRate', 'p50', 'p95', 'p99'],
};

/** Request stats of a deployment, from every gateway. */
export const statsRoutes = [
  defineRoute({
    id: 'getDeploymentStats',
    method: 'GET',
    path: `${DEPLOYMENT}/stats`,
    tag: 'metrics',
    summary: 'Request stats of a deployment per version and endpoint, from the gateways',
    description: 'Every gateway process adds its counts (by status class, and a latency histogram) to 10-second buckets every 2 seconds; this sums every gateway\'s buckets that overlap the last `window` seconds (`from` is the first bucket\'s start, `to` now). Per version and endpoint of the deployment (those without requests too): `requests`, `requestsPerSecond` (over `to - from`), `statuses`, `errorRate` (5xx / requests), `clientErrorRate` (4xx / requests), `meanMs`, and `p50`/`p95`/`p99` in milliseconds, interpolated inside the histogram\'s buckets. Items are sorted by version, then endpoint.',
    params: deploymentParams,
    query,
    response: {
      status: 200,
      description: 'The stats.',
      schema: {
        type: 'object',
        properties: {
          window: { type: 'integer' },
          from: { type: 'integer' },
          to: { type: 'integer' },
          bucketSeconds: { type: 'integer' },
          items: { type: 'array', items: item },
        },
        required: ['window', 'from', 'to', 'items'],
      },
    },
    handler: async ({ control, params, query }) => ({ body: await control.deploymentStats(params, { window: query.window ?? 300 }) }),
  }),
];
