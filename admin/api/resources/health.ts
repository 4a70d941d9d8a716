import { defineRoute, ref } from '../route.ts';

/** `GET /healthz`: the admin port answers while the process runs (no auth). */
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
    response: { status: 200, description: 'The process is running.', schema: ref('Health') },
    handler: async () => ({ body: { status: 'ok' } }),
  }),
];
