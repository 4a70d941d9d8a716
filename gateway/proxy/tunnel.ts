import { connect, type Socket } from 'node:net';
import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors } from '../errors.ts';
import { HANDLED, type Exchange, type Stage } from '../exchange.ts';
import type { EndpointRecord } from '../routing/contract.ts';
import { prepareForward, upstreamPath, withCurrentRecord, type ProxyContext } from './forward.ts';
import { ChunkedEnd } from './chunked-end.ts';
import { tunnelResponseHead } from './headers.ts';
import { classifyUpstreamError, upstreamError, upstreamErrorCode, type UpstreamFailure } from './upstream-errors.ts';

/** What a tunnel needs beyond the proxy's context. */
export interface TunnelContext extends ProxyContext {
  readonly connectTimeoutMs: number;
}

// Longest response head the gateway reads from a replica before giving up on it.
const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * An upgrade (WebSocket) request passed through on a raw TCP connection to the replica: the
 * request head is rewritten like any proxied request (canonical path, forwarding headers, no
 * credentials), the replica's response head like any response (`tunnelResponseHead`), and
 * after a 101 bytes flow both ways until either side closes. A replica that declines (any other
 * status) has its answer passed on, and the connection ends with that answer: nothing the
 * client sends after it reaches the replica. A replica that cannot be connected to is tried
 * once on another, as for any request.
 */
class Tunnel {
  readonly ctx: TunnelContext;
  readonly ex: Exchange;
  readonly client: Socket;
  up: Socket | null = null;
  headChunks: Buffer[] = [];
  headBytes = 0;
  /** The replica's answer has begun to reach the client (or the exchange was answered). */
  piped = false;
  retried = false;
  /** Body bytes of a declined upgrade's answer still to pass, when its length is declared. */
  remaining = -1;
  /** Where a declined upgrade's chunked answer ends. */
  chunks: ChunkedEnd | null = null;
  timer: NodeJS.Timeout | null = null;

  constructor(ctx: TunnelContext, ex: Exchange) {
    this.ctx = ctx;
    this.ex = ex;
    this.client = ex.socket as Socket;
    ex.call = { cancel: () => this.up?.destroy(), resume: () => {} };
    this.client.once('close', () => this.up?.destroy());
    this.client.on('error', () => this.up?.destroy());
    // Either side's EOF ends the tunnel (as nginx does): a half-closed WebSocket means nothing,
    // and waiting on the other side to close as well could hold both sockets forever.
    this.client.once('end', () => this.#shutdown());
  }

  open(): void {
    const { ctx, ex } = this;
    const u = ctx.upstreams.get(ex.replica);
    u.pending++;
    u.lastUsed = ex.time;
    const up = connect({ host: u.host, port: u.port });
    this.up = up;
    up.setNoDelay(true);
    this.client.setNoDelay?.(true);
    this.#arm(ctx.connectTimeoutMs, 'UND_ERR_CONNECT_TIMEOUT');

    up.once('connect', () => {
      if (this.up !== up) return;
      const e = ex.endpointRecord;
      this.#arm(((e?.timeoutSeconds ?? ctx.timeoutSeconds) * 1000), 'UND_ERR_HEADERS_TIMEOUT');
      // `close`: a replica that declines the upgrade answers once and closes, so nothing else
      // ever travels this connection unrouted.
      let head = `${ex.req.method} ${upstreamPath(ex)} HTTP/1.1\r\nhost: ${u.address}\r\nconnection: upgrade, close\r\nupgrade: ${ex.upgrade ?? ''}\r\n`;
      const h = ex.headers;
      for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
      // Bytes the client sent after its head wait for a 101: after any other answer they would
      // reach the replica without passing the gateway's checks.
      up.write(`${head}\r\n`);
    });
    up.on('data', (chunk: Buffer) => {
      if (this.up !== up) return;
      ex.bytes += chunk.length;
      if (!this.piped) this.#readHead(chunk);
      else if (this.remaining >= 0 || this.chunks !== null) this.#passBody(chunk);
    });
    up.on('error', (err) => {
      if (this.up === up) this.#failed(err);
    });
    up.once('close', () => {
      u.pending--;
      if (this.up !== up) return;
      this.#disarm();
      if (!this.piped) this.#failed(Object.assign(new Error('replica closed the connection'), { code: 'UND_ERR_SOCKET' }));
      else this.client.destroy();
    });
    up.once('end', () => {
      if (this.up === up) this.#shutdown();
    });
  }

  #shutdown(): void {
    for (const s of [this.client, this.up]) {
      if (s === null || s.destroyed) continue;
      s.end();
      if (s.writableFinished) s.destroy();
      else s.once('finish', () => s.destroy());
    }
  }

