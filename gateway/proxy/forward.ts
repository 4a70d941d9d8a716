import type { Dispatcher } from 'undici';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors } from '../errors.ts';
import { HANDLED, type Exchange, type GatewayResponse, type Stage } from '../exchange.ts';
import { lingerOnClose } from '../linger.ts';
import type { LeastPendingBalancer } from '../balancer/least-pending.ts';
import type { RouteSource } from '../resolve.ts';
import type { EndpointRecord } from '../routing/contract.ts';
import { addForwardedHeaders, clientAddress, isChunkedOnly, responseHeaders, type TrustedProxies } from './headers.ts';
import { classifyUpstreamError, upstreamError, upstreamErrorCode, UPSTREAM_FAILURES, type UpstreamFailure } from './upstream-errors.ts';
import type { Upstream, Upstreams } from './upstreams.ts';

// What Node refuses in a reason phrase (it throws): controls other than a tab.
const BAD_PHRASE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * The replica's reason phrase as it sent it: undici reads its bytes as UTF-8 and Node writes a
 * phrase as Latin-1, so the bytes are turned back into one character each. `undefined` (Node's
 * `unknown`) for one Node would refuse.
 */
function replicaPhrase(statusMessage: string): string | undefined {
  const phrase = Buffer.from(statusMessage, 'utf8').toString('latin1');
  return BAD_PHRASE.test(phrase) ? undefined : phrase;
}

/** What the proxy stage needs from the gateway. */
export interface ProxyContext {
  /** The routes as they are now: a retry goes to a replica the endpoint still has. */
  readonly routes: RouteSource;
  readonly upstreams: Upstreams;
  readonly balancer: LeastPendingBalancer;
  readonly trusted: TrustedProxies;
  /** Default time to first response byte, seconds (an endpoint may set its own). */
  readonly timeoutSeconds: number;
  /** Whether the gateway is draining (responses then close their connection). */
  closing(): boolean;
  /** Counts a failed upstream call (by raw error code) and a retry. */
  onUpstreamError(code: string): void;
  onRetry(): void;
}

/** The canonical path prefix of an endpoint: `/{owner}/{project}/{deployment}/{version}/{endpoint}`. */
export function canonicalPrefix(e: EndpointRecord): string {
  return `/${encodeURIComponent(e.owner)}/${encodeURIComponent(e.project)}/${encodeURIComponent(e.deployment)}/${encodeURIComponent(e.version)}/${encodeURIComponent(e.endpoint)}`;
}

const prefixes = new WeakMap<EndpointRecord, string>();

function cachedPrefix(e: EndpointRecord): string {
  let p = prefixes.get(e);
  if (p === undefined) {
    p = canonicalPrefix(e);
    prefixes.set(e, p);
  }
  return p;
}

/**
 * Stage: picks the replica (least pending, round robin among ties) and records it on the
 * exchange. Nothing to pick cannot happen here (the endpoint stage refused empty replica lists).
 */
export function chooseReplica(ctx: ProxyContext): Stage {
  return (ex) => {
    const r = ctx.balancer.pick((ex.endpointRecord as EndpointRecord).replicas, ctx.upstreams);
    if (r === undefined) return new PorticoError(GatewayErrors.NO_READY_REPLICA);
    ex.replica = r.address;
    return undefined;
  };
}

/**
 * Stage: a declared body larger than the endpoint's limit is a 413 before anything is sent, and
 * the connection is closed after it (as nginx does) rather than kept by reading and discarding
 * a body of whatever size the client declared.
 */
export const limitBody: Stage = (ex) => {
  if (ex.contentLength <= ex.maxBodyBytes) return undefined;
  ex.fail(new PorticoError(GatewayErrors.PAYLOAD_TOO_LARGE), true);
  return HANDLED;
};

/** The request path the replica gets: canonical prefix, the rest and the query as sent. */
export function upstreamPath(ex: Exchange): string {
  return cachedPrefix(ex.endpointRecord as EndpointRecord) + ex.rest + ex.query;
}

