import { commands } from './commands.ts';
import { helpBeforeDashDash, UsageError } from './command.ts';
import { ConfigError } from '../../common/config.ts';
import { releaseStopSignals } from './signals.ts';

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: portico <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `portico <command> --help` for a command\'s options.',
    'Configuration is read from PORTICO_* environment variables (see README.md).',
  ].join('\n');
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write('portico 0.1.0\n');
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`portico: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  const cmd = await entry.load();
  if (cmd.handlesStopSignals !== true) await releaseStopSignals();
  if (cmd.wantsHelp ? cmd.wantsHelp(rest) : helpBeforeDashDash(rest)) {
    process.stdout.write(cmd.help.trimEnd() + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest, env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`portico ${name}: ${err.message}\n(see portico ${name} --help)\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`portico ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
