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
 * Splits `args` into `--flag value` / `--flag=value` / `-f` options and positionals.
 * `booleans` names the flags that take no value.
 */
export function parseArgs(
  args: readonly string[],
  booleans: readonly string[] = [],
): { flags: Map<string, string | true>; positionals: string[] } {
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      if (eq !== -1) flags.set(name, a.slice(eq + 1));
      else if (booleans.includes(name)) flags.set(name, true);
      else {
        const next = args[i + 1];
        if (next === undefined) throw new UsageError(`--${name} needs a value`);
        flags.set(name, next);
        i++;
      }
    } else if (a.startsWith('-') && a.length > 1) {
      for (const ch of a.slice(1)) flags.set(ch, true);
    } else positionals.push(a);
  }
  return { flags, positionals };
}
