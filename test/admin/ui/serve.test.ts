// The web UI's static handler, behind the real admin server (fake control plane): content
// types, security and caching headers, conditional GETs, and nothing but the UI's own files:
// traversal and unknown paths fall through to the API's JSON 404.
import t from 'tap';
import { request as httpRequest } from 'node:http';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createUi, UI_CSP, uiAssets } from '../../../admin/ui/serve.ts';
import { ROOT, startApi } from '../harness.ts';

const STATIC = join(ROOT, 'admin', 'ui', 'static');

/** A request sent with its path exactly as given (fetch would normalise `..` and `%2e`). */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

t.test('index page: HTML with the strict policy, revalidated on each use', async (t) => {
  const api = await startApi(t, { server: { ui: createUi() } });
  const res = await raw(api.url, 'GET', '/');
  t.equal(res.status, 200);
  t.equal(res.headers['content-type'], 'text/html; charset=utf-8');
  t.equal(res.headers['content-security-policy'], UI_CSP);
  t.match(UI_CSP, /(^|; )default-src 'self'(;|$)/);
  t.match(UI_CSP, /(^|; )script-src 'self'(;|$)/);
  t.match(UI_CSP, /frame-ancestors 'none'/);
  t.notMatch(UI_CSP, /unsafe-inline|unsafe-eval|\*/);
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.headers['x-frame-options'], 'DENY');
  t.equal(res.headers['referrer-policy'], 'no-referrer');
  t.equal(res.headers['cache-control'], 'no-cache');
  t.match(res.headers.etag, /^"[A-Za-z0-9_-]+"$/);
  t.equal(res.headers['content-length'], String(res.body.length));
  const html = res.body.toString('utf8');
  t.equal(html, await readFile(join(STATIC, 'index.html'), 'utf8'));
  t.match(html, /<script type="module" src="\/js\/main\.js"><\/script>/);

  const again = await raw(api.url, 'GET', '/index.html?x=1');
  t.equal(again.status, 200, 'query strings are ignored');
  t.equal(again.headers.etag, res.headers.etag, '/ and /index.html are the same file');
});

t.test('content types of the UI files and of uPlot from node_modules', async (t) => {
  const api = await startApi(t, { server: { ui: createUi() } });
  const cases: [string, string][] = [
    ['/js/main.js', 'text/javascript; charset=utf-8'],
    ['/js/pages/deployment.js', 'text/javascript; charset=utf-8'],
    ['/style.css', 'text/css; charset=utf-8'],
    ['/favicon.svg', 'image/svg+xml'],
    ['/vendor/uplot/uPlot.esm.js', 'text/javascript; charset=utf-8'],
    ['/vendor/uplot/uPlot.min.css', 'text/css; charset=utf-8'],
  ];
  for (const [path, type] of cases) {
    const res = await raw(api.url, 'GET', path);
    t.equal(res.status, 200, path);
    t.equal(res.headers['content-type'], type, `${path} type`);
    t.equal(res.headers['content-security-policy'], UI_CSP, `${path} policy`);
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${path} nosniff`);
  }
  const uplot = await raw(api.url, 'GET', '/vendor/uplot/uPlot.esm.js');
  const file = fileURLToPath(new URL('./uPlot.esm.js', import.meta.resolve('uplot')));
  t.ok(uplot.body.equals(await readFile(file)), 'uPlot served from node_modules as is');
  t.match(uplot.body.toString('utf8'), /export \{ uPlot as default \}|export default uPlot/);
});

t.test('conditional GET and HEAD', async (t) => {
  const api = await startApi(t, { server: { ui: createUi() } });
  const first = await raw(api.url, 'GET', '/style.css');
  const etag = String(first.headers.etag);
  const notModified = await raw(api.url, 'GET', '/style.css', { 'if-none-match': etag });
  t.equal(notModified.status, 304);
  t.equal(notModified.body.length, 0);
  t.equal(notModified.headers.etag, etag);
  t.equal(notModified.headers['content-security-policy'], UI_CSP);
  t.equal((await raw(api.url, 'GET', '/style.css', { 'if-none-match': `"other", ${etag}` })).status, 304, 'one of a list');
  const changed = await raw(api.url, 'GET', '/style.css', { 'if-none-match': '"stale"' });
  t.equal(changed.status, 200);
  t.ok(changed.body.equals(first.body));

  const head = await raw(api.url, 'HEAD', '/js/main.js');
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
  t.equal(head.headers['content-length'], String((await readFile(join(STATIC, 'js', 'main.js'))).length));
});

t.test('traversal, unknown files and other methods are not the UI\'s: the API answers 404', async (t) => {
  const api = await startApi(t, { server: { ui: createUi() } });
  const paths = [
    '/../package.json',
    '/js/../../serve.ts',
    '/js/../../../../package.json',
    '/%2e%2e/serve.ts',
    '/js/%2e%2e/%2e%2e/serve.ts',
    '/..%2fserve.ts',
    '/js%2fmain.js',
    '/js\\..\\..\\serve.ts',
    '/serve.ts',
    '/README.md',
    '/static/index.html',
    '/index.html%00',
    '/index.html/',
    '//index.html',
    '/vendor/uplot/package.json',
    '/vendor/uplot/../../package.json',
    '/vendor/uplot/uPlot.cjs.js',
    '/JS/MAIN.JS',
    '/nope',
    '/deployments',
  ];
  for (const path of paths) {
    const res = await raw(api.url, 'GET', path);
    t.equal(res.status, 404, `${path}: 404`);
    t.equal(JSON.parse(res.body.toString('utf8')).code, 'ROUTE_NOT_FOUND', `${path}: the API's error`);
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', `${path}: JSON`);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    const res = await raw(api.url, method, '/');
    t.equal(res.status, 404, `${method} /`);
  }
  const apiStill = await raw(api.url, 'GET', '/api/v1/targets');
  t.equal(apiStill.status, 401, 'API paths never reach the UI');
});

