import t from 'tap';
import { GatewayErrors } from '../../../gateway/errors.ts';
import { UPSTREAM_FAILURES, classifyUpstreamError, upstreamError } from '../../../gateway/proxy/upstream-errors.ts';

t.test('every table entry names a gateway error', async (t) => {
  for (const [code, failure] of Object.entries(UPSTREAM_FAILURES)) {
    t.ok(failure.code in GatewayErrors, `${code} -> ${failure.code}`);
    t.ok(failure.retry === false || failure.retry === 'connect' || failure.retry === 'socket');
  }
});

t.test('classification (table)', async (t) => {
  const cases: [unknown, string, string | false][] = [
    [{ code: 'ECONNREFUSED' }, 'UPSTREAM_UNREACHABLE', 'connect'],
    [{ code: 'UND_ERR_CONNECT_TIMEOUT' }, 'UPSTREAM_TIMEOUT', 'connect'],
    [{ code: 'ECONNRESET' }, 'UPSTREAM_UNREACHABLE', 'socket'],
    [{ code: 'UND_ERR_SOCKET' }, 'UPSTREAM_UNREACHABLE', 'socket'],
    [{ code: 'UND_ERR_SOCKET', message: 'other side closed' }, 'UPSTREAM_UNREACHABLE', 'socket'],
    [{ code: 'UND_ERR_SOCKET', message: 'bad upgrade' }, 'UPSTREAM_BAD_RESPONSE', false],
    [{ code: 'UND_ERR_SOCKET', message: 'bad response' }, 'UPSTREAM_BAD_RESPONSE', false],
    [{ code: 'UND_ERR_HEADERS_TIMEOUT' }, 'UPSTREAM_TIMEOUT', false],
    [{ code: 'UND_ERR_BODY_TIMEOUT' }, 'UPSTREAM_TIMEOUT', false],
    [{ code: 'HPE_INVALID_CONSTANT' }, 'UPSTREAM_BAD_RESPONSE', false],
    [{ code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' }, 'UPSTREAM_BAD_RESPONSE', false],
    [Object.assign(new Error('x'), { name: 'HTTPParserError' }), 'UPSTREAM_BAD_RESPONSE', false],
    [{ code: 'SOMETHING_NEW' }, 'UPSTREAM_UNREACHABLE', false],
    [new Error('no code'), 'UPSTREAM_UNREACHABLE', false],
    [null, 'UPSTREAM_UNREACHABLE', false],
  ];
  for (const [err, code, retry] of cases) {
    const f = classifyUpstreamError(err);
    t.equal(f.code, code, JSON.stringify(err));
    t.equal(f.retry, retry, JSON.stringify(err));
  }
});

t.test('the answer keeps the original as cause and has the contract status', async (t) => {
  const cause = Object.assign(new Error('refused'), { code: 'ECONNREFUSED' });
  const e = upstreamError(classifyUpstreamError(cause), cause);
  t.equal(e.statusCode, 502);
  t.equal(e.code, 'UPSTREAM_UNREACHABLE');
  t.equal(e.cause, cause);
  const timeout = upstreamError(classifyUpstreamError({ code: 'UND_ERR_HEADERS_TIMEOUT' }), null);
  t.equal(timeout.statusCode, 504);
});
