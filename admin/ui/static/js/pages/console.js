// The test console: one request to an endpoint (by version or alias) sent through a gateway by
// POST …/test, and its answer: status, headers, body (JSON pretty-printed, images shown), latency,
// and a notice when the API cut a long body.
import { api, deploymentPath } from '../api.js';
import { field, h, replace } from '../dom.js';
import { errorText, table, toBase64, fromBase64 } from '../ui.js';

/**
 * "Name: value" lines to a header record; problems are thrown with their line number.
 * @param {string} text
 */
export function parseHeaders(text) {
  /** @type {Record<string, string>} */
  const headers = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const colon = line.indexOf(':');
    const name = colon === -1 ? '' : line.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/.test(name)) throw new Error(`Headers, line ${i + 1}: write "Name: value"`);
    headers[name.toLowerCase()] = line.slice(colon + 1).trim();
  });
  return headers;
}

/**
 * What to tell about a reply body the API cut (`truncated`), or null for a whole one.
 * @param {{truncated?: boolean}} answer
 * @param {number} size bytes received
 */
export function truncationNote(answer, size) {
  return answer.truncated ? `The body was longer: only its first ${size} bytes came back, so it may not decode or parse.` : null;
}

/**
 * The test console tab of a deployment, rendered into `body`.
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} dep
 * @param {HTMLElement} body
 */
