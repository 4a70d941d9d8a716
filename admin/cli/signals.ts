/**
 * How long after a stop signal another one counts as a copy of it rather than a request to stop
 * at once. Copies are common: Ctrl-C, or a supervisor stopping a process group (systemd's
 * default), signals every process of the group, and npm (`npm start`, `npx`) passes what it got
 * on to its child as well; `portico gateway`'s primary signals its workers too.
 */
export const DUPLICATE_SIGNAL_MS = 1000;

/**
 * Calls `stop` on the first SIGTERM or SIGINT (a drain). A stop signal more than
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
}
