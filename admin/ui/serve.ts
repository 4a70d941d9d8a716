import type { IncomingMessage, ServerResponse } from 'node:http';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portico</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>Portico</h1>
<p>The admin API is at <a href="/api/v1/openapi.json"><code>/api/v1</code></a> (bearer token).
The <code>portico</code> CLI talks to it: <code>npx portico --help</code>.</p>
</body></html>`;

/**
 * The web UI's request handler for the admin server: answers the pages it knows and returns
 * true, or returns false for the API to answer 404.
 */
export function createUi(): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/' || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(PAGE), 'x-content-type-options': 'nosniff' });
    res.end(req.method === 'HEAD' ? undefined : PAGE);
    return true;
  };
}
