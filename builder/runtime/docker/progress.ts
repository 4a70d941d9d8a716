/**
 * The engine's JSON progress streams (build, pull, push, import): one JSON object per line with
 * `stream` (build output), `status`/`progress` (layer transfers), `aux` (e.g. the built image
 * id) or `error`/`errorDetail` (the operation failed).
 */

/** One message of a progress stream. */
export interface ProgressMessage {
  readonly stream?: string;
  readonly status?: string;
  readonly id?: string;
  readonly progress?: string;
  readonly error?: string;
  readonly errorDetail?: { readonly code?: number; readonly message?: string };
  readonly aux?: { readonly ID?: string; readonly Tag?: string; readonly Digest?: string };
}

/** The engine reported a failure inside a progress stream (its message, verbatim). */
export class EngineStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineStreamError';
  }
}

/**
 * Reads a progress stream to its end, handing each message to `onMessage`. Resolves when the
 * stream ends without an error message; rejects with `EngineStreamError` carrying the engine's
 * message at the first `error`, or with the stream's own error (connection lost, aborted).
 */
export function followProgress(stream: NodeJS.ReadableStream, onMessage: (m: ProgressMessage) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let partial = '';
    let failed: Error | null = null;
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };
    const handle = (line: string) => {
      const text = line.trim();
      if (text === '' || failed) return;
      let m: ProgressMessage;
      try {
        m = JSON.parse(text) as ProgressMessage;
      } catch {
        m = { stream: `${text}\n` }; // not JSON: pass it on as output rather than lose it
      }
      if (m.error !== undefined || m.errorDetail?.message !== undefined) {
        failed = new EngineStreamError((m.errorDetail?.message ?? m.error ?? 'unknown error').trim());
      }
      try {
        onMessage(m);
      } catch {
        // a failing observer must not break the stream
      }
    };
    stream.on('data', (chunk: Buffer | string) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) handle(p);
    });
    stream.on('end', () => {
      handle(partial);
      partial = '';
      finish(failed);
    });
    stream.on('error', (err: Error) => finish(failed ?? err));
    stream.on('close', () => {
      // A stream destroyed without 'end' (aborted request) must settle too.
      if (!settled) finish(failed ?? new Error('the engine closed the stream early'));
    });
  });
}
