/**
 * Response and request plumbing shared by every admin API route: JSON and error responses with
 * the security headers, bounded JSON body reading, and the size-limited stream uploads use.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { PorticoError, errorBody } from '../../common/errors.ts';
import { ControlErrors } from '../../builder/errors.ts';
import { StoreUnavailableError } from '../../builder/store/store.ts';
import { isRedisOutage, isRedisTimeout } from '../../common/redis.ts';
import type { Logger } from '../../common/log.ts';
import type { Problem } from './schema.ts';

/** Headers on every API response (the UI sets its own beyond `nosniff`). */
export const API_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
});

/** Sends `body` as JSON (`undefined`: no body, e.g. 204) with the API headers. */
export function sendJson(
  res: ServerResponse,
  statusCode: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  res.writeHead(statusCode, {
    ...API_HEADERS,
    ...(payload ? { 'content-type': 'application/json; charset=utf-8', 'content-length': String(payload.length) } : {}),
    ...headers,
  });
  res.end(payload);
}

/** A 400 naming every bad field, with the problems also as a list (`problems`). */
export class ValidationError extends PorticoError {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[]) {
    const shown = problems.slice(0, 10).map((p) => `${p.path}: ${p.message}`);
    if (problems.length > 10) shown.push(`and ${problems.length - 10} more`);
    super(ControlErrors.VALIDATION_FAILED, shown.join('; '));
    this.problems = problems;
  }
  override toJSON() {
    return { ...super.toJSON(), problems: this.problems.map((p) => ({ ...p })) };
  }
}

/**
 * Sends `err` in the contract's error shape. A `PorticoError` keeps its status, code, message
 * and headers; the store being unreachable (closed, Redis down or not answering in time) is a
 * 503 `STORE_UNAVAILABLE` with `Retry-After` (without it, and saying a restart is needed, when
 * the embedded store failed to write); anything else is a 500 `INTERNAL` whose details go
 * to `logger`, never to the client.
 */
export function sendError(res: ServerResponse, err: unknown, logger: Logger, context: Record<string, unknown> = {}): void {
  if (err instanceof PorticoError) {
    if (err.statusCode >= 500) logger.error(err.message, { code: err.code, ...context, err: errorDetails(err) });
    sendJson(res, err.statusCode, err.toJSON(), err.headers);
    return;
  }
  if (err instanceof StoreUnavailableError || isRedisOutage(err)) {
    logger.error('the store is unavailable', { ...context, err: errorDetails(err) });
    const def = ControlErrors.STORE_UNAVAILABLE;
    if (err instanceof StoreUnavailableError && err.needsRestart) {
      // The embedded store after a failed disk write: retrying cannot help, so no Retry-After.
      const message = 'The store failed to write to disk and refuses every operation until the controller is restarted (free disk space first; its log has the error).';
      sendJson(res, def.statusCode, errorBody(def.statusCode, def.code, message));
      return;
    }
    // A command that timed out was sent: Redis may still carry it out once it answers again.
    const message = isRedisTimeout(err) ? 'The store did not answer in time; a change may still be applied once it does: check before retrying one.' : def.message;
    sendJson(res, def.statusCode, errorBody(def.statusCode, def.code, message), { 'retry-after': '1' });
    return;
  }
  logger.error('internal error in the admin API', { ...context, err: errorDetails(err) });
  const def = ControlErrors.INTERNAL;
  sendJson(res, def.statusCode, errorBody(def.statusCode, def.code, def.message));
}

/** Name, message, stack and cause chain of an error, for the log. */
export function errorDetails(err: unknown): unknown {
  if (!(err instanceof Error)) return String(err);
  return { name: err.name, message: err.message, stack: err.stack, cause: err.cause === undefined ? undefined : errorDetails(err.cause) };
}

/** True when the request's Content-Type is JSON (`application/json` or `application/*+json`). */
export function isJsonContentType(req: IncomingMessage): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/** True when the request announces or carries a body (Content-Length > 0 or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function tooLarge(limit: number): PorticoError {
  return new PorticoError(ControlErrors.PAYLOAD_TOO_LARGE, `The request body is larger than ${limit} bytes.`, {
    headers: { connection: 'close' },
  });
}

/** Refuses at once a request whose Content-Length exceeds `limit`. */
export function checkDeclaredLength(req: IncomingMessage, limit: number): void {
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > limit) throw tooLarge(limit);
}

/**
 * Reads a JSON body of at most `limit` bytes. `undefined` for an empty body; 415 for a body that
 * is not declared JSON, 413 beyond the limit (stopping the read), 400 for bad JSON.
 */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  if (!hasBody(req)) return undefined;
  if (!isJsonContentType(req)) {
    throw new PorticoError(
      ControlErrors.UNSUPPORTED_MEDIA_TYPE,
      `Send the body as JSON with Content-Type: application/json (got ${JSON.stringify(req.headers['content-type'] ?? 'none')}).`,
    );
  }
  checkDeclaredLength(req, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PorticoError(ControlErrors.BAD_REQUEST, `The body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A pass-through stream that fails with a 413 `PorticoError` once more than `limit` bytes went
 * through; `exceeded` tells afterwards whether that happened.
 */
export class SizeLimit extends Transform {
  readonly limit: number;
  bytes = 0;
  exceeded = false;
  constructor(limit: number) {
    super();
    this.limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      this.exceeded = true;
      done(tooLarge(this.limit));
      return;
    }
    done(null, chunk);
  }
  /** The 413 error this limit raises. */
  error(): PorticoError {
    return tooLarge(this.limit);
  }
}
