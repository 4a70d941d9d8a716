// Route hashes and the breadcrumb bar.
import { h, replace } from './dom.js';

/**
 * Builds a route hash from segments (each percent-encoded).
 * @param {...string} segments
 */
export function href(...segments) {
  return '#/' + segments.map(encodeURIComponent).join('/');
}

/**
 * Sets the breadcrumbs: `[label, href]` pairs, the last one the current page.
 * @param {[string, string][]} items
 */
export function setCrumbs(items) {
  const el = /** @type {HTMLElement} */ (document.getElementById('crumbs'));
  replace(el, items.map(([label, link], i) => [
    h('span', { class: 'sep', 'aria-hidden': 'true' }, '/'),
    i === items.length - 1 ? h('span', { 'aria-current': 'page' }, label) : h('a', { href: link }, label),
  ]));
}

/**
 * Breadcrumbs of a project, deployment and version (as far as given), then `extra`.
 * @param {{owner?: string, project?: string, deployment?: string, version?: string}} p
 * @param {[string, string][]} [extra]
 */
export function crumbsFor(p, extra = []) {
  /** @type {[string, string][]} */
  const items = [];
  if (p.owner && p.project) items.push([`${p.owner}/${p.project}`, href('p', p.owner, p.project)]);
  if (p.owner && p.project && p.deployment) items.push([p.deployment, href('p', p.owner, p.project, 'd', p.deployment)]);
  if (p.owner && p.project && p.deployment && p.version) items.push([p.version, href('p', p.owner, p.project, 'd', p.deployment, 'v', p.version)]);
  setCrumbs([...items, ...extra]);
}
