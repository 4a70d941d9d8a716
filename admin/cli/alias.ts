import type { AliasHistoryItem, AliasSetResult, AliasTargetInput, AliasView } from '../../builder/control-plane.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, DEPLOYMENT_FLAGS, DEPLOYMENT_HELP, deploymentPath, deploymentScope, intArg, json, keyValue,
  noMorePositionals, operatorCommand, positional, subcommand, table, type OperatorContext,
} from './operator.ts';

/** `20181002.0`, or `20181002.0=90, 20181003.0=10`. */
export function describeTarget(t: AliasTargetInput | null): string {
  if (t === null) return '-';
  return 'version' in t ? t.version : t.versions.map((v) => `${v.version}=${v.weight}`).join(', ');
}

/** The alias body of `alias set A V` or `alias set A V1=W1 V2=W2`. */
export function aliasTarget(args: readonly string[]): AliasTargetInput {
  if (args.length === 0) throw new UsageError('alias set needs a VERSION (or VERSION=WEIGHT pairs)');
  if (args.length === 1 && !args[0]!.includes('=')) return { version: args[0]! };
  return {
    versions: args.map((a) => {
      const [version, weight] = keyValue(a, 'a weighted version');
      return { version, weight: intArg(weight, `the weight of ${version}`, 1, 100) };
    }),
  };
}

/** Prints the outcome of an alias flip, warning about gateways that did not acknowledge. */
export function reportAliasSet(ctx: Pick<OperatorContext, 'out' | 'err'>, r: AliasSetResult): void {
  const acks = r.acknowledged.length > 0 ? `acknowledged by ${r.acknowledged.join(', ')}` : 'no live gateway acknowledged';
  ctx.out(`${r.name} -> ${describeTarget(r)} (${acks})`);
  if (r.missing.length > 0) ctx.err(`warning: ${r.missing.join(', ')} did not acknowledge in time and may still serve the old target`);
}

/** `portico alias`: point, list, delete aliases and show their history. */
export const aliasCommand = operatorCommand({
  name: 'alias',
  help: `Usage:
  portico alias list                              --owner O --project P --deployment D
  portico alias set ALIAS VERSION [--force]
  portico alias set ALIAS VERSION=WEIGHT ...      weighted (canary): integer weights summing to 100
  portico alias history ALIAS
  portico alias delete ALIAS

set returns once every live gateway acknowledged the change and names those that did not.
A version that is not ready is refused unless --force. A weighted alias sends each request to
one of its versions by weight, passing over one that has no ready replica for the endpoint (or
no such endpoint) while another can serve it.

Options:
${DEPLOYMENT_HELP}
  --force                set: point at versions that are not ready
${COMMON_HELP}`,
  flags: { ...DEPLOYMENT_FLAGS, force: 'bool' },
  async run(ctx) {
    const { flags, client, json: asJson, out } = ctx;
    const sub = subcommand(flags, ['list', 'set', 'history', 'delete'], 'list', { force: ['set'] });
    const scope = deploymentScope(flags);
    if (sub === 'list') {
      noMorePositionals(flags, 1);
      const { items } = await client.request<{ items: AliasView[] }>('GET', deploymentPath(scope, 'aliases'));
      out(asJson ? json({ items }) : table(['ALIAS', 'TARGET'], items.map((a) => [a.name, describeTarget(a)])));
      return 0;
    }
    const alias = positional(flags, 1, 'the ALIAS');
    const path = deploymentPath(scope, 'aliases', alias);
    if (sub === 'set') {
      const target = aliasTarget(flags.positionals.slice(2));
      const r = await client.request<AliasSetResult>('PUT', path, { body: { ...target, ...(flags.has('force') ? { force: true } : {}) } });
      if (asJson) out(json(r));
      else reportAliasSet(ctx, r);
      return 0;
    }
    noMorePositionals(flags, 2);
    if (sub === 'history') {
      const { items } = await client.request<{ items: AliasHistoryItem[] }>('GET', `${path}/history`);
      out(asJson ? json({ items }) : table(['AT', 'BY', 'FROM', 'TO'], items.map((h) => [h.at, h.by, describeTarget(h.from), describeTarget(h.to)])));
      return 0;
    }
    await client.request('DELETE', path);
    out(asJson ? json({ deleted: alias }) : `deleted alias ${alias}`);
    return 0;
  },
});