  #arm(ms: number, code: string): void {
    this.#disarm();
    this.timer = setTimeout(() => {
      this.#failed(Object.assign(new Error('replica did not answer in time'), { code }));
    }, ms);
    this.timer.unref();
  }

  #disarm(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  #readHead(chunk: Buffer): void {
    this.headChunks.push(chunk);
    this.headBytes += chunk.length;
    const buf = this.headChunks.length === 1 ? chunk : Buffer.concat(this.headChunks);
    const end = buf.indexOf(HEAD_END);
    if (end === -1) {
      if (this.headBytes > MAX_HEAD_BYTES) this.#failed(Object.assign(new Error('response head too large'), { code: 'UND_ERR_HEADERS_OVERFLOW' }));
      return;
    }
    const ex = this.ex;
    const parsed = tunnelResponseHead(buf.toString('latin1', 0, end), ex.version, ex.requestId);
    if (parsed === null) {
      this.#failed(Object.assign(new Error('invalid response from the replica'), { code: 'HPE_INVALID_CONSTANT' }));
      return;
    }
    this.#disarm();
    this.piped = true;
    this.headChunks = [];
    ex.status = parsed.status;
    const up = this.up as Socket;
    const rest = buf.subarray(end + HEAD_END.length);
    this.client.write(parsed.head, 'latin1');
    if (parsed.status === 101) {
      if (rest.length > 0) this.client.write(rest);
      if (ex.head !== null && ex.head.length > 0) up.write(ex.head);
      up.pipe(this.client);
      this.client.pipe(up);
      return;
    }
    // A declined upgrade: only its answer passes. Its end is the declared length, the last
    // chunk, the replica's close, or (no body) at once; the replica is asked to close, and one
    // that keeps the connection open is not waited for past the end of its answer.
    const noBody = parsed.status === 204 || parsed.status === 304 || ex.req.method === 'HEAD';
    if (!noBody && parsed.chunked) this.chunks = new ChunkedEnd();
    else this.remaining = noBody ? 0 : (parsed.contentLength ?? Number.MAX_SAFE_INTEGER);
    this.#passBody(rest);
  }

  #passBody(chunk: Buffer): void {
    const up = this.up as Socket;
    let take: number;
    if (this.chunks !== null) {
      const end = this.chunks.feed(chunk);
      if (this.chunks.invalid) {
        // Not chunked encoding after all: the answer cannot be told from what follows.
        this.client.destroy();
        up.destroy();
        return;
      }
      take = end === -1 ? chunk.length : end;
      if (end !== -1) this.remaining = 0;
    } else {
      take = Math.min(chunk.length, this.remaining);
      this.remaining -= take;
    }
    if (take > 0 && !this.client.write(take === chunk.length ? chunk : chunk.subarray(0, take))) {
      up.pause();
      this.client.once('drain', () => up.resume());
    }
    if (this.remaining === 0) this.#shutdown();
  }

  #failed(err: Error): void {
    this.#disarm();
    const up = this.up;
    if (this.piped) {
      this.client.destroy();
      up?.destroy();
      return;
    }
    up?.destroy();
    this.ctx.onUpstreamError(upstreamErrorCode(err));
    const failure = classifyUpstreamError(err);
    this.up = null;
    if (failure.retry === 'connect') {
      const upstreams = this.ctx.upstreams;
      upstreams.markFailed(upstreams.get(this.ex.replica));
      // Nothing reached the replica: once more on another, as for any request; one the route
      // has now (see Forward's retry), loaded when a change has just dropped it from the cache.
      if (!this.retried && !this.ex.gone) {
        this.retried = true;
        withCurrentRecord(this.ctx.routes, this.ex, (e) => this.#retryOn(e, failure, err));
        return;
      }
    }
    this.#answer(failure, err);
  }

  #retryOn(e: EndpointRecord | null, failure: UpstreamFailure, err: Error): void {
    const next = e === null ? undefined : this.ctx.balancer.pick(e.replicas, this.ctx.upstreams, this.ex.replica);
    if (next !== undefined && !this.ex.gone) {
      this.ctx.onRetry();
      this.headChunks = [];
      this.headBytes = 0;
      this.ex.replica = next.address;
      this.open();
      return;
    }
    this.#answer(failure, err);
  }

  #answer(failure: UpstreamFailure, err: Error): void {
    this.piped = true; // answered: nothing more goes to the client from the replica
    this.up = null;
    const e: PorticoError = failure.code === 'BAD_REQUEST' ? new PorticoError(GatewayErrors.UPSTREAM_BAD_RESPONSE, undefined, { cause: err }) : upstreamError(failure, err);
    this.ex.fail(e);
  }
}

/** Stage (upgrade requests): tunnels the connection to the chosen replica. Always takes over. */
export function tunnel(ctx: TunnelContext): Stage {
  return (ex) => {
    prepareForward(ctx, ex);
    new Tunnel(ctx, ex).open();
    return HANDLED;
  };
}