/**
 * Calls `then` with the request's endpoint record as the routes have it now: the route may have
 * changed since the request was resolved (its replica replaced or removed, the address given to
 * another version), and a retry must go to a replica the endpoint has now. Not cached just after
 * a change: loaded; the record the request had serves only if the table cannot answer.
 */
export function withCurrentRecord(routes: RouteSource, ex: Exchange, then: (e: EndpointRecord | null) => void): void {
  const current = routes.peekEndpoint(ex.endpointKey);
  if (current !== undefined) then(current);
  else routes.loadEndpoint(ex.endpointKey).then(then, () => then(ex.endpointRecord));
}

/** Adds the forwarding headers to an exchange about to go upstream. */
export function prepareForward(ctx: ProxyContext, ex: Exchange): void {
  const sock = ex.req.socket;
  const remote = sock.remoteAddress;
  addForwardedHeaders(ex, clientAddress(remote), ctx.trusted.has(remote), (sock as { encrypted?: boolean }).encrypted === true, ex.prefix);
}

// Reasons an upstream call is aborted by the gateway itself (shared: no allocation per abort).
const CLIENT_GONE = new Error('client closed the connection');
const TOO_LARGE = new Error('request body over the limit');
const BAD_RESPONSE_HEADERS = Object.assign(new Error('invalid response headers from the replica'), { code: 'HPE_INVALID_HEADER_TOKEN' });
// undici takes off only the chunks of a body in other transfer codings (`gzip, chunked`): passed
// on without its Transfer-Encoding, which is hop-by-hop, the body would read as plain (nginx
// refuses such an answer too).
const UNKNOWN_TRANSFER_CODING = Object.assign(new Error('a transfer coding other than chunked from the replica'), { code: 'HPE_INVALID_TRANSFER_ENCODING' });
// undici's time-to-first-byte clock starts once a request has a connection; one that waited
// for a free connection first is held to the same limit from its dispatch by the gateway.
const QUEUED_TOO_LONG = Object.assign(new Error('no answer in time (the request waited for a free connection to the replica)'), { code: 'UND_ERR_HEADERS_TIMEOUT' });

function isIdempotent(method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}

// Shared 'drain' listener of responses: resumes the upstream body (no closure per request).
function resumeUpstream(this: GatewayResponse): void {
  this.exchange?.call?.resume();
}

function redispatch(f: Forward): void {
  f.dispatch();
}

function queueTimeout(f: Forward): void {
  f.queueTimedOut();
}

/**
 * One proxied request: the undici dispatch handler that streams the replica's response straight
 * into the client's `ServerResponse` (backpressure both ways through undici's pause/resume and
 * the response's 'drain'). Retries once on another replica, as the contract allows; enforces
 * the body limit on bodies of unknown length; cancels the upstream call if the client leaves.
 */
class Forward implements Dispatcher.DispatchHandler {
  readonly ex: Exchange;
  readonly res: GatewayResponse;
  readonly ctx: ProxyContext;
  readonly opts: Dispatcher.DispatchOptions;
  upstream: Upstream;
  controller: Dispatcher.DispatchController | null = null;
  /** This attempt is counted in `upstream.pending`. */
  active = false;
  retried = false;
  requestStarted = false;
  responseStarted = false;
  bodyBytes = 0;
  tooLarge = false;
  cancelled = false;
  drainHooked = false;
  /** Set while a dispatch that had to wait for a free connection runs (see `queueTimedOut`). */
  queueTimer: NodeJS.Timeout | null = null;

  constructor(ctx: ProxyContext, ex: Exchange, res: GatewayResponse, upstream: Upstream) {
    this.ctx = ctx;
    this.ex = ex;
    this.res = res;
    this.upstream = upstream;
    const e = ex.endpointRecord as EndpointRecord;
    const hasBody = ex.contentLength > 0 || ex.chunked;
    this.opts = {
      path: upstreamPath(ex),
      method: ex.req.method as Dispatcher.HttpMethod,
      headers: ex.headers,
      body: hasBody ? ex.req : null,
      headersTimeout: (e.timeoutSeconds ?? ctx.timeoutSeconds) * 1000,
    };
  }

