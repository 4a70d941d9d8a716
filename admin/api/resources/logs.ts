import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LogLine, LogQuery } from '../../../builder/control-plane.ts';
import { ControlErrors } from '../../../builder/errors.ts';
import type { Logger } from '../../../common/log.ts';
import { PorticoError } from '../../../common/errors.ts';
import { API_HEADERS, errorDetails } from '../http.ts';
import { defineRoute, listOf, name, STREAMED, VERSION, versionParams } from '../route.ts';
import { bool, int, object, optional, refine, string, type ObjectSchema } from '../schema.ts';

/**
 * Milliseconds between keep-alives of a followed stream (an SSE comment, or an empty NDJSON
 * line, which NDJSON readers skip) so that idle proxies and clients' body timeouts do not close
 * a quiet stream.
 */
export const KEEPALIVE_MS = 15_000;

const filters = {
  since: optional(int({ min: 0, description: 'Only lines at or after this time (epoch milliseconds); less than `until` when both are given.' })),
  until: optional(int({ min: 0, description: 'Only lines before this time (epoch milliseconds); not with `follow`.' })),
  contains: optional(string({ min: 1, max: 1000, description: 'Only lines containing this text (secret values are masked first, so they never match).', example: 'ERROR' })),
};

/**
 * Refuses `since` >= `until` (a window that holds no line, which would read as "no logs"), as the
 * metrics routes refuse `from` >= `to`; and `until` with `follow`, a stream that would stay open
 * for good, sending nothing once `until` has passed.
 */
function windowed<T extends { since?: number; until?: number; follow?: boolean }>(schema: ObjectSchema<T>): ObjectSchema<T> {
  const checked = refine(schema, 'since < until, and no until with follow', (q) => [
    ...(q.since !== undefined && q.until !== undefined && q.since >= q.until ? [{ at: '.since', message: 'must be less than query.until' }] : []),
    ...(q.follow === true && q.until !== undefined ? [{ at: '.until', message: 'cannot be combined with query.follow (a followed log has no end)' }] : []),
  ]);
  return { ...checked, properties: schema.properties };
}

const query = windowed(object({
  tail: optional(int({ min: 0, max: 100_000, description: 'Only the last N lines before following (default 200).' })),
  follow: optional(bool({ description: 'Keep the response open and stream new lines (NDJSON, or SSE with Accept: text/event-stream).' })),
  replica: optional(string({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$', description: 'Only this replica\'s lines.', example: 'predict-0' })),
  ...filters,
}, { unknownLabel: 'query parameter' }));

const buildQuery = windowed(object({
  tail: optional(int({ min: 0, max: 100_000, description: 'Only the last N lines (default: all).' })),
  follow: optional(bool({ description: 'While the version builds, keep the response open and stream new lines until the build ends (NDJSON, or SSE with Accept: text/event-stream).' })),
  ...filters,
}, { unknownLabel: 'query parameter' }));

const STREAM_DESCRIPTION = 'Without `follow`: `{"items": [...]}`. With `follow`: one JSON log line per line (application/x-ndjson; an empty line every 15 s keeps a quiet stream open), or server-sent events (`data: {...}`) when the client accepts text/event-stream. An error after the stream started arrives as a last line `{"error": {...}}` (SSE: `event: error`).';

const streamAlternatives = {
  'application/x-ndjson': 'With follow: one LogLine JSON object per line.',
  'text/event-stream': 'With follow and Accept: text/event-stream: one `data:` event per LogLine.',
};

/**
 * Writes `lines` as NDJSON or SSE until they end or the client leaves, with keep-alives; an
 * error after the first byte becomes a last error line.
 */
async function streamLines(lines: AsyncIterable<LogLine>, ctx: { req: IncomingMessage; res: ServerResponse; signal: AbortSignal; logger: Logger }): Promise<typeof STREAMED> {
  const { req, res, signal, logger } = ctx;
  const sse = /\btext\/event-stream\b/.test(req.headers.accept ?? '');
  res.writeHead(200, {
    ...API_HEADERS,
    'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  const keepAlive = setInterval(() => {
    if (!res.destroyed && res.writableLength === 0) res.write(sse ? ': keep-alive\n\n' : '\n');
  }, KEEPALIVE_MS);
  try {
    for await (const line of lines) {
      if (signal.aborted || res.destroyed) break;
      const ok = res.write(sse ? `data: ${JSON.stringify(line)}\n\n` : `${JSON.stringify(line)}\n`);
      if (!ok) await once(res, 'drain', { signal });
    }
  } catch (err) {
    if (!signal.aborted && !res.destroyed) {
      const body = err instanceof PorticoError ? err.toJSON() : { statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: ControlErrors.INTERNAL.message };
      if (!(err instanceof PorticoError)) logger.error('log stream failed', { err: errorDetails(err) });
      res.write(sse ? `event: error\ndata: ${JSON.stringify(body)}\n\n` : `${JSON.stringify({ error: body })}\n`);
    }
  } finally {
    clearInterval(keepAlive);
  }
  if (!res.destroyed) res.end();
  return STREAMED;
}

/** Replica logs of an endpoint, and build logs of a version, read or followed. */
export const logRoutes = [
  defineRoute({
    id: 'getEndpointLogs',
    method: 'GET',
    path: `${VERSION}/endpoints/{endpoint}/logs`,
    tag: 'versions',
    summary: 'Read or follow the replica logs of an endpoint',
    description: `${STREAM_DESCRIPTION} Lines are in the order they were printed (per replica) and received; secret values of the project read as \`********\`.`,
    params: { ...versionParams, endpoint: name('Endpoint name.', 'predict') },
    query,
    response: { status: 200, description: 'The log lines.', schema: listOf('LogLine'), alternatives: streamAlternatives },
    handler: async ({ control, params, query, req, res, signal, logger }) => {
      const { endpoint, ...ref } = params;
      // Checked before answering, so an unknown version or endpoint is a plain 404, not a stream error.
      const version = await control.getVersion(ref);
      if (!version.endpoints.some((e) => e.name === endpoint)) {
        throw new PorticoError(ControlErrors.NOT_FOUND, `Version ${ref.version} has no endpoint ${JSON.stringify(endpoint)}.`);
      }
      const logQuery: LogQuery = query;
      if (!query.follow) {
        const items: LogLine[] = [];
        for await (const line of control.endpointLogs(ref, endpoint, logQuery, signal)) items.push(line);
        return { body: { items } };
      }
      return streamLines(control.endpointLogs(ref, endpoint, logQuery, signal), { req, res, signal, logger });
    },
  }),
  defineRoute({
    id: 'getBuildLog',
    method: 'GET',
    path: `${VERSION}/build-log`,
    tag: 'versions',
    summary: 'Read the build log of a version, or follow it while it builds',
    description: `${STREAM_DESCRIPTION} A followed build log ends when the build does (at once when the version is not building).`,
    params: versionParams,
    query: buildQuery,
    response: { status: 200, description: 'The build log lines so far.', schema: listOf('LogLine'), alternatives: streamAlternatives },
    handler: async ({ control, params, query, req, res, signal, logger }) => {
      const logQuery: LogQuery = query;
      if (!query.follow) {
        const items: LogLine[] = [];
        for await (const line of control.buildLogStream(params, logQuery, signal)) items.push(line);
        return { body: { items } };
      }
      await control.getVersion(params); // a plain 404 before the stream starts
      return streamLines(control.buildLogStream(params, logQuery, signal), { req, res, signal, logger });
    },
  }),
];
