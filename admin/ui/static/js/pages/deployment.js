// A deployment: its versions (stop/start/scale/delete), aliases (flip with confirmation,
// history, one-click rollback), basic-auth users and the test console, one tab each.
import { api, ApiError, deploymentPath, path } from '../api.js';
import { field, h, replace, select } from '../dom.js';
import { crumbsFor, href } from '../nav.js';
import { confirmDialog, copyable, flash, retryLater, run, table, tabs, targetText, time } from '../ui.js';
import { renderConsole } from './console.js';
import { keepingFocus, settling, versionCard } from './endpoints.js';

const REFRESH_MS = 2000;
const NAME = '^[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}$';

/**
 * A deployment's page (`#/p/o/p/d/name[/aliases|/users|/console]`): header (auth, delete) and the tab asked for.
 * @param {import('../main.js').PageContext} ctx
 */
export async function renderDeployment(ctx) {
  const { params, main, signal } = ctx;
  const { owner, project, deployment } = params;
  const tab = params.tab ?? 'versions';
  const ref = { owner, project, deployment };
  const base = deploymentPath(owner, project, deployment);
  const dep = await api('GET', base, undefined, { signal });
  const here = href('p', owner, project, 'd', deployment);
  crumbsFor(ref);

  const auth = select({ id: 'deployment-auth', 'aria-label': 'Authentication' }, [['none', 'none (public)'], ['basic', 'basic auth']], dep.auth);
  auth.addEventListener('change', async () => {
    const next = auth.value;
    const ok = await confirmDialog({
      title: `Change authentication of ${deployment}?`,
      message: next === 'basic' ? 'Every endpoint URL then asks for a user of this deployment (Users tab).' : 'Every endpoint URL becomes public.',
      confirm: 'Change',
    });
    if (!ok || !(await run(null, () => api('PATCH', base, { auth: next }), `Authentication: ${next}.`))) auth.value = dep.auth;
    else ctx.rerender(); // the tab below tells about the mode (users notice, console credentials)
  });
  const remove = h('button', {
    type: 'button',
    class: 'danger',
    onclick: async () => {
      if (!(await confirmDialog({ title: `Delete deployment ${deployment}?`, message: `Every version of ${deployment} stops, and its versions, aliases and users are removed for good.`, confirm: `Delete ${deployment}`, danger: true }))) return;
      if (await run(remove, () => api('DELETE', base), `Deployment ${deployment} deleted.`)) location.hash = href('p', owner, project);
    },
  }, 'Delete deployment');

  const body = h('div', { id: 'tab-body' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', null, deployment),
      h('span', { class: 'muted' }, `target ${dep.target}`),
      field('Auth', auth),
      h('span', { class: 'spacer' }),
      remove),
    h('p', null, copyable(dep.url, 'base URL')),
    tabs([[here, 'Versions'], [`${here}/aliases`, 'Aliases'], [`${here}/users`, 'Users'], [`${here}/console`, 'Test console']], tab === 'versions' ? here : `${here}/${tab}`),
    body);

  if (tab === 'versions') await versionsTab(ctx, ref, dep, body);
  else if (tab === 'aliases') await aliasesTab(ctx, ref, dep, body);
  else if (tab === 'users') await usersTab(ctx, ref, dep, body);
  else await renderConsole(ctx, ref, dep, body);
}

/**
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} dep
 * @param {HTMLElement} body
 */
