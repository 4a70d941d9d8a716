// (b) of the proxy comparison: the bare undici proxy the design measured (~40 lines), the
// yardstick the gateway is held to. `node bench/bare-proxy.ts <upstream host:port> <port>`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

const [upstream, port] = process.argv.slice(2) as [string, string];
const pool = new Pool(`http://${upstream}`, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });
// Hop-by-hop headers, and those undici refuses (`host` is set by the pool).
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'host']);

// The response is the `opaque`: no closure per request.
function factory({ statusCode, headers, opaque: res }: Dispatcher.StreamFactoryData<ServerResponse>): ServerResponse {
  const out: string[] = [];
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined || HOP.has(name)) continue;
    if (typeof v === 'string') out.push(name, v);
    else for (const x of v) out.push(name, x);
  }
  res.writeHead(statusCode, out);
  return res;
}

// Shared callback too: the response comes back as `data.opaque`.
function done(err: Error | null, data: Dispatcher.StreamData<ServerResponse>): void {
  const res = data.opaque;
  if (err === null || res.destroyed) return;
  if (res.headersSent) res.destroy(err);
  else res.writeHead(502).end();
}

createServer((req: IncomingMessage, res: ServerResponse) => {
  const raw = req.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has((raw[i] as string).toLowerCase())) headers.push(raw[i] as string, raw[i + 1] as string);
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
  pool.stream({ path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers, body, opaque: res }, factory, done);
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
// Exit normally on SIGTERM (so `--cpu-prof` writes its profile).
process.on('SIGTERM', () => process.exit(0));
