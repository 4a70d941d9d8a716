import { maxHeaderSize, STATUS_CODES } from 'node:http';

/** What one registry entry declares: a stable code, its HTTP status and a default message. */
export interface ErrorDefinition {
  readonly code: string;
  readonly statusCode: number;
  readonly message: string;
}

/** The JSON body every Portico error is sent as (gateway and admin API alike). */
export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

/**
 * An error with a stable `code` and HTTP `statusCode`. The original failure, if any, is kept
 * as `cause`; `headers` are sent with the response (e.g. `Retry-After`, `WWW-Authenticate`).
 */
export class PorticoError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    def: ErrorDefinition,
    message?: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message ?? def.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PorticoError';
    this.code = def.code;
    this.statusCode = def.statusCode;
    this.headers = options?.headers;
  }

  /** The JSON error shape of the contract. */
  toJSON(): ErrorBody {
    return errorBody(this.statusCode, this.code, this.message);
  }
}

/** Builds the contract's error body for a status, code and message. */
export function errorBody(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message };
}

/**
 * A full `HTTP/1.1` error response (closing the connection) for writing to a raw socket, where
 * Node's parser refused a request and no `ServerResponse` exists. `headers` with a value are
 * added as given.
 */
export function rawErrorResponse(err: PorticoError, body = JSON.stringify(err.toJSON()), headers: Readonly<Record<string, string>> = {}): string {
  let head = `HTTP/1.1 ${err.statusCode} ${STATUS_CODES[err.statusCode] ?? 'Error'}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'cache-control: no-store\r\n' +
    'connection: close\r\n';
  for (const [k, v] of Object.entries(headers)) if (v !== '') head += `${k}: ${v}\r\n`;
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) head += `${k}: ${v}\r\n`;
  return `${head}\r\n${body}`;
}

// The start of a request line: a method, a space, a request target.
const REQUEST_LINE_START = /^[A-Z]+ [^ \r\n]/;

/**
 * Whether a head over Node's size limit (`HPE_HEADER_OVERFLOW`) was over it in its request line
 * alone: a URI too long (414, as nginx answers), not too many headers (431). Read from the bytes
 * the parser was given last, which hold the whole request line when it arrived in one piece (a
 * line that trickled in is called 431: the earlier pieces are gone).
 */
export function requestLineOverflow(err: NodeJS.ErrnoException): boolean {
  const raw = (err as { rawPacket?: Buffer }).rawPacket;
  if (raw === undefined || !REQUEST_LINE_START.test(raw.toString('latin1', 0, 64))) return false;
  const eol = raw.indexOf(10);
  return (eol === -1 ? raw.length : eol) >= maxHeaderSize;
}

/**
 * Declares a registry of errors keyed by code, checking that every key equals its code.
 * The result is frozen so nobody can add codes at run time.
 */
export function defineErrors<const T extends Record<string, { statusCode: number; message: string }>>(
  defs: T,
): { readonly [K in keyof T]: ErrorDefinition & { code: K & string } } {
  const out: Record<string, ErrorDefinition> = {};
  for (const [code, def] of Object.entries(defs)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(code)) throw new Error(`error code ${code} must be UPPER_SNAKE`);
    if (!STATUS_CODES[def.statusCode]) throw new Error(`error code ${code}: unknown status ${def.statusCode}`);
    out[code] = Object.freeze({ code, statusCode: def.statusCode, message: def.message });
  }
  return Object.freeze(out) as { readonly [K in keyof T]: ErrorDefinition & { code: K & string } };
}
