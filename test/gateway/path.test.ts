import t from 'tap';
import { parseRoutePath, type RoutePath } from '../../gateway/path.ts';

function blank(): RoutePath {
  return { owner: '', project: '', deployment: '', target: '', endpoint: '', prefix: '', rest: '', query: '' };
}

// [request target, expected fields (or null when refused), what a refusal must mention]
const accepted: [string, Partial<RoutePath>][] = [
  ['/acme/mnist/web/production/predict', { owner: 'acme', project: 'mnist', deployment: 'web', target: 'production', endpoint: 'predict', prefix: '/acme/mnist/web/production/predict', rest: '', query: '' }],
  ['/acme/mnist/web/20181002.0/predict/', { target: '20181002.0', rest: '/', prefix: '/acme/mnist/web/20181002.0/predict' }],
  ['/acme/mnist/web/v1/predict/a/b.json?x=1&y=%2F', { rest: '/a/b.json', query: '?x=1&y=%2F' }],
  ['/acme/mnist/web/v1/predict?', { rest: '', query: '?' }],
  ['/%61cme/mnist/web/v%201/predict', { owner: 'acme', target: 'v 1', prefix: '/%61cme/mnist/web/v%201/predict' }],
  ['/acme/mnist/web/v1/predict//double', { rest: '//double' }],
  ['/acme/mnist/web/v1/predict/a%2Fb', { rest: '/a%2Fb' }],
  ['/acme/mnist/web/v1/predict/..hidden/.well-known/a..b', { rest: '/..hidden/.well-known/a..b' }],
  ['/acme/mnist/web/v1/predict?next=/../../etc', { rest: '', query: '?next=/../../etc' }],
  ['/acme/mnist/web/v1/predict/@evil.example', { rest: '/@evil.example' }],
];

const refused: [string, RegExp][] = [
  ['', /path/],
  ['*', /path/],
  ['http://evil.example/acme/mnist/web/v1/predict', /path/],
  ['//evil.example/mnist/web/v1/predict', /empty/],
  ['/@evil.example', /missing/],
  ['/', /missing|empty/],
  ['/acme', /missing/],
  ['/acme/mnist/web/v1', /missing/],
  ['/acme/mnist/web/v1/', /missing|empty/],
  ['/acme//web/v1/predict', /empty/],
  ['/acme/mnist/web//predict', /empty/],
  ['/acme/mnist/web/v1//', /empty/],
  ['/acme/mnist/web/%2E/predict', /dot/],
  ['/acme/mnist/web/./predict', /dot/],
  ['/acme/mnist/../v1/predict', /dot/],
  ['/acme/mnist/web/v1/%2e%2E', /dot/],
  ['/acme/mnist/web/a%2Fb/predict', /may not contain/],
  ['/acme/mnist/web/a%5Cb/predict', /may not contain/],
  ['/acme/mnist/web/a\\b/predict', /may not contain/],
  ['/acme/mnist/web/a%00b/predict', /may not contain/],
  ['/acme/mnist/web/v1/predict/..', /dot/],
  ['/acme/mnist/web/v1/predict/.', /dot/],
  ['/acme/mnist/web/v1/predict/a/../../x', /dot/],
  ['/acme/mnist/web/v1/predict/a/%2e%2e/x', /dot/],
  ['/acme/mnist/web/v1/predict/a%2F..%2Fx', /dot/],
  ['/acme/mnist/web/v1/predict/a%5C..', /dot/],
  ['/acme/mnist/web/v1/predict/a\\..\\x', /dot/],
  ['/acme/mnist/web/v1/predict/..#', /fragment/],
  ['/acme/mnist/web/v1/predict/x/..#frag', /fragment/],
  ['/acme/mnist/web/v1/predict/.#', /fragment/],
  ['/acme/mnist/web/v1/predict?q=1#x', /fragment/],
  ['/acme/mnist/web/prod#/predict', /fragment/],
  ['/acme/mnist/web/v1/predict/%2e%09%2e/x', /dot/],
  ['/acme/mnist/web/v1/predict/..;', /dot/],
  ['/acme/mnist/web/v1/predict/..;/..;/x', /dot/],
  ['/acme/mnist/web/v1/predict/.;x/..;jsessionid=1/a', /dot/],
  ['/acme/mnist/web/v1/predict/..%00', /dot|NUL/],
  ['/acme/mnist/web/v1/predict/a%00b', /NUL/],
  ['/acme/mnist/web/v1/predict/%zz', /percent/],
  ['/acme/%E0%A4%A/web/v1/predict', /percent/],
  ['/acme/mnist/web/v1/predict/%', /percent/],
];

