// A version: overview with its build log, live replica logs (followed as NDJSON while the page
// is open), and metric charts.
import { api, ApiError, deploymentPath, followNdjson, versionPath } from '../api.js';
import { field, h, replace, select } from '../dom.js';
import { crumbsFor, href } from '../nav.js';
import { errorText, retryLater, tabs } from '../ui.js';
import { keepingFocus, settling, versionCard } from './endpoints.js';
import { renderMetrics } from './metrics.js';

const REFRESH_MS = 1500;
/** Wait before following a log stream again after it ended. */
const RECONNECT_MS = 2000;
/** Lines kept on the page; older ones are dropped. */
const MAX_LINES = 2000;
/** How often the logs tab reads the version again for its list of replicas (scaled, restarted). */
const REPLICAS_MS = 5000;

/**
 * A version's page (`…/v/name[/logs|/metrics]`): overview with build log, live logs, or metrics.
 * @param {import('../main.js').PageContext} ctx
 */
export async function renderVersion(ctx) {
  const { params, main, signal } = ctx;
  const { owner, project, deployment, version } = params;
  const tab = params.tab ?? 'overview';
  const ref = { owner, project, deployment };
  const [dep, v] = await Promise.all([
    api('GET', deploymentPath(owner, project, deployment), undefined, { signal }),
    api('GET', versionPath(ref, version), undefined, { signal }),
  ]);
  crumbsFor({ ...ref, version });
  const here = href('p', owner, project, 'd', deployment, 'v', version);
  const body = h('div', { id: 'tab-body' });
  replace(main,
    h('div', { class: 'page-head' }, h('h1', null, `Version ${version}`), h('span', { class: 'muted' }, `of ${deployment}`)),
    tabs([[here, 'Overview'], [`${here}/logs`, 'Logs'], [`${here}/metrics`, 'Metrics']], tab === 'overview' ? here : `${here}/${tab}`),
    body);
  if (tab === 'logs') renderLogs(ctx, ref, v, body);
  else if (tab === 'metrics') await renderMetrics(ctx, ref, v, body);
  else await renderOverview(ctx, ref, dep, v, body);
}

/**
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} dep
 * @param {any} first
 * @param {HTMLElement} body
 */
async function renderOverview({ signal, rerender }, ref, dep, first, body) {
  const card = h('div');
  const details = h('dl', { class: 'details' });
  const log = h('pre', { class: 'log', id: 'build-log' });
  let timer = 0;
  signal.addEventListener('abort', () => clearTimeout(timer));
  /** @param {any} v */
  const show = async (v) => {
    const { items } = await api('GET', `${versionPath(ref, v.name)}/build-log`, undefined, { signal });
    if (signal.aborted) return;
    keepingFocus(card, () => replace(card, versionCard(ref, dep, v, { link: false, changed: () => void refresh(), deleted: () => { location.hash = href('p', ref.owner, ref.project, 'd', ref.deployment); } })));
    const source = v.source?.path ? `directory ${v.source.path}` : v.source?.git ? `git ${v.source.git.url}${v.source.git.ref ? ` @ ${v.source.git.ref}` : ''}` : v.source?.upload ? `upload ${v.source.upload}` : '—';
    replace(details,
      h('dt', null, 'Source'), h('dd', null, source),
      h('dt', null, 'Environment'), h('dd', null, v.environment?.length ? v.environment.map((/** @type {string} */ k) => (v.secretEnvironment?.includes(k) ? `${k} (secret)` : k)).join(', ') : '—'),
      h('dt', null, 'Aliases'), h('dd', null, v.aliases?.length ? v.aliases.join(', ') : '—'),
      h('dt', null, 'Enabled'), h('dd', null, v.enabled === false ? 'no (stopped)' : 'yes'));
    replace(log, items.length ? items.map((/** @type {any} */ l) => `${new Date(l.at).toISOString()}  ${l.line}\n`).join('') : '(no build output)');
    if (v.status === 'building' || settling([v])) timer = window.setTimeout(() => void refresh(), REFRESH_MS);
  };
  const state = h('p', { class: 'form-error', id: 'version-state', role: 'status' });
  const refresh = async () => {
    try {
      await show(await api('GET', versionPath(ref, first.name), undefined, { signal }));
      state.textContent = '';
    } catch (err) {
      if (!signal.aborted && /** @type {any} */ (err).status === 404) rerender();
      else retryLater(signal, state, err, () => (timer = window.setTimeout(() => void refresh(), REFRESH_MS)));
    }
  };
  replace(body, state, card, h('section', { class: 'card' }, h('h2', null, 'Details'), details), h('section', { class: 'card' }, h('h2', null, 'Build log'), log));
  await show(first);
}

