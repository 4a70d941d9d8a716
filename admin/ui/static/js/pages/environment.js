// The project environment: variables and secrets every version inherits. A secret's value is
// never shown or sent back: left untouched, it goes out as "********", which the API reads as
// "keep the stored value".
import { api, projectPath } from '../api.js';
import { h, replace } from '../dom.js';
import { crumbsFor, href } from '../nav.js';
import { confirmDialog, flash, run } from '../ui.js';

/** What the API shows for (and accepts as "unchanged") a secret value. */
export const MASK = '********';
// As the API's: not __proto__, which an object takes as its prototype, not a variable.
const NAME = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,199}$/;

/**
 * @typedef {{name: string, value: string, secret: boolean, stored: boolean}} Row
 * `stored`: a secret already stored (its value is unknown here; empty `value` keeps it)
 */

/**
 * The PUT body for these rows, or the problems found.
 * @param {Row[]} rows
 * @returns {{variables: Record<string, {value: string, secret: boolean}>} | {problems: string[]}}
 */
export function environmentBody(rows) {
  /** @type {string[]} */
  const problems = [];
  /** @type {Record<string, {value: string, secret: boolean}>} */
  const variables = {};
  for (const r of rows) {
    const name = r.name.trim();
    if (!NAME.test(name)) problems.push(`${JSON.stringify(name)} is not a variable name (letters, digits and _, not starting with a digit, and not __proto__)`);
    else if (Object.hasOwn(variables, name)) problems.push(`${name} is listed twice`);
    else if (r.stored && r.value === '') variables[name] = { value: MASK, secret: true };
    else if (r.secret && r.value === MASK) problems.push(`${name}: "${MASK}" cannot be a new secret value`);
    else variables[name] = { value: r.value, secret: r.secret };
  }
  return problems.length ? { problems } : { variables };
}

/** How many lines a value's box shows: its own, up to 8 (it scrolls beyond). @param {string} text */
function visibleLines(text) {
  return Math.min(8, text.split('\n').length);
}

/** The project environment editor (`#/p/owner/project/environment`). @param {import('../main.js').PageContext} ctx */
export async function renderEnvironment({ params, main, signal }) {
  const { owner, project } = params;
  const base = `${projectPath(owner, project)}/environment`;
  crumbsFor({ owner, project }, [['Environment', href('p', owner, project, 'environment')]]);
  const env = await api('GET', base, undefined, { signal });

  /** @type {Row[]} */
  let rows = [];
  /** @param {any} e */
  const fromApi = (e) => Object.entries(e.variables).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, v]) =>
    /** @type {Row} */ ({ name, value: /** @type {any} */ (v).secret ? '' : /** @type {any} */ (v).value, secret: /** @type {any} */ (v).secret, stored: /** @type {any} */ (v).secret }));
  rows = fromApi(env);

  const tbody = h('tbody');
  const problems = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const draw = () => replace(tbody, rows.map((r, i) => {
    const name = h('input', { value: r.name, readOnly: r.stored, 'aria-label': 'Name', 'data-env-name': r.name, oninput: () => (r.name = name.value) });
    // A textarea, not an input: an input drops the line breaks of a value (a PEM key pasted as
    // a secret, a multi-line variable set through the API, saved again with another change).
    // A secret's characters are drawn as discs (style.css, -webkit-text-security).
    const value = h('textarea', {
      class: r.secret ? 'secret' : null,
      rows: String(visibleLines(r.value)),
      value: r.value,
      autocomplete: 'off',
      spellcheck: 'false',
      'aria-label': `Value of ${r.name || 'new variable'}`,
      'data-env-value': r.name,
      placeholder: r.stored ? 'secret, unchanged (type to replace)' : '',
      oninput: () => {
        r.value = value.value;
        value.rows = visibleLines(r.value);
        secret.disabled = r.stored && r.value === '';
      },
    });
    const secret = h('input', {
      type: 'checkbox',
      checked: r.secret,
      disabled: r.stored && r.value === '',
      'aria-label': `${r.name || 'new variable'} is secret`,
      'data-env-secret': r.name,
      onchange: () => {
        r.secret = secret.checked;
        value.classList.toggle('secret', r.secret);
      },
    });
    const remove = h('button', { type: 'button', class: 'small', onclick: () => { rows.splice(i, 1); draw(); } }, 'Remove');
    return h('tr', null, h('td', null, name), h('td', null, value), h('td', { class: 'center' }, secret), h('td', null, remove));
  }));
  draw();

  const save = h('button', { type: 'submit', class: 'primary', id: 'env-save' }, 'Save environment');
  replace(main,
    h('h1', null, `Environment of ${owner}/${project}`),
    h('p', { class: 'muted' }, 'Every version of the project inherits these variables (unless built with inheritEnvironment false). Secret values are never shown; leave one empty to keep it.'),
    h('form', {
      class: 'card',
      onsubmit: async (/** @type {SubmitEvent} */ e) => {
        e.preventDefault();
        const body = environmentBody(rows);
        if ('problems' in body) {
          replace(problems, body.problems.join('; '));
          problems.hidden = false;
          return;
        }
        problems.hidden = true;
        const removed = Object.keys(env.variables).filter((k) => !Object.hasOwn(body.variables, k));
        if (removed.length && !(await confirmDialog({ title: 'Remove variables?', message: `Saving removes ${removed.join(', ')} from the project environment.`, confirm: 'Save', danger: true }))) return;
        await run(save, async () => {
          const next = await api('PUT', base, body);
          env.variables = next.variables;
          rows = fromApi(next);
          draw();
          flash('Environment saved. Versions built from now on use it.', 'ok');
        });
      },
    },
    h('table', { id: 'environment' }, h('thead', null, h('tr', null, ['Name', 'Value', 'Secret', ''].map((c) => h('th', { scope: 'col' }, c)))), tbody),
    problems,
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'env-add', onclick: () => { rows.push({ name: '', value: '', secret: false, stored: false }); draw(); } }, 'Add variable'),
      save)));
}
