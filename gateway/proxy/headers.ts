import { BlockList, isIPv4 } from 'node:net';
import { PorticoError } from '../../common/errors.ts';
import { GatewayErrors } from '../errors.ts';
import type { Stage } from '../exchange.ts';
import { newRequestId } from './request-id.ts';

/**
 * Header rules of the data path, applied in one pass each way: what of the client's request
 * reaches the replica (and what the gateway adds), and what of the replica's response reaches
 * the client.
 */

const FORWARD = 0;
const DROP = 1;
const HOST = 2;
const CONNECTION = 3;
const TRANSFER_ENCODING = 4;
const CONTENT_LENGTH = 5;
const AUTHORIZATION = 6;
const REQUEST_ID = 7;
const XFF = 8;
const XFP = 9;
const XFH = 10;
const PROXY_INFO = 11;
const UPGRADE = 12;

// Request headers with a rule other than "forward". Hop-by-hop headers, credentials and the
// headers the gateway sets itself never pass; undici refuses transfer-encoding, keep-alive,
// upgrade and expect (Node's server has already answered `Expect: 100-continue`).
const REQUEST_RULES = new Map<string, number>([
  ['host', HOST],
  ['connection', CONNECTION],
  ['keep-alive', DROP],
  ['proxy-connection', DROP],
  ['transfer-encoding', TRANSFER_ENCODING],
  ['te', DROP],
  ['trailer', DROP],
  ['upgrade', UPGRADE],
  ['expect', DROP],
  ['http2-settings', DROP],
  ['content-length', CONTENT_LENGTH],
  ['authorization', AUTHORIZATION],
  ['proxy-authorization', DROP],
  ['x-request-id', REQUEST_ID],
  ['x-vh-prefix', DROP],
  ['x-portico-version', DROP],
  ['x-forwarded-for', XFF],
  ['x-forwarded-proto', XFP],
  ['x-forwarded-host', XFH],
  ['forwarded', PROXY_INFO],
  ['x-real-ip', PROXY_INFO],
  // Read along with X-Forwarded-For/-Proto/-Host by proxy-aware apps (Werkzeug's ProxyFix,
  // Spring, ASP.NET): only a trusted proxy may set them.
  ['x-forwarded-port', PROXY_INFO],
  ['x-forwarded-prefix', PROXY_INFO],
  // The client address as CDNs and load balancers pass it on, which apps and frameworks read
  // before X-Forwarded-For when present: from anyone else, a spoofed address.
  ['true-client-ip', PROXY_INFO],
  ['cf-connecting-ip', PROXY_INFO],
  ['x-client-ip', PROXY_INFO],
  ['x-cluster-client-ip', PROXY_INFO],
]);

// Connection tokens that name no header to strip.
const CONNECTION_OPTIONS = new Set(['close', 'keep-alive', 'upgrade']);

/**
 * The header names a `Connection` value lists (lower case; its standard options are not names),
 * added to `into`: hop-by-hop headers the message must lose. `undefined` when it names none.
 */
function connectionNamed(value: string, into?: Set<string>): Set<string> | undefined {
  let named = into;
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && !CONNECTION_OPTIONS.has(t)) (named ??= new Set()).add(t);
  }
  return named;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** What the header pass found out about a request, besides the headers to forward. */
export interface RequestHeaderInfo {
  /** Headers to forward, flat `[name, value, ...]`, in the client's order. */
  headers: string[];
  host: string | undefined;
  authorization: string | undefined;
  /** The client's `X-Request-Id` if well-formed, else a new UUID. */
  requestId: string;
  /** `-1` when absent. */
  contentLength: number;
  chunked: boolean;
  upgrade: string | undefined;
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  /** `Forwarded`, `X-Real-IP`, `X-Forwarded-Port/-Prefix` and the other client-address headers as sent, flat pairs; forwarded only from trusted proxies. */
  proxyInfo: string[] | null;
  /** Why the request must be refused (400), if it must. */
  problem: string | null;
}

/**
 * Reads `rawHeaders` (Node's flat list) once into `out`: drops hop-by-hop headers, those the
 * `Connection` header names, `Host`, `Authorization`, `Proxy-Authorization` and the headers the
 * gateway sets itself; keeps `Content-Length` (undici needs it to frame the body) unless it is
 * duplicated, which is refused, as are a transfer coding other than `chunked` and a second Host.
 */