  dispatch(): void {
    const u = this.upstream;
    u.pending++;
    u.lastUsed = this.ex.time;
    this.active = true;
    this.controller = null;
    this.requestStarted = false;
    this.ex.replica = u.address;
    // Every connection of the pool is busy: this request waits in its queue. Only then is a
    // timer of the gateway's own needed (the saturated case; undici times the rest).
    if (u.pending > u.capacity) this.queueTimer = setTimeout(queueTimeout, this.opts.headersTimeout as number, this);
    u.pool.dispatch(this.opts, this);
  }

  #release(): void {
    this.#clearQueueTimer();
    if (this.active) {
      this.active = false;
      this.upstream.pending--;
    }
  }

  #clearQueueTimer(): void {
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
  }

  /**
   * A request that waited for a free connection has had no answer within the endpoint's time
   * to first byte, counted from its dispatch: 504 now. If it is still queued, it is aborted
   * the moment undici starts it, and never reaches the replica.
   */
  queueTimedOut(): void {
    this.queueTimer = null;
    if (!this.active || this.responseStarted || this.cancelled) return;
    this.cancel();
    this.ctx.onUpstreamError(QUEUED_TOO_LONG.code);
    this.#fail(upstreamError(classifyUpstreamError(QUEUED_TOO_LONG), QUEUED_TOO_LONG));
  }

  /** The client left: abort the upstream call (now, or as soon as it starts). */
  cancel(): void {
    this.cancelled = true;
    this.#clearQueueTimer();
    if (this.active && this.controller !== null) this.controller.abort(CLIENT_GONE);
  }

  /** The client's response drained: let the upstream body flow again. */
  resume(): void {
    if (this.active) this.controller?.resume();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.requestStarted = true;
    if (this.cancelled) {
      controller.abort(CLIENT_GONE);
      return;
    }
    // A chunked body that has already arrived whole is sent by undici with a Content-Length and
    // in one write, so `onBodySent` would see it only once complete at the replica. Nothing is
    // written yet here (undici has just taken the body's measure): what is buffered already over
    // the limit is refused now. A body still arriving goes out chunked and is cut in `onBodySent`.
    if (this.opts.body !== null && this.ex.req.readableLength > this.ex.maxBodyBytes) {
      this.tooLarge = true;
      controller.abort(TOO_LARGE);
    }
  }

  onBodySent(chunk: Buffer): void {
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.ex.maxBodyBytes && !this.tooLarge) {
      // The terminating chunk is never sent: the replica never sees a complete request.
      this.tooLarge = true;
      this.controller?.abort(TOO_LARGE);
    }
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage: string): void {
    // Informational responses (102, 103) are not passed on; 100 never reaches here.
    if (statusCode < 200) return;
    this.#clearQueueTimer();
    const res = this.res;
    if (res.destroyed) {
      controller.abort(CLIENT_GONE);
      return;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined && (typeof te !== 'string' || !isChunkedOnly(te))) {
      controller.abort(UNKNOWN_TRANSFER_CODING);
      return;
    }
    this.responseStarted = true;
    const ex = this.ex;
    // A 204 has no body and must not declare one (RFC 9110 8.6), whatever the replica says.
    if (statusCode === 204 && headers['content-length'] !== undefined) headers['content-length'] = undefined;
    // The replica answers before it has the whole body (an early 400, say): the rest of the
    // body will not be sent on, so the connection closes after the answer, lingering so that
    // a client still writing its body gets to read it.
    const early = this.opts.body !== null && !ex.req.complete;
    if (early) lingerOnClose(res);
    try {
      const head = responseHeaders(headers, ex.version, ex.requestId, early || this.ctx.closing());
      // A code Node knows gets its standard phrase, as ever; for another one Node would write
      // `unknown`: the replica's own phrase instead (`299 Très Bien`).
      if (STATUS_CODES[statusCode] === undefined) res.writeHead(statusCode, replicaPhrase(statusMessage), head);
      else res.writeHead(statusCode, head);
    } catch {
      this.responseStarted = false;
      controller.abort(BAD_RESPONSE_HEADERS);
      return;
    }
    // A streamed body (no length: SSE, chunked) must not hold the head back; a sized one is
    // usually in the same read, and head + body then leave in one write.
    if (headers['content-length'] === undefined) res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.res;
    if (res.destroyed) {
      controller.abort(CLIENT_GONE);
      return;
    }
    this.ex.bytes += chunk.length;
    if (!res.write(chunk)) {
      controller.pause();
      if (!this.drainHooked) {
        this.drainHooked = true;
        res.on('drain', resumeUpstream);
      }
    }
  }

  onResponseEnd(): void {
    this.#release();
    const res = this.res;
    if (!res.destroyed && !res.writableEnded) res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.#release();
    const ex = this.ex;
    if (this.cancelled || err === CLIENT_GONE) return;
    if (this.tooLarge) {
      // The client is still sending a body nobody will read: answer and close the connection.
      ex.fail(new PorticoError(GatewayErrors.PAYLOAD_TOO_LARGE), true);
      return;
    }
    const code = upstreamErrorCode(err);
    this.ctx.onUpstreamError(code in UPSTREAM_FAILURES || code.startsWith('HPE') ? code : 'OTHER');
    const failure = classifyUpstreamError(err);
    if (failure.retry === 'connect') this.ctx.upstreams.markFailed(this.upstream);
    if (!this.responseStarted && this.#mayRetry(failure) && !ex.gone) {
      // One retry at most, whether or not a replica is left for it.
      this.retried = true;
      withCurrentRecord(this.ctx.routes, ex, (e) => this.#retryOn(e, failure, err));
      return;
    }
    this.#fail(upstreamError(failure, err));
  }

  /**
   * Answers the request with `err`. Before its body has arrived whole, the connection closes
   * after the answer (lingering, as for an early answer): undici destroyed the body it was
   * sending, and Node then stops reading the connection, so the client still writing it would
   * stall, never read the answer, and be reset at the keep-alive timeout.
   */
  #fail(err: PorticoError): void {
    this.ex.fail(err, this.opts.body !== null && !this.ex.req.complete);
  }

  /** Retries on another replica of `e` (none if the endpoint is gone), else answers the failure. */
  #retryOn(e: EndpointRecord | null, failure: UpstreamFailure, err: Error): void {
    const ex = this.ex;
    const next = e === null ? undefined : this.ctx.balancer.pick(e.replicas, this.ctx.upstreams, this.upstream.address);
    if (next !== undefined && !this.cancelled && !ex.gone) {
      this.upstream = this.ctx.upstreams.get(next.address);
      this.ctx.onRetry();
      // Not from inside undici's callback: its request bookkeeping finishes first.
      process.nextTick(redispatch, this);
      return;
    }
    this.#fail(upstreamError(failure, err));
  }

  #mayRetry(failure: UpstreamFailure): boolean {
    if (this.retried || failure.retry === false) return false;
    if (failure.retry === 'connect' || !this.requestStarted) return true;
    // A broken connection after the request went out: only a safe method without a body
    // (a streamed body cannot be sent twice).
    return isIdempotent(this.ex.req.method) && this.opts.body === null;
  }
}

/**
 * Stage: sends the request to the chosen replica through its keep-alive pool and streams the
 * answer back. Always takes over the response.
 */
export function proxy(ctx: ProxyContext): Stage {
  return (ex) => {
    prepareForward(ctx, ex);
    const res = ex.res as GatewayResponse;
    if (ex.awaitingContinue) {
      ex.awaitingContinue = false;
      res.writeContinue();
    }
    const f = new Forward(ctx, ex, res, ctx.upstreams.get(ex.replica));
    ex.call = f;
    f.dispatch();
    return HANDLED;
  };
}
