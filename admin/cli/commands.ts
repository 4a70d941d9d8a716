import type { Command } from './command.ts';

/** Every `portico` sub-command, in the order `portico --help` lists them. */
export const commands: readonly Command[] = [];
