import { performance } from 'node:perf_hooks';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { PorticoError } from '../common/errors.ts';
import { rawErrorResponse } from '../common/http.ts';
import { lingerOnClose } from './linger.ts';
import type { DeploymentRecord, EndpointRecord } from './routing/contract.ts';

/**
 * One request's state as it passes the stages: each stage reads what earlier ones filled in.
 * One object per request, with a fixed shape. (It is the `RoutePath` of path.ts and the
 * `RequestHeaderInfo` of proxy/headers.ts, structurally, so those modules need not import it.)
 */
export class Exchange {
  readonly req: IncomingMessage;
  /** `null` for an upgrade (WebSocket) request, which has `socket` instead. */
  readonly res: GatewayResponse | null;
  readonly socket: Duplex | null;
  /** Bytes the client sent after an upgrade request's head. */
  readonly head: Buffer | null;
  /** `performance.now()` when the request arrived. */
  readonly start: number;
  /** `Date.now()` when the request arrived (for the access log). */
  readonly time: number;

  // path.ts
  owner = '';
  project = '';
  deployment = '';
  target = '';
  endpoint = '';
  prefix = '';
  rest = '';
  query = '';

  // proxy/headers.ts
  headers: string[] = [];
  host: string | undefined = undefined;
  authorization: string | undefined = undefined;
  requestId = '';
  contentLength = -1;
  chunked = false;
  upgrade: string | undefined = undefined;
  forwardedFor: string | undefined = undefined;
  forwardedProto: string | undefined = undefined;
  forwardedHost: string | undefined = undefined;
  proxyInfo: string[] | null = null;
  problem: string | null = null;

  // resolve.ts, auth/
  deploymentKey = '';
  deploymentRecord: DeploymentRecord | null = null;
  /** The version name the alias (or the path) resolved to. */
  version = '';
  endpointKey = '';
  endpointRecord: EndpointRecord | null = null;
  /** Largest request body, from the endpoint record or the gateway default. */
  maxBodyBytes = 0;

  // balancer/, proxy/
  /** Address (`host:port`) of the replica last chosen. */
  replica = '';
  /** Response body bytes sent to the client. */
  bytes = 0;
  /** The upstream call, once there is one. */
  call: UpstreamCall | null = null;
  /** Status of a tunnel (which has no `res`), or of the error the exchange ended with. */
  status = 0;
  /** Who accounts for the exchange when it ends (metrics, access log). */
  sink: ExchangeSink | null = null;
  /** Gateway error code the request ended with, if any (access log). */
  errorCode = '';
  /** Set when the exchange has been accounted for (metrics, access log). */
  finished = false;
  /**
   * The client sent `Expect: 100-continue` and waits for `100 Continue` before its body: sent
   * only once the request is about to be proxied, so a refusal costs the client no upload.
   */
  awaitingContinue = false;

  constructor(req: IncomingMessage, res: GatewayResponse | null, socket: Duplex | null, head: Buffer | null) {
    this.req = req;
    this.res = res;
    this.socket = socket;
    this.head = head;
    this.start = performance.now();
    this.time = Date.now();
  }

  /** Whether the response can no longer be written (client gone, or already answered). */
  get gone(): boolean {
    return this.res !== null ? this.res.destroyed || this.res.writableEnded : this.socket === null || this.socket.destroyed;
  }

  /**
   * Answers with `err` as the contract's JSON error (with `x-request-id`, and `x-portico-version`
   * once the version is resolved). If part of a response was already sent the connection is
   * destroyed instead (a response is never cut off silently). An answer to a client still
   * waiting to send its body after `Expect: 100-continue` closes the connection: whether that
   * body follows or not, it cannot be told from the next request. A closing answer to a client
   * that is sending its body, or may be (one that sent `Expect: 100-continue` need not wait for
   * the 100, and curl waits a second), lingers (see `lingerOnClose`), so that the client gets to
   * read it.
   */
  fail(err: PorticoError, closeConnection = this.awaitingContinue): void {
    this.errorCode = err.code;
    this.status = err.statusCode;
    const body = JSON.stringify(err.toJSON());
    const version = this.endpointRecord !== null ? this.version : '';
    const res = this.res;
    if (res !== null) {
      if (res.destroyed || res.writableEnded) return;
      if (res.headersSent) {
        // Reset, not closed: without chunks (HTTP/1.0, or a body the replica sent without a
        // length) a plain close would read as the end of a whole response.
        (res.socket as Socket | null)?.resetAndDestroy();
        res.destroy(err);
        return;
      }
      const headers: string[] = [
        'content-type', 'application/json; charset=utf-8',
        'content-length', String(Buffer.byteLength(body)),
        'cache-control', 'no-store',
      ];
      if (this.requestId !== '') headers.push('x-request-id', this.requestId);
      if (version !== '') headers.push('x-portico-version', version);
      if (err.headers) for (const [k, v] of Object.entries(err.headers)) headers.push(k, v);
      if (closeConnection) {
        headers.push('connection', 'close');
        if (!this.req.complete) lingerOnClose(res);
      }
      res.writeHead(err.statusCode, headers);
      res.end(body);
      this.bytes = body.length;
      return;
    }
    const socket = this.socket;
    if (socket === null || socket.destroyed) return;
    socket.end(rawErrorResponse(err, body, { 'x-request-id': this.requestId, 'x-portico-version': version }));
    this.bytes = body.length;
  }
}

/** What the gateway can do to a request's upstream call. */
export interface UpstreamCall {
  /** The client left: abort the call. */
  cancel(): void;
  /** The client's response drained: let the upstream body flow again. */
  resume(): void;
}

/** Receives each exchange exactly once, when it has ended. */
export interface ExchangeSink {
  finish(ex: Exchange): void;
}

/** The server's response class: it knows its exchange, so shared listeners need no closures. */
export class GatewayResponse extends ServerResponse {
  exchange: Exchange | null = null;
}

/** Stage result: stop and answer with this error. */
export type StageFailure = PorticoError;
/** Stage result: the stage has taken over the response (the proxy). */
export const HANDLED = Symbol('handled');

/**
 * One step of the request path. Returns `undefined` to continue, a `PorticoError` to answer
 * with, `HANDLED` when it took over the response, or a promise of one of these when it had to
 * wait (a routing-table load, a password hash). Stages stay synchronous on the hot path.
 */
export type Stage = (ex: Exchange) => StageResult | Promise<StageResult>;
/** What a stage returns (see `Stage`). */
export type StageResult = undefined | StageFailure | typeof HANDLED;