export function readRequestHeaders(raw: readonly string[], out: RequestHeaderInfo): void {
  const headers = out.headers;
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    const rule = REQUEST_RULES.get(lower);
    if (rule === undefined) {
      headers.push(name, value);
      continue;
    }
    switch (rule) {
      case HOST:
        if (out.host !== undefined) out.problem = 'more than one Host header';
        out.host = value;
        break;
      case CONNECTION:
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case TRANSFER_ENCODING:
        out.chunked = true;
        // Node's parser accepts codings before the final `chunked` and takes off the chunks
        // only: a body still gzip-coded would reach the replica as if it were not.
        if (!isChunkedOnly(value)) out.problem = 'no transfer coding but chunked is supported';
        break;
      case CONTENT_LENGTH:
        if (out.contentLength !== -1) out.problem = 'duplicate Content-Length header';
        else {
          out.contentLength = Number(value);
          headers.push(name, value);
        }
        break;
      case AUTHORIZATION:
        out.authorization ??= value;
        break;
      case REQUEST_ID:
        // The first well-formed one, as for Authorization and X-Forwarded-Proto/-Host.
        if (out.requestId === '' && REQUEST_ID_RE.test(value)) out.requestId = value;
        break;
      case XFF:
        out.forwardedFor = out.forwardedFor === undefined ? value : `${out.forwardedFor}, ${value}`;
        break;
      case XFP:
        out.forwardedProto ??= value;
        break;
      case XFH:
        out.forwardedHost ??= value;
        break;
      case PROXY_INFO:
        (out.proxyInfo ??= []).push(name, value);
        break;
      case UPGRADE:
        out.upgrade = value;
        break;
      default:
        break;
    }
  }
  if (out.requestId === '') out.requestId = newRequestId();
  if (connection !== undefined && !isPlainConnection(connection)) stripConnectionTokens(headers, connection);
}

/**
 * Whether a Transfer-Encoding value is `chunked` alone, the one coding the gateway passes on:
 * Node's parser and undici take off only the chunks of a body in other codings (`gzip,
 * chunked`), which would then read as plain.
 */
export function isChunkedOnly(value: string): boolean {
  return value.trim().toLowerCase() === 'chunked';
}

/**
 * A Host value (RFC 9112 3.2, RFC 3986 3.2.2): a registered name or IPv4 address, or an IP
 * literal in brackets, then an optional port. Anything else (`a b`, `user@host`, `host/path`)
 * would reach the replica as its X-Forwarded-Host.
 */
const HOST_VALUE = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]*|\[[A-Za-z0-9._~!$&'()*+,;=:%-]+\])(?::[0-9]*)?$/;

/**
 * Stage: the one pass over the request headers. A duplicated Content-Length or Host, an invalid
 * Host, a transfer coding other than chunked, or an HTTP/1.1 request without Host, is a 400.
 */
export const readHeaders: Stage = (ex) => {
  const req = ex.req;
  readRequestHeaders(req.rawHeaders, ex);
  if (ex.host === undefined) {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1) ex.problem ??= 'missing Host header';
  } else if (!HOST_VALUE.test(ex.host)) ex.problem ??= 'invalid Host header';
  return ex.problem === null ? undefined : new PorticoError(GatewayErrors.BAD_REQUEST, ex.problem);
};

// The usual values name no header: skip the token walk.
function isPlainConnection(v: string): boolean {
  return v === 'keep-alive' || v === 'close' || v === 'Keep-Alive' || v === 'Close' || v === 'upgrade' || v === 'Upgrade';
}

function stripConnectionTokens(headers: string[], connection: string): void {
  const named = connectionNamed(connection);
  // Framing stays: the body was framed by Node's parser and must be framed again upstream.
  named?.delete('content-length');
  if (!named?.size) return;
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (named.has((headers[r] as string).toLowerCase())) continue;
    headers[w] = headers[r] as string;
    headers[w + 1] = headers[r + 1] as string;
    w += 2;
  }
  headers.length = w;
}

/**
 * Which peers are trusted proxies (`PORTICO_TRUSTED_PROXIES`): their `X-Forwarded-*`,
 * `Forwarded`, `X-Real-IP` and other client-address headers are kept; everyone else's are
 * replaced or dropped.
 */
export class TrustedProxies {
  readonly #list: BlockList | null;

  constructor(cidrs: readonly string[]) {
    if (cidrs.length === 0) {
      this.#list = null;
      return;
    }
    const list = new BlockList();
    for (const item of cidrs) {
      const [ip, bits] = item.split('/') as [string, string | undefined];
      const family = isIPv4(ip) ? 'ipv4' : 'ipv6';
      if (bits === undefined) list.addAddress(ip, family);
      else list.addSubnet(ip, Number(bits), family);
    }
    this.#list = list;
  }

