// Metric charts drawn with uPlot: a key as a time series and as a histogram (number bins or
// string categories as bars), one version or two overlaid. The exact arrays handed to uPlot are
// kept in `window.__porticoCharts[id]` and in the container's `data-points` attribute, so what
// is plotted can be checked.
import uPlot from '/vendor/uplot/uPlot.esm.js';

/** Colours of the first (this version) and second (compared) data sets. */
export const COLORS = ['#2563eb', '#ea580c'];
const FILLS = ['rgba(37, 99, 235, 0.55)', 'rgba(234, 88, 12, 0.45)'];
const HEIGHT = 220;

/**
 * @typedef {{mode: 'series' | 'histogram' | 'categories', key: string, versions: string[], data: unknown[][], labels?: string[]}} PlottedChart
 */

/** @type {Record<string, PlottedChart>} */
const registry = (/** @type {any} */ (window).__porticoCharts ??= {});

/**
 * Draws into `el`, records what was plotted, and returns a function that removes the chart.
 * @param {HTMLElement} el
 * @param {string} id
 * @param {PlottedChart} plotted
 * @param {any} opts uPlot options without width/height
 */
function draw(el, id, plotted, opts) {
  el.replaceChildren();
  registry[id] = plotted;
  el.dataset.chart = id;
  el.dataset.points = JSON.stringify(plotted.data);
  const width = () => Math.max(el.clientWidth, 320);
  const u = new uPlot({ ...opts, width: width(), height: HEIGHT }, /** @type {any} */ (plotted.data), el);
  const ro = new ResizeObserver(() => u.setSize({ width: width(), height: HEIGHT }));
  ro.observe(el);
  return () => {
    ro.disconnect();
    u.destroy();
    if (registry[id] === plotted) delete registry[id];
  };
}

/**
 * A time series per version: x is epoch milliseconds, one y series per version (null where the
 * other version has a point). With one version, y is the values in the API's order.
 * String values are plotted as category indexes (axis labelled with the categories).
 * @param {HTMLElement} el
 * @param {string} id
 * @param {string} key
 * @param {{version: string, points: [number, number | string][]}[]} sets
 */
export function seriesChart(el, id, key, sets) {
  const rows = sets.flatMap((s, si) => s.points.map((p, i) => ({ t: p[0], v: p[1], si, i })));
  // Stable by time; with one version the API's order (already by time) is kept exactly.
  if (sets.length > 1) rows.sort((a, b) => a.t - b.t || a.si - b.si || a.i - b.i);
  const strings = rows.some((r) => typeof r.v === 'string');
  /** @type {string[]} */
  const labels = strings ? [...new Set(rows.map((r) => String(r.v)))].sort() : [];
  const value = (/** @type {number | string} */ v) => (strings ? labels.indexOf(String(v)) : /** @type {number} */ (v));
  const x = rows.map((r) => r.t);
  const ys = sets.map((_, si) => rows.map((r) => (r.si === si ? value(r.v) : null)));
  const data = [x, ...ys];
  return draw(el, id, { mode: 'series', key, versions: sets.map((s) => s.version), data, ...(strings ? { labels } : {}) }, {
    ms: 1,
    scales: { x: { time: true }, y: strings ? { range: [-0.5, Math.max(labels.length - 0.5, 0.5)] } : {} },
    axes: [
      {},
      strings
        ? { splits: () => labels.map((_, i) => i), values: (/** @type {any} */ _u, /** @type {number[]} */ splits) => splits.map((i) => labels[i] ?? ''), size: 80 }
        : { size: 50 },
    ],
    series: [{}, ...sets.map((s, si) => ({
      label: s.version,
      stroke: COLORS[si],
      width: 1.5,
      spanGaps: true,
      points: { show: true, size: 5 },
      ...(strings ? { paths: () => null } : {}),
    }))],
    legend: { show: true },
  });
}

/**
 * Number bins as bars from `lo` to `hi`, one bar set per version over a shared x axis.
 * A version's missing bins are `undefined` (not plotted, and not used for bar widths).
 * @param {HTMLElement} el
 * @param {string} id
 * @param {string} key
 * @param {{version: string, bins: {lo: number, hi: number, count: number}[]}[]} sets
 */
export function histogramChart(el, id, key, sets) {
  const x = [...new Set(sets.flatMap((s) => s.bins.map((b) => b.lo)))].sort((a, b) => a - b);
  const ys = sets.map((s) => {
    const byLo = new Map(s.bins.map((b) => [b.lo, b.count]));
    return x.map((lo) => byLo.get(lo));
  });
  const widths = sets.map((s) => {
    const b = s.bins[0];
    return b ? b.hi - b.lo : 1;
  });
  const all = sets.flatMap((s) => s.bins);
  const lo = all.length ? Math.min(...all.map((b) => b.lo)) : 0;
  let hi = all.length ? Math.max(...all.map((b) => b.hi)) : 1;
  if (hi <= lo) hi = lo + 1;
  const data = [x, ...ys];
  return draw(el, id, { mode: 'histogram', key, versions: sets.map((s) => s.version), data }, {
    scales: { x: { time: false, range: [lo, hi] }, y: { range: (/** @type {any} */ _u, /** @type {number} */ _min, /** @type {number} */ max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{}, { size: 50 }],
    series: [{}, ...sets.map((s, si) => ({
      label: s.version,
      stroke: COLORS[si],
      fill: FILLS[si],
      width: 1,
      points: { show: false },
      paths: uPlot.paths.bars?.({
        disp: {
          x0: { unit: 1, values: (/** @type {any} */ u) => u.data[0] },
          size: { unit: 1, values: () => [widths[si]] },
        },
      }),
    }))],
    legend: { show: true },
  });
}

/**
 * String categories as bars (one bar per version side by side), most frequent first.
 * @param {HTMLElement} el
 * @param {string} id
 * @param {string} key
 * @param {{version: string, categories: {value: string, count: number}[]}[]} sets
 */
export function categoriesChart(el, id, key, sets) {
  /** @type {Map<string, number>} */
  const totals = new Map();
  for (const s of sets) for (const c of s.categories) totals.set(c.value, (totals.get(c.value) ?? 0) + c.count);
  const labels = [...totals.keys()].sort((a, b) => (totals.get(b) ?? 0) - (totals.get(a) ?? 0) || (a < b ? -1 : a > b ? 1 : 0));
  const x = labels.map((_, i) => i);
  const ys = sets.map((s) => {
    const byValue = new Map(s.categories.map((c) => [c.value, c.count]));
    return labels.map((l) => byValue.get(l) ?? 0);
  });
  const data = [x, ...ys];
  const two = sets.length > 1;
  return draw(el, id, { mode: 'categories', key, versions: sets.map((s) => s.version), data, labels }, {
    scales: { x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] }, y: { range: (/** @type {any} */ _u, /** @type {number} */ _min, /** @type {number} */ max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { splits: () => x, values: (/** @type {any} */ _u, /** @type {number[]} */ splits) => splits.map((i) => labels[i] ?? '') },
      { size: 50 },
    ],
    series: [{}, ...sets.map((s, si) => ({
      label: s.version,
      stroke: COLORS[si],
      fill: FILLS[si],
      width: 1,
      points: { show: false },
      paths: uPlot.paths.bars?.({ size: [two ? 0.4 : 0.6, 80], align: two ? (si === 0 ? -1 : 1) : 0 }),
    }))],
    legend: { show: true },
  });
}
