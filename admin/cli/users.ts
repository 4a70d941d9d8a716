import { text } from 'node:stream/consumers';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, DEPLOYMENT_FLAGS, DEPLOYMENT_HELP, deploymentPath, deploymentScope, json, noMorePositionals,
  operatorCommand, positional, subcommand, table,
} from './operator.ts';

/** `portico users`: the basic-auth users of a deployment. */
export const usersCommand = operatorCommand({
  name: 'users',
  help: `Usage:
  portico users [list]                      --owner O --project P --deployment D
  portico users set NAME --password-stdin   (reads the password from stdin)
  portico users set NAME --password PW      (visible to other local users: prefer stdin)
  portico users delete NAME

Users are checked by the gateway when the deployment's auth is basic
(portico deployments update D --auth basic).

Options:
${DEPLOYMENT_HELP}
  --password PW          set: the password (at least 8 characters)
  --password-stdin       set: read the password from stdin (first line)
${COMMON_HELP}`,
  flags: { ...DEPLOYMENT_FLAGS, password: 'value', 'password-stdin': 'bool' },
  async run({ flags, client, json: asJson, out }) {
    const sub = subcommand(flags, ['list', 'set', 'delete'], 'list', { password: ['set'], 'password-stdin': ['set'] });
    const scope = deploymentScope(flags);
    if (sub === 'list') {
      noMorePositionals(flags, 1);
      const { items } = await client.request<{ items: { name: string }[] }>('GET', deploymentPath(scope, 'users'));
      out(asJson ? json({ items }) : table(['USER'], items.map((u) => [u.name])));
      return 0;
    }
    const name = positional(flags, 1, 'the user NAME');
    noMorePositionals(flags, 2);
    const path = deploymentPath(scope, 'users', name);
    if (sub === 'set') {
      let password = flags.get('password');
      if (flags.has('password-stdin')) {
        if (password !== undefined) throw new UsageError('give --password or --password-stdin, not both');
        password = (await text(process.stdin)).split(/\r?\n/)[0];
      }
      if (!password) throw new UsageError('set needs --password-stdin (or --password PW)');
      const u = await client.request<{ name: string }>('PUT', path, { body: { password } });
      out(asJson ? json(u) : `set user ${u.name}`);
      return 0;
    }
    await client.request('DELETE', path);
    out(asJson ? json({ deleted: name }) : `deleted user ${name}`);
    return 0;
  },
});
