/** One `portico` sub-command. `run` returns the process exit code. */
export interface Command {
  readonly name: string;
  /** Full text for `portico <name> --help`. */
  readonly help: string;
  run(args: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number>;
  /**
   * True when `args` ask for the help text: `--help` or `-h` as an option, not as the value of
   * an option that takes one. Without it, `--help` or `-h` anywhere before `--`.
   */
  wantsHelp?(args: readonly string[]): boolean;
  /**
   * True when `run` handles SIGTERM and SIGINT itself (`onStopSignals`), a signal that came
   * while its modules loaded included; other commands end by one as by default.
   */
  readonly handlesStopSignals?: boolean;
}

/** `--help` or `-h` before `--` (for commands whose options take no value). */
export function helpBeforeDashDash(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * A command as `portico --help` lists it: its name, one line, and how to load it. Commands are
 * loaded only when run, so `portico gateway` does not carry the controller's modules (the
 * Kubernetes client, dockerode...) in its memory.
 */
export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

/** Thrown for a bad command line; printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * The arguments of a command that takes no option (its `--help` is answered before it runs):
 * the positionals, those after `--` included. Any option is refused, so that one mistyped or
 * taken from another tool (`portico start --port 9000`) never goes unnoticed.
 */
export function positionalsOnly(args: readonly string[]): string[] {
  const end = args.indexOf('--');
  const before = end === -1 ? args : args.slice(0, end);
  const options = before.filter((a) => a.startsWith('-') && a.length > 1);
  if (options.length > 0) throw new UsageError(`unknown option ${options.map((o) => o.replace(/=.*/s, '')).join(', ')}`);
  return end === -1 ? [...args] : [...before, ...args.slice(end + 1)];
}
