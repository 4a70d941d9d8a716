/**
 * The admin HTTP server: `/healthz` and `/api/v1/...` through the declared routes (auth,
 * validation, JSON errors), everything else to the web UI handler when there is one.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { PorticoError } from '../../common/errors.ts';
import { jsonClientErrors, listen } from '../../common/http.ts';
import type { ControlPlane } from '../../builder/control-plane.ts';
import { ControlErrors } from '../../builder/errors.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { errorDetails, readJsonBody, sendError, sendJson, ValidationError } from './http.ts';
import { STREAMED, type Limits, type Route } from './route.ts';
import { decodeParams, Router } from './router.ts';
import { routes as allRoutes } from './routes.ts';
import { validate, type Problem, type Schema } from './schema.ts';

/** What `createAdminHandler` needs. */
export interface AdminHandlerOptions {
  readonly control: ControlPlane;
  /** The web UI: handles a non-API request and returns true, or returns false (then 404). */
  readonly ui?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  /** Largest JSON body (default 1 MiB; a route may declare its own, as the test console does). */
  readonly maxJsonBytes?: number;
  /** Largest upload (default 1 GiB). */
  readonly maxUploadBytes?: number;
  /** Where internal errors are logged (default: JSON lines on stderr). */
  readonly logger?: Logger;
  /** The routes served (default: every resource of `routes.ts`). */
  readonly routes?: readonly Route[];
}

const MiB = 1024 * 1024;
/** Longest bearer token looked at; longer ones are refused without hashing them. */
const MAX_TOKEN_LENGTH = 4096;
const REALM = 'Bearer realm="portico"';

function isApiPath(pathname: string): boolean {
  return pathname === '/healthz' || pathname === '/api' || pathname.startsWith('/api/');
}

/**
 * Returns the admin server's request handler. Every API answer is JSON with `no-store` and
 * `nosniff`; every error has the contract's shape and never a stack trace (a 500 is logged).
 */
