import { defineRoute, DEPLOYMENT, deploymentParams, listOf, name, NAME_PATTERN, PROJECT, projectParams, ref } from '../route.ts';
import { enumOf, object, optional, string } from '../schema.ts';

const auth = enumOf(['none', 'basic'], { description: 'Gateway authentication of the endpoints: none, or HTTP basic auth with the deployment\'s users.' });

/** Deployments: named groups of versioned endpoints on one target. */
export const deploymentRoutes = [
  defineRoute({
    id: 'listDeployments',
    method: 'GET',
    path: `${PROJECT}/deployments`,
    tag: 'deployments',
    summary: 'List the deployments of a project',
    params: projectParams,
    response: { status: 200, description: 'The deployments.', schema: listOf('Deployment') },
    handler: async ({ control, params }) => ({ body: { items: await control.listDeployments(params) } }),
  }),
  defineRoute({
    id: 'createDeployment',
    method: 'POST',
    path: `${PROJECT}/deployments`,
    tag: 'deployments',
    summary: 'Create a deployment',
    params: projectParams,
    body: object({
      name: name('Deployment name.', 'web'),
      target: optional(string({ pattern: NAME_PATTERN, description: 'Target name (default "local"); see GET /api/v1/targets.', example: 'local' })),
      auth: optional(auth),
    }),
    response: { status: 201, description: 'The new deployment (Location names it).', schema: ref('Deployment') },
    errors: ['ALREADY_EXISTS'],
    handler: async ({ control, params, body, actor }) => {
      const d = await control.createDeployment(params, body, actor);
      return { status: 201, body: d, headers: { location: `${deploymentPath(params.owner, params.project, d.name)}` } };
    },
  }),
  defineRoute({
    id: 'getDeployment',
    method: 'GET',
    path: DEPLOYMENT,
    tag: 'deployments',
    summary: 'Read a deployment',
    params: deploymentParams,
    response: { status: 200, description: 'The deployment.', schema: ref('Deployment') },
    handler: async ({ control, params }) => ({ body: await control.getDeployment(params) }),
  }),
  defineRoute({
    id: 'patchDeployment',
    method: 'PATCH',
    path: DEPLOYMENT,
    tag: 'deployments',
    summary: 'Change a deployment\'s authentication',
    params: deploymentParams,
    body: object({ auth: optional(auth) }),
    response: { status: 200, description: 'The changed deployment.', schema: ref('Deployment') },
    handler: async ({ control, params, body, actor }) => ({ body: await control.patchDeployment(params, body, actor) }),
  }),
  defineRoute({
    id: 'deleteDeployment',
    method: 'DELETE',
    path: DEPLOYMENT,
    tag: 'deployments',
    summary: 'Delete a deployment',
    description: 'Stops every version\'s replicas and removes the deployment with its versions, aliases and users.',
    params: deploymentParams,
    response: { status: 204, description: 'Deleted.' },
    handler: async ({ control, params, actor }) => {
      await control.deleteDeployment(params, actor);
      return { status: 204 };
    },
  }),
];

/** The API path of a deployment. */
export function deploymentPath(owner: string, project: string, deployment: string): string {
  return `/api/v1/projects/${encodeURIComponent(owner)}/${encodeURIComponent(project)}/deployments/${encodeURIComponent(deployment)}`;
}
