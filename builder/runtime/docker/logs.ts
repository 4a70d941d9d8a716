import type Dockerode from 'dockerode';

/** One line a container printed, with the engine's timestamp. */
export interface ContainerLine {
  readonly stream: 'stdout' | 'stderr';
  readonly line: string;
  /** Epoch milliseconds. */
  readonly at: number;
  /** Epoch nanoseconds (the engine's precision): where to resume following. */
  readonly ns: bigint;
}

const TS = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ?/;

/** Parses the engine's RFC 3339 timestamp prefix of a log line. */
export function parseTimestamped(text: string): { line: string; at: number; ns: bigint } | null {
  const m = TS.exec(text);
  if (!m?.[1]) return null;
  const seconds = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(seconds)) return null;
  const frac = (m[2] ?? '').padEnd(9, '0');
  const ns = BigInt(seconds) * 1_000_000n + BigInt(frac);
  return { line: text.slice(m[0].length), at: seconds + Math.floor(Number(frac) / 1e6), ns };
}

/** The `since` parameter (seconds.nanoseconds) for epoch nanoseconds. */
export function sinceParam(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/**
 * Splits the engine's multiplexed log stream (8-byte frame headers: stream type, size) into
 * lines per stream; a line without its newline yet waits for the rest (or the end).
 */
export class LogDemuxer {
  #buf: Buffer = Buffer.alloc(0);
  readonly #partial = { stdout: '', stderr: '' };
  readonly #onLine: (stream: 'stdout' | 'stderr', text: string) => void;

  constructor(onLine: (stream: 'stdout' | 'stderr', text: string) => void) {
    this.#onLine = onLine;
  }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    while (this.#buf.length >= 8) {
      const size = this.#buf.readUInt32BE(4);
      if (this.#buf.length < 8 + size) break;
      const type = this.#buf[0];
      const payload = this.#buf.subarray(8, 8 + size).toString('utf8');
      this.#buf = this.#buf.subarray(8 + size);
      if (type === 1 || type === 2) this.#text(type === 1 ? 'stdout' : 'stderr', payload);
    }
  }

  #text(stream: 'stdout' | 'stderr', text: string): void {
    const parts = (this.#partial[stream] + text).split('\n');
    this.#partial[stream] = parts.pop() ?? '';
    for (const p of parts) this.#onLine(stream, p.replace(/\r$/, ''));
  }

  /** Hands on what is left without a newline. */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.#partial[stream] !== '') this.#onLine(stream, this.#partial[stream]);
      this.#partial[stream] = '';
    }
  }
}

/**
 * Follows a container's output (stdout and stderr, with timestamps) until the container stops or
 * `signal` aborts; resolves then. `sinceNs` resumes after a line already seen; `fromNow` skips
 * what was printed before (an adopted container).
 */
export async function followContainerLogs(
  container: Dockerode.Container,
  opts: { sinceNs?: bigint; fromNow?: boolean; signal: AbortSignal; onLine: (l: ContainerLine) => void },
): Promise<void> {
  const params: Record<string, unknown> = { follow: true, stdout: true, stderr: true, timestamps: true, abortSignal: opts.signal };
  if (opts.fromNow) params['tail'] = 0;
  else if (opts.sinceNs !== undefined && opts.sinceNs > 0n) params['since'] = sinceParam(opts.sinceNs + 1n);
  const stream = (await container.logs(params as unknown as Dockerode.ContainerLogsOptions & { follow: true })) as NodeJS.ReadableStream;
  const after = opts.sinceNs ?? 0n;
  const demux = new LogDemuxer((s, text) => {
    const parsed = parseTimestamped(text);
    const entry: ContainerLine = parsed
      ? { stream: s, line: parsed.line, at: parsed.at, ns: parsed.ns }
      : { stream: s, line: text, at: Date.now(), ns: BigInt(Date.now()) * 1_000_000n };
    // `since` has second precision on some engines: drop what was already handed on.
    if (parsed && parsed.ns <= after) return;
    opts.onLine(entry);
  });
  await new Promise<void>((resolve) => {
    let ended = false;
    const done = () => {
      if (ended) return;
      ended = true;
      demux.end();
      resolve();
    };
    stream.on('data', (c: Buffer) => {
      if (!ended) demux.push(c);
    });
    stream.on('end', done);
    stream.on('error', done);
    stream.on('close', done);
    if (opts.signal.aborted) done();
    opts.signal.addEventListener('abort', done, { once: true });
  });
}
