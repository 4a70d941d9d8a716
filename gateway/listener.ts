import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PorticoError } from '../common/errors.ts';
import { parserErrorCode, rawErrorResponse, refusedMethod, unanswerable } from '../common/http.ts';
import type { Logger } from '../common/log.ts';
import { isoTime, type AccessLog } from './access-log.ts';
import { authenticate, type BasicAuthenticator } from './auth/basic.ts';
import type { LeastPendingBalancer } from './balancer/least-pending.ts';
import { GatewayErrors } from './errors.ts';
import { Exchange, GatewayResponse, HANDLED, type ExchangeSink, type Stage, type StageResult } from './exchange.ts';
import type { GatewayMetrics } from './metrics.ts';
import { checkPath } from './path.ts';
import { chooseReplica, limitBody, proxy } from './proxy/forward.ts';
import { readHeaders, TrustedProxies } from './proxy/headers.ts';
import { newRequestId } from './proxy/request-id.ts';
import { tunnel, type TunnelContext } from './proxy/tunnel.ts';
import type { Upstreams } from './proxy/upstreams.ts';
import { resolveDeployment, resolveEndpoint, type RouteSource } from './resolve.ts';

/** What the listener is built from (gateway/main.ts wires it). */
export interface ListenerDeps {
  readonly routes: RouteSource;
  /** Whether the routing table is reachable or cached (`/readyz`). */
  readonly routesReady: () => boolean;
  readonly authenticator: BasicAuthenticator;
  readonly balancer: LeastPendingBalancer;
  readonly upstreams: Upstreams;
  readonly metrics: GatewayMetrics;
  readonly accessLog: AccessLog;
  readonly log: Logger;
  readonly trustedProxies: readonly string[];
  readonly maxBodyBytes: number;
  readonly timeoutSeconds: number;
  readonly connectTimeoutMs: number;
}

const HEALTH_HEADERS = ['content-type', 'application/json; charset=utf-8', 'cache-control', 'no-store'];

// Runs stages from `from` on; synchronous until a stage returns a promise.
function run(ex: Exchange, stages: readonly Stage[], from: number, log: Logger): void {
  for (let i = from; i < stages.length; i++) {
    let r: StageResult | Promise<StageResult>;
    try {
      r = (stages[i] as Stage)(ex);
    } catch (err) {
      failInternal(ex, err, log);
      return;
    }
    if (r === undefined) continue;
    if (r === HANDLED) return;
    if (r instanceof PorticoError) {
      ex.fail(r);
      return;
    }
    const next = i + 1;
    r.then(
      (v) => {
        // The client may have left while the stage waited; its exchange is already accounted for.
        if (ex.gone) return;
        if (v === undefined) run(ex, stages, next, log);
        else if (v !== HANDLED) ex.fail(v);
      },
      (err: unknown) => failInternal(ex, err, log),
    );
    return;
  }
}

function failInternal(ex: Exchange, err: unknown, log: Logger): void {
  log.error('request failed in the gateway', { requestId: ex.requestId, error: err instanceof Error ? err.message : String(err) });
  ex.fail(new PorticoError(GatewayErrors.INTERNAL_ERROR, undefined, { cause: err }));
}

/**
 * The HTTP server's `shouldUpgradeCallback`: which upgrade requests become tunnels ('upgrade').
 * Only those without a body: a tunnel sends the replica the head alone and holds back what
 * follows until a 101, so the body of an upgrade request that has one (`curl --http2 -d`
 * offering h2c) never reached the replica, which waited for it (504) or, for a chunked body,
 * answered without it. Such a request is proxied as a plain one ('request'), its upgrade offer
 * dropped (a server may ignore one), body limit and all. Its answer closes the connection:
 * Node's parser drops whatever follows such a request in the same read, so a request pipelined
 * after it would never be answered on a connection left open.
 */
export function upgradesWithoutBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || Number(length) === 0)) return true;
  (req as MaybeDeclinedUpgrade)[UPGRADE_DECLINED] = true;
  return false;
}

/** Marks an upgrade request proxied as a plain one (see `upgradesWithoutBody`). */
const UPGRADE_DECLINED = Symbol('portico.upgradeDeclined');
type MaybeDeclinedUpgrade = IncomingMessage & { [UPGRADE_DECLINED]?: true };

