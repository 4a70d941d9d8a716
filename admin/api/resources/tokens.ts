import { defineRoute, listOf, name, ref } from '../route.ts';
import { object } from '../schema.ts';

const tokenName = name('Token name (the audit log names the token that acted).', 'ci');

/** Admin API bearer tokens. */
export const tokenRoutes = [
  defineRoute({
    id: 'listTokens',
    method: 'GET',
    path: '/api/v1/tokens',
    tag: 'tokens',
    summary: 'List admin tokens (names only)',
    params: {},
    response: { status: 200, description: 'The tokens.', schema: listOf('Token') },
    handler: async ({ control }) => ({ body: { items: await control.listTokens() } }),
  }),
  defineRoute({
    id: 'createToken',
    method: 'POST',
    path: '/api/v1/tokens',
    tag: 'tokens',
    summary: 'Create an admin token',
    description: 'The token is in this response only; it is stored hashed. The names `env` and `anonymous` are refused: the audit log uses them for PORTICO_ADMIN_TOKEN and for requests without a token.',
    params: {},
    body: object({ name: tokenName }),
    response: { status: 201, description: 'The new token.', schema: ref('NewToken') },
    errors: ['ALREADY_EXISTS'],
    handler: async ({ control, body, actor }) => ({ status: 201, body: await control.createToken(body.name, actor) }),
  }),
  defineRoute({
    id: 'deleteToken',
    method: 'DELETE',
    path: '/api/v1/tokens/{name}',
    tag: 'tokens',
    summary: 'Revoke an admin token',
    description: 'The last token is not revoked (409 CONFLICT; create another first) unless PORTICO_ADMIN_TOKEN is set, which is not a named token and cannot be revoked here.',
    params: { name: tokenName },
    response: { status: 204, description: 'Revoked.' },
    errors: ['CONFLICT'],
    handler: async ({ control, params, actor }) => {
      await control.deleteToken(params.name, actor);
      return { status: 204 };
    },
  }),
];
