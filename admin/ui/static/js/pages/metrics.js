// Metrics of a version's endpoint (the `vh_metadata` lines its replicas print): each key as a
// time series and as a histogram, optionally overlaid with another version for comparison.
import { api, ApiError, deploymentPath, versionPath } from '../api.js';
import { field, h, replace, select } from '../dom.js';
import { categoriesChart, histogramChart, seriesChart } from '../charts.js';
import { errorText } from '../ui.js';

/** Keys whose series and histograms are read at once: one after another, 50 keys took 50 round trips. */
const KEYS_AT_ONCE = 3;

/**
 * `fn` of each item, at most `limit` at a time; the results in the items' order. After a
 * failure no other item is started, and the first failure is thrown.
 * @template T, R
 * @param {readonly T[]} items
 * @param {number} limit
 * @param {(item: T) => Promise<R>} fn
 * @returns {Promise<R[]>}
 */
async function mapBounded(items, limit, fn) {
  /** @type {R[]} */
  const results = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await fn(/** @type {T} */ (items[i]));
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The metrics tab of a version, rendered into `body`: per key a series chart and a histogram.
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} v
 * @param {HTMLElement} body
 */
export async function renderMetrics({ signal }, ref, v, body) {
  /** @type {any[]} */
  const endpoints = v.endpoints;
  if (endpoints.length === 0) {
    replace(body, h('p', { class: 'muted' }, 'This version has no endpoints (yet).'));
    return;
  }
  const { items } = await api('GET', `${deploymentPath(ref.owner, ref.project, ref.deployment)}/versions`, undefined, { signal });
  /** @type {string[]} */
  const others = items.map((/** @type {any} */ x) => x.name).filter((/** @type {string} */ n) => n !== v.name).reverse();

  const endpoint = select({ id: 'metrics-endpoint' }, endpoints.map((e) => e.name));
  const compare = select({ id: 'metrics-compare' }, [['', 'no comparison'], ...others.map((n) => /** @type {[string, string]} */ ([n, n]))], '');
  const bins = h('input', { id: 'metrics-bins', type: 'number', min: '1', max: '200', placeholder: 'auto', class: 'narrow-input' });
  const refresh = h('button', { type: 'button', id: 'metrics-refresh' }, 'Refresh');
  const state = h('span', { class: 'muted', id: 'metrics-state', role: 'status' });
  const charts = h('div', { id: 'metrics-charts' });

  /** @type {(() => void)[]} */
  let destroyers = [];
  const clear = () => {
    destroyers.forEach((d) => d());
    destroyers = [];
  };
  signal.addEventListener('abort', clear);

  /**
   * @param {string} version
   * @param {URLSearchParams} [q]
   */
  const metrics = (version, q) => api('GET', `${versionPath(ref, version)}/endpoints/${encodeURIComponent(endpoint.value)}/metrics${q ? `?${q}` : ''}`, undefined, { signal });

  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    state.textContent = 'loading…';
    refresh.disabled = true;
    try {
      const primary = await metrics(v.name);
      /** @type {{name: string, kind: string, count: number}[]} */
      const keys = primary.keys ?? [];
      const other = compare.value;
      /** @type {Set<string> | null} keys the compared version has */
      let otherKeys = null;
      let note = '';
      if (other) {
        try {
          otherKeys = new Set(((await metrics(other)).keys ?? []).map((/** @type {any} */ k) => k.name));
        } catch (err) {
          note = ` (${other}: ${errorText(err)})`;
        }
      }
      const loaded = await mapBounded(keys, KEYS_AT_ONCE, async (key) => {
        const versions = [v.name, ...(otherKeys?.has(key.name) ? [other] : [])];
        const hq = new URLSearchParams({ key: key.name, mode: 'histogram' });
        if (bins.value) hq.set('bins', bins.value);
        const [series, hist] = await Promise.all([
          Promise.all(versions.map((n) => metrics(n, new URLSearchParams({ key: key.name, mode: 'series' })))),
          Promise.all(versions.map((n) => metrics(n, hq))),
        ]);
        return {
          key,
          sets: versions.map((n, i) => ({ version: n, points: series[i].points ?? [] })),
          hist: versions.map((n, i) => ({ version: n, bins: hist[i].bins, categories: hist[i].categories })),
        };
      });
      if (mine !== generation || signal.aborted) return;
      clear();
      replace(charts, loaded.length === 0 ? h('p', { class: 'muted', id: 'no-metrics' }, `No metrics yet: replicas of ${endpoint.value} print none, or no request reached them.`) : null);
      for (const { key, sets, hist } of loaded) {
        const seriesEl = h('div', { class: 'chart', 'data-key': key.name, 'data-mode': 'series' });
        const histEl = h('div', { class: 'chart', 'data-key': key.name, 'data-mode': 'histogram' });
        charts.appendChild(h('section', { class: 'card metric', 'data-metric': key.name },
          h('div', { class: 'toolbar' },
            h('h3', null, key.name),
            h('span', { class: 'muted' }, `${key.kind}, ${key.count} value(s)`)),
          h('div', { class: 'chart-pair' },
            h('figure', null, h('figcaption', null, 'Over time'), seriesEl),
            h('figure', null, h('figcaption', null, key.kind === 'string' ? 'Categories' : 'Histogram'), histEl))));
        destroyers.push(seriesChart(seriesEl, `series:${key.name}`, key.name, sets));
        if (hist.every((x) => Array.isArray(x.categories))) {
          destroyers.push(categoriesChart(histEl, `histogram:${key.name}`, key.name, hist.map((x) => ({ version: x.version, categories: x.categories }))));
        } else {
          destroyers.push(histogramChart(histEl, `histogram:${key.name}`, key.name, hist.map((x) => ({ version: x.version, bins: x.bins ?? [] }))));
        }
      }
      state.textContent = `${keys.length} key(s), updated ${new Date().toLocaleTimeString()}${note}`;
    } catch (err) {
      if (signal.aborted || mine !== generation) return;
      clear();
      replace(charts, h('p', { class: 'form-error', id: 'metrics-error' },
        err instanceof ApiError && err.status === 404 ? `Metrics are not available here: ${err.message}` : errorText(err)));
      state.textContent = '';
    } finally {
      if (mine === generation) refresh.disabled = false;
    }
  };

  for (const c of [endpoint, compare, bins]) c.addEventListener('change', () => void load());
  refresh.addEventListener('click', () => void load());
  replace(body,
    h('section', { class: 'card' },
      h('div', { class: 'inline-form' }, field('Endpoint', endpoint), field('Compare with', compare), field('Histogram bins', bins), refresh, state)),
    charts);
  await load();
}
