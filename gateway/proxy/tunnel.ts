import { connect, type Socket } from 'node:net';
import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors } from '../errors.ts';
import { HANDLED, type Exchange, type Stage } from '../exchange.ts';
import { prepareForward, upstreamPath, type ProxyContext } from './forward.ts';
import { classifyUpstreamError, upstreamError, upstreamErrorCode } from './upstream-errors.ts';

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
 * credentials), the replica's response head gets `x-portico-version` and `x-request-id`, and
 * after a 101 bytes flow both ways until either side closes. A replica that declines (any other
 * status) has its answer passed on and the connection closed.
 */
class Tunnel {
  readonly ctx: TunnelContext;
  readonly ex: Exchange;
  readonly client: Socket;
  up: Socket | null = null;
  headChunks: Buffer[] = [];
  headBytes = 0;
  piped = false;
  timer: NodeJS.Timeout | null = null;

  constructor(ctx: TunnelContext, ex: Exchange) {
    this.ctx = ctx;
    this.ex = ex;
    this.client = ex.socket as Socket;
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
    ex.call = { cancel: () => up.destroy(), resume: () => {} };

    up.once('connect', () => {
      const e = ex.endpointRecord;
      this.#arm(((e?.timeoutSeconds ?? ctx.timeoutSeconds) * 1000), 'UND_ERR_HEADERS_TIMEOUT');
      // `close`: a replica that declines the upgrade answers once and closes, so nothing else
      // ever travels this connection unrouted.
      let head = `${ex.req.method} ${upstreamPath(ex)} HTTP/1.1\r\nhost: ${u.address}\r\nconnection: upgrade, close\r\nupgrade: ${ex.upgrade ?? ''}\r\n`;
      const h = ex.headers;
      for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
      up.write(`${head}\r\n`);
      if (ex.head !== null && ex.head.length > 0) up.write(ex.head);
    });
    up.on('data', (chunk: Buffer) => {
      ex.bytes += chunk.length;
      if (!this.piped) this.#readHead(chunk);
    });
    up.on('error', (err) => this.#failed(err));
    up.once('close', () => {
      u.pending--;
      this.#disarm();
      if (!this.piped) this.#failed(Object.assign(new Error('replica closed the connection'), { code: 'UND_ERR_SOCKET' }));
      else this.client.destroy();
    });
    this.client.once('close', () => up.destroy());
    this.client.on('error', () => up.destroy());
    // Either side's EOF ends the tunnel (as nginx does): a half-closed WebSocket means nothing,
    // and waiting on the other side to close as well could hold both sockets forever.
    this.client.once('end', () => this.#shutdown());
    up.once('end', () => this.#shutdown());
  }

  #shutdown(): void {
    const up = this.up as Socket;
    for (const s of [this.client, up]) {
      if (s.destroyed) continue;
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
    this.#disarm();
    this.piped = true;
    const up = this.up as Socket;
    const ex = this.ex;
    const lineEnd = buf.indexOf('\r\n');
    const statusLine = buf.toString('latin1', 0, lineEnd);
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!m) {
      this.piped = false;
      this.#failed(Object.assign(new Error('invalid response from the replica'), { code: 'HPE_INVALID_CONSTANT' }));
      return;
    }
    ex.status = Number(m[1]);
    const injected = `x-portico-version: ${ex.version}\r\nx-request-id: ${ex.requestId}\r\n`;
    this.client.write(Buffer.concat([buf.subarray(0, lineEnd + 2), Buffer.from(injected, 'latin1'), buf.subarray(lineEnd + 2)]));
    this.headChunks = [];
    up.pipe(this.client);
    // Only an accepted upgrade carries client bytes on: after any other answer, whatever the
    // client sends next would reach the replica without passing the gateway's checks.
    if (ex.status === 101) this.client.pipe(up);
  }

  #failed(err: Error): void {
    this.#disarm();
    const up = this.up;
    if (this.piped) {
      this.client.destroy();
      up?.destroy();
      return;
    }
    this.piped = true; // answered: nothing more goes to the client from the replica
    up?.destroy();
    this.ctx.onUpstreamError(upstreamErrorCode(err));
    const failure = classifyUpstreamError(err);
    if (failure.retry === 'connect') this.ctx.upstreams.markFailed(this.ctx.upstreams.get(this.ex.replica));
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
