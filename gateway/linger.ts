import type { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

/** Longest a connection stays open after its answer, reading what the client still sends. */
export const LINGER_MS = 30_000;
/** Longest it waits for more of the client's bytes meanwhile. */
export const LINGER_IDLE_MS = 5_000;

const REQUEST = Symbol('portico.lingeringRequest');

type LingeringSocket = Socket & { [REQUEST]?: IncomingMessage };

/**
 * Lets a client still sending its request body read an answer that closes the connection (a
 * 413, or a replica that answered before reading the whole body), as nginx's lingering close
 * does. Node closes such a connection as soon as the answer is written, and whatever the
 * client sends after that is met with a reset, which can destroy the answer in the client's
 * buffers unread: a client that writes its whole body before reading (Python's http.client,
 * most synchronous clients) saw a broken pipe instead of the 413. Here the connection's
 * sending side closes after the answer, and what the client still sends is read and dropped
 * until it closes its side, goes quiet for `LINGER_IDLE_MS` or `LINGER_MS` have passed.
 * Call before the answer `res` finishes; a request already complete closes as usual.
 */
export function lingerOnClose(res: ServerResponse): void {
  const s = res.socket as LingeringSocket | null;
  if (s === null || s.destroyed || s[REQUEST] !== undefined) return;
  s[REQUEST] = res.req;
  s.destroySoon = lingeringDestroySoon;
}

// Replaces `socket.destroySoon`, which Node's HTTP server calls once an answer that closes the
// connection has been handed to the socket.
function lingeringDestroySoon(this: LingeringSocket): void {
  const req = this[REQUEST];
  if (req === undefined || req.complete || this.destroyed) {
    Socket.prototype.destroySoon.call(this);
    return;
  }
  // Node's parser then drops the rest of the body. (If it pushed it into the request, which the
  // proxy may have destroyed, the socket would stop reading and the client stall.)
  (req as IncomingMessage & { _dump?: () => void })._dump?.();
  if (this.writable) this.end();
  // Idle: the server's 'timeout' handling destroys a connection that has no response.
  this.setTimeout(LINGER_IDLE_MS);
  const deadline = setTimeout(() => this.destroy(), LINGER_MS);
  deadline.unref();
  this.once('close', () => clearTimeout(deadline));
  this.resume();
}
