import t from 'tap';
import {
  TrustedProxies,
  addForwardedHeaders,
  clientAddress,
  readRequestHeaders,
  responseHeaders,
  tunnelResponseHead,
  type RequestHeaderInfo,
} from '../../../gateway/proxy/headers.ts';

function info(): RequestHeaderInfo {
  return {
    headers: [],
    host: undefined,
    authorization: undefined,
    requestId: '',
    contentLength: -1,
    chunked: false,
    upgrade: undefined,
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    proxyInfo: null,
    problem: null,
  };
}

const names = (flat: string[]) => flat.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());

t.test('hop-by-hop, credentials and gateway-set headers are not forwarded', async (t) => {
  const out = info();
  readRequestHeaders(
    [
      'Host', 'gw.example',
      'Connection', 'keep-alive, X-Secret-Hop',
      'Keep-Alive', 'timeout=5',
      'Proxy-Connection', 'keep-alive',
      'TE', 'trailers',
      'Trailer', 'x',
      'Upgrade', 'h2c',
      'Expect', '100-continue',
      'Authorization', 'Basic YTpi',
      'Proxy-Authorization', 'Basic YTpi',
      'X-VH-Prefix', '/spoofed',
      'X-Portico-Version', 'spoofed',
      'X-Secret-Hop', 'gone',
      'Transfer-Encoding', 'chunked',
      'Content-Type', 'application/json',
      'Accept', 'a',
      'Accept', 'b',
    ],
    out,
  );
  t.same(names(out.headers), ['content-type', 'accept', 'accept']);
  t.same(out.headers, ['Content-Type', 'application/json', 'Accept', 'a', 'Accept', 'b'], 'order and duplicates kept');
  t.equal(out.host, 'gw.example');
  t.equal(out.authorization, 'Basic YTpi');
  t.equal(out.chunked, true);
  t.equal(out.upgrade, 'h2c');
  t.equal(out.problem, null);
});

t.test('content-length is kept once; a duplicate is a problem', async (t) => {
  const one = info();
  readRequestHeaders(['Content-Length', '12'], one);
  t.same(one.headers, ['Content-Length', '12']);
  t.equal(one.contentLength, 12);
  const two = info();
  readRequestHeaders(['Content-Length', '12', 'content-length', '12'], two);
  t.match(two.problem, /duplicate Content-Length/);
});

t.test('x-request-id: kept when well-formed, else a new UUID', async (t) => {
  const cases: [string | undefined, boolean][] = [
    ['abc-123_x.y:z', true],
    ['a'.repeat(128), true],
    ['a'.repeat(129), false],
    ['has space', false],
    ['<script>', false],
    ['', false],
    [undefined, false],
  ];
  for (const [sent, kept] of cases) {
    const out = info();
    readRequestHeaders(sent === undefined ? [] : ['X-Request-Id', sent], out);
    if (kept) t.equal(out.requestId, sent, `${sent} kept`);
    else t.match(out.requestId, /^[0-9a-f-]{36}$/, `${String(sent).slice(0, 20)} replaced`);
    t.same(out.headers, [], 'never forwarded as sent (the gateway adds its own)');
  }
  const two = info();
  readRequestHeaders(['X-Request-Id', 'bad id', 'X-Request-Id', 'first-good', 'x-request-id', 'second-good'], two);
  t.equal(two.requestId, 'first-good', 'of several, the first well-formed one');
});