/** Marks a connection whose parser refused bytes while a request of it was being answered. */
const REFUSED_AFTER = Symbol('portico.refusedAfterRequest');

// Shared 'close' listener of every proxied response: the single place an exchange ends.
function onResponseClose(this: GatewayResponse): void {
  const ex = this.exchange;
  if (ex === null) return;
  this.exchange = null;
  // Closed before the response was complete: the client left (or the response was cut).
  if (!this.writableFinished) ex.call?.cancel();
  ex.sink?.finish(ex);
}

/**
 * The gateway's request path. Each request passes the stages below in order; a stage answers
 * with an error or hands on. Upgrade (WebSocket) requests pass the same stages and end in a
 * tunnel instead of the pooled proxy. `/healthz` and `/readyz` are answered before any stage.
 */
export class GatewayListener implements ExchangeSink {
  /** Requests and tunnels being served now. */
  inFlight = 0;
  /** Set by `startDraining`: `/readyz` is 503 and responses close their connections. */
  draining = false;
  readonly #deps: ListenerDeps;
  readonly #stages: readonly Stage[];
  readonly #upgradeStages: readonly Stage[];
  #idleWaiters: (() => void)[] = [];
  #closeIdleConnections: () => void = () => {};

  constructor(deps: ListenerDeps) {
    this.#deps = deps;
    const ctx: TunnelContext = {
      routes: deps.routes,
      upstreams: deps.upstreams,
      balancer: deps.balancer,
      trusted: new TrustedProxies(deps.trustedProxies),
      timeoutSeconds: deps.timeoutSeconds,
      connectTimeoutMs: deps.connectTimeoutMs,
      closing: () => this.draining,
      onUpstreamError: (code) => deps.metrics.upstreamError(code),
      onRetry: () => deps.metrics.retry(),
    };
    const route: Stage[] = [
      readHeaders, //                                       one pass: request id, credentials, hop-by-hop (400 duplicate Content-Length)
      checkPath, //                                         /{owner}/{project}/{deployment}/{version-or-alias}/{endpoint}[/rest] (400)
      resolveDeployment(deps.routes), //                    deployment record (404; 503 when the table is down and it is not cached)
      authenticate(deps.authenticator), //                  basic auth when the deployment asks for it (401)
      resolveEndpoint(deps.routes, deps.maxBodyBytes), //   alias -> version (weighted per request), endpoint record (404, 503)
      limitBody, //                                         declared body over the endpoint's limit (413)
      chooseReplica(ctx), //                                least pending requests, round robin among ties
    ];
    this.#stages = [...route, proxy(ctx)]; //              undici keep-alive pool, streamed both ways, retry once, timeouts
    this.#upgradeStages = [...route, tunnel(ctx)]; //      WebSocket and other upgrades: a raw TCP tunnel
  }

