/**
 * How long after a stop signal another one counts as a copy of it rather than a request to stop
 * at once. Copies are common: Ctrl-C, or a supervisor stopping a process group (systemd's
 * default), signals every process of the group, and npm (`npm start`, `npx`) passes what it got
 * on to its child as well; `portico gateway`'s primary signals its workers too.
 */
export const DUPLICATE_SIGNAL_MS = 1000;

/** A stop signal that came while `holdStopSignals` held them, and when. */
let held: { readonly signal: NodeJS.Signals; readonly at: number } | undefined;
const hold = (signal: NodeJS.Signals): void => {
  held ??= { signal, at: performance.now() };
};

function unhold(): void {
  process.off('SIGTERM', hold);
  process.off('SIGINT', hold);
}

/**
 * Holds a SIGTERM or SIGINT that comes before a command handles them (`bin/portico.ts`, first
 * thing): loading a command's modules takes a second or more, and a supervisor stopping
 * `portico gateway` meanwhile ended it by the signal (exit 143) where a stop is an exit 0. The
 * command's `onStopSignals` gets the held signal; `releaseStopSignals` lets it act as it would have.
 */
export function holdStopSignals(): void {
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
}

/** For a command that does not handle stop signals: one held ends the process now, as it would have. */
export async function releaseStopSignals(): Promise<void> {
  // A signal not yet emitted (the modules load without a turn of the event loop) would be lost
  // with the last listener: one turn first.
  await new Promise((resolve) => setImmediate(resolve));
  unhold();
  if (held === undefined) return;
  const { signal } = held;
  held = undefined;
  process.kill(process.pid, signal);
}

/**
 * Calls `stop` on the first SIGTERM or SIGINT (a drain), or at once for one held since start-up
 * (`holdStopSignals`). A stop signal more than
 * `DUPLICATE_SIGNAL_MS` after it ends the process at once, as that signal does by default
 * (after `force`, which ends what must end with it); one within that time is taken for a copy
 * of the first and ignored (a second `process.once` made a copy kill the process in the middle
 * of its drain).
 */
export function onStopSignals(stop: (signal: NodeJS.Signals) => void, force: () => void = () => {}): void {
  let first: number | undefined;
  const on = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = performance.now();
      stop(signal);
      return;
    }
    if (performance.now() - first < DUPLICATE_SIGNAL_MS) return;
    process.off('SIGTERM', on);
    process.off('SIGINT', on);
    force();
    process.kill(process.pid, signal);
  };
  process.on('SIGTERM', on);
  process.on('SIGINT', on);
  // Only now: a signal not emitted yet goes to `on` (it was lost with the last listener).
  unhold();
  if (held !== undefined) {
    first = held.at;
    const { signal } = held;
    held = undefined;
    stop(signal);
  }
}

/** Stop requests of a command that starts for a while (`takeStopSignals`). */
export interface StopRequests {
  /** The first stop asked for so far (a signal's name), if any: the start should end at once. */
  readonly requested: string | undefined;
  /** Aborted at the first stop: for a start that may wait long (a standby controller's lease). */
  readonly signal: AbortSignal;
  /** Once started: a stop calls `stop`, at once for one asked for already. */
  started(stop: (why: string) => void): void;
}

/**
 * Takes SIGTERM and SIGINT from a command's first line (`onStopSignals`), so a stop while it
 * loads (held, see `holdStopSignals`) or starts ends it as a stop once started does, with 0. A
 * signal that came while the modules loaded is emitted on the loop's next turn: waited for here.
 */
export async function takeStopSignals(): Promise<StopRequests> {
  let requested: string | undefined;
  const aborted = new AbortController();
  let stop = (why: string): void => {
    requested ??= why;
    aborted.abort();
  };
  onStopSignals((signal) => stop(signal));
  await new Promise((resolve) => setImmediate(resolve));
  return {
    get requested() {
      return requested;
    },
    signal: aborted.signal,
    started(onStop) {
      stop = onStop;
      if (requested !== undefined) onStop(requested);
    },
  };
}
