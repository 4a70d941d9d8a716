import t from 'tap';
import { deployment, endpoint, gateway, rawRequest, replica } from './fixtures.ts';

const P = '/acme/mnist/web/v1/predict';

// Requests whose framing is ambiguous or that try to reach another host. Each must be refused
// (400) without anything reaching the replica, or, for the host tricks, reach only the replica
// of the route.
const refused: [string, string][] = [
  ['Content-Length with Transfer-Encoding (CL.TE)', `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`],
  ['Transfer-Encoding with Content-Length (TE.CL)', `POST ${P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n`],
  ['duplicate Content-Length, different values', `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc`],
  ['duplicate Content-Length, same value', `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc`],
  ['Content-Length list', `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc`],
  // Node takes off the chunks only: the body would reach the replica still gzip-coded, unsaid.
  ['a transfer coding before chunked', `POST ${P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['obfuscated Transfer-Encoding', `POST ${P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['Transfer-Encoding with a space before the colon', `POST ${P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`],
  ['bad chunk size', `POST ${P} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
  ['negative Content-Length', `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n`],
  ['obs-fold header', `GET ${P} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n`],
  ['bare LF line ends', `GET ${P} HTTP/1.1\nHost: x\n\n`],
  // RFC 9112 3.2: a 400. One part of a chain reading the first and another the last would
  // disagree on the authority (X-Forwarded-Host is built from it).
  ['two Host headers', `GET ${P} HTTP/1.1\r\nHost: a.example\r\nHost: evil.example\r\n\r\n`],
  // RFC 9112 3.2: a Host that is no host[:port] is a 400 too (it would be X-Forwarded-Host).
  ['a Host with a space and a slash', `GET ${P} HTTP/1.1\r\nHost: a b/c\r\n\r\n`],
  ['a Host with user info', `GET ${P} HTTP/1.1\r\nHost: user@evil.example\r\n\r\n`],
  ['a Host with a path', `GET ${P} HTTP/1.1\r\nHost: evil.example/x\r\n\r\n`],
  ['a Host with a bad port', `GET ${P} HTTP/1.1\r\nHost: a.example:80x\r\n\r\n`],
  ['absolute-form target', `GET http://evil.example${P} HTTP/1.1\r\nHost: evil.example\r\n\r\n`],
  ['protocol-relative target', `GET //evil.example${P} HTTP/1.1\r\nHost: x\r\n\r\n`],
  ['asterisk target', `OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n`],
];

t.test('ambiguous framing and foreign targets never reach a replica', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  for (const [name, bytes] of refused) {
    const out = await rawRequest(gw.url, bytes);
    t.match(out, /^HTTP\/1\.1 400 /, name);
    const body = out.slice(out.indexOf('\r\n\r\n') + 4);
    t.match(body, /^\{"statusCode":400,"code":"(BAD_REQUEST|BAD_PATH)"/, `${name}: JSON error`);
    t.notMatch(out, /HTTP\/1\.1 200 /, `${name}: nothing proxied`);
  }
  t.equal(rep.seen.length, 0, 'the replica saw none of them');
});

t.test('the Host header never chooses the upstream', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const out = await rawRequest(gw.url, `GET ${P}/@evil.example HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`);
  t.match(out, /^HTTP\/1\.1 200 /);
  t.equal(rep.seen.length, 1);
  t.equal(rep.seen[0]!.url, `${P}/@evil.example`);
  t.equal(rep.seen[0]!.headers.host, rep.address);
  t.equal(rep.seen[0]!.headers['x-forwarded-host'], 'evil.example', 'the client Host is only reported');
  // Every form of a valid Host passes, as sent.
  for (const host of ['api.example.com:8443', '[::1]:8080', '[2001:db8::7]', '192.0.2.1', 'xn--bcher-kva.example', '']) {
    const ok = await rawRequest(gw.url, `GET ${P} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    t.match(ok, /^HTTP\/1\.1 200 /, `Host: ${host}`);
    t.equal(rep.seen.at(-1)!.headers['x-forwarded-host'], host);
  }
});

t.test('a pipelined second request is parsed as a request of its own, and routed by the rules', async (t) => {
  const rep = await replica(t);
  const { gw, table } = await gateway(t);
  await table.apply({ putDeployments: [deployment()], putEndpoints: [endpoint('v1', [rep.address])] });
  const out = await rawRequest(
    gw.url,
    `POST ${P} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /acme/mnist/web/v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    { until: () => false },
  );
  t.match(out, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 404 /);
  t.equal(rep.seen.length, 1, 'only the first request reached the replica, with its own body');
});
