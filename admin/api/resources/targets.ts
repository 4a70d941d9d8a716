import { defineRoute, listOf } from '../route.ts';

/** `GET /api/v1/targets`: where deployments can run. */
export const targetRoutes = [
  defineRoute({
    id: 'listTargets',
    method: 'GET',
    path: '/api/v1/targets',
    tag: 'targets',
    summary: 'List deployment targets',
    description: 'Target `local` always exists; `docker` and `kubernetes` appear when configured.',
    params: {},
    response: { status: 200, description: 'The targets, each with its public gateway URL.', schema: listOf('Target') },
    handler: async ({ control }) => ({ body: { items: await control.targets() } }),
  }),
];
