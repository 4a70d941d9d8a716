// The upstream when nginx is not installed: a minimal Node HTTP server answering every request
// with the same small JSON. `node bench/node-upstream.ts <port> [host...]`.
import { createServer } from 'node:http';

const [port, ...hosts] = process.argv.slice(2) as [string, ...string[]];
const body = Buffer.from('{"prediction":7,"confidence":0.93}');
const server = () =>
  createServer({ keepAliveTimeout: 300_000 }, (req, res) => {
    req.resume();
    res.writeHead(200, ['content-type', 'application/json', 'content-length', String(body.length)]);
    res.end(body);
  });
let left = hosts.length === 0 ? 1 : hosts.length;
for (const host of hosts.length === 0 ? ['127.0.0.1'] : hosts) {
  server().listen(Number(port), host, () => {
    if (--left === 0) console.log('ready');
  });
}
