/** Levels in increasing severity. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A process logger: one JSON line per message on stderr. */
export interface Logger {
  debug(msg: string, extra?: Record<string, unknown>): void;
  info(msg: string, extra?: Record<string, unknown>): void;
  warn(msg: string, extra?: Record<string, unknown>): void;
  error(msg: string, extra?: Record<string, unknown>): void;
}

let stderrWatched = false;

/**
 * Writes to stderr. When its reader has gone (EPIPE: a log shipper or journald restarted, `2>&1 |
 * head`), the stream's 'error' went unhandled and ended the process (a gateway serving traffic)
 * at its next log line; now such lines are lost, as there is nowhere left to say so.
 */
export function writeStderr(line: string): void {
  if (!stderrWatched) {
    stderrWatched = true;
    process.stderr.on('error', () => {});
  }
  if (!process.stderr.destroyed) process.stderr.write(line);
}

/** A logger writing JSON lines (`time`, `level`, `component`, `msg`, extra fields) at or above `level`. */
export function createLogger(component: string, level: LogLevel, write: (line: string) => void = writeStderr): Logger {
  const min = ORDER[level];
  const emit = (lvl: LogLevel) => (msg: string, extra?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, component, msg, ...extra }) + '\n');
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
