// Small pieces every page uses: status badges, times, copy buttons, the flash message, the
// confirmation dialog, tabs.
import { ApiError } from './api.js';
import { h, replace } from './dom.js';

/**
 * A status badge (`ready`, `building`, `crashed`...), coloured by its class.
 * @param {string} status
 */
export function badge(status) {
  return h('span', { class: `badge badge-${/^[a-z]+$/.test(status) ? status : 'unknown'}`, 'data-status': status }, status);
}

/**
 * A time as the operator's local date and time (the exact ISO time in the tooltip).
 * @param {string | number | null | undefined} at
 */
export function time(at) {
  if (at === null || at === undefined || at === '') return h('span', { class: 'muted' }, '—');
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return h('span', null, String(at));
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }));
}

/**
 * An alias target as text: `20181002.0` or `20181002.0 90% · 20181003.0 10%`.
 * @param {{version?: string, versions?: {version: string, weight: number}[]} | null | undefined} target
 */
export function targetText(target) {
  if (!target) return '—';
  if (typeof target.version === 'string') return target.version;
  if (Array.isArray(target.versions)) return target.versions.map((w) => `${w.version} ${w.weight}%`).join(' · ');
  return '—';
}

/**
 * A URL in a read-only input with a Copy button.
 * @param {string} url
 * @param {string} [label]
 */
export function copyable(url, label) {
  const input = h('input', { type: 'text', readOnly: true, value: url, class: 'url', 'aria-label': label ?? 'URL', size: Math.min(Math.max(url.length, 20), 80) });
  const button = h('button', {
    type: 'button',
    class: 'small',
    'data-copy': url,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(url);
      } catch {
        input.select();
        document.execCommand('copy');
      }
      button.textContent = 'Copied';
      setTimeout(() => (button.textContent = 'Copy'), 1500);
    },
  }, 'Copy');
  return h('span', { class: 'copyable' }, label ? h('span', { class: 'copy-label' }, label) : null, input, button);
}

let flashTimer = 0;
let flashedAt = 0;

/**
 * Shows a message in the flash bar (errors stay until the next message or navigation).
 * @param {string} message
 * @param {'ok' | 'error' | 'info'} [kind]
 */
export function flash(message, kind = 'ok') {
  const el = /** @type {HTMLElement} */ (document.getElementById('flash'));
  el.className = `flash flash-${kind}`;
  replace(el, message, h('button', { type: 'button', class: 'link close', 'aria-label': 'Dismiss', onclick: () => (el.hidden = true) }, '×'));
  el.hidden = false;
  flashedAt = Date.now();
  clearTimeout(flashTimer);
  if (kind !== 'error') flashTimer = window.setTimeout(() => (el.hidden = true), 5000);
}

/**
 * Hides the flash bar when the operator moves to another page, unless the message was shown
 * just now (by the action that caused the move, e.g. "Deployment created").
 */
export function clearFlash() {
  const el = /** @type {HTMLElement} */ (document.getElementById('flash'));
  if (Date.now() - flashedAt > 1000) el.hidden = true;
}

/**
 * Runs an action from a button: disables it meanwhile, shows `done` or the error in the flash bar.
 * @param {HTMLButtonElement | null} button
 * @param {() => Promise<unknown>} action
 * @param {string} [done]
 */
export async function run(button, action, done) {
  if (button) button.disabled = true;
  try {
    await action();
    if (done) flash(done, 'ok');
    return true;
  } catch (err) {
    flash(errorText(err), 'error');
    return false;
  } finally {
    if (button) button.disabled = false;
  }
}

/**
 * After a page's automatic refresh failed (API unreachable while the controller restarts, 5xx):
 * says so in `state` and calls `again` to schedule the next try. Nothing when the page was left,
 * or for a refused token (the operator is on the sign-in page then).
 * @param {AbortSignal} signal
 * @param {HTMLElement} state
 * @param {unknown} err
 * @param {() => void} again
 */
export function retryLater(signal, state, err, again) {
  if (signal.aborted || (err instanceof ApiError && err.status === 401)) return;
  state.textContent = `Refresh failed (${errorText(err)}); trying again.`;
  again();
}

/** An error as one line for the operator: `CODE: message`. @param {unknown} err */
export function errorText(err) {
  if (err && typeof err === 'object' && 'message' in err) {
    const code = 'code' in err && typeof err.code === 'string' ? `${err.code}: ` : '';
    return `${code}${String(err.message)}`;
  }
  return String(err);
}

/**
 * Asks for confirmation in a modal dialog; resolves true when confirmed.
 * @param {{title: string, message: (string | Node)[] | string, confirm: string, danger?: boolean}} opts
 * @returns {Promise<boolean>}
 */
export function confirmDialog(opts) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', value: 'ok', class: opts.danger ? 'danger' : 'primary', 'data-confirm': '' }, opts.confirm);
    const cancel = h('button', { type: 'submit', value: 'cancel', formnovalidate: true }, 'Cancel');
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, opts.title),
        h('p', { class: 'confirm-message' }, opts.message),
        h('div', { class: 'actions' }, cancel, ok)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/**
 * A row of tab links; the one whose href equals `current` is marked.
 * @param {[string, string][]} tabs [href, label]
 * @param {string} current
 */
export function tabs(tabs, current) {
  return h('nav', { class: 'tabs', 'aria-label': 'Sections' }, tabs.map(([href, label]) =>
    h('a', { href, 'aria-current': href === current ? 'page' : undefined }, label)));
}

/**
 * A table: header labels and rows of cells (each a node, text, or list).
 * @param {string[]} head
 * @param {import('./dom.js').Child[][]} rows
 * @param {Record<string, unknown>} [props]
 */
export function table(head, rows, props) {
  return h('table', props ?? null,
    h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c))))));
}

/**
 * Base64 of bytes (the test console sends files as `bodyBase64`).
 * @param {Uint8Array} bytes
 */
export function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * Bytes of a base64 string.
 * @param {string} b64
 */
export function fromBase64(b64) {
  const s = atob(b64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}
