/**
 * Every route of the admin API, resource by resource. A new resource is one file in
 * `resources/` and one line here; the OpenAPI document and the router follow.
 */
import type { Route } from './route.ts';
import { healthRoutes } from './resources/health.ts';
import { targetRoutes } from './resources/targets.ts';
import { environmentRoutes } from './resources/environment.ts';
import { deploymentRoutes } from './resources/deployments.ts';
import { userRoutes } from './resources/users.ts';
import { versionRoutes } from './resources/versions.ts';
import { logRoutes } from './resources/logs.ts';
import { metricRoutes } from './resources/metrics.ts';
import { statsRoutes } from './resources/stats.ts';
import { aliasRoutes } from './resources/aliases.ts';
import { testRoutes } from './resources/test.ts';
import { auditRoutes } from './resources/audit.ts';
import { tokenRoutes } from './resources/tokens.ts';
import { uploadRoutes } from './resources/uploads.ts';
import { openApiRoutes } from './openapi.ts';

/** The resource routes, in the order the OpenAPI document lists them. */
export const routes: readonly Route[] = [
  ...healthRoutes,
  ...openApiRoutes,
  ...targetRoutes,
  ...environmentRoutes,
  ...deploymentRoutes,
  ...userRoutes,
  ...versionRoutes,
  ...logRoutes,
  ...metricRoutes,
  ...statsRoutes,
  ...aliasRoutes,
  ...testRoutes,
  ...auditRoutes,
  ...tokenRoutes,
  ...uploadRoutes,
];
