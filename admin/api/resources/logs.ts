import { once } from 'node:events';
import type { LogLine, LogQuery } from '../../../builder/control-plane.ts';
import { ControlErrors } from '../../../builder/errors.ts';
import { PorticoError } from '../../../common/errors.ts';
import { API_HEADERS, errorDetails } from '../http.ts';
import { defineRoute, listOf, name, STREAMED, VERSION, versionParams } from '../route.ts';
import { bool, int, object, optional, string } from '../schema.ts';

/** Seconds between SSE comments that keep idle proxies from closing a followed stream. */
const SSE_KEEPALIVE_MS = 15_000;

const query = object({
  tail: optional(int({ min: 0, max: 100_000, description: 'Only the last N lines (before following).' })),
  follow: optional(bool({ description: 'Keep the response open and stream new lines (NDJSON, or SSE with Accept: text/event-stream).' })),
  replica: optional(string({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$', description: 'Only this replica\'s lines.', example: 'predict-0' })),
  since: optional(int({ min: 0, description: 'Only lines at or after this time (epoch milliseconds).' })),
  until: optional(int({ min: 0, description: 'Only lines before this time (epoch milliseconds).' })),
  contains: optional(string({ min: 1, max: 1000, description: 'Only lines containing this text.', example: 'ERROR' })),
}, { unknownLabel: 'query parameter' });

/** Replica logs of one endpoint of a version, read or followed. */
export const logRoutes = [
  defineRoute({
    id: 'getEndpointLogs',
    method: 'GET',
    path: `${VERSION}/endpoints/{endpoint}/logs`,
    tag: 'versions',
    summary: 'Read or follow the replica logs of an endpoint',
    description: 'Without `follow`: `{"items": [...]}`. With `follow`: one JSON log line per line (application/x-ndjson), or server-sent events (`data: {...}`) when the client accepts text/event-stream, until the client disconnects. An error after the stream started arrives as a last line `{"error": {...}}` (SSE: `event: error`).',
    params: { ...versionParams, endpoint: name('Endpoint name.', 'predict') },
    query,
    response: {
      status: 200,
      description: 'The log lines.',
      schema: listOf('LogLine'),
      alternatives: {
        'application/x-ndjson': 'With follow: one LogLine JSON object per line.',
        'text/event-stream': 'With follow and Accept: text/event-stream: one `data:` event per LogLine.',
      },
    },
    handler: async ({ control, params, query, req, res, signal, logger }) => {
      const { endpoint, ...ref } = params;
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

      const sse = /\btext\/event-stream\b/.test(req.headers.accept ?? '');
      res.writeHead(200, {
        ...API_HEADERS,
        'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
        'x-accel-buffering': 'no',
      });
      res.flushHeaders();
      const keepAlive = sse ? setInterval(() => res.write(': keep-alive\n\n'), SSE_KEEPALIVE_MS) : undefined;
      try {
        for await (const line of control.endpointLogs(ref, endpoint, logQuery, signal)) {
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
    },
  }),
];
