import type { CommandEntry } from './command.ts';

/** Every `portico` sub-command, in the order `portico --help` lists them; each module is loaded when run. */
export const commands: readonly CommandEntry[] = [
  { name: 'start', summary: 'Run everything on this machine: controller, gateway, admin API and web UI', load: async () => (await import('./serve.ts')).startCommand },
  { name: 'validate', summary: 'Check a valohai.yaml and print its endpoints as JSON', load: async () => (await import('./validate.ts')).validateCommand },
  { name: 'deploy', summary: 'Build a version from a folder with valohai.yaml, wait until it is ready, print its URLs', load: async () => (await import('./deploy.ts')).deployCommand },
  { name: 'deployments', summary: 'List, create, show, update or delete deployments', load: async () => (await import('./deployments.ts')).deploymentsCommand },
  { name: 'versions', summary: 'List, show, stop, start, scale or delete versions', load: async () => (await import('./versions.ts')).versionsCommand },
  { name: 'alias', summary: 'Point aliases at versions (or weighted versions); list them and their history', load: async () => (await import('./alias.ts')).aliasCommand },
  { name: 'logs', summary: "Print (or follow with -f) the replica logs of a version's endpoint", load: async () => (await import('./logs.ts')).logsCommand },
  { name: 'env', summary: "Read or change a project's environment variables and secrets", load: async () => (await import('./env.ts')).envCommand },
  { name: 'users', summary: 'List, set or delete the basic-auth users of a deployment', load: async () => (await import('./users.ts')).usersCommand },
  { name: 'tokens', summary: 'List, create or revoke admin API tokens', load: async () => (await import('./tokens.ts')).tokensCommand },
  { name: 'gateway', summary: 'Run a gateway reading the routing table from Redis', load: async () => (await import('./gateway.ts')).gatewayCommand },
  { name: 'controller', summary: 'Run the controller and admin API alone (needs PORTICO_REDIS_URL; gateways run apart)', load: async () => (await import('./serve.ts')).controllerCommand },
];
