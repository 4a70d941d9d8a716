import type { DeploymentView } from '../../builder/control-plane.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, json, noMorePositionals, operatorCommand, positional, PROJECT_FLAGS, PROJECT_HELP,
  projectPath, projectScope, subcommand, table,
} from './operator.ts';

const AUTH = ['none', 'basic'];

function authFlag(value: string | undefined): string | undefined {
  if (value !== undefined && !AUTH.includes(value)) throw new UsageError(`--auth must be none or basic (got ${JSON.stringify(value)})`);
  return value;
}

function show(d: DeploymentView): string {
  return table(['FIELD', 'VALUE'], [
    ['name', d.name], ['target', d.target], ['auth', d.auth], ['url', d.url], ['created', d.createdAt],
  ].map(([k, v]) => [k!, v!]));
}

/** `portico deployments`: list, create, show, update and delete deployments. */
export const deploymentsCommand = operatorCommand({
  name: 'deployments',
  help: `Usage:
  portico deployments [list]            --owner O --project P
  portico deployments create NAME       --owner O --project P [--target T] [--auth none|basic]
  portico deployments show NAME         --owner O --project P
  portico deployments update NAME       --owner O --project P --auth none|basic
  portico deployments delete NAME       --owner O --project P

A deployment groups the versions of one valohai.yaml's endpoints on one target. Deleting it
stops every version's replicas and removes its versions, aliases and users.

Options:
${PROJECT_HELP}
  --target TARGET        create: where replicas run (default local; see GET /api/v1/targets)
  --auth none|basic      gateway authentication of the endpoints (basic: see portico users)
${COMMON_HELP}`,
  flags: { ...PROJECT_FLAGS, target: 'value', auth: 'value' },
  async run({ flags, client, json: asJson, out }) {
    const sub = subcommand(flags, ['list', 'create', 'show', 'update', 'delete'], 'list', { target: ['create'], auth: ['create', 'update'] });
    const scope = projectScope(flags);
    if (sub === 'list') {
      noMorePositionals(flags, 1);
      const { items } = await client.request<{ items: DeploymentView[] }>('GET', projectPath(scope, 'deployments'));
      out(asJson ? json({ items }) : table(['NAME', 'TARGET', 'AUTH', 'URL', 'CREATED'], items.map((d) => [d.name, d.target, d.auth, d.url, d.createdAt])));
      return 0;
    }
    const name = positional(flags, 1, 'the deployment NAME');
    noMorePositionals(flags, 2);
    if (sub === 'create') {
      const auth = authFlag(flags.get('auth'));
      const d = await client.request<DeploymentView>('POST', projectPath(scope, 'deployments'), {
        body: { name, ...(flags.has('target') ? { target: flags.get('target') } : {}), ...(auth ? { auth } : {}) },
      });
      out(asJson ? json(d) : `created deployment ${d.name} on ${d.target}: ${d.url}`);
      return 0;
    }
    if (sub === 'show') {
      const d = await client.request<DeploymentView>('GET', projectPath(scope, 'deployments', name));
      out(asJson ? json(d) : show(d));
      return 0;
    }
    if (sub === 'update') {
      const auth = authFlag(flags.get('auth'));
      if (!auth) throw new UsageError('update needs --auth none|basic');
      const d = await client.request<DeploymentView>('PATCH', projectPath(scope, 'deployments', name), { body: { auth } });
      out(asJson ? json(d) : `deployment ${d.name}: auth ${d.auth}`);
      return 0;
    }
    await client.request('DELETE', projectPath(scope, 'deployments', name));
    out(asJson ? json({ deleted: name }) : `deleted deployment ${name}`);
    return 0;
  },
});
