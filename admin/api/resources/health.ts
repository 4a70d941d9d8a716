import { defineRoute, ref } from '../route.ts';

/**
 * `GET /healthz`: the admin port answers while the process runs (no auth), 200 even when the
 * store is lost (`store: "lost"`): restarting the controller would not bring the store back.
 */
export const healthRoutes = [
  defineRoute({
    id: 'health',
    method: 'GET',
    path: '/healthz',
    tag: 'health',
    summary: 'Liveness of the controller process',
    auth: false,
    params: {},
    ignoresQuery: true,
    response: { status: 200, description: 'The process is running; `store` says whether its store is the one it started on.', schema: ref('Health') },
    handler: async ({ control }) => ({ body: { status: 'ok', store: control.storeStatus() } }),
  }),
];
