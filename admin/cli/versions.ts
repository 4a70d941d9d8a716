import type { LogLine, VersionView } from '../../builder/control-plane.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, DEPLOYMENT_FLAGS, DEPLOYMENT_HELP, deploymentPath, deploymentScope, intArg, json,
  noMorePositionals, operatorCommand, positional, subcommand, table,
} from './operator.ts';

/** `ready/wanted` replicas of every endpoint, e.g. `predict 2/2`. */
function replicasSummary(v: VersionView): string {
  return v.endpoints.map((e) => `${e.name} ${e.replicas.filter((r) => r.state === 'ready').length}/${e.replicaCount ?? e.replicas.length}`).join(', ') || '-';
}

/** The version's variable names, secret ones marked: `MODEL, API_KEY (secret)`. */
function environmentSummary(v: VersionView): string {
  const secret = new Set(v.secretEnvironment ?? []);
  return v.environment.map((k) => (secret.has(k) ? `${k} (secret)` : k)).join(', ') || '-';
}

/** The text `portico versions show` prints. */
export function showVersion(v: VersionView): string {
  const lines = [
    `version   ${v.name}`,
    `status    ${v.status}${v.reason ? ` (${v.reason})` : ''}`,
    `enabled   ${v.enabled}`,
    `created   ${v.createdAt}${v.createdBy ? ` by ${v.createdBy}` : ''}`,
    `aliases   ${v.aliases?.length ? v.aliases.join(', ') : '-'}`,
    `env       ${environmentSummary(v)}`,
    '',
    table(['ENDPOINT', 'STATUS', 'REPLICAS', 'URL'], v.endpoints.map((e) => [
      e.name,
      e.error ? `${e.status} (${e.error})` : e.status,
      `${e.replicas.filter((r) => r.state === 'ready').length}/${e.replicaCount ?? e.replicas.length}`,
      e.url,
    ])),
  ];
  const replicas = v.endpoints.flatMap((e) => e.replicas.map((r) => [e.name, r.id, r.state, r.address ?? '-', String(r.restarts ?? 0), r.reason ?? '']));
  if (replicas.length > 0) lines.push('', table(['ENDPOINT', 'REPLICA', 'STATE', 'ADDRESS', 'RESTARTS', 'REASON'], replicas));
  return lines.join('\n');
}

/** `portico versions`: list, show, stop, start, scale and delete versions. */
export const versionsCommand = operatorCommand({
  name: 'versions',
  help: `Usage:
  portico versions [list]                                  --owner O --project P --deployment D
  portico versions show VERSION                            (status, environment names, endpoints, replicas)
  portico versions stop VERSION                            (stops every replica; no rebuild)
  portico versions start VERSION
  portico versions scale VERSION --endpoint E --replicas N
  portico versions delete VERSION                          (refused while an alias points at it)
  portico versions build-log VERSION

A version stopped while it builds stays \`building\` until its build ends, then is \`stopped\`.

Options:
${DEPLOYMENT_HELP}
  --endpoint NAME        scale: the endpoint
  --replicas N           scale: replicas wanted (0-100)
${COMMON_HELP}`,
  flags: { ...DEPLOYMENT_FLAGS, endpoint: 'value', replicas: 'value' },
  async run({ flags, client, json: asJson, out }) {
    const sub = subcommand(flags, ['list', 'show', 'stop', 'start', 'scale', 'delete', 'build-log'], 'list', { endpoint: ['scale'], replicas: ['scale'] });
    const scope = deploymentScope(flags);
    if (sub === 'list') {
      noMorePositionals(flags, 1);
      const { items } = await client.request<{ items: VersionView[] }>('GET', deploymentPath(scope, 'versions'));
      out(asJson ? json({ items }) : table(['VERSION', 'STATUS', 'REPLICAS', 'ALIASES', 'CREATED'], items.map((v) => [
        v.name, v.status, replicasSummary(v), v.aliases?.join(',') || '-', v.createdAt,
      ])));
      return 0;
    }
    const version = positional(flags, 1, 'the VERSION');
    noMorePositionals(flags, 2);
    const path = deploymentPath(scope, 'versions', version);
    switch (sub) {
      case 'show': {
        const v = await client.request<VersionView>('GET', path);
        out(asJson ? json(v) : showVersion(v));
        return 0;
      }
      case 'stop':
      case 'start': {
        const v = await client.request<VersionView>('PATCH', path, { body: { enabled: sub === 'start' } });
        out(asJson ? json(v) : `${sub === 'stop' ? 'stopped' : 'started'} ${v.name} (status ${v.status})`);
        return 0;
      }
      case 'scale': {
        const endpoint = flags.get('endpoint');
        const replicas = flags.get('replicas');
        if (endpoint === undefined || replicas === undefined) throw new UsageError('scale needs --endpoint E and --replicas N');
        const n = intArg(replicas, '--replicas', 0, 100);
        const v = await client.request<VersionView>('PATCH', path, { body: { endpoints: { [endpoint]: { replicas: n } } } });
        out(asJson ? json(v) : `${v.name}/${endpoint}: ${n} replica${n === 1 ? '' : 's'} wanted`);
        return 0;
      }
      case 'delete':
        await client.request('DELETE', path);
        out(asJson ? json({ deleted: version }) : `deleted version ${version}`);
        return 0;
      default: {
        const { items } = await client.request<{ items: LogLine[] }>('GET', `${path}/build-log`);
        out(asJson ? json({ items }) : items.map((l) => `${new Date(l.at).toISOString()}  ${l.line}`).join('\n') || '(empty)');
        return 0;
      }
    }
  },
});
