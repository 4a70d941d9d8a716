// The deployments of a project, and creating one (name, target from GET /targets, auth mode).
import { api, projectPath } from '../api.js';
import { field, h, replace, select } from '../dom.js';
import { crumbsFor, href } from '../nav.js';
import { rememberProject } from '../projects.js';
import { copyable, run, table, time } from '../ui.js';

/** The deployments of a project and the form creating one (`#/p/owner/project`). @param {import('../main.js').PageContext} ctx */
export async function renderDeployments({ params, main, signal }) {
  const { owner, project } = params;
  crumbsFor({ owner, project }, [['Deployments', href('p', owner, project)]]);
  const [list, targets] = await Promise.all([
    api('GET', `${projectPath(owner, project)}/deployments`, undefined, { signal }),
    api('GET', '/targets', undefined, { signal }),
  ]);
  rememberProject(owner, project);
  /** @type {any[]} */
  const items = list.items;

  const name = h('input', { name: 'name', id: 'new-deployment-name', required: true, pattern: '^[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}$', placeholder: 'web' });
  const target = select({ name: 'target', id: 'new-deployment-target' }, targets.items.map((/** @type {any} */ t) => /** @type {[string, string]} */ ([t.name, `${t.name} (${t.kind})`])), 'local');
  const auth = select({ name: 'auth', id: 'new-deployment-auth' }, [['none', 'none (public)'], ['basic', 'basic auth (users)']], 'none');
  const create = h('button', { type: 'submit', class: 'primary' }, 'Create deployment');

  replace(main,
    h('div', { class: 'page-head' },
      h('h1', null, `Deployments of ${owner}/${project}`),
      h('a', { href: href('p', owner, project, 'environment'), class: 'button' }, 'Environment and secrets')),
    h('section', { class: 'card' },
      items.length === 0
        ? h('p', { class: 'muted', id: 'no-deployments' }, 'No deployments yet.')
        : table(['Deployment', 'Target', 'Auth', 'Created', 'URL'], items.map((d) => [
          h('a', { href: href('p', owner, project, 'd', d.name), class: 'strong' }, d.name),
          d.target,
          d.auth,
          time(d.createdAt),
          copyable(d.url),
        ]), { id: 'deployments' })),
    h('section', { class: 'card' },
      h('h2', null, 'New deployment'),
      h('form', {
        class: 'inline-form',
        onsubmit: async (/** @type {SubmitEvent} */ e) => {
          e.preventDefault();
          const body = { name: name.value.trim(), target: target.value, auth: auth.value };
          await run(create, async () => {
            await api('POST', `${projectPath(owner, project)}/deployments`, body);
            location.hash = href('p', owner, project, 'd', body.name);
          }, `Deployment ${body.name} created.`);
        },
      }, field('Name', name), field('Target', target), field('Authentication', auth), create)));
}
