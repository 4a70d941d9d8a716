import type { Command } from './command.ts';
import { validateCommand } from './validate.ts';

/** Every `portico` sub-command, in the order `portico --help` lists them. */
export const commands: readonly Command[] = [
  validateCommand,
];
