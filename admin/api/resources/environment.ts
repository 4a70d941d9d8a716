import { defineRoute, projectParams, PROJECT, ref } from '../route.ts';
import { bool, object, optional, record, string } from '../schema.ts';

/** Environment variable names as the replicas see them. */
export const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,199}$';

const putBody = object({
  variables: record(
    object({
      value: string({ max: 65536, description: 'The value (a secret is never read back).', example: 'v' }),
      secret: optional(bool({ description: 'Shown as "********" when read (default false).' })),
    }),
    { keyPattern: ENV_NAME_PATTERN, keyExample: 'MODEL_NAME', maxKeys: 1000, description: 'Every variable of the project (the set replaces the previous one).' },
  ),
});

/** The project environment (variables and secrets every version inherits). */
export const environmentRoutes = [
  defineRoute({
    id: 'getEnvironment',
    method: 'GET',
    path: `${PROJECT}/environment`,
    tag: 'environment',
    summary: 'Read the project environment',
    description: 'Secret values read as "********".',
    params: projectParams,
    response: { status: 200, description: 'The variables.', schema: ref('Environment') },
    handler: async ({ control, params }) => ({ body: await control.getEnvironment(params) }),
  }),
  defineRoute({
    id: 'putEnvironment',
    method: 'PUT',
    path: `${PROJECT}/environment`,
    tag: 'environment',
    summary: 'Replace the project environment',
    params: projectParams,
    body: putBody,
    response: { status: 200, description: 'The new environment (secrets masked).', schema: ref('Environment') },
    handler: async ({ control, params, body, actor }) => ({
      body: await control.putEnvironment(params, body.variables, actor),
    }),
  }),
];
