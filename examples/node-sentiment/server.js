// A sentiment "model" served over HTTP, as a Valohai endpoint would be: listens on $PORT
// (default 8000), answers POST {"text": "..."} with a score and a label.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const weights = JSON.parse(readFileSync(new URL('./model/weights.json', import.meta.url), 'utf8'));
const port = Number(process.env.PORT ?? 8000);
const host = process.env.HOST ?? '0.0.0.0';
const prefix = process.env.VH_DEFAULT_PREFIX ?? '';

function score(text) {
  const words = String(text).toLowerCase().match(/[a-z']+/g) ?? [];
  const total = words.reduce((sum, w) => sum + (weights[w] ?? 0), 0);
  return { score: total, label: total > 0 ? 'positive' : total < 0 ? 'negative' : 'neutral', words: words.length };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET') {
      return send(res, 200, { model: 'sentiment', words: Object.keys(weights).length, prefix, path: req.url, clientPrefix: req.headers['x-vh-prefix'] ?? null, pid: process.pid });
    }
    if (req.method !== 'POST') return send(res, 405, { error: 'use GET or POST' });
    let input;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      return send(res, 400, { error: 'body must be JSON: {"text": "..."}' });
    }
    if (typeof input.text !== 'string') return send(res, 400, { error: 'body.text must be a string' });
    const result = score(input.text);
    // One metrics line per prediction: Portico charts these per version.
    console.log(JSON.stringify({ vh_metadata: { score: result.score, label: result.label } }));
    send(res, 200, { ...result, prefix });
  });
}).listen(port, host, () => console.log(`sentiment model listening on ${host}:${port}`));

process.on('SIGTERM', () => process.exit(0));