t.test('the handler answers false for what is not a UI file', async (t) => {
  const ui = createUi();
  for (const [method, url] of [['GET', '/nope'], ['GET', '/../x'], ['POST', '/'], ['GET', '/api/v1/targets']] as const) {
    let wrote = false;
    const res = { writeHead: () => (wrote = true), end: () => (wrote = true) };
    t.equal(await ui({ method, url, headers: {} } as never, res as never), false, `${method} ${url}`);
    t.notOk(wrote, `${method} ${url}: nothing written`);
  }
});

t.test('the served set is exactly the static folder (plus uPlot), and every import resolves', async (t) => {
  const assets = uiAssets();
  const files = (await filesUnder(STATIC)).filter((f) => /\.(html|js|css|svg)$/.test(f));
  for (const f of files) t.ok(assets.has('/' + relative(STATIC, f).split(sep).join('/')), `${relative(STATIC, f)} is served`);
  for (const [url, a] of assets) {
    if (url.startsWith('/vendor/')) t.match(a.file, /node_modules[/\\]uplot[/\\]dist[/\\]/, `${url} from node_modules`);
    else t.ok(a.file.startsWith(STATIC + sep), `${url} inside static/`);
  }

  // Every module specifier and every page reference names a served file.
  const api = await startApi(t, { server: { ui: createUi() } });
  const referenced = new Set<string>();
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    const src = await readFile(f, 'utf8');
    const at = '/' + relative(STATIC, f).split(sep).join('/');
    for (const m of src.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)) {
      referenced.add(new URL(m[1] ?? m[2]!, `http://x${at}`).pathname);
    }
  }
  const html = await readFile(join(STATIC, 'index.html'), 'utf8');
  for (const m of html.matchAll(/(?:src|href)="(\/[^"#]*)"/g)) referenced.add(m[1]!);
  t.ok(referenced.size > 10, `${referenced.size} references`);
  for (const url of referenced) t.equal((await raw(api.url, 'GET', url)).status, 200, `${url} is served`);
});

t.test('the browser code never parses data as HTML and has nothing inline', async (t) => {
  const files = await filesUnder(STATIC);
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    const src = await readFile(f, 'utf8');
    t.notMatch(src, /\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|DOMParser|createContextualFragment/, `${relative(STATIC, f)}: no HTML parsing, no eval`);
    t.notMatch(src, /localStorage\.setItem\([^)]*token/i, `${relative(STATIC, f)}: the token is never kept in localStorage`);
  }
  const html = await readFile(join(STATIC, 'index.html'), 'utf8');
  t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  t.notMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');
});