export async function renderConsole({ signal }, ref, dep, body) {
  const base = deploymentPath(ref.owner, ref.project, ref.deployment);
  const [versions, aliases] = await Promise.all([
    api('GET', `${base}/versions`, undefined, { signal }),
    api('GET', `${base}/aliases`, undefined, { signal }),
  ]);
  /** @type {any[]} */
  const vs = versions.items.slice().reverse();
  /** @type {any[]} */
  const as = aliases.items;
  /** @type {Map<string, string[]>} endpoints reachable through each version or alias */
  const endpointsOf = new Map();
  for (const v of vs) endpointsOf.set(v.name, v.endpoints.map((/** @type {any} */ e) => e.name));
  for (const a of as) {
    const names = a.version ? [a.version] : (a.versions ?? []).map((/** @type {any} */ w) => w.version);
    endpointsOf.set(a.name, [...new Set(names.flatMap((/** @type {string} */ n) => endpointsOf.get(n) ?? []))]);
  }

  /** @type {string[]} object URLs to revoke */
  let urls = [];
  const revoke = () => {
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [];
  };
  signal.addEventListener('abort', revoke);

  const target = h('select', { id: 'console-target', name: 'target' },
    as.length ? h('optgroup', { label: 'Aliases' }, as.map((a) => h('option', { value: a.name }, `${a.name} → ${a.version ?? 'weighted'}`))) : null,
    vs.length ? h('optgroup', { label: 'Versions' }, vs.map((v) => h('option', { value: v.name }, `${v.name} (${v.status})`))) : null);
  const endpoint = h('select', { id: 'console-endpoint', name: 'endpoint' });
  const fillEndpoints = () => {
    const names = endpointsOf.get(target.value) ?? [];
    replace(endpoint, names.map((n) => h('option', { value: n }, n)));
  };
  target.addEventListener('change', fillEndpoints);
  fillEndpoints();

  const method = h('select', { id: 'console-method', name: 'method' }, ['POST', 'GET', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => h('option', { value: m }, m)));
  const restPath = h('input', { id: 'console-path', name: 'path', placeholder: '/optional/rest?query=1', pattern: '^(/\\S*)?$' });
  /** @type {'none' | 'text' | 'json' | 'file'} */
  let kind = 'json';
  const kinds = h('div', { class: 'radios', role: 'radiogroup', 'aria-label': 'Payload' },
    /** @type {const} */ (['none', 'text', 'json', 'file']).map((k) => h('label', null,
      h('input', { type: 'radio', name: 'kind', value: k, checked: k === kind, 'data-kind': k, onchange: () => { kind = k; showPayload(); } }),
      { none: 'No body', text: 'Text', json: 'JSON', file: 'File' }[k])));
  const text = h('textarea', { id: 'console-body', name: 'body', rows: '6', spellcheck: 'false' }, '{"text": "good"}');
  const file = h('input', { id: 'console-file', type: 'file', name: 'file' });
  const preview = h('div', { class: 'preview', id: 'console-preview' });
  file.addEventListener('change', () => {
    replace(preview);
    const f = file.files?.[0];
    if (!f) return;
    if (f.type.startsWith('image/')) {
      const u = URL.createObjectURL(f);
      urls.push(u);
      preview.appendChild(h('img', { src: u, alt: `Preview of ${f.name}` }));
    }
    preview.appendChild(h('p', { class: 'muted' }, `${f.name}, ${f.size} bytes, ${f.type || 'unknown type'}`));
  });
  const textField = field('Body', text);
  const fileField = h('div', null, field('File', file), preview);
  const showPayload = () => {
    textField.hidden = kind !== 'text' && kind !== 'json';
    fileField.hidden = kind !== 'file';
  };
  showPayload();

  const headers = h('textarea', { id: 'console-headers', rows: '3', spellcheck: 'false', placeholder: 'X-Example: value' });
  const username = h('input', { id: 'console-username', autocomplete: 'off' });
  const password = h('input', { id: 'console-password', type: 'password', autocomplete: 'off' });
  const send = h('button', { type: 'submit', class: 'primary', id: 'console-send' }, 'Send');
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const result = h('section', { class: 'card', id: 'console-result', hidden: true });

  const submit = async (/** @type {SubmitEvent} */ e) => {
    e.preventDefault();
    formError.hidden = true;
    /** @type {Record<string, unknown>} */
    const input = { target: target.value, endpoint: endpoint.value, method: method.value };
    try {
      if (!input.endpoint) throw new Error('Choose an endpoint (the target has none).');
      if (restPath.value.trim()) input.path = restPath.value.trim();
      const hs = parseHeaders(headers.value);
      if (kind === 'json') {
        try {
          JSON.parse(text.value);
        } catch (err) {
          throw new Error(`The body is not JSON: ${errorText(err)}`);
        }
        input.body = text.value;
        hs['content-type'] ??= 'application/json';
      } else if (kind === 'text') {
        input.body = text.value;
        hs['content-type'] ??= 'text/plain; charset=utf-8';
      } else if (kind === 'file') {
        const f = file.files?.[0];
        if (!f) throw new Error('Choose a file to send.');
        input.bodyBase64 = toBase64(new Uint8Array(await f.arrayBuffer()));
        hs['content-type'] ??= f.type || 'application/octet-stream';
      }
      if (Object.keys(hs).length) input.headers = hs;
      if (username.value !== '') {
        input.username = username.value;
        input.password = password.value;
      }
    } catch (err) {
      replace(formError, errorText(err));
      formError.hidden = false;
      return;
    }
    send.disabled = true;
    try {
      const answer = await api('POST', `${base}/test`, input, { signal });
      showResult(answer);
    } catch (err) {
      if (signal.aborted) return;
      replace(formError, errorText(err));
      formError.hidden = false;
    } finally {
      send.disabled = false;
    }
  };

  /** @param {{status: number, headers: Record<string, string>, bodyBase64: string, durationMs: number, truncated?: boolean}} answer */
  const showResult = (answer) => {
    revoke();
    const bytes = fromBase64(answer.bodyBase64);
    const type = (answer.headers['content-type'] ?? '').toLowerCase();
    const cut = truncationNote(answer, bytes.length);
    /** @type {Node} */
    let shown;
    let decoded = null;
    try {
      // A cut body may end inside a UTF-8 character: `stream` leaves that out instead of failing.
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: cut !== null });
    } catch {
      decoded = null;
    }
    if (type.startsWith('image/')) {
      const u = URL.createObjectURL(new Blob([bytes], { type: type.split(';')[0] }));
      urls.push(u);
      shown = h('img', { src: u, alt: 'Response image', id: 'response-image' });
    } else if (decoded !== null) {
      let pretty = decoded;
      if (type.includes('json') || /^\s*[[{]/.test(decoded)) {
        try {
          pretty = JSON.stringify(JSON.parse(decoded), null, 2);
        } catch {
          // not JSON after all: shown as text
        }
      }
      shown = h('pre', { id: 'response-body', class: 'body' }, pretty === '' ? '(empty body)' : pretty);
    } else {
      const u = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      urls.push(u);
      shown = h('p', { id: 'response-body' }, `${bytes.length} bytes of binary data. `, h('a', { href: u, download: 'response.bin' }, 'Download'));
    }
    const statusClass = answer.status < 300 ? 'ready' : answer.status < 500 ? 'starting' : 'failed';
    replace(result,
      h('div', { class: 'toolbar' },
        h('h2', null, 'Response'),
        h('span', { class: `badge badge-${statusClass}`, id: 'response-status' }, String(answer.status)),
        h('span', { id: 'response-latency' }, `${answer.durationMs} ms`),
        h('span', { class: 'muted' }, `${bytes.length} bytes`),
        cut === null ? null : h('span', { class: 'badge badge-failed', id: 'response-truncated' }, 'truncated')),
      cut === null ? null : h('p', { class: 'notice', role: 'status' }, cut),
      h('details', { open: true }, h('summary', null, 'Headers'),
        table(['Header', 'Value'], Object.entries(answer.headers).map(([k, v]) => [h('code', null, k), v]), { id: 'response-headers', class: 'compact' })),
      shown);
    result.hidden = false;
  };

  replace(body,
    dep.auth === 'basic' ? h('p', { class: 'notice' }, 'This deployment asks for basic auth: give a user of the Users tab below.') : null,
    h('form', { class: 'card console', onsubmit: submit },
      h('h2', null, 'Request'),
      h('div', { class: 'inline-form' }, field('Version or alias', target), field('Endpoint', endpoint), field('Method', method), field('Path', restPath)),
      kinds,
      textField,
      fileField,
      h('details', null, h('summary', null, 'Headers and credentials'),
        field('Extra headers', headers, 'One "Name: value" per line.'),
        h('div', { class: 'inline-form' }, field('Basic-auth user', username), field('Password', password))),
      formError,
      h('div', { class: 'actions' }, send)),
    result);
}
