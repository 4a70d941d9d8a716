import { defineRoute, DEPLOYMENT, deploymentParams, listOf, ref, USER_PATTERN } from '../route.ts';
import { object, string } from '../schema.ts';

const userParams = {
  ...deploymentParams,
  user: string({ pattern: USER_PATTERN, description: 'Basic-auth user name.', example: 'alice' }),
} as const;

/** The basic-auth users of a deployment (used when its `auth` is `basic`). */
export const userRoutes = [
  defineRoute({
    id: 'listUsers',
    method: 'GET',
    path: `${DEPLOYMENT}/users`,
    tag: 'users',
    summary: 'List the basic-auth users of a deployment',
    params: deploymentParams,
    response: { status: 200, description: 'The user names (never passwords).', schema: listOf('User') },
    handler: async ({ control, params }) => ({ body: { items: await control.listUsers(params) } }),
  }),
  defineRoute({
    id: 'putUser',
    method: 'PUT',
    path: `${DEPLOYMENT}/users/{user}`,
    tag: 'users',
    summary: 'Create a basic-auth user or change its password',
    params: userParams,
    body: object({ password: string({ min: 8, max: 1024, description: 'At least 8 characters; stored only hashed.', example: 'correct horse' }) }),
    response: { status: 200, description: 'The user.', schema: ref('User') },
    handler: async ({ control, params, body, actor }) => ({
      body: await control.putUser(params, params.user, body.password, actor),
    }),
  }),
  defineRoute({
    id: 'deleteUser',
    method: 'DELETE',
    path: `${DEPLOYMENT}/users/{user}`,
    tag: 'users',
    summary: 'Delete a basic-auth user',
    params: userParams,
    response: { status: 204, description: 'Deleted.' },
    handler: async ({ control, params, actor }) => {
      await control.deleteUser(params, params.user, actor);
      return { status: 204 };
    },
  }),
];
