// Choosing a project: the API is per project, so the operator names owner and project (the
// ones opened before are remembered).
import { field, h, replace } from '../dom.js';
import { href, setCrumbs } from '../nav.js';
import { forgetProject, rememberedProjects } from '../projects.js';

const NAME = '^[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}$';

/** The project chooser (`#/`). @param {import('../main.js').PageContext} ctx */
export function renderProjects({ main, rerender }) {
  setCrumbs([['Projects', '#/']]);
  const owner = h('input', { name: 'owner', id: 'owner', required: true, pattern: NAME, placeholder: 'acme', autocomplete: 'on' });
  const project = h('input', { name: 'project', id: 'project', required: true, pattern: NAME, placeholder: 'mnist', autocomplete: 'on' });
  const known = rememberedProjects();
  replace(main,
    h('h1', null, 'Projects'),
    h('section', { class: 'card' },
      h('h2', null, 'Open a project'),
      h('form', {
        class: 'inline-form',
        onsubmit: (/** @type {SubmitEvent} */ e) => {
          e.preventDefault();
          location.hash = href('p', owner.value.trim(), project.value.trim());
        },
      }, field('Owner', owner), field('Project', project), h('button', { type: 'submit', class: 'primary' }, 'Open'))),
    h('section', { class: 'card' },
      h('h2', null, 'Recent projects'),
      known.length === 0
        ? h('p', { class: 'muted' }, 'None yet: projects you open are listed here.')
        : h('ul', { class: 'plain', id: 'recent-projects' }, known.map((p) => h('li', null,
          h('a', { href: href('p', p.owner, p.project) }, `${p.owner}/${p.project}`),
          ' ',
          h('button', { type: 'button', class: 'link small', 'aria-label': `Forget ${p.owner}/${p.project}`, onclick: () => { forgetProject(p.owner, p.project); rerender(); } }, 'forget'))))));
  (known.length ? null : owner)?.focus();
}