  /** Whether `address` (a socket's `remoteAddress`, IPv4-mapped IPv6 included) is trusted. */
  has(address: string | undefined): boolean {
    if (this.#list === null || address === undefined) return false;
    return this.#list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}

/** A socket's remote address as it should appear in `X-Forwarded-For` (IPv4-mapped unwrapped). */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && isIPv4(remote.slice(7)) ? remote.slice(7) : remote;
}

/**
 * Appends what the gateway tells the replica: `X-Forwarded-For/-Proto/-Host` (the client's
 * values kept only when `trusted`), `X-VH-Prefix`, `X-Request-Id`.
 */
export function addForwardedHeaders(
  info: RequestHeaderInfo,
  peer: string,
  trusted: boolean,
  encrypted: boolean,
  prefix: string,
): void {
  const h = info.headers;
  h.push('x-forwarded-for', trusted && info.forwardedFor !== undefined ? `${info.forwardedFor}, ${peer}` : peer);
  h.push('x-forwarded-proto', trusted && info.forwardedProto !== undefined ? info.forwardedProto : encrypted ? 'https' : 'http');
  const host = trusted && info.forwardedHost !== undefined ? info.forwardedHost : info.host;
  if (host !== undefined) h.push('x-forwarded-host', host);
  if (trusted && info.proxyInfo !== null) h.push(...info.proxyInfo);
  h.push('x-vh-prefix', prefix);
  h.push('x-request-id', info.requestId);
}

// Response headers that never pass to the client: hop-by-hop, and the ones the gateway sets.
const RESPONSE_DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  // For the next proxy on the way, and the gateway is none to its clients.
  'proxy-authenticate',
  'x-portico-version',
  'x-request-id',
]);

/**
 * The client's response headers, flat, from the replica's parsed headers: hop-by-hop headers
 * and those its `Connection` names dropped, `x-portico-version` and `x-request-id` added, and
 * `connection: close` while the gateway drains.
 */
export function responseHeaders(
  upstream: Readonly<Record<string, string | string[] | undefined>>,
  version: string,
  requestId: string,
  closing: boolean,
): string[] {
  const out: string[] = [];
  const connection = upstream.connection;
  let named: Set<string> | undefined;
  if (typeof connection === 'string') {
    if (connection !== 'keep-alive' && connection !== 'close') named = connectionNamed(connection);
  } else if (connection !== undefined) {
    // Several Connection lines: each names headers to drop.
    for (const line of connection) named = connectionNamed(line, named);
  }
  for (const name in upstream) {
    if (RESPONSE_DROP.has(name) || named?.has(name)) continue;
    const value = upstream[name];
    if (value === undefined) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  out.push('x-portico-version', version, 'x-request-id', requestId);
  if (closing) out.push('connection', 'close');
  return out;
}

// An HTTP token (a header name).
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A replica's response head to an upgrade request, rewritten for the client (`tunnelResponseHead`). */
export interface TunnelHead {
  readonly status: number;
  /** The head to send, blank line included. */
  readonly head: string;
  /** The body's declared length, or `null` (chunked, none declared, or an accepted upgrade). */
  readonly contentLength: number | null;
  /** A declined upgrade's body is chunked (it ends with its last chunk). */
  readonly chunked: boolean;
}

/**
 * Rewrites the response head a replica sent to an upgrade request (the tunnel reads it raw):
 * the same headers are dropped as from any proxied response (`responseHeaders`), except what
 * the answer needs to stay what it is: `Connection` and `Upgrade` of an accepted upgrade (101),
 * `Transfer-Encoding` of a declined one (its body passes as the replica framed it). A declined
 * upgrade's answer says `connection: close`: the connection carries nothing after it.
 * `x-portico-version` and `x-request-id` are the gateway's. `null` for a head that is not
 * HTTP/1.x (a bad status line, a header line without a valid name, a folded line, a
 * Content-Length that is not one number).
 */
export function tunnelResponseHead(raw: string, version: string, requestId: string): TunnelHead | null {
  const lines = raw.split('\r\n');
  const statusLine = lines[0] ?? '';
  const m = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(statusLine);
  if (!m) return null;
  const status = Number(m[1]);
  const upgraded = status === 101;
  const fields: [string, string, string][] = [];
  let named: Set<string> | undefined;
  let contentLength: number | null = null;
  let chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line === '') continue;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) return null;
    const lower = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (lower === 'connection') named = connectionNamed(value, named);
    else if (lower === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== null && contentLength !== Number(value))) return null;
      contentLength = Number(value);
    } else if (lower === 'transfer-encoding') {
      chunked = value.toLowerCase().split(',').at(-1)?.trim() === 'chunked';
    }
    fields.push([name, lower, value]);
  }
  if (chunked && contentLength !== null) return null; // both framings: ambiguous
  let head = `${statusLine}\r\n`;
  for (const [name, lower, value] of fields) {
    if (named?.has(lower)) continue;
    const keep = upgraded ? lower === 'connection' || lower === 'upgrade' : lower === 'transfer-encoding';
    if (!keep && RESPONSE_DROP.has(lower)) continue;
    // An accepted upgrade's Connection keeps only the standard options (the names it listed went).
    const v = lower === 'connection' ? connectionOptions(value) : value;
    head += `${name}: ${v}\r\n`;
  }
  head += `x-portico-version: ${version}\r\nx-request-id: ${requestId}\r\n`;
  if (!upgraded) head += 'connection: close\r\n';
  return { head: `${head}\r\n`, status, contentLength: upgraded ? null : contentLength, chunked: !upgraded && chunked };
}

function connectionOptions(value: string): string {
  return value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => CONNECTION_OPTIONS.has(t.toLowerCase()))
    .join(', ');
}
