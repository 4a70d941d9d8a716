// Not a contender of `npm run bench`: a measuring stick for `ab.ts --b raw`. The bare proxy of
// bare-proxy.ts with undici replaced by the least an HTTP/1.1 client does on a keep-alive
// connection: one write of the request head, the response head cut at CRLFCRLF and split in
// JavaScript, the body passed on by its Content-Length. No chunked bodies, request bodies,
// validation, timeouts, connection limit or error handling: what undici costs per request, as an
// upper bound on what a client of the gateway's own could save (bench/README.md, "What undici
// costs"). `node bench/raw-client-proxy.ts <upstream host:port> <port>`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';

const [upstream, port] = process.argv.slice(2) as [string, string];
const colon = upstream.lastIndexOf(':');
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'host']);
const HEAD_END = Buffer.from('\r\n\r\n');

/** One kept-alive connection to the upstream, answering into one response at a time. */
class Connection {
  readonly sock: Socket;
  res: ServerResponse | null = null;
  partialHead: Buffer | null = null;
  /** Body bytes still to come; -1 while the head is awaited. */
  remaining = -1;

  constructor() {
    this.sock = connect(Number(upstream.slice(colon + 1)), upstream.slice(0, colon));
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', () => this.res?.destroy());
  }

  onData(data: Buffer): void {
    const res = this.res as ServerResponse;
    let body = data;
    if (this.remaining < 0) {
      const buf = this.partialHead === null ? data : Buffer.concat([this.partialHead, data]);
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        this.partialHead = buf;
        return;
      }
      this.partialHead = null;
      const lines = buf.toString('latin1', 0, end).split('\r\n');
      const out: string[] = [];
      let length = 0;
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i] as string;
        const c = line.indexOf(':');
        const name = line.slice(0, c).toLowerCase();
        const value = line.slice(c + 1).trim();
        if (name === 'content-length') length = Number(value);
        if (!HOP.has(name)) out.push(name, value);
      }
      res.writeHead(Number((lines[0] as string).slice(9, 12)), out);
      this.remaining = length;
      body = buf.subarray(end + 4);
    }
    if (body.length > 0) {
      this.remaining -= body.length;
      res.write(body);
    }
    if (this.remaining === 0) {
      this.remaining = -1;
      this.res = null;
      res.end();
      idle.push(this);
    }
  }
}

const idle: Connection[] = [];

createServer((req: IncomingMessage, res: ServerResponse) => {
  const raw = req.rawHeaders;
  let head = `${req.method} ${req.url} HTTP/1.1\r\nhost: ${upstream}\r\n`;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has((raw[i] as string).toLowerCase())) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  const c = idle.pop() ?? new Connection();
  c.res = res;
  c.sock.write(`${head}\r\n`);
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
process.on('SIGTERM', () => process.exit(0));