  /** The HTTP server's 'request' listener. */
  readonly handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    if (url.charCodeAt(1) === 104 /* h */ && this.#health(url, res)) return;
    if (url.charCodeAt(1) === 114 /* r */ && this.#ready(url, res)) return;
    run(this.#exchange(req, res), this.#stages, 0, this.#deps.log);
  };

  /**
   * The HTTP server's 'checkContinue' listener (`Expect: 100-continue`): the request passes the
   * stages like any other, and `100 Continue` goes out only when it is about to be proxied. A
   * refusal on the way (401, 404, 413) is answered without it, and the client never uploads.
   */
  readonly handleContinue = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    if (url.charCodeAt(1) === 104 /* h */ || url.charCodeAt(1) === 114 /* r */) {
      // Answered without reading a body: the connection cannot be reused. (Any other path keeps
      // what the request asked: a client's `Connection: close` still closes.)
      const keepAlive = res.shouldKeepAlive;
      res.shouldKeepAlive = false;
      if (this.#health(url, res) || this.#ready(url, res)) return;
      res.shouldKeepAlive = keepAlive;
    }
    const ex = this.#exchange(req, res);
    ex.awaitingContinue = true;
    run(ex, this.#stages, 0, this.#deps.log);
  };

  #exchange(req: IncomingMessage, res: ServerResponse): Exchange {
    const gres = res as GatewayResponse;
    const ex = new Exchange(req, gres, null, null);
    ex.sink = this;
    gres.exchange = ex;
    gres.on('close', onResponseClose);
    this.inFlight++;
    if (this.draining || (req as MaybeDeclinedUpgrade)[UPGRADE_DECLINED]) gres.shouldKeepAlive = false;
    return ex;
  }

  /** The HTTP server's 'upgrade' listener. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    // A tunnel may stay quiet as long as its two ends like (WebSocket pings are theirs to send).
    (socket as Duplex & { setTimeout?: (ms: number) => void }).setTimeout?.(0);
    const ex = new Exchange(req, null, socket, head);
    ex.sink = this;
    this.inFlight++;
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      ex.call?.cancel();
      this.finish(ex);
    });
    if (this.draining) {
      ex.fail(new PorticoError(GatewayErrors.GATEWAY_DRAINING, undefined, { headers: { 'retry-after': '1' } }));
      return;
    }
    run(ex, this.#upgradeStages, 0, this.#deps.log);
  };

  /**
   * The HTTP server's 'clientError' listener: Node's parser refused the request; JSON 400. When
   * the bytes refused came after a complete request still being answered, that answer is let
   * finish and the connection closes after it: a 400 written now would reach the client as the
   * answer to that request, which the replica may well be carrying out. (Refused bytes inside a
   * request's own body get the 400: that request never reaches a replica complete.)
   */
  readonly handleClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    const current = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (current != null && current.req.complete && !current.writableEnded && err.code !== 'ECONNRESET' && socket.writable) {
      const s = socket as Duplex & { [REFUSED_AFTER]?: true };
      if (s[REFUSED_AFTER]) return;
      s[REFUSED_AFTER] = true;
      current.shouldKeepAlive = false;
      // Too late for `Connection: close` in the head: end the connection once the answer is out.
      if (current.headersSent) current.once('finish', () => socket.end());
      this.#deps.metrics.clientError(GatewayErrors.BAD_REQUEST.code);
      return;
    }
    // A request the client abandoned mid-body has its own line already, as 499.
    if (unanswerable(err, socket)) {
      socket.destroy();
      return;
    }
    const def = GatewayErrors[parserErrorCode(err)];
    this.#deps.metrics.clientError(def.code);
    const message = def === GatewayErrors.BAD_REQUEST && err.code ? `${def.message} (${err.code})` : def.message;
    const e = new PorticoError(def, message);
    const body = JSON.stringify(e.toJSON());
    const requestId = newRequestId();
    socket.end(rawErrorResponse(e, body, { 'x-request-id': requestId }));
    // Logged too, as nginx logs its 400s: with the method when the bytes refused begin with one,
    // never a route (the path was not read).
    const log = this.#deps.accessLog;
    if (log.enabled) log.appendFields(isoTime(Date.now()), requestId, refusedMethod(err), null, null, null, def.statusCode, Buffer.byteLength(body), 0, def.code);
  };

  /**
   * The HTTP server's 'timeout' listener: nothing moved on a connection for
   * PORTICO_BODY_IDLE_SECONDS (the server's socket inactivity timer). What that means depends
   * on what the connection is doing:
   * - no request on it (idle keep-alive, a lingering close, a head still arriving): closed;
   * - waiting for the replica's first byte, or for a stage: nothing (the endpoint's timeout and
   *   the stages' own bounds apply);
   * - a request body that stopped: 408 when the client stopped sending it, 504 when the replica
   *   stopped reading it (the gateway holds it back); the upstream call is aborted first, so the
   *   replica never sees it whole;
   * - a response the client stopped reading: the connection is cut (one the replica stopped
   *   sending is undici's body timeout, of the same length).
   * There is no limit on a request's total time: a large upload may take as long as it moves.
   */
  readonly handleTimeout = (socket: Duplex): void => {
    const res = (socket as { _httpMessage?: GatewayResponse | null })._httpMessage;
    const ex = res?.exchange;
    if (res == null || ex == null) {
      socket.destroy();
      return;
    }
    if (res.headersSent) {
      if (res.writableNeedDrain) socket.destroy();
      return;
    }
    const req = ex.req;
    if (req.complete || ex.call === null) return;
    const replicaStalled = req.isPaused() || req.readableLength > 0;
    ex.call.cancel();
    ex.fail(
      replicaStalled
        ? new PorticoError(GatewayErrors.UPSTREAM_TIMEOUT, 'the replica stopped reading the request body')
        : new PorticoError(GatewayErrors.REQUEST_TIMEOUT, 'the request body stopped arriving'),
      true,
    );
  };

  /**
   * The HTTP server's 'checkExpectation' listener: an `Expect` other than 100-continue; JSON 417
   * (with the request id), and the connection closes (a body may or may not follow).
   */
  readonly handleExpectation = (req: IncomingMessage, res: ServerResponse): void => {
    const ex = this.#exchange(req, res);
    readHeaders(ex);
    ex.fail(new PorticoError(GatewayErrors.EXPECTATION_FAILED), true);
  };

  /**
   * The HTTP server's 'connect' listener: the gateway is no forward proxy; JSON 405 (logged and
   * counted like any request), and the connection closes.
   */
  readonly handleConnect = (req: IncomingMessage, socket: Duplex): void => {
    const ex = new Exchange(req, null, socket, null);
    ex.sink = this;
    this.inFlight++;
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.finish(ex));
    readHeaders(ex);
    ex.fail(new PorticoError(GatewayErrors.METHOD_NOT_ALLOWED, undefined, { headers: { allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' } }));
  };

  #health(url: string, res: ServerResponse): boolean {
    if (url !== '/healthz' && !url.startsWith('/healthz?')) return false;
    if (this.draining) res.shouldKeepAlive = false;
    if (this.#probeMethod(res)) {
      res.writeHead(200, HEALTH_HEADERS);
      res.end('{"status":"ok"}');
    }
    return true;
  }

  #ready(url: string, res: ServerResponse): boolean {
    if (url !== '/readyz' && !url.startsWith('/readyz?')) return false;
    if (!this.#probeMethod(res)) return true;
    const status = this.draining ? 'draining' : this.#deps.routesReady() ? 'ready' : 'routing table unavailable';
    // While draining, the probe's connection closes too (as every response's does).
    if (this.draining) res.shouldKeepAlive = false;
    res.writeHead(status === 'ready' ? 200 : 503, HEALTH_HEADERS);
    res.end(JSON.stringify({ status }));
    return true;
  }

  /** Probes answer GET and HEAD; anything else is a JSON 405 naming them. */
  #probeMethod(res: ServerResponse): boolean {
    const method = res.req.method;
    if (method === 'GET' || method === 'HEAD') return true;
    const e = new PorticoError(GatewayErrors.METHOD_NOT_ALLOWED, 'health probes answer GET and HEAD');
    res.writeHead(405, [...HEALTH_HEADERS, 'allow', 'GET, HEAD']);
    res.end(JSON.stringify(e.toJSON()));
    return false;
  }

  /** Accounts for an ended exchange, once: metrics, access log, in-flight count. */
  finish(ex: Exchange): void {
    if (ex.finished) return;
    ex.finished = true;
    this.inFlight--;
    const res = ex.res;
    const status = res !== null ? (res.writableFinished ? res.statusCode : ex.status || 499) : ex.status || 499;
    const seconds = (performance.now() - ex.start) / 1000;
    const e = ex.endpointRecord;
    const m = e !== null ? this.#deps.metrics.route(ex.endpointKey, e) : this.#deps.metrics.unrouted;
    m.observe(status, seconds);
    const log = this.#deps.accessLog;
    if (log.enabled) {
      log.appendFields(
        isoTime(ex.time),
        ex.requestId,
        ex.req.method ?? '',
        ex.prefix === '' ? null : ex.prefix,
        ex.version === '' ? null : ex.version,
        ex.replica === '' ? null : ex.replica,
        status,
        ex.bytes,
        Math.round(seconds * 1e6),
        ex.errorCode,
      );
    }
    // A keep-alive connection whose answer began before the drain is idle now: closed, like
    // the connections idle when it began, not left open for more requests until its end.
    if (this.draining) this.#closeIdleConnections();
    if (this.inFlight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * `/readyz` turns 503 and every further response closes its connection. Idle connections are
   * closed with `closeIdleConnections` (the server's) now and whenever a request ends.
   */
  startDraining(closeIdleConnections: () => void = () => {}): void {
    this.draining = true;
    this.#closeIdleConnections = closeIdleConnections;
    closeIdleConnections();
  }

  /** Resolves when no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }
}