export function createAdminHandler(opts: AdminHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const router = new Router(opts.routes ?? allRoutes);
  const limits: Limits = { maxJsonBytes: opts.maxJsonBytes ?? MiB, maxUploadBytes: opts.maxUploadBytes ?? 1024 * MiB };
  const logger = opts.logger ?? createLogger('admin-api', 'info');

  async function authenticate(req: IncomingMessage): Promise<string> {
    const header = req.headers.authorization;
    if (header === undefined) {
      throw new PorticoError(ControlErrors.AUTH_REQUIRED, 'Send Authorization: Bearer <token> (PORTICO_ADMIN_TOKEN).', { headers: { 'www-authenticate': REALM } });
    }
    const m = /^Bearer +([A-Za-z0-9._~+/=-]+) *$/i.exec(header);
    const name = m && m[1]!.length <= MAX_TOKEN_LENGTH ? await opts.control.authenticate(m[1]!) : null;
    if (name === null) {
      throw new PorticoError(ControlErrors.AUTH_REQUIRED, 'The bearer token is not valid.', {
        headers: { 'www-authenticate': `${REALM}, error="invalid_token"` },
      });
    }
    return name;
  }

  function check<T>(schema: Schema<T>, value: unknown, path: string, coerce: boolean, problems: Problem[]): T | undefined {
    const r = validate(schema, value, path, { coerce });
    if (r.ok) return r.value;
    problems.push(...r.problems);
    return undefined;
  }

  async function serveApi(req: IncomingMessage, res: ServerResponse, pathname: string, search: string): Promise<void> {
    const method = req.method ?? 'GET';
    const match = router.match(method, pathname);
    if (match.kind === 'none') {
      throw new PorticoError(ControlErrors.ROUTE_NOT_FOUND, `No route ${method} ${pathname} (see GET /api/v1/openapi.json).`);
    }
    if (match.kind === 'method') {
      throw new PorticoError(ControlErrors.METHOD_NOT_ALLOWED, `${method} is not allowed on ${pathname}; allowed: ${match.allow.join(', ')}.`, {
        headers: { allow: match.allow.join(', ') },
      });
    }
    const route = match.route;
    const actor = route.auth === false ? 'anonymous' : await authenticate(req);

    const problems: Problem[] = [];
    const raw = decodeParams(match.params);
    const params: Record<string, string> = {};
    for (const n of route.paramNames) {
      const v = check(route.params[n]!, raw[n], `path.${n}`, false, problems);
      if (v !== undefined) params[n] = v;
    }
    let query: unknown = {};
    const searchParams = new URLSearchParams(search);
    if (route.query) {
      const entries: [string, string][] = [];
      for (const key of new Set(searchParams.keys())) {
        const values = searchParams.getAll(key);
        if (values.length > 1) problems.push({ path: `query.${key}`, message: 'must be given once' });
        entries.push([key, values[0]!]);
      }
      // fromEntries keeps a "__proto__" parameter as data (reported as unknown).
      query = check(route.query, Object.fromEntries(entries), 'query', true, problems);
    } else if (!route.ignoresQuery) {
      for (const key of new Set(searchParams.keys())) problems.push({ path: `query.${key}`, message: 'is not a known query parameter (this route takes none)' });
    }
    if (problems.length > 0) throw new ValidationError(problems);

    let body: unknown;
    if (route.body) {
      body = check(route.body, await readJsonBody(req, route.maxJsonBytes ?? limits.maxJsonBytes), 'body', false, problems);
      if (problems.length > 0) throw new ValidationError(problems);
    }

    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort(new Error('client disconnected'));
    };
    res.once('close', onClose);
    const reply = await route.handler({
      control: opts.control, actor, params, query, body, req, res, signal: abort.signal, limits, routes: router.routes, logger,
    });
    if (reply === STREAMED) return;
    if (!res.destroyed) sendJson(res, reply.status ?? route.response.status, reply.body, reply.headers);
  }

  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    const search = q === -1 ? '' : url.slice(q + 1);
    res.setHeader('x-content-type-options', 'nosniff');
    const requestId = randomUUID();
    res.setHeader('x-request-id', requestId);

    const fail = (err: unknown) => {
      if (res.headersSent) {
        logger.error('admin request failed after the response started', { requestId, method: req.method, path: pathname, err: errorDetails(err) });
        res.destroy();
        return;
      }
      // An unread request body (a refused upload) is not drained: the connection closes instead.
      if (!req.complete) res.setHeader('connection', 'close');
      sendError(res, err, logger, { requestId, method: req.method, path: pathname });
    };

    if (!isApiPath(pathname)) {
      if (!opts.ui) {
        fail(new PorticoError(ControlErrors.ROUTE_NOT_FOUND, `No route ${req.method} ${pathname}.`));
        return;
      }
      Promise.resolve()
        .then(() => opts.ui!(req, res))
        .then((handled) => {
          if (!handled) fail(new PorticoError(ControlErrors.ROUTE_NOT_FOUND, `No route ${req.method} ${pathname}.`));
        })
        .catch(fail);
      return;
    }
    serveApi(req, res, pathname, search).catch(fail);
  };
}

/** A listening admin server. */
export interface AdminServer {
  /** Base URL, e.g. `http://127.0.0.1:8081`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and closes every connection (followed log streams included). */
  close(): Promise<void>;
}

/** Options of `startAdminServer`. */
export interface AdminServerOptions extends AdminHandlerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /**
   * Longest time to receive a whole request, body included (default 1 hour, so that large
   * uploads on slow links finish; headers still time out after Node's 60 s).
   */
  readonly requestTimeoutMs?: number;
}

/** Starts the admin server on `host:port` (a failure to listen names PORTICO_ADMIN_PORT, which sets it). */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const server = createServer({ requestTimeout: opts.requestTimeoutMs ?? 3_600_000 }, createAdminHandler(opts));
  server.on('clientError', jsonClientErrors(ControlErrors));
  const { port } = await listen(server, opts.port, opts.host, 'PORTICO_ADMIN_PORT');
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
