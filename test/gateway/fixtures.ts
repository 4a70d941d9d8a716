import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Agent, request as undiciRequest } from 'undici';
import { loadConfig } from '../../common/config.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import type { DeploymentRecord, EndpointRecord, RoutingReader } from '../../gateway/routing/contract.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';

/** The part of tap's `t` the fixtures use. */
export interface Tap {
  teardown(fn: () => unknown): void;
}

/** A deployment record of `acme/mnist/<name>` (no auth, alias `production` -> v1 unless told). */
export function deployment(over: Partial<DeploymentRecord> = {}): DeploymentRecord {
  return {
    owner: 'acme',
    project: 'mnist',
    deployment: 'web',
    auth: 'none',
    users: {},
    aliases: { production: { version: 'v1' } },
    ...over,
  };
}

/** An endpoint record of `acme/mnist/web/<version>/predict` on the given replica addresses. */
export function endpoint(version: string, addresses: readonly string[], over: Partial<EndpointRecord> = {}): EndpointRecord {
  return {
    owner: 'acme',
    project: 'mnist',
    deployment: 'web',
    version,
    endpoint: 'predict',
    replicas: addresses.map((address, i) => ({ id: `${version}-r${i}`, address })),
    timeoutSeconds: null,
    maxBodyBytes: null,
    ...over,
  };
}

/** One request a fake replica received. */
export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
}

/** A real HTTP server on a free loopback port standing in for a replica. */
export interface Replica {
  readonly server: Server;
  readonly address: string;
  readonly port: number;
  /** Requests whose head it received, in order. */
  readonly seen: Seen[];
  /** Requests it is serving right now (closed ones leave). */
  open: number;
}

/**
 * Starts a fake replica. The default handler answers JSON `{url, headers}`; `handler` may do
 * anything (hang, stream, destroy). Closed at teardown.
 */
export async function replica(t: Tap, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Replica> {
  const seen: Seen[] = [];
  const state = { open: 0 };
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    state.open++;
    let closed = false;
    const done = () => {
      if (!closed) {
        closed = true;
        state.open--;
      }
    };
    res.once('close', done);
    if (handler) return handler(req, res);
    const body = JSON.stringify({ url: req.url, method: req.method, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const sockets = new Set<Duplex>();
  server.on('connection', (sock: Duplex) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  t.teardown(() => {
    server.closeAllConnections();
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r(undefined)));
  });
  return {
    server,
    address: `127.0.0.1:${port}`,
    port,
    seen,
    get open() {
      return state.open;
    },
  } as Replica;
}

/** A loopback port nothing listens on (connections are refused). */
export async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return `127.0.0.1:${port}`;
}

/** A gateway on free ports over an embedded routing table (or `routing`), closed at teardown. */
export async function gateway(
  t: Tap,
  opts: { env?: Record<string, string>; routing?: RoutingReader } = {},
): Promise<{ gw: Gateway; table: EmbeddedRoutingTable }> {
  const table = new EmbeddedRoutingTable();
  const config = loadConfig({
    PORTICO_GATEWAY_PORT: '0',
    PORTICO_METRICS_PORT: '0',
    PORTICO_ACCESS_LOG: 'off',
    PORTICO_LOG_LEVEL: 'error',
    ...opts.env,
  });
  const gw = await startGateway({ config, routing: opts.routing ?? table, processMetrics: false });
  t.teardown(() => gw.close());
  return { gw, table };
}

/** A client dispatcher closed at teardown (so tests do not share keep-alive connections). */
export function client(t: Tap, opts: ConstructorParameters<typeof Agent>[0] = {}): Agent {
  const agent = new Agent({ keepAliveTimeout: 10_000, ...opts });
  t.teardown(() => agent.destroy());
  return agent;
}

/** A request through `agent`; the body is read as text. */
export async function call(
  agent: Agent,
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string; json: () => any }> {
  const res = await undiciRequest(url, {
    dispatcher: agent,
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers,
    body: opts.body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}

/**
 * Whether `out` holds a complete first response (a 1xx other than 101 is skipped): a 101 head,
 * or a head and its Content-Length / chunked body. A response framed by the connection's end
 * is never complete here: wait for the close.
 */
export function responseComplete(out: string): boolean {
  let start = 0;
  for (;;) {
    const end = out.indexOf('\r\n\r\n', start);
    if (end === -1) return false;
    const head = out.slice(start, end);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
    const bodyStart = end + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      start = bodyStart;
      continue;
    }
    if (status === 101 || status === 204 || status === 304) return true;
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (cl) return out.length - bodyStart >= Number(cl[1]);
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) return out.slice(bodyStart).includes('0\r\n\r\n');
    return false;
  }
}

/**
 * Sends raw bytes on a fresh connection and resolves with what the server wrote, once
 * `until(out)` holds (default: the first response is complete) or the server closed the
 * connection; after `timeoutMs` with whatever arrived. The connection is then destroyed.
 */
export function rawRequest(url: string, bytes: string, opts: { until?: (out: string) => boolean; timeoutMs?: number } = {}): Promise<string> {
  const { hostname, port } = new URL(url);
  const until = opts.until ?? responseComplete;
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname);
    let out = '';
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, opts.timeoutMs ?? 10_000);
    sock.on('data', (d) => {
      out += d.toString('latin1');
      if (until(out)) done();
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      if (out === '') reject(err);
      else resolve(out);
    });
    sock.on('close', done);
    sock.write(bytes);
  });
}

/** Metric value from a Prometheus text exposition, by name and (a subset of) labels; 0 if absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[pair[1] as string] = pair[2] as string;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

/**
 * A minimal WebSocket echo server on an HTTP server's 'upgrade' event (RFC 6455 handshake;
 * echoes small text frames, answers close). Enough to prove a tunnel carries frames.
 */
export function attachWebSocketEcho(server: Server): { upgrades: IncomingMessage[] } {
  const upgrades: IncomingMessage[] = [];
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades.push(req);
    const key = req.headers['sec-websocket-key'];
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        const opcode = (buf[0] as number) & 0x0f;
        let len = (buf[1] as number) & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        }
        const masked = ((buf[1] as number) & 0x80) !== 0;
        const maskOff = off;
        if (masked) off += 4;
        if (buf.length < off + len) return;
        const payload = Buffer.from(buf.subarray(off, off + len));
        if (masked) for (let i = 0; i < len; i++) payload[i] = (payload[i] as number) ^ (buf[maskOff + (i % 4)] as number);
        buf = buf.subarray(off + len);
        if (opcode === 8) {
          socket.end(Buffer.from([0x88, 0]));
          return;
        }
        const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
        socket.write(Buffer.concat([head, payload]));
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.end());
  });
  return { upgrades };
}
