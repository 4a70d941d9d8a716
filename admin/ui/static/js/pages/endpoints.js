// A version's card: status, stop/start/delete, and each endpoint with its URLs (version and
// alias, with copy buttons), replicas and their state, and scaling. Shared by the deployment's
// versions list and the version page.
import { api, versionPath } from '../api.js';
import { h } from '../dom.js';
import { href } from '../nav.js';
import { badge, confirmDialog, copyable, flash, run, table, time } from '../ui.js';

/**
 * @typedef {{owner: string, project: string, deployment: string}} DeploymentRef
 * @typedef {{name: string, url: string}} DeploymentInfo
 */

/** Scale inputs typed but not yet applied survive a refresh of the list. @type {Map<string, string>} */
const pendingScale = new Map();

/**
 * The URL of an endpoint through an alias: the version segment replaced by the alias.
 * @param {DeploymentInfo} dep
 * @param {string} alias
 * @param {string} endpoint
 */
export function aliasUrl(dep, alias, endpoint) {
  return `${dep.url}/${encodeURIComponent(alias)}/${encodeURIComponent(endpoint)}`;
}

/**
 * One endpoint of a version: status, URLs, replicas, scale control.
 * @param {DeploymentRef} ref
 * @param {DeploymentInfo} dep
 * @param {any} version
 * @param {any} e
 * @param {() => void} changed
 */
export function endpointBlock(ref, dep, version, e, changed) {
  const key = `${version.name}/${e.name}`;
  const count = h('input', {
    type: 'number', min: '0', max: '100', step: '1', class: 'narrow-input',
    value: pendingScale.get(key) ?? String(e.replicaCount ?? e.replicas.length),
    'aria-label': `Replicas of ${e.name}`,
    'data-scale': e.name,
    oninput: () => pendingScale.set(key, count.value),
  });
  const scale = h('button', {
    type: 'button',
    class: 'small',
    onclick: async () => {
      // An emptied box reads as "" (Number("") is 0): only digits count, never an endpoint scaled to 0 by accident.
      const replicas = /^\d{1,3}$/.test(count.value.trim()) ? Number(count.value.trim()) : NaN;
      if (!(replicas <= 100)) {
        flash(`Replicas of ${e.name}: a whole number from 0 to 100.`, 'error');
        count.focus();
        return;
      }
      const ok = await run(scale, () => api('PATCH', versionPath(ref, version.name), { endpoints: { [e.name]: { replicas } } }), `${e.name} of ${version.name}: ${replicas} replica(s) wanted.`);
      if (ok) {
        pendingScale.delete(key);
        changed();
      }
    },
  }, 'Scale');
  const aliases = /** @type {string[]} */ (version.aliases ?? []);
  return h('div', { class: 'endpoint', 'data-endpoint': e.name },
    h('div', { class: 'endpoint-head' },
      h('h4', null, e.name), badge(e.status),
      e.enabled === false ? h('span', { class: 'muted' }, 'disabled') : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'scale' }, 'Replicas ', count, scale)),
    e.error ? h('p', { class: 'form-error' }, e.error) : null,
    h('div', { class: 'urls' },
      copyable(e.url, 'version URL'),
      aliases.map((a) => copyable(aliasUrl(dep, a, e.name), `${a} URL`))),
    e.replicas.length === 0
      ? h('p', { class: 'muted' }, 'No replicas.')
      : table(['Replica', 'State', 'Address', 'Restarts', ''], e.replicas.map((/** @type {any} */ r) => [
        h('code', null, r.id), badge(r.state), r.address ?? '—', String(r.restarts ?? 0), r.reason ?? '',
      ]), { class: 'replicas compact' }));
}

/**
 * A version card with its endpoints and actions.
 * @param {DeploymentRef} ref
 * @param {DeploymentInfo} dep
 * @param {any} v
 * @param {{changed: () => void, deleted: () => void, link?: boolean}} on
 */
export function versionCard(ref, dep, v, on) {
  const toggle = h('button', {
    type: 'button',
    class: 'small',
    onclick: async () => {
      const enabled = v.enabled === false;
      if (!enabled && !(await confirmDialog({ title: `Stop ${v.name}?`, message: `Every replica of version ${v.name} stops; its URLs answer 503 until it is started again.`, confirm: 'Stop', danger: true }))) return;
      if (await run(toggle, () => api('PATCH', versionPath(ref, v.name), { enabled }), `${v.name} ${enabled ? 'starting' : 'stopping'}.`)) on.changed();
    },
  }, v.enabled === false ? 'Start' : 'Stop');
  const del = h('button', {
    type: 'button',
    class: 'small danger',
    onclick: async () => {
      const aliases = /** @type {string[]} */ (v.aliases ?? []);
      const message = aliases.length
        ? `Aliases ${aliases.join(', ')} point at ${v.name}: the API refuses to delete it until they point elsewhere.`
        : `Version ${v.name} and its replicas are removed for good.`;
      if (!(await confirmDialog({ title: `Delete version ${v.name}?`, message, confirm: 'Delete', danger: true }))) return;
      if (await run(del, () => api('DELETE', versionPath(ref, v.name)), `Version ${v.name} deleted.`)) on.deleted();
    },
  }, 'Delete');
  const versionHref = href('p', ref.owner, ref.project, 'd', ref.deployment, 'v', v.name);
  return h('article', { class: 'card version', 'data-version': v.name },
    h('div', { class: 'version-head' },
      h('h3', null, on.link === false ? v.name : h('a', { href: versionHref }, v.name)),
      badge(v.status),
      (v.aliases ?? []).map((/** @type {string} */ a) => h('span', { class: 'alias-tag' }, a)),
      h('span', { class: 'muted' }, 'created ', time(v.createdAt), v.createdBy ? ` by ${v.createdBy}` : ''),
      h('span', { class: 'spacer' }),
      on.link === false ? null : [h('a', { href: versionHref + '/logs', class: 'button small' }, 'Logs'), h('a', { href: versionHref + '/metrics', class: 'button small' }, 'Metrics')],
      toggle, del),
    v.reason ? h('p', { class: 'form-error' }, v.reason) : null,
    v.endpoints.length === 0 && v.status === 'building' ? h('p', { class: 'muted' }, 'Building…') : null,
    v.endpoints.map((/** @type {any} */ e) => endpointBlock(ref, dep, v, e, on.changed)));
}

/**
 * Runs `update` (which draws version cards in `el` anew: each refresh does, while something
 * settles); the replica box being typed in, if redrawn, gets the focus back, so the keys typed
 * next still land in it.
 * @param {HTMLElement} el
 * @param {() => void} update
 */
export function keepingFocus(el, update) {
  const typing = document.activeElement instanceof HTMLInputElement && el.contains(document.activeElement) ? document.activeElement : null;
  const version = typing?.closest('[data-version]')?.getAttribute('data-version');
  const scale = typing?.getAttribute('data-scale');
  update();
  if (typeof version !== 'string' || typeof scale !== 'string' || typing?.isConnected) return;
  const again = [...el.querySelectorAll('[data-version]')].find((c) => c.getAttribute('data-version') === version)
    ?.querySelector(`[data-scale="${CSS.escape(scale)}"]`);
  if (again instanceof HTMLInputElement) again.focus();
}

/**
 * True while something about the versions is still moving (worth refreshing soon).
 * @param {any[]} versions
 */
export function settling(versions) {
  return versions.some((v) => v.status === 'building' || v.status === 'starting' ||
    v.endpoints.some((/** @type {any} */ e) => e.status === 'starting' || e.replicas.some((/** @type {any} */ r) => r.state === 'starting' || r.state === 'stopping')));
}
