import type { TokenView } from '../../builder/control-plane.ts';
import { COMMON_HELP, json, noMorePositionals, operatorCommand, positional, subcommand, table } from './operator.ts';

/** `portico tokens`: list, create and revoke admin API tokens. */
export const tokensCommand = operatorCommand({
  name: 'tokens',
  help: `Usage:
  portico tokens [list]
  portico tokens create NAME     prints the new token once (it is stored only hashed)
  portico tokens revoke NAME     refused for the last token (create another first)

The audit log names the token that made each change.

Options:
${COMMON_HELP}`,
  flags: {},
  async run({ flags, client, json: asJson, out, err }) {
    const sub = subcommand(flags, ['list', 'create', 'revoke'], 'list');
    if (sub === 'list') {
      noMorePositionals(flags, 1);
      const { items } = await client.request<{ items: TokenView[] }>('GET', '/api/v1/tokens');
      out(asJson ? json({ items }) : table(['NAME', 'CREATED'], items.map((t) => [t.name, t.createdAt])));
      return 0;
    }
    const name = positional(flags, 1, 'the token NAME');
    noMorePositionals(flags, 2);
    if (sub === 'create') {
      const t = await client.request<{ name: string; token: string }>('POST', '/api/v1/tokens', { body: { name } });
      if (asJson) out(json(t));
      else {
        out(t.token);
        err(`created token ${t.name}; store it now, it is not shown again`);
      }
      return 0;
    }
    await client.request('DELETE', `/api/v1/tokens/${encodeURIComponent(name)}`);
    out(asJson ? json({ revoked: name }) : `revoked token ${name}`);
    return 0;
  },
});
