import type { Command } from './command.ts';
import { validateCommand } from './validate.ts';
import { deploymentsCommand } from './deployments.ts';
import { versionsCommand } from './versions.ts';
import { deployCommand } from './deploy.ts';
import { aliasCommand } from './alias.ts';
import { logsCommand } from './logs.ts';
import { envCommand } from './env.ts';
import { usersCommand } from './users.ts';
import { tokensCommand } from './tokens.ts';
import { gatewayCommand } from './gateway.ts';
import { startCommand, controllerCommand } from './serve.ts';

/** Every `portico` sub-command, in the order `portico --help` lists them. */
export const commands: readonly Command[] = [
  startCommand,
  validateCommand,
  deployCommand,
  deploymentsCommand,
  versionsCommand,
  aliasCommand,
  logsCommand,
  envCommand,
  usersCommand,
  tokensCommand,
  gatewayCommand,
  controllerCommand,
];
