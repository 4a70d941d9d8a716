// (c) of the proxy comparison: fastify 5 with @fastify/http-proxy (reply-from over undici,
// keep-alive pool), logger off. `node bench/fastify-proxy.ts <upstream host:port> <port>`.
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const [upstream, port] = process.argv.slice(2) as [string, string];
const app = Fastify({ logger: false });
await app.register(proxy, {
  upstream: `http://${upstream}`,
  undici: { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 },
});
await app.listen({ port: Number(port), host: '127.0.0.1' });
console.log('ready');
