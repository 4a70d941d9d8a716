/**
 * The web UI's static file handler: `admin/ui/static/**` at `/` of the admin port, plus uPlot's
 * files from node_modules at `/vendor/uplot/`. The set of servable URLs is fixed when the handler
 * is created (a directory walk), so a request path either names one of those files exactly or
 * is not ours: nothing from the URL ever reaches the file system, and traversal cannot happen.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the UI's own files live. */
const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));

/** Content types of the extensions the UI serves; other files are not served. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
};

/**
 * The policy of every UI response: scripts, styles and connections to this origin only (no
 * inline script or style element), images also from `blob:`/`data:` (test-console previews),
 * never framed.
 */
export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every UI response. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': UI_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
});

/** A file the handler may serve, keyed by its URL path. */
interface Asset {
  readonly file: string;
  readonly contentType: string;
}

/** A file's bytes as last read, kept while its size and mtime do not change. */
interface Loaded {
  readonly mtimeMs: number;
  readonly size: number;
  readonly body: Buffer;
  readonly etag: string;
}

function walk(dir: string, prefix: string, into: Map<string, Asset>): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const file = join(dir, entry.name);
    const url = `${prefix}/${entry.name}`;
    if (entry.isDirectory()) walk(file, url, into);
    else if (entry.isFile()) {
      const contentType = CONTENT_TYPES[extname(entry.name)];
      if (contentType) into.set(url, { file, contentType });
    }
  }
}

/** The URL paths of uPlot's browser files, resolved in node_modules (never copied). */
function vendorAssets(into: Map<string, Asset>): void {
  // uplot has no "exports" map: the bare specifier resolves to its "main" in dist/.
  const dist = new URL('./', import.meta.resolve('uplot'));
  into.set('/vendor/uplot/uPlot.esm.js', { file: fileURLToPath(new URL('uPlot.esm.js', dist)), contentType: CONTENT_TYPES['.js']! });
  into.set('/vendor/uplot/uPlot.min.css', { file: fileURLToPath(new URL('uPlot.min.css', dist)), contentType: CONTENT_TYPES['.css']! });
}

/** Every URL path the UI answers, with the file behind it (`/` is `index.html`). */
export function uiAssets(): ReadonlyMap<string, { readonly file: string; readonly contentType: string }> {
  const assets = new Map<string, Asset>();
  walk(STATIC_DIR, '', assets);
  vendorAssets(assets);
  const index = assets.get('/index.html');
  if (index) assets.set('/', index);
  return assets;
}

/**
 * The web UI's request handler for the admin server: answers GET/HEAD of the UI's files and
 * returns true, or returns false (any other path or method) for the API to answer 404.
 * Every answer carries the UI's Content-Security-Policy, `nosniff` and `frame-ancestors 'none'`;
 * files are revalidated on each use (`no-cache` with a content ETag, 304 when unchanged).
 */
export function createUi(): (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> {
  const assets = uiAssets();
  const loaded = new Map<string, Loaded>();

  async function load(asset: Asset): Promise<Loaded> {
    const st = await stat(asset.file);
    const cached = loaded.get(asset.file);
    if (cached && cached.mtimeMs === st.mtimeMs && cached.size === st.size) return cached;
    const body = await readFile(asset.file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    const fresh = { mtimeMs: st.mtimeMs, size: st.size, body, etag };
    loaded.set(asset.file, fresh);
    return fresh;
  }

  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const asset = assets.get(q === -1 ? url : url.slice(0, q));
    if (!asset) return false;
    const file = await load(asset);
    const headers: Record<string, string> = {
      ...SECURITY_HEADERS,
      'content-type': asset.contentType,
      'cache-control': 'no-cache',
      etag: file.etag,
    };
    const match = req.headers['if-none-match'];
    if (match !== undefined && match.split(',').some((t) => t.trim() === file.etag || t.trim() === '*')) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, 'content-length': String(file.body.length) });
    res.end(req.method === 'HEAD' ? undefined : file.body);
    return true;
  };
}
