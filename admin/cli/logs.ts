import type { LogLine } from '../../builder/control-plane.ts';
import { ApiError, UnreachableError } from './client.ts';
import { UsageError } from './command.ts';
import {
  COMMON_HELP, DEPLOYMENT_FLAGS, DEPLOYMENT_HELP, deploymentPath, deploymentScope, intArg,
  noMorePositionals, operatorCommand, positional,
} from './operator.ts';

/** `--since 10m` / `2h` / `30s` / `1d` ago, or an ISO time, as epoch milliseconds; `what` names the flag (`--until`). */
export function parseSince(text: string, now = Date.now(), what = '--since'): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text);
  if (m) return now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new UsageError(`${what} must be a duration like 10m or an ISO time (got ${JSON.stringify(text)})`);
  return t;
}

function format(l: LogLine): string {
  return `${new Date(l.at).toISOString()} ${l.replica ?? '-'}${l.stream === 'stderr' ? ' [stderr]' : ''} ${l.line}`;
}

/** `portico logs`: read or follow an endpoint's replica logs. */
export const logsCommand = operatorCommand({
  name: 'logs',
  help: `Usage:
  portico logs [-f] VERSION ENDPOINT --owner O --project P --deployment D [--tail N]

VERSION is a version name as portico versions lists it (an alias's version: portico alias list).

Options:
${DEPLOYMENT_HELP}
  -f, --follow           keep printing new lines until Ctrl-C (exit 0); if the stream ends
                         otherwise (the admin API stops, the connection drops), says so and
                         exits 1
  --tail N               only the last N lines (default 200, at most 100000), before following
  --replica ID           only this replica
  --contains TEXT        only lines containing TEXT
  --since WHEN           only lines since a duration ago (30s, 10m, 2h, 1d) or an ISO time
  --until WHEN           only lines before a duration ago or an ISO time (as --since); not
                         with --follow
${COMMON_HELP}
With --json, one JSON object per line (at, replica, stream, line).`,
  flags: { ...DEPLOYMENT_FLAGS, follow: 'bool', tail: 'value', replica: 'value', contains: 'value', since: 'value', until: 'value' },
  aliases: { f: 'follow' },
  async run({ flags, client, json: asJson, out, err }) {
    const scope = deploymentScope(flags);
    const version = positional(flags, 0, 'the VERSION');
    const endpoint = positional(flags, 1, 'the ENDPOINT');
    noMorePositionals(flags, 2);
    const tail = flags.get('tail');
    const since = flags.get('since');
    const until = flags.get('until');
    // The API refuses both (400); said here in the flags' own words.
    if (until !== undefined && flags.has('follow')) throw new UsageError('--until cannot be combined with --follow (a followed log has no end)');
    const now = Date.now();
    const window = {
      since: since === undefined ? undefined : parseSince(since, now),
      until: until === undefined ? undefined : parseSince(until, now, '--until'),
    };
    if (window.since !== undefined && window.until !== undefined && window.since >= window.until) throw new UsageError('--since must be before --until');
    const query = {
      tail: tail === undefined ? undefined : intArg(tail, '--tail', 0, 100_000),
      replica: flags.get('replica'),
      contains: flags.get('contains'),
      ...window,
    };
    const path = deploymentPath(scope, 'versions', version, 'endpoints', endpoint, 'logs');
    const print = (l: LogLine) => out(asJson ? JSON.stringify(l) : format(l));
    if (!flags.has('follow')) {
      const { items } = await client.request<{ items: LogLine[] }>('GET', path, { query });
      items.forEach(print);
      return 0;
    }
    const abort = new AbortController();
    const stop = () => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // A followed endpoint log has no end of its own: only Ctrl-C (or SIGTERM) ends it cleanly.
    try {
      for await (const line of client.stream<LogLine>(path, { ...query, follow: true }, abort.signal)) print(line);
      if (abort.signal.aborted) return 0;
      err('portico logs: the log stream ended unexpectedly (the admin API closed it: is it stopping?)');
      return 1;
    } catch (e) {
      if (abort.signal.aborted) return 0;
      if (e instanceof ApiError || e instanceof UnreachableError) throw e;
      err(`portico logs: the log stream ended unexpectedly: ${e instanceof Error ? e.message : String(e)}`);
      return 1;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  },
});
