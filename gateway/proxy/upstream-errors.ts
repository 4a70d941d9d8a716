import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors, type GatewayErrorCode } from '../errors.ts';

/** How one upstream failure is answered, and whether it may be retried on another replica. */
export interface UpstreamFailure {
  readonly code: GatewayErrorCode;
  /**
   * `'connect'`: the failure happened before anything of the request could have been sent, so
   * any method may be retried. `'socket'`: the connection broke; only GET/HEAD/OPTIONS (or a
   * request of which nothing was sent yet) may be retried. `false`: never retried.
   */
  readonly retry: 'connect' | 'socket' | false;
}

/**
 * The one table from undici / socket error codes to gateway error codes (in the manner of
 * `@fastify/reply-from`). Codes not listed are `UPSTREAM_UNREACHABLE`, not retried; parser
 * errors (`HPE_*`, or undici's `HTTPParserError` without a code) are `UPSTREAM_BAD_RESPONSE`.
 */
export const UPSTREAM_FAILURES: Readonly<Record<string, UpstreamFailure>> = Object.freeze({
  ECONNREFUSED: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  EHOSTUNREACH: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  ENETUNREACH: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  EHOSTDOWN: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  ENOTFOUND: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  EAI_AGAIN: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  EADDRNOTAVAIL: { code: 'UPSTREAM_UNREACHABLE', retry: 'connect' },
  UND_ERR_CONNECT_TIMEOUT: { code: 'UPSTREAM_TIMEOUT', retry: 'connect' },
  ECONNRESET: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  EPIPE: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  ECONNABORTED: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  UND_ERR_SOCKET: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  UND_ERR_CLOSED: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  UND_ERR_DESTROYED: { code: 'UPSTREAM_UNREACHABLE', retry: 'socket' },
  UND_ERR_HEADERS_TIMEOUT: { code: 'UPSTREAM_TIMEOUT', retry: false },
  UND_ERR_BODY_TIMEOUT: { code: 'UPSTREAM_TIMEOUT', retry: false },
  ETIMEDOUT: { code: 'UPSTREAM_TIMEOUT', retry: false },
  UND_ERR_HEADERS_OVERFLOW: { code: 'UPSTREAM_BAD_RESPONSE', retry: false },
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: { code: 'UPSTREAM_BAD_RESPONSE', retry: false },
  UND_ERR_RES_EXCEEDED_MAX_SIZE: { code: 'UPSTREAM_BAD_RESPONSE', retry: false },
  UND_ERR_INVALID_ARG: { code: 'BAD_REQUEST', retry: false },
  UND_ERR_NOT_SUPPORTED: { code: 'BAD_REQUEST', retry: false },
  UND_ERR_REQ_CONTENT_LENGTH_MISMATCH: { code: 'BAD_REQUEST', retry: false },
});

const DEFAULT_FAILURE: UpstreamFailure = { code: 'UPSTREAM_UNREACHABLE', retry: false };
const PARSER_FAILURE: UpstreamFailure = { code: 'UPSTREAM_BAD_RESPONSE', retry: false };

/**
 * The error's code for the table and for metrics: its `code`, `HPE` for an undici parser error
 * that carries none, `OTHER` for anything else.
 */
export function upstreamErrorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null;
  if (typeof e?.code === 'string') return e.code;
  return e?.name === 'HTTPParserError' ? 'HPE' : 'OTHER';
}

// undici's socket errors for an answer no request asked for: a response on an idle connection
// or a 100 nobody expected ('bad response'), a 101 to a plain request ('bad upgrade'). The
// replica misbehaved; the connection did not merely break.
const UNASKED_ANSWERS = new Set(['bad response', 'bad upgrade']);

/** The table's entry for `err` (by its `code`). */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const code = upstreamErrorCode(err);
  if (code === 'UND_ERR_SOCKET' && UNASKED_ANSWERS.has((err as { message?: unknown }).message as string)) return PARSER_FAILURE;
  return UPSTREAM_FAILURES[code] ?? (code.startsWith('HPE') ? PARSER_FAILURE : DEFAULT_FAILURE);
}

/** The gateway error to answer `err` with, keeping `err` as its cause. */
export function upstreamError(failure: UpstreamFailure, err: unknown): PorticoError {
  return new PorticoError(GatewayErrors[failure.code], undefined, { cause: err });
}
