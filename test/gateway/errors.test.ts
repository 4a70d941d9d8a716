import t from 'tap';
import { STATUS_CODES } from 'node:http';
import { PorticoError } from '../../common/errors.ts';
import { rawErrorResponse } from '../../common/http.ts';
import { GatewayErrors, RETRY_AFTER_SECONDS } from '../../gateway/errors.ts';

// The codes the contract names, with their statuses.
const CONTRACT: Record<string, number> = {
  BAD_PATH: 400,
  AUTH_REQUIRED: 401,
  ROUTE_NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  NO_READY_REPLICA: 503,
  UPSTREAM_UNREACHABLE: 502,
  UPSTREAM_TIMEOUT: 504,
};

t.test('the registry holds the contract codes with their statuses', async (t) => {
  for (const [code, status] of Object.entries(CONTRACT)) {
    t.equal(GatewayErrors[code as keyof typeof GatewayErrors]?.statusCode, status, code);
  }
});

t.test('every registered error renders as the contract JSON, on a response and on a raw socket', async (t) => {
  for (const def of Object.values(GatewayErrors)) {
    t.ok(STATUS_CODES[def.statusCode], `${def.code} has a real status`);
    t.ok(def.statusCode >= 400 && def.statusCode < 600, `${def.code} is an error status`);
    t.ok(def.message.length > 0 && !/\n\s+at /.test(def.message), `${def.code} has a message and no stack`);
    const err = new PorticoError(def, undefined, { cause: new Error('inner') });
    t.same(JSON.parse(JSON.stringify(err)), {
      statusCode: def.statusCode,
      code: def.code,
      error: STATUS_CODES[def.statusCode],
      message: def.message,
    });
    const raw = rawErrorResponse(err, undefined, { 'x-request-id': 'rid' });
    const [head, body] = raw.split('\r\n\r\n') as [string, string];
    t.match(head, new RegExp(`^HTTP/1\\.1 ${def.statusCode} `));
    t.match(head, /\r\ncontent-type: application\/json; charset=utf-8\r\n/);
    t.match(head, new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(body)}\\r\\n`));
    t.match(head, /\r\nx-request-id: rid/);
    t.equal(JSON.parse(body).code, def.code);
    t.notMatch(body, /inner|at .*\.ts/, 'the cause never leaks');
  }
});

t.test('503s say when to retry', async (t) => {
  for (const code of Object.keys(RETRY_AFTER_SECONDS)) {
    t.equal(GatewayErrors[code as keyof typeof GatewayErrors].statusCode, 503, code);
  }
});