t.test('paths of the grammar parse into their segments', async (t) => {
  for (const [url, want] of accepted) {
    const out = blank();
    t.equal(parseRoutePath(url, out), null, `${url} is accepted`);
    t.match(out, want, url);
  }
});

t.test('paths outside the grammar are refused with a reason', async (t) => {
  for (const [url, why] of refused) {
    const reason = parseRoutePath(url, blank());
    t.type(reason, 'string', `${JSON.stringify(url)} is refused`);
    t.match(reason, why, `${JSON.stringify(url)}: ${reason}`);
  }
});

t.test('the prefix is the client\'s own spelling and the rest is never decoded', async (t) => {
  const out = blank();
  t.equal(parseRoutePath('/acme/mnist/web/prod%75ction/predict/a%20b?q', out), null);
  t.equal(out.target, 'production');
  t.equal(out.prefix, '/acme/mnist/web/prod%75ction/predict');
  t.equal(out.rest, '/a%20b');
  t.equal(out.query, '?q');
});

/**
 * The most lenient reading of a path a replica might make: `\\` a separator too, each segment
 * percent-decoded, cut at `;` (servlet path parameters, Python's urljoin) and at NUL (C, WSGI),
 * then dot segments resolved. Returns the resolved segments.
 */
function lenientResolve(path: string): string[] {
  const out: string[] = [];
  for (const raw of path.split(/[/\\]/).slice(1)) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      seg = raw;
    }
    seg = seg.split(';')[0]!.split('\0')[0]!;
    if (seg === '..') out.pop();
    else if (seg !== '.') out.push(seg);
  }
  return out;
}

// What the replica gets is the canonical prefix plus the rest and query as sent. However a
// replica reads that (WHATWG URL: `\\` a separator, `#` ending the path, dot segments resolved;
// or as leniently as `lenientResolve`), it must stay inside the prefix: every accepted
// combination of these pieces is checked.
t.test('no accepted path leaves the prefix when the replica resolves it as a URL', async (t) => {
  // Node's parser lets only printable ASCII (0x21-0x7e) into a request target.
  const pieces = ['..', '.', '%2e', '%2E%2e', '#', '\\', '/', 'a', '%2f', '%5c', '?', ';', '..;', ';x', '%3b', '%00', '%09', '%0a', '%20'];
  const canonical = '/o/p/d/v1/e';
  let accepted = 0;
  const escaped: string[] = [];
  const tryRest = (rest: string) => {
    const out = blank();
    if (parseRoutePath(`/acme/mnist/web/v1/predict${rest}`, out) !== null) return;
    accepted++;
    const path = new URL(canonical + out.rest + out.query, 'http://replica.internal').pathname;
    if (path !== canonical && !path.startsWith(`${canonical}/`)) escaped.push(`${JSON.stringify(rest)} -> ${path}`);
    const lenient = lenientResolve(canonical + out.rest);
    if (lenient.slice(0, 5).join('/') !== 'o/p/d/v1/e') escaped.push(`${JSON.stringify(rest)} -> /${lenient.join('/')} (lenient)`);
  };
  for (const a of pieces) {
    tryRest(`/${a}`);
    for (const b of pieces) {
      tryRest(`/${a}${b}`);
      for (const c of pieces) tryRest(`/${a}${b}${c}`);
    }
  }
  t.ok(accepted > 1000, `${accepted} of ${pieces.length ** 3 + pieces.length ** 2 + pieces.length} accepted`);
  t.same(escaped.slice(0, 20), [], 'none of them leaves the prefix');
});
