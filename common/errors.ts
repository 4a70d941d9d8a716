import { STATUS_CODES } from 'node:http';

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
