import type { AliasTargetInput } from '../../../builder/control-plane.ts';
import { defineRoute, DEPLOYMENT, deploymentParams, listOf, name, ref } from '../route.ts';
import { array, bool, int, object, oneOf, optional, refine } from '../schema.ts';

const aliasParams = { ...deploymentParams, alias: name('Alias name.', 'production') } as const;
const force = optional(bool({ description: 'Point the alias even at versions that are not ready.' }));

const putBody = refine(
  oneOf([
    object({ version: name('The version the alias points at.', '20181002.0'), force }),
    object({
      versions: array(object({
        version: name('A version.', '20181002.0'),
        weight: int({ min: 1, max: 100, description: 'Share of requests, in percent.' }),
      }), { min: 1, max: 10, description: 'Weighted versions (canary).' }),
      force,
    }, { example: { versions: [{ version: '20181002.0', weight: 90 }, { version: '20181003.0', weight: 10 }] } }),
  ], { description: 'One version, or weighted versions.' }),
  'Weights are integers summing to 100; each version is listed once.',
  (body) => {
    if (!('versions' in body)) return [];
    const problems: { at: string; message: string }[] = [];
    const seen = new Set<string>();
    body.versions.forEach((v, i) => {
      if (seen.has(v.version)) problems.push({ at: `.versions[${i}].version`, message: `${JSON.stringify(v.version)} is listed more than once` });
      seen.add(v.version);
    });
    const sum = body.versions.reduce((a, v) => a + v.weight, 0);
    if (sum !== 100) problems.push({ at: '.versions', message: `weights must sum to 100 (they sum to ${sum})` });
    return problems;
  },
);

/** Aliases: stable names pointing at a version or at weighted versions, with their history. */
export const aliasRoutes = [
  defineRoute({
    id: 'listAliases',
    method: 'GET',
    path: `${DEPLOYMENT}/aliases`,
    tag: 'aliases',
    summary: 'List the aliases of a deployment',
    params: deploymentParams,
    response: { status: 200, description: 'The aliases.', schema: listOf('Alias') },
    handler: async ({ control, params }) => ({ body: { items: await control.listAliases(params) } }),
  }),
  defineRoute({
    id: 'setAlias',
    method: 'PUT',
    path: `${DEPLOYMENT}/aliases/{alias}`,
    tag: 'aliases',
    summary: 'Point an alias at a version (or weighted versions)',
    description: 'Refused (409 VERSION_NOT_READY) when a version is not ready, unless "force": true, and (409 CONFLICT) when a version has the alias\'s name. Answers once every live gateway has acknowledged the change; those that did not within PORTICO_FLIP_ACK_MS are listed in `missing`.',
    params: aliasParams,
    body: putBody,
    response: { status: 200, description: 'The alias and the gateways that acknowledged it.', schema: ref('AliasSetResult') },
    errors: ['VERSION_NOT_READY', 'CONFLICT'],
    handler: async ({ control, params, body, actor }) => {
      const { alias, ...deployment } = params;
      const target: AliasTargetInput = 'versions' in body ? { versions: body.versions } : { version: body.version };
      return { body: await control.setAlias(deployment, alias, target, { force: body.force === true }, actor) };
    },
  }),
  defineRoute({
    id: 'deleteAlias',
    method: 'DELETE',
    path: `${DEPLOYMENT}/aliases/{alias}`,
    tag: 'aliases',
    summary: 'Delete an alias',
    params: aliasParams,
    response: { status: 204, description: 'Deleted.' },
    handler: async ({ control, params, actor }) => {
      const { alias, ...deployment } = params;
      await control.deleteAlias(deployment, alias, actor);
      return { status: 204 };
    },
  }),
  defineRoute({
    id: 'getAliasHistory',
    method: 'GET',
    path: `${DEPLOYMENT}/aliases/{alias}/history`,
    tag: 'aliases',
    summary: 'Every change of an alias: who, when, from, to',
    description: 'Kept after the alias is deleted (its last item has `to: null`); 404 for a name that never was an alias.',
    params: aliasParams,
    response: { status: 200, description: 'The changes, newest first.', schema: listOf('AliasHistoryItem') },
    handler: async ({ control, params }) => {
      const { alias, ...deployment } = params;
      return { body: { items: await control.aliasHistory(deployment, alias) } };
    },
  }),
];
