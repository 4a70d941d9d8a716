/**
 * The CLI's admin API client: JSON requests with the bearer token, raw uploads, NDJSON streams;
 * error bodies become `ApiError`s whose message fits on one line.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import type { Config } from '../../common/config.ts';

/** An error answer of the admin API (status, stable code, message). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
  }
  /** `NOT_FOUND (404): Deployment acme/mnist/web not found.` */
  oneLine(): string {
    return `${this.code} (${this.statusCode}): ${this.message.replace(/\s*\n\s*/g, ' ')}`;
  }
}

/** The admin API could not be reached at all (refused, reset, DNS...). */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
}

type Query = Readonly<Record<string, string | number | boolean | undefined>>;

/** Options of one request. */
export interface RequestOptions {
  readonly query?: Query;
  /** A JSON body. */
  readonly body?: unknown;
  /** A raw body (uploads), streamed. */
  readonly raw?: { readonly body: Readable | Buffer; readonly contentType: string };
  readonly signal?: AbortSignal;
}

/** Joins path segments, percent-encoding each: `apiPath('projects', owner, project)`. */
export function apiPath(...segments: string[]): string {
  return `/api/v1/${segments.map(encodeURIComponent).join('/')}`;
}

/** A client of one admin API. */
export class ApiClient {
  readonly baseUrl: string;
  /** What a 401 should say: where the token came from, or was looked for, and what to do. */
  readonly authHint: string;
  readonly #token: string | undefined;

  constructor(opts: { readonly baseUrl: string; readonly token: string | undefined; readonly authHint?: string }) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.authHint = opts.authHint ?? 'set PORTICO_ADMIN_TOKEN';
    this.#token = opts.token;
  }

  #url(path: string, query: Query | undefined): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, String(v));
    const s = q.toString();
    return `${this.baseUrl}${path}${s ? `?${s}` : ''}`;
  }

  async #send(method: string, path: string, opts: RequestOptions, accept: string) {
    const headers: Record<string, string> = { accept };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    let body: string | Buffer | Readable | undefined;
    if (opts.raw) {
      headers['content-type'] = opts.raw.contentType;
      body = opts.raw.body;
    } else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await request(this.#url(path, opts.query), { method: method as 'GET', headers, body: body ?? null, signal: opts.signal ?? null });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const e = err as Error & { code?: string; cause?: { message?: string } };
      throw new UnreachableError(`cannot reach the admin API at ${this.baseUrl} (PORTICO_URL): ${e.cause?.message ?? e.message}`, { cause: err });
    }
    if (res.statusCode >= 400) {
      const text = await res.body.text().catch(() => '');
      throw toApiError(res.statusCode, text);
    }
    return res;
  }

  /** Sends a request and returns the parsed JSON answer (`undefined` for 204). */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.#send(method, path, opts, 'application/json');
    if (res.statusCode === 204) {
      await res.body.dump();
      return undefined as T;
    }
    const text = await res.body.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(res.statusCode, 'BAD_RESPONSE', `the admin API answered something that is not JSON: ${text.slice(0, 80)}`);
    }
  }

  /** GET of an NDJSON stream: each line parsed, until the server ends or `signal` aborts. */
  async *stream<T>(path: string, query: Query, signal?: AbortSignal): AsyncIterable<T> {
    const res = await this.#send('GET', path, { query, ...(signal ? { signal } : {}) }, 'application/x-ndjson');
    let buffered = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const value = JSON.parse(line) as { error?: { statusCode: number; code: string; message: string } } | null;
        if (value && typeof value === 'object' && value.error) {
          throw new ApiError(value.error.statusCode, value.error.code, value.error.message);
        }
        yield value as Awaited<T>;
      }
    }
  }
}

function toApiError(statusCode: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (typeof body.code === 'string' && typeof body.message === 'string') return new ApiError(statusCode, body.code, body.message);
  } catch {
    // not our error shape: fall through
  }
  return new ApiError(statusCode, 'HTTP_ERROR', `HTTP ${statusCode}${text ? `: ${text.slice(0, 120).replace(/\s+/g, ' ')}` : ''}`);
}

/**
 * A client for `config.url` with `config.adminToken`, or else the token `npm start` wrote to
 * `$PORTICO_DATA_DIR/admin-token` when that file is readable.
 */
export function clientFromConfig(config: Config): ApiClient {
  if (config.adminToken !== undefined) return new ApiClient({ baseUrl: config.url, token: config.adminToken });
  // Relative to the current folder by default: run elsewhere than `npm start`, there is none.
  const file = join(config.dataDir, 'admin-token');
  let token: string | undefined;
  try {
    token = readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    token = undefined;
  }
  const authHint = token === undefined
    ? `set PORTICO_ADMIN_TOKEN: there is no token file ${file}, PORTICO_DATA_DIR`
    : `the token in ${file} was refused: set PORTICO_ADMIN_TOKEN`;
  return new ApiClient({ baseUrl: config.url, token, authHint });
}

/** One line for any error the client raises (API answers, unreachable server); `client` says what a 401 means. */
export function describeError(err: unknown, client?: ApiClient): string | undefined {
  if (err instanceof ApiError) {
    const hint = err.statusCode === 401 ? ` (${client?.authHint ?? 'set PORTICO_ADMIN_TOKEN'})` : '';
    return `${err.oneLine()}${hint}`;
  }
  if (err instanceof UnreachableError) return err.message;
  return undefined;
}
