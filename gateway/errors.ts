import { defineErrors } from '../common/errors.ts';

/**
 * Every error the gateway answers with, by stable code. Each is sent as the contract's JSON
 * body (see `common/errors.ts`), never HTML or a stack trace. Upstream failures are mapped to
 * these codes in one table, `proxy/upstream-errors.ts`.
 */
export const GatewayErrors = defineErrors({
  BAD_PATH: { statusCode: 400, message: 'the path must be /{owner}/{project}/{deployment}/{version-or-alias}/{endpoint}[/rest]' },
  BAD_REQUEST: { statusCode: 400, message: 'malformed HTTP request' },
  AUTH_REQUIRED: { statusCode: 401, message: 'this deployment requires a valid username and password' },
  ROUTE_NOT_FOUND: { statusCode: 404, message: 'no such deployment, version, alias or endpoint' },
  METHOD_NOT_ALLOWED: { statusCode: 405, message: 'CONNECT is not supported: the gateway is not a forward proxy' },
  REQUEST_TIMEOUT: { statusCode: 408, message: 'the request was not received in time' },
  EXPECTATION_FAILED: { statusCode: 417, message: 'only Expect: 100-continue is supported' },
  PAYLOAD_TOO_LARGE: { statusCode: 413, message: 'the request body is larger than this endpoint accepts' },
  URI_TOO_LONG: { statusCode: 414, message: 'the request URI is too long' },
  HEADERS_TOO_LARGE: { statusCode: 431, message: 'the request headers are too large' },
  INTERNAL_ERROR: { statusCode: 500, message: 'the gateway failed to handle the request' },
  UPSTREAM_UNREACHABLE: { statusCode: 502, message: 'the replica could not be reached or closed the connection' },
  UPSTREAM_BAD_RESPONSE: { statusCode: 502, message: 'the replica sent an invalid HTTP response' },
  NO_READY_REPLICA: { statusCode: 503, message: 'the endpoint has no ready replica right now' },
  ROUTING_UNAVAILABLE: { statusCode: 503, message: 'the routing table is unreachable and this route is not cached' },
  GATEWAY_DRAINING: { statusCode: 503, message: 'this gateway is shutting down; retry on another' },
  UPSTREAM_TIMEOUT: { statusCode: 504, message: 'the replica did not answer in time' },
});

/** One gateway error code. */
export type GatewayErrorCode = keyof typeof GatewayErrors;

/** Seconds a client should wait before retrying a 503 (sent as `Retry-After`). */
export const RETRY_AFTER_SECONDS = {
  NO_READY_REPLICA: 5,
  ROUTING_UNAVAILABLE: 1,
} as const;