async function versionsTab({ signal }, ref, dep, body) {
  const list = h('div', { id: 'versions' });
  const state = h('span', { class: 'form-error', id: 'versions-state', role: 'status' });
  let timer = 0;
  /** The cards shown, by version name, with the JSON each was drawn from. @type {Map<string, {json: string, card: HTMLElement}>} */
  let drawn = new Map();
  const reload = () => void load().catch((err) => retryLater(signal, state, err, () => (timer = window.setTimeout(reload, REFRESH_MS))));
  const load = async () => {
    clearTimeout(timer);
    const { items } = await api('GET', `${deploymentPath(ref.owner, ref.project, ref.deployment)}/versions`, undefined, { signal });
    if (signal.aborted) return;
    state.textContent = '';
    /** @type {any[]} */
    const versions = items.slice().reverse();
    // Only the cards whose version changed are drawn again: hundreds of versions refreshed
    // every 2 s while one builds stay cheap, and what the operator works in stays put.
    const before = drawn;
    drawn = new Map(versions.map((v) => {
      const json = JSON.stringify(v);
      const old = before.get(v.name);
      return [v.name, old?.json === json ? old : { json, card: versionCard(ref, dep, v, { changed: reload, deleted: reload }) }];
    }));
    const sameOrder = before.size === drawn.size && [...before.keys()].every((name, i) => name === versions[i].name);
    keepingFocus(list, () => {
      if (sameOrder && before.size > 0) {
        for (const [name, { card }] of drawn) {
          const old = before.get(name)?.card;
          if (old !== card) old?.replaceWith(card);
        }
      } else replace(list, versions.length === 0
        ? h('p', { class: 'muted', id: 'no-versions' }, 'No versions yet: deploy one with `portico deploy` or POST …/versions.')
        : [...drawn.values()].map((d) => d.card));
    });
    if (settling(versions)) timer = window.setTimeout(reload, REFRESH_MS);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  const refresh = h('button', { type: 'button', class: 'small', onclick: () => void run(refresh, load) }, 'Refresh');
  replace(body, h('div', { class: 'toolbar' }, h('h2', null, 'Versions'), h('span', { class: 'muted' }, 'newest first'), state, h('span', { class: 'spacer' }), refresh), list);
  await load();
}

/**
 * Newest first (the API's order; sorting by time keeps that whatever the store does).
 * @param {any[]} items
 */
function newestFirst(items) {
  return items.map((item, i) => ({ item, i })).sort((a, b) => (Date.parse(b.item.at) - Date.parse(a.item.at)) || a.i - b.i).map((x) => x.item);
}

/**
 * @param {any} a
 * @param {any} b
 */
function sameTarget(a, b) {
  return targetText(a) === targetText(b);
}

/**
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} dep
 * @param {HTMLElement} body
 */
async function aliasesTab({ signal }, ref, dep, body) {
  const base = deploymentPath(ref.owner, ref.project, ref.deployment);
  /** @type {string | null} */
  let shown = null;

  const load = async () => {
    const [aliases, versions] = await Promise.all([
      api('GET', `${base}/aliases`, undefined, { signal }),
      api('GET', `${base}/versions`, undefined, { signal }),
    ]);
    if (signal.aborted) return;
    /** @type {any[]} */
    const items = aliases.items;
    /** @type {any[]} */
    const vs = versions.items.slice().reverse();
    if (shown === null || !items.some((a) => a.name === shown)) shown = items[0]?.name ?? null;
    /** @type {[string, string][]} */
    const options = vs.map((v) => [v.name, v.status === 'ready' ? v.name : `${v.name} (${v.status})`]);

    const rows = items.map((a) => {
      const to = select({ 'aria-label': `New version of ${a.name}`, 'data-flip-select': a.name }, options, a.version ?? vs[0]?.name);
      const flip = h('button', {
        type: 'button',
        class: 'small primary',
        'data-flip': a.name,
        onclick: async () => {
          const from = targetText(a);
          if (to.value === a.version) {
            flash(`${a.name} already points at ${to.value}.`, 'info');
            return;
          }
          const ok = await confirmDialog({
            title: `Flip alias ${a.name}?`,
            message: ['Point ', h('strong', null, a.name), ' from ', h('strong', { 'data-from': '' }, from), ' to ', h('strong', { 'data-to': '' }, to.value), '? Requests sent after the change reach only the new version.'],
            confirm: `Flip to ${to.value}`,
          });
          if (!ok) return;
          await setAlias(flip, a.name, { version: to.value }, `${a.name}: ${from} → ${to.value}.`);
        },
      }, 'Flip');
      const del = h('button', {
        type: 'button',
        class: 'small danger',
        onclick: async () => {
          if (!(await confirmDialog({ title: `Delete alias ${a.name}?`, message: `URLs through ${a.name} (now ${targetText(a)}) answer 404 afterwards.`, confirm: 'Delete', danger: true }))) return;
          if (await run(del, () => api('DELETE', `${base}/aliases/${path(a.name)}`), `Alias ${a.name} deleted.`)) await load();
        },
      }, 'Delete');
      const show = h('button', { type: 'button', class: 'small', 'aria-pressed': String(a.name === shown), onclick: () => { shown = a.name; void load(); } }, 'History');
      return [h('strong', null, a.name), h('span', { 'data-alias-target': a.name }, targetText(a)), copyable(`${dep.url}/${encodeURIComponent(a.name)}`),
        h('span', { class: 'nowrap' }, to, ' ', flip), h('span', { class: 'nowrap' }, show, ' ', del)];
    });

    const newName = h('input', { id: 'new-alias-name', required: true, pattern: NAME, placeholder: 'production' });
    const newVersion = select({ id: 'new-alias-version' }, options, vs.find((v) => v.status === 'ready')?.name);
    const create = h('button', { type: 'submit', class: 'primary' }, 'Create alias');

    const history = h('section', { class: 'card', id: 'alias-history' });
    replace(body,
      h('section', { class: 'card' },
        h('h2', null, 'Aliases'),
        items.length === 0 ? h('p', { class: 'muted' }, 'No aliases yet.') : table(['Alias', 'Points at', 'URL', 'Flip to', ''], rows, { id: 'aliases' })),
      history,
      h('section', { class: 'card' },
        h('h2', null, 'New alias'),
        h('form', {
          class: 'inline-form',
          onsubmit: async (/** @type {SubmitEvent} */ e) => {
            e.preventDefault();
            await setAlias(create, newName.value.trim(), { version: newVersion.value }, `Alias ${newName.value.trim()} → ${newVersion.value}.`);
          },
        }, field('Name', newName), field('Version', newVersion), create)));
    if (shown !== null) await renderHistory(history, shown, items.find((a) => a.name === shown));
  };

  /**
   * @param {HTMLButtonElement | null} button
   * @param {string} alias
   * @param {object} target
   * @param {string} done
   */
  const setAlias = async (button, alias, target, done) => {
    /** @type {any} */
    let result;
    /** @type {ApiError | null} */
    let notReady = null;
    let ok = await run(button, async () => {
      try {
        result = await api('PUT', `${base}/aliases/${path(alias)}`, target);
      } catch (err) {
        // A version that is not ready (still starting, stopped, failed): the API takes it only
        // with "force", which the operator is asked for here rather than told to send.
        if (!(err instanceof ApiError && err.code === 'VERSION_NOT_READY')) throw err;
        notReady = err;
      }
    });
    if (ok && notReady !== null) {
      ok = await confirmDialog({
        title: `Point ${alias} at a version that is not ready?`,
        message: `${/** @type {ApiError} */ (notReady).message.replace(/;.*$/, '.')} Until it is ready, requests through ${alias} fail: 503 NO_READY_REPLICA, or 404 while it has not been built (a weighted alias sends them to its other versions).`,
        confirm: 'Point it anyway',
        danger: true,
      }) && await run(button, async () => {
        result = await api('PUT', `${base}/aliases/${path(alias)}`, { ...target, force: true });
      });
    }
    if (!ok) return;
    const missing = /** @type {string[]} */ (result?.missing ?? []);
    flash(missing.length ? `${done} Gateways that did not acknowledge in time: ${missing.join(', ')}.` : done, missing.length ? 'error' : 'ok');
    shown = alias;
    await load();
  };

  /**
   * @param {HTMLElement} el
   * @param {string} alias
   * @param {any} current
   */
  const renderHistory = async (el, alias, current) => {
    const { items } = await api('GET', `${base}/aliases/${path(alias)}/history`, undefined, { signal });
    const hist = newestFirst(items);
    const last = hist[0];
    const previous = last && last.from && current && sameTarget(last.to, current) ? last.from : null;
    const rollback = previous
      ? h('button', {
        type: 'button',
        class: 'primary',
        id: 'rollback',
        onclick: () => void setAlias(rollback, alias, previous, `${alias} rolled back: ${targetText(current)} → ${targetText(previous)}.`),
      }, `Roll back to ${targetText(previous)}`)
      : null;
    replace(el,
      h('div', { class: 'toolbar' }, h('h2', null, `History of ${alias}`), h('span', { class: 'spacer' }), rollback),
      hist.length === 0 ? h('p', { class: 'muted' }, 'No changes recorded.') :
        table(['When', 'Who', 'From', 'To'], hist.map((i) => [time(i.at), i.by, targetText(i.from), targetText(i.to)]), { id: 'history' }));
  };

  await load();
}

/**
 * @param {import('../main.js').PageContext} ctx
 * @param {{owner: string, project: string, deployment: string}} ref
 * @param {any} dep
 * @param {HTMLElement} body
 */
async function usersTab({ signal }, ref, dep, body) {
  const base = `${deploymentPath(ref.owner, ref.project, ref.deployment)}/users`;
  const load = async () => {
    const { items } = await api('GET', base, undefined, { signal });
    if (signal.aborted) return;
    const name = h('input', { id: 'new-user-name', required: true, pattern: '^[A-Za-z0-9][A-Za-z0-9._@+\\-]{0,99}$', autocomplete: 'off', placeholder: 'alice' });
    const password = h('input', { id: 'new-user-password', type: 'password', required: true, autocomplete: 'new-password' });
    const add = h('button', { type: 'submit', class: 'primary' }, 'Add or change');
    replace(body,
      dep.auth === 'basic' ? null : h('p', { class: 'notice' }, 'This deployment is public (auth none): users only matter once Auth is set to basic.'),
      h('section', { class: 'card' },
        h('h2', null, 'Basic-auth users'),
        items.length === 0 ? h('p', { class: 'muted' }, 'No users.') :
          table(['User', ''], items.map((/** @type {any} */ u) => {
            const del = h('button', {
              type: 'button',
              class: 'small danger',
              'data-delete-user': u.name,
              onclick: async () => {
                if (!(await confirmDialog({ title: `Delete user ${u.name}?`, message: `${u.name} can no longer call ${ref.deployment}'s endpoints.`, confirm: 'Delete', danger: true }))) return;
                if (await run(del, () => api('DELETE', `${base}/${path(u.name)}`), `User ${u.name} deleted.`)) await load();
              },
            }, 'Delete');
            return [h('span', { 'data-user': u.name }, u.name), del];
          }), { id: 'users' })),
      h('section', { class: 'card' },
        h('h2', null, 'Add a user (or set a new password)'),
        h('form', {
          class: 'inline-form',
          onsubmit: async (/** @type {SubmitEvent} */ e) => {
            e.preventDefault();
            const user = name.value.trim();
            if (await run(add, () => api('PUT', `${base}/${path(user)}`, { password: password.value }), `User ${user} saved.`)) await load();
          },
        }, field('User', name), field('Password', password), add)));
  };
  await load();
}

