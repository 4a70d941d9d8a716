import { defineRoute, projectParams, PROJECT, ref } from '../route.ts';
import { bool, object, optional, record, string } from '../schema.ts';

/**
 * Environment variable names as the replicas see them. Not `__proto__`: it would be the
 * prototype of the objects environments travel in, not a variable (builder/controller.ts).
 */
export const ENV_NAME_PATTERN = '^(?!__proto__$)[A-Za-z_][A-Za-z0-9_]{0,199}$';

const putBody = object({
  variables: record(
    object({
      value: string({ max: 65536, description: 'The value (a secret is never read back; a secret sent back as "********" keeps its value and stays secret).', example: 'v' }),
      secret: optional(bool({ description: 'Shown as "********" when read (default false).' })),
    }),
    { keyPattern: ENV_NAME_PATTERN, keyExample: 'MODEL_NAME', maxKeys: 1000, description: 'Every variable of the project (the set replaces the previous one). A name is letters, digits and _, not starting with a digit; `__proto__` is refused.' },
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
