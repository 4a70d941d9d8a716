import { StoreUnavailableError } from '../../../builder/store/store.ts';
import { defineRoute, ref } from '../route.ts';

/**
 * `GET /healthz`: the admin port answers while the process runs (no auth), 200 even when the
 * store is lost (`store: "lost"`): restarting the controller would not bring the store back. An
 * embedded store that failed a disk write is the 503 every call answers then: a restart is needed.
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
    errors: ['STORE_UNAVAILABLE'],
    handler: async ({ control }) => {
      const store = control.storeStatus();
      if (store === 'failed') throw new StoreUnavailableError('the embedded store failed a disk write', { needsRestart: true });
      return { body: { status: 'ok', store } };
    },
  }),
];
