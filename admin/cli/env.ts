import type { EnvironmentView } from '../../builder/control-plane.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, json, keyValue, noMorePositionals, operatorCommand, PROJECT_FLAGS, PROJECT_HELP, projectPath,
  projectScope, subcommand, table,
} from './operator.ts';

type Vars = Record<string, { value: string; secret: boolean }>;

/** How the API shows a secret's value; sent back for a secret, it keeps the stored value. */
const MASK = '********';

/**
 * The environment `env set` sends: the current one with the changes applied. A secret cannot be
 * read back: one left unchanged is sent as its mask, which the API keeps (value and secrecy).
 */
export function mergeEnvironment(current: EnvironmentView['variables'], set: Vars, unset: readonly string[], replace: boolean): Vars {
  const out: Vars = {};
  if (!replace) {
    for (const [k, v] of Object.entries(current)) {
      if (unset.includes(k) || k in set) continue;
      out[k] = v.secret ? { value: MASK, secret: true } : { value: v.value, secret: false };
    }
  }
  return { ...out, ...set };
}

/** `portico env`: read and change a project's environment variables and secrets. */
export const envCommand = operatorCommand({
  name: 'env',
  help: `Usage:
  portico env [get]                                  --owner O --project P
  portico env set [K=V ...] [--secret K=V ...] [--unset K ...] [--replace]

Versions inherit the project environment when they are built. set changes the given variables
and keeps the others, secrets included: a secret reads as "********" and is never shown again,
but one not named here keeps its value (change it with --secret K=V, drop it with --unset K).
--replace sends exactly the given variables.

Options:
${PROJECT_HELP}
  --secret K=V           set a secret variable (repeatable)
  --unset K              remove a variable (repeatable)
  --replace              send only the variables given here (removes every other one)
${COMMON_HELP}`,
  flags: { ...PROJECT_FLAGS, secret: 'multi', unset: 'multi', replace: 'bool' },
  async run({ flags, client, json: asJson, out }) {
    const sub = subcommand(flags, ['get', 'set'], 'get', { secret: ['set'], unset: ['set'], replace: ['set'] });
    const scope = projectScope(flags);
    const path = projectPath(scope, 'environment');
    const print = (e: EnvironmentView) =>
      out(asJson ? json(e) : table(['NAME', 'VALUE', 'SECRET'], Object.entries(e.variables).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, v.value, v.secret ? 'yes' : 'no'])));
    if (sub === 'get') {
      noMorePositionals(flags, 1);
      print(await client.request<EnvironmentView>('GET', path));
      return 0;
    }
    const set: Vars = {};
    for (const a of flags.positionals.slice(1)) {
      const [k, v] = keyValue(a, 'a variable');
      set[k] = { value: v, secret: false };
    }
    for (const a of flags.all('secret')) {
      const [k, v] = keyValue(a, '--secret');
      set[k] = { value: v, secret: true };
    }
    const unset = flags.all('unset');
    if (Object.keys(set).length === 0 && unset.length === 0 && !flags.has('replace')) throw new UsageError('env set needs K=V, --secret K=V or --unset K');
    const replace = flags.has('replace');
    const current = replace ? {} : (await client.request<EnvironmentView>('GET', path)).variables;
    for (const k of unset) if (!replace && !(k in current)) throw new UsageError(`--unset ${k}: no such variable`);
    print(await client.request<EnvironmentView>('PUT', path, { body: { variables: mergeEnvironment(current, set, unset, replace) } }));
    return 0;
  },
});
