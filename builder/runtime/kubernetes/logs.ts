import { HttpMethod, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { fetch, type Dispatcher } from 'undici';

/** Construction options of `PodLogFollower`. */
export interface PodLogFollowerOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  /** Receives each line (without its timestamp) and the time the kubelet stamped on it. */
  onLine(line: string, at: number): void;
  /** First reconnect delay (ms), doubled up to 30 s; reset when lines arrive. Default 500. */
  readonly backoffMs?: number;
}

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ?(.*)$/s;

/**
 * Follows one pod's container log (`GET .../pods/<pod>/log?follow=true&timestamps=true`) until
 * stopped. A stream that ends (the container exited, the connection dropped) or fails (the
 * container has not started yet) is re-opened with backoff from the last timestamp seen, and
 * lines at or before it that were already delivered are skipped, so a line is reported once.
 * The pod log API merges stdout and stderr: every line is reported as stdout.
 */
export class PodLogFollower {
  readonly #opts: PodLogFollowerOptions;
  #stopped = false;
  #abort: AbortController | null = null;
  #lastStamp = '';
  /** Lines already delivered with timestamp `#lastStamp` (a reconnect from it sends them again). */
  #atLastStamp = new Set<string>();
  #wake: (() => void) | null = null;
  #loop: Promise<void>;

  constructor(opts: PodLogFollowerOptions) {
    this.#opts = opts;
    this.#loop = this.#run();
  }

  /** Reconnects at once if it is waiting to retry (the container (re)started). */
  nudge(): void {
    this.#wake?.();
  }

  /** Stops following; resolves once the request is closed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort?.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const first = this.#opts.backoffMs ?? 500;
    let backoff = first;
    while (!this.#stopped) {
      let got = false;
      try {
        got = await this.#follow();
      } catch {
        // not started yet, gone, or the connection failed: retry below
      }
      if (this.#stopped) break;
      backoff = got ? first : Math.min(30_000, backoff * 2);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, got ? first : backoff);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /**
   * One follow request; resolves when its stream ends, true if it delivered a line. (Made with
   * undici directly rather than client-node's `Log`, which leaves the response stream without an
   * error listener: an abort or a reset would become an uncaught exception.)
   */
  async #follow(): Promise<boolean> {
    const cluster = this.#opts.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('no current cluster in the kubeconfig');
    const { namespace, pod, container } = this.#opts;
    const url = new URL(`${cluster.server}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`);
    url.searchParams.set('container', container);
    url.searchParams.set('follow', 'true');
    url.searchParams.set('timestamps', 'true');
    if (this.#lastStamp) url.searchParams.set('sinceTime', this.#lastStamp.replace(/\.\d+/, ''));
    const ctx = new RequestContext(url.toString(), HttpMethod.GET);
    await this.#opts.kubeConfig.applySecurityAuthentication(ctx);
    const abort = new AbortController();
    this.#abort = abort;
    if (this.#stopped) abort.abort();
    let got = false;
    try {
      const res = await fetch(url, { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher() as Dispatcher | undefined, signal: abort.signal });
      if (res.status !== 200 || !res.body) {
        await res.body?.cancel().catch(() => {});
        throw new Error(`pod log ${namespace}/${pod}: HTTP ${res.status}`);
      }
      const decoder = new TextDecoder();
      let rest = '';
      for await (const chunk of res.body) {
        rest += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, nl).replace(/\r$/, '');
          rest = rest.slice(nl + 1);
          if (this.#deliver(line)) got = true;
        }
      }
      rest += decoder.decode();
      if (rest !== '' && this.#deliver(rest)) got = true;
      return got;
    } catch (err) {
      if (got || abort.signal.aborted) return got;
      throw err;
    } finally {
      this.#abort = null;
    }
  }

  /** Reports one `<timestamp> <line>`; false when it is a repeat from before a reconnect. */
  #deliver(raw: string): boolean {
    if (this.#stopped) return false;
    const m = TIMESTAMP.exec(raw);
    if (!m) {
      this.#opts.onLine(raw, Date.now());
      return true;
    }
    const stamp = m[1]!;
    const line = m[2] ?? '';
    const cmp = compareStamps(stamp, this.#lastStamp);
    if (cmp < 0 || (cmp === 0 && this.#atLastStamp.has(line))) return false;
    if (cmp > 0) {
      this.#lastStamp = stamp;
      this.#atLastStamp = new Set();
    }
    this.#atLastStamp.add(line);
    const at = Date.parse(stamp);
    this.#opts.onLine(line, Number.isNaN(at) ? Date.now() : at);
    return true;
  }
}

/** Orders RFC 3339 timestamps with any number of fraction digits (the kubelet's are UTC). */
function compareStamps(a: string, b: string): number {
  if (b === '') return 1;
  const norm = (s: string) => {
    const m = /^([^.Z+]*)(?:\.(\d+))?(.*)$/.exec(s);
    return { base: m?.[1] ?? s, frac: (m?.[2] ?? '').padEnd(9, '0') };
  };
  const x = norm(a);
  const y = norm(b);
  if (x.base !== y.base) return x.base < y.base ? -1 : 1;
  return x.frac === y.frac ? 0 : x.frac < y.frac ? -1 : 1;
}
