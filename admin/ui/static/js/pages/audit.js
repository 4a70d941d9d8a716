// The audit log: every change, who made it (the token's name) and when, newest first, paged.
import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { setCrumbs } from '../nav.js';
import { run, time } from '../ui.js';

const PAGE = 50;

/** The audit log page (`#/audit`), 50 entries at a time. @param {import('../main.js').PageContext} ctx */
export async function renderAudit({ main, signal }) {
  setCrumbs([['Audit log', '#/audit']]);
  const tbody = h('tbody');
  const more = h('button', { type: 'button', id: 'audit-more', hidden: true }, 'Older entries');
  /** @type {string | undefined} */
  let before;
  const load = async () => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (before !== undefined) q.set('before', before);
    const { items } = await api('GET', `/audit?${q}`, undefined, { signal });
    for (const i of items) {
      tbody.appendChild(h('tr', { 'data-action': i.action },
        h('td', null, time(i.at)), h('td', null, i.actor), h('td', null, h('code', null, i.action)), h('td', null, i.target),
        h('td', null, h('code', { class: 'details' }, JSON.stringify(i.details ?? {})))));
    }
    const last = items[items.length - 1];
    before = last && typeof last.id === 'string' ? last.id : undefined;
    more.hidden = items.length < PAGE || before === undefined;
  };
  more.addEventListener('click', () => void run(more, load));
  replace(main,
    h('h1', null, 'Audit log'),
    h('section', { class: 'card' },
      h('table', { id: 'audit' }, h('thead', null, h('tr', null, ['When', 'Who', 'Action', 'Target', 'Details'].map((c) => h('th', { scope: 'col' }, c)))), tbody),
      h('div', { class: 'actions' }, more)));
  await load();
  if (!tbody.firstChild) tbody.appendChild(h('tr', null, h('td', { colspan: '5', class: 'muted' }, 'Nothing recorded yet.')));
}