t.test('forwarding headers: client values kept only from trusted proxies', async (t) => {
  const raw = ['Host', 'api.example', 'X-Forwarded-For', '1.2.3.4', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.example', 'Forwarded', 'for=1.2.3.4', 'X-Real-IP', '1.2.3.4'];
  const untrusted = info();
  readRequestHeaders(raw, untrusted);
  addForwardedHeaders(untrusted, '10.0.0.9', false, false, '/a/b/c/d/e');
  t.same(untrusted.headers, [
    'x-forwarded-for', '10.0.0.9',
    'x-forwarded-proto', 'http',
    'x-forwarded-host', 'api.example',
    'x-vh-prefix', '/a/b/c/d/e',
    'x-request-id', untrusted.requestId,
  ]);
  const trusted = info();
  readRequestHeaders(raw, trusted);
  addForwardedHeaders(trusted, '10.0.0.9', true, false, '/a/b/c/d/e');
  t.same(trusted.headers, [
    'x-forwarded-for', '1.2.3.4, 10.0.0.9',
    'x-forwarded-proto', 'https',
    'x-forwarded-host', 'public.example',
    'Forwarded', 'for=1.2.3.4',
    'X-Real-IP', '1.2.3.4',
    'x-vh-prefix', '/a/b/c/d/e',
    'x-request-id', trusted.requestId,
  ]);
});

t.test('trusted proxies match addresses and CIDRs of both families', async (t) => {
  const tp = new TrustedProxies(['10.0.0.0/8', '192.168.1.1', '::1', 'fd00::/8']);
  const cases: [string | undefined, boolean][] = [
    ['10.1.2.3', true],
    ['::ffff:10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.168.1.1', true],
    ['192.168.1.2', false],
    ['::1', true],
    ['fd12::5', true],
    ['fe80::1', false],
    [undefined, false],
  ];
  for (const [addr, want] of cases) t.equal(tp.has(addr), want, String(addr));
  t.equal(new TrustedProxies([]).has('127.0.0.1'), false, 'nobody is trusted by default');
  t.equal(clientAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(clientAddress('::1'), '::1');
});

t.test('response headers: hop-by-hop and Connection-named dropped, ours added', async (t) => {
  const out = responseHeaders(
    {
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
      connection: 'keep-alive, x-hop',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'x-hop': 'secret',
      'x-request-id': 'replica-made',
      'x-portico-version': 'spoofed',
      'content-length': '5',
    },
    'v7',
    'rid-1',
    false,
  );
  t.same(out, ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2', 'content-length', '5', 'x-portico-version', 'v7', 'x-request-id', 'rid-1']);
  t.same(responseHeaders({}, 'v', 'r', true).slice(-2), ['connection', 'close'], 'draining closes the connection');
});

t.test('a replica\'s answer to an upgrade: rewritten like any response, minus what it needs', async (t) => {
  const accepted = tunnelResponseHead(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nSec-WebSocket-Accept: abc=\r\nx-portico-version: forged\r\nX-Request-Id: forged',
    'v1',
    'rid-1',
  );
  t.same(accepted, {
    head: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\nx-portico-version: v1\r\nx-request-id: rid-1\r\n\r\n',
    status: 101,
    contentLength: null,
    chunked: false,
  }, '101 keeps Connection (standard options only) and Upgrade; drops Keep-Alive, what Connection names, and the replica\'s own version and id');
  const declined = tunnelResponseHead('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic', 'v1', 'rid-2');
  t.same(declined, {
    head: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nx-portico-version: v1\r\nx-request-id: rid-2\r\nconnection: close\r\n\r\n',
    status: 200,
    contentLength: 5,
    chunked: false,
  }, 'a declined upgrade closes, and keeps its framing');
  t.match(tunnelResponseHead('HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked', 'v', 'r'), { head: /\r\nTransfer-Encoding: chunked\r\n/, contentLength: null, chunked: true });
  t.match(tunnelResponseHead('HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: gzip', 'v', 'r'), { chunked: false });
  for (const bad of ['HTTP/2 200', 'SPDY/1 200 OK', 'HTTP/1.1 200 OK\r\nBad Name: x', 'HTTP/1.1 200 OK\r\n folded', 'HTTP/1.1 200 OK\r\nno colon', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6', 'HTTP/1.1 200 OK\r\nContent-Length: -1', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked']) {
    t.equal(tunnelResponseHead(bad, 'v', 'r'), null, JSON.stringify(bad));
  }
});
