import { defineRoute, listOf } from '../route.ts';
import { int, object, optional, string } from '../schema.ts';

/** The audit log: every change, who made it (the token's name) and when. */
export const auditRoutes = [
  defineRoute({
    id: 'listAudit',
    method: 'GET',
    path: '/api/v1/audit',
    tag: 'audit',
    summary: 'Read the audit log, newest first',
    params: {},
    query: object({
      limit: optional(int({ min: 1, max: 1000, description: 'At most this many items (default 100).' })),
      // Ids are whole numbers in both stores: any other cursor named no item and read as an empty log.
      before: optional(string({ pattern: '^[0-9]{1,15}$', description: 'Paging cursor: only items older than the item with this `id` (the last item of the previous page; ids are whole numbers).', example: '42' })),
    }, { unknownLabel: 'query parameter' }),
    response: { status: 200, description: 'Audit items.', schema: listOf('AuditItem') },
    handler: async ({ control, query }) => ({ body: { items: await control.audit({ limit: query.limit ?? 100, ...(query.before ? { before: query.before } : {}) }) } }),
  }),
];
