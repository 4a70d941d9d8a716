import { maxHeaderSize, METHODS, STATUS_CODES, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { PorticoError, type ErrorDefinition } from './errors.ts';

// What Portico's HTTP servers (gateway, admin API, metrics) share.

/**
 * Listens on `host:port`; a failure names the variables that set them (an operator reading
 * `EADDRINUSE` or `ENOTFOUND` alone had to guess which setting was wrong).
 */
export function listen(server: Server<never, never>, port: number, host: string, portVariable: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) =>
      reject(new Error(`cannot listen on ${host}:${port} (PORTICO_HOST, ${portVariable}): ${err.message}`, { cause: err }));
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve(server.address() as AddressInfo);
    });
  });
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

const KNOWN_METHODS = new Set(METHODS);

/**
 * The method of a request Node's parser refused, for its log line: the first word of the bytes
 * the parser was given last when that is a method Node knows followed by a space (those bytes
 * begin with the request line when it arrived in one piece), else ''.
 */
export function refusedMethod(err: NodeJS.ErrnoException): string {
  const raw = (err as { rawPacket?: Buffer }).rawPacket;
  if (raw === undefined) return '';
  const space = raw.indexOf(32);
  if (space < 1 || space > 24) return '';
  const word = raw.toString('latin1', 0, space);
  return KNOWN_METHODS.has(word) ? word : '';
}

/**
 * Whether a head over Node's size limit (`HPE_HEADER_OVERFLOW`) was over it in its request line
 * alone: a URI too long (414, as nginx answers), not too many headers (431). Read from the bytes
 * the parser was given last, which hold the whole request line when it arrived in one piece (a
 * line that trickled in is called 431: the earlier pieces are gone).
 */
function requestLineOverflow(err: NodeJS.ErrnoException): boolean {
  const raw = (err as { rawPacket?: Buffer }).rawPacket;
  if (raw === undefined || !REQUEST_LINE_START.test(raw.toString('latin1', 0, 64))) return false;
  const eol = raw.indexOf(10);
  return (eol === -1 ? raw.length : eol) >= maxHeaderSize;
}

/**
 * Whether a request Node's parser refused is past answering: the client reset the connection or
 * closed its side in the middle of a request (nobody waits for an answer), or an answer to an
 * earlier request on the connection has started (an error now would corrupt it). The server's
 * 'clientError' listener then destroys the socket.
 */
export function unanswerable(err: NodeJS.ErrnoException, socket: Duplex): boolean {
  return err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || !socket.writable
    || (socket as { _httpMessage?: { headersSent: boolean } | null })._httpMessage?.headersSent === true;
}

/**
 * The error code a request Node's parser refused (the server's 'clientError') is answered with:
 * the gateway's and the admin API's registries both have these four.
 */
export type ParserErrorCode = 'URI_TOO_LONG' | 'HEADERS_TOO_LARGE' | 'REQUEST_TIMEOUT' | 'BAD_REQUEST';

/** Which of `ParserErrorCode` answers `err`, a 'clientError' of Node's HTTP server. */
export function parserErrorCode(err: NodeJS.ErrnoException): ParserErrorCode {
  if (err.code === 'HPE_HEADER_OVERFLOW') return requestLineOverflow(err) ? 'URI_TOO_LONG' : 'HEADERS_TOO_LARGE';
  return err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : 'BAD_REQUEST';
}

/**
 * A server's 'clientError' listener: a request Node's parser refused gets the JSON error shape
 * from `errors` (Node's own answer is a bare `400 Bad Request`, or a 431 with no body), unless
 * the client has gone or an answer to an earlier request on the connection has started.
 */
export function jsonClientErrors(errors: Readonly<Record<ParserErrorCode, ErrorDefinition>>): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return (err, socket) => {
    if (unanswerable(err, socket)) {
      socket.destroy();
      return;
    }
    const code = parserErrorCode(err);
    const message = code === 'BAD_REQUEST' ? `Malformed HTTP request${err.code ? ` (${err.code})` : ''}.` : undefined;
    socket.end(rawErrorResponse(new PorticoError(errors[code], message)));
  };
}