/**
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} v
 * @param {HTMLElement} body
 */
function renderLogs({ signal }, ref, v, body) {
  /** @type {any[]} */
  let endpoints = v.endpoints;
  if (endpoints.length === 0) {
    replace(body, h('p', { class: 'muted' }, 'This version has no endpoints (yet).'));
    return;
  }
  const endpoint = select({ id: 'log-endpoint' }, endpoints.map((e) => e.name));
  const replica = h('select', { id: 'log-replica' });
  let shownReplicas = '';
  /**
   * The endpoint's replicas as options. A chosen replica that is gone stays (marked), so its
   * lines stay shown; the list is drawn again only when it changed (not under an open select).
   * @param {boolean} keep keep the chosen replica (false: another endpoint was chosen)
   */
  const fillReplicas = (keep) => {
    const chosen = keep ? replica.value : '';
    /** @type {any[]} */
    const replicas = endpoints.find((x) => x.name === endpoint.value)?.replicas ?? [];
    const options = replicas.map((r) => [r.id, `${r.id} (${r.state})`]);
    if (chosen && !replicas.some((r) => r.id === chosen)) options.push([chosen, `${chosen} (gone)`]);
    const drawn = JSON.stringify([endpoint.value, options]);
    if (drawn === shownReplicas) return;
    shownReplicas = drawn;
    replace(replica, h('option', { value: '' }, 'all replicas'), options.map(([id, text]) => h('option', { value: id }, text)));
    replica.value = chosen;
  };
  fillReplicas(false);
  let replicasTimer = 0;
  signal.addEventListener('abort', () => clearTimeout(replicasTimer));
  // Replicas come and go (scaled, replaced after a crash) while the tab is open.
  const refreshReplicas = async () => {
    try {
      endpoints = (await api('GET', versionPath(ref, v.name), undefined, { signal })).endpoints;
      fillReplicas(true);
    } catch {
      // Tried again below; the log stream says what is wrong (a deleted version: 404).
    }
    if (!signal.aborted) replicasTimer = window.setTimeout(() => void refreshReplicas(), REPLICAS_MS);
  };
  replicasTimer = window.setTimeout(() => void refreshReplicas(), REPLICAS_MS);
  const contains = h('input', { id: 'log-contains', type: 'search', placeholder: 'text in the line', maxLength: 1000 });
  const tail = h('input', { id: 'log-tail', type: 'number', min: '0', max: '100000', value: '200', class: 'narrow-input' });
  const follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true });
  const state = h('span', { class: 'muted', id: 'log-state', role: 'status' });
  const lines = h('div', { class: 'log', id: 'log-lines', 'aria-live': 'off' });
  let count = 0;

  /** @type {AbortController | null} */
  let stream = null;
  signal.addEventListener('abort', () => stream?.abort());

  // Lines arrive one by one but are drawn in batches: measuring the box after each append
  // (to stay scrolled to the bottom) made 20,000 lines take over a minute.
  /** @type {any[]} lines not drawn yet */
  let pending = [];
  let flushTimer = 0;
  signal.addEventListener('abort', () => clearTimeout(flushTimer));
  const flush = () => {
    clearTimeout(flushTimer);
    flushTimer = 0;
    const fresh = pending.slice(-MAX_LINES);
    pending = [];
    const stick = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
    for (let drop = count + fresh.length - MAX_LINES; drop > 0 && lines.firstChild; drop--) {
      lines.firstChild.remove();
      count--;
    }
    lines.append(...fresh.map((l) => h('div', { class: `line ${l.stream === 'stderr' ? 'stderr' : ''}`, 'data-replica': l.replica ?? '' },
      h('span', { class: 'at' }, new Date(l.at).toISOString().slice(11, 23)), ' ',
      h('span', { class: 'replica' }, l.replica ?? ''), ' ',
      h('span', { class: 'text' }, l.line))));
    count += fresh.length;
    if (stick) lines.scrollTop = lines.scrollHeight;
  };

  // The time of the newest line and how many of each line had it: a stream followed again
  // from that time (`since`) repeats those, which are skipped once each.
  let lastAt = -1;
  /** @type {Map<string, number>} */
  let atLast = new Map();
  /** @type {Map<string, number>} */
  let repeats = new Map();

  /** @param {any} l */
  const add = (l) => {
    if (l.error) {
      state.textContent = `stream error: ${l.error.message ?? l.error.code}`;
      return;
    }
    const key = `${l.replica ?? ''}\n${l.stream}\n${l.line}`;
    if (l.at === lastAt && (repeats.get(key) ?? 0) > 0) {
      repeats.set(key, /** @type {number} */ (repeats.get(key)) - 1);
      return;
    }
    if (l.at > lastAt) {
      lastAt = l.at;
      atLast = new Map();
      repeats = new Map();
    }
    if (l.at === lastAt) atLast.set(key, (atLast.get(key) ?? 0) + 1);
    pending.push(l);
    if (pending.length >= 2 * MAX_LINES) pending = pending.slice(-MAX_LINES);
    if (!flushTimer) flushTimer = window.setTimeout(flush, 50);
  };

  const start = async () => {
    stream?.abort();
    const mine = new AbortController();
    stream = mine;
    signal.addEventListener('abort', () => mine.abort(), { once: true });
    replace(lines);
    count = 0;
    pending = [];
    lastAt = -1;
    atLast = new Map();
    repeats = new Map();
    const q = new URLSearchParams();
    // An emptied box is the default, not 0 (which Number("") is).
    const n = tail.value.trim() === '' ? 200 : Number(tail.value);
    q.set('tail', String(Number.isInteger(n) && n >= 0 ? Math.min(n, 100000) : 200));
    if (replica.value) q.set('replica', replica.value);
    if (contains.value !== '') q.set('contains', contains.value);
    const p = `${versionPath(ref, v.name)}/endpoints/${encodeURIComponent(endpoint.value)}/logs`;
    try {
      if (follow.checked) {
        q.set('follow', 'true');
        // A stream that ends or is cut (the controller restarting, the network) is followed
        // again from the newest line shown, every 2 s until that works or the operator leaves.
        for (;;) {
          state.textContent = 'following…';
          try {
            await followNdjson(`${p}?${q}`, mine.signal, add);
            if (mine.signal.aborted) return;
            state.textContent = 'stream ended: reconnecting…';
          } catch (err) {
            if (mine.signal.aborted || (err instanceof ApiError && err.status > 0 && err.status < 500)) throw err;
            state.textContent = `${errorText(err)}: reconnecting…`;
          }
          await new Promise((resolve) => {
            const timer = window.setTimeout(resolve, RECONNECT_MS);
            mine.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(undefined); }, { once: true });
          });
          if (mine.signal.aborted) return;
          if (lastAt >= 0) {
            q.set('since', String(lastAt));
            q.set('tail', String(MAX_LINES));
            repeats = new Map(atLast);
          }
        }
      } else {
        state.textContent = 'loading…';
        const { items } = await api('GET', `${p}?${q}`, undefined, { signal: mine.signal });
        items.forEach(add);
        flush();
        state.textContent = `${items.length} line(s)`;
      }
    } catch (err) {
      if (!mine.signal.aborted) state.textContent = errorText(err);
    }
  };
  let debounce = 0;
  signal.addEventListener('abort', () => clearTimeout(debounce));
  endpoint.addEventListener('change', () => { fillReplicas(false); void start(); });
  for (const c of [replica, tail, follow]) c.addEventListener('change', () => void start());
  contains.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = window.setTimeout(() => void start(), 300);
  });
  replace(body,
    h('section', { class: 'card' },
      h('div', { class: 'inline-form' },
        field('Endpoint', endpoint), field('Replica', replica), field('Contains', contains), field('Last lines', tail),
        h('label', { class: 'check' }, follow, ' follow'), state),
      lines));
  void start();
}
