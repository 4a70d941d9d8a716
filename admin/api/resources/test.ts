import { validateHeaderValue } from 'node:http';
import { defineRoute, DEPLOYMENT, deploymentParams, name, ref } from '../route.ts';
import { enumOf, joinPath, object, optional, record, refine, string } from '../schema.ts';

/** True when HTTP can carry `value` as a header value (as Node and undici check it). */
function isHeaderValue(value: string): boolean {
  try {
    validateHeaderValue('x', value);
    return true;
  } catch {
    return false;
  }
}

/** Room for `bodyBase64` at its longest (10 MiB of bytes), with headers and the other fields. */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

const body = refine(
  object({
    target: name('The version or alias to call.', 'production'),
    endpoint: name('Endpoint name.', 'predict'),
    method: enumOf(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'], { description: 'HTTP method.' }),
    path: optional(string({ max: 8192, pattern: '^(/[^\\s]*)?$', description: 'The rest of the URL after the endpoint, with query (e.g. `/score?x=1`); no `.` or `..` segment (the gateway refuses them).', example: '/' })),
    headers: optional(record(string({ max: 8192 }), { keyPattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$", keyExample: 'content-type', maxKeys: 100, description: 'Request headers.' })),
    body: optional(string({ max: 10 * 1024 * 1024, description: 'A text body.' })),
    bodyBase64: optional(string({ max: 14 * 1024 * 1024, pattern: '^[A-Za-z0-9+/]*={0,2}$', description: 'A binary body, base64.', example: 'aGVsbG8=' })),
    username: optional(string({ max: 256, description: 'Basic-auth user (deployments with auth "basic").' })),
    password: optional(string({ max: 1024, description: 'Basic-auth password.' })),
  }),
  'At most one of body and bodyBase64. Header values must be valid in HTTP: no CR, LF, NUL or other control characters (tab aside), nothing beyond U+00FF.',
  (b) => [
    ...(b.body !== undefined && b.bodyBase64 !== undefined ? [{ at: '.bodyBase64', message: 'send either body or bodyBase64, not both' }] : []),
    // Refused here, before anything is sent: undici would throw and it looked like a gateway outage (503).
    ...Object.entries(b.headers ?? {}).filter(([, v]) => !isHeaderValue(v)).map(([k]) => ({
      at: joinPath('.headers', k),
      message: 'is not a valid HTTP header value (CR, LF, NUL and other control characters, and characters beyond U+00FF, cannot be sent)',
    })),
  ],
);

/** The test console: one request sent through a live gateway. */
export const testRoutes = [
  defineRoute({
    id: 'testRequest',
    method: 'POST',
    path: `${DEPLOYMENT}/test`,
    tag: 'test',
    summary: 'Send a request to an endpoint through a gateway',
    params: deploymentParams,
    body,
    maxJsonBytes: MAX_REQUEST_BYTES,
    response: { status: 200, description: 'The endpoint\'s response (any status), body base64; `truncated` when the body was longer than 16 MiB and cut there.', schema: ref('TestResponse') },
    errors: ['VALIDATION_FAILED', 'GATEWAY_UNAVAILABLE'],
    handler: async ({ control, params, body }) => ({ body: await control.test(params, body) }),
  }),
];
