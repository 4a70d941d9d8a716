import { defineErrors } from '../common/errors.ts';

/**
 * Every error the controller (and so the admin API) answers with. Stable codes; the admin API
 * sends them in the contract's JSON error shape.
 */
export const ControlErrors = defineErrors({
  BAD_REQUEST: { statusCode: 400, message: 'The request is not valid.' },
  VALIDATION_FAILED: { statusCode: 400, message: 'The request body is not valid.' },
  INVALID_VALOHAI_YAML: { statusCode: 400, message: 'valohai.yaml has problems.' },
  AUTH_REQUIRED: { statusCode: 401, message: 'A valid bearer token is required.' },
  NOT_FOUND: { statusCode: 404, message: 'No such resource.' },
  ROUTE_NOT_FOUND: { statusCode: 404, message: 'No such API route.' },
  METHOD_NOT_ALLOWED: { statusCode: 405, message: 'Method not allowed on this resource.' },
  REQUEST_TIMEOUT: { statusCode: 408, message: 'The request was not received in time.' },
  ALREADY_EXISTS: { statusCode: 409, message: 'It exists already.' },
  ALIAS_IN_USE: { statusCode: 409, message: 'An alias points at this version.' },
  VERSION_NOT_READY: { statusCode: 409, message: 'The version is not ready (send "force": true to point the alias anyway).' },
  CONFLICT: { statusCode: 409, message: 'The request conflicts with the current state.' },
  PAYLOAD_TOO_LARGE: { statusCode: 413, message: 'The request body is too large.' },
  URI_TOO_LONG: { statusCode: 414, message: 'The request URI is too long.' },
  HEADERS_TOO_LARGE: { statusCode: 431, message: 'The request headers are too large.' },
  UNSUPPORTED_MEDIA_TYPE: { statusCode: 415, message: 'Send JSON (Content-Type: application/json).' },
  GATEWAY_UNAVAILABLE: { statusCode: 503, message: 'No live gateway to send the request through.' },
  STORE_UNAVAILABLE: { statusCode: 503, message: 'The store is unreachable; try again.' },
  INTERNAL: { statusCode: 500, message: 'Internal error.' },
});
