import { createServer, type Server } from 'node:http';
import { getHeapStatistics } from 'node:v8';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import type { Config } from '../common/config.ts';
import { jsonClientErrors, listen } from '../common/http.ts';
import { GatewayErrors } from './errors.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { AccessLog } from './access-log.ts';
import { BasicAuthenticator } from './auth/basic.ts';
import { LeastPendingBalancer } from './balancer/least-pending.ts';
import { GatewayResponse } from './exchange.ts';
import { GatewayListener, upgradesWithoutBody } from './listener.ts';
import { GatewayMetrics } from './metrics.ts';
import { Upstreams } from './proxy/upstreams.ts';
import { DEFAULT_STARTUP_WAIT_MS, RouteCache } from './routing/cache.ts';
import type { RoutingReader } from './routing/contract.ts';
import { StatsReporter } from './stats.ts';

/** Options of `startGateway`. */
export interface StartGatewayOptions {
  readonly config: Config;
  /** The routing table to read (embedded or Redis); the caller owns and closes it. */
  readonly routing: RoutingReader;
  /** Identity in the routing table's live set (default: host name, pid and a random suffix). */
  readonly gatewayId?: string;
  /**
   * Serve `/metrics` on `config.metricsPort` (default true). `portico gateway` with several
   * workers turns it off in workers: the primary serves all workers' metrics at once.
   */
  readonly serveMetrics?: boolean;
  /** Export Node's process metrics too (default true). */
  readonly processMetrics?: boolean;
  /** How often request stats go to the routing table's stats sink (default 2000 ms). */
  readonly statsIntervalMs?: number;
  readonly log?: Logger;
}

/** A running gateway. */
export interface Gateway {
  /** The id it registered in the live set under. */
  readonly id: string;
  /** Where it serves, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** `http://host:port/metrics`, or `''` when metrics are not served by this process. */
  readonly metricsUrl: string;
  readonly cache: RouteCache;
  readonly metrics: GatewayMetrics;
  readonly listener: GatewayListener;
  readonly upstreams: Upstreams;
  readonly authenticator: BasicAuthenticator;
  /**
   * `/readyz` turns 503 at once; in-flight requests finish (at most `config.drainSeconds`),
   * idle keep-alive connections close, then everything closes as in `close()`.
   */
  drain(): Promise<void>;
  /** Stops accepting connections (another process may take the port); open ones go on. */
  stopListening(): void;
  /** Stops at once: closes listeners, connections, pools; leaves the live set. */
  close(): Promise<void>;
  /** Reopens a file access log at its path (after log rotation); see `AccessLog.reopen`. */
  reopenLogs(): void;
}

/**
 * How long closing may take after the drain deadline (or from `close()`): the routing table's
 * last writes (a Redis that hangs) and the last lines for a FIFO access log whose reader stopped
 * reading are not waited for past it, nor past `LAST_WRITES_MS` after the cut requests have
 * ended, should that be later.
 */
const CLOSE_GRACE_MS = 1000;
const LAST_WRITES_MS = 250;

/** Whether `p` settles before `by` (a `performance.now()` time); never waits past it. */
async function settledBy(p: Promise<unknown>, by: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, by - performance.now())))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Heap a gateway needs besides its caches (modules, pools, buffers, young generation), in bytes. */
const BASE_HEAP_BYTES = 64 * 2 ** 20;
/** Heap per routing-cache entry and per route with its own metrics, measured with 100,000 routes (docs/benchmarks.md). */
const CACHE_ENTRY_BYTES = 3 * 1024;
const ROUTE_METRICS_BYTES = 2 * 1024;

/** The heap the configured caches need at most, in bytes. */
export function heapNeeded(config: Pick<Config, 'cacheSize' | 'metricsMaxRoutes'>): number {
  return BASE_HEAP_BYTES + config.cacheSize * CACHE_ENTRY_BYTES + config.metricsMaxRoutes * ROUTE_METRICS_BYTES;
}

/**
 * Refuses to start when the process's heap bound (`--max-old-space-size`, as deploy/kubernetes
 * sets it) is too small for the configured caches: a clear start-up error instead of running
 * out of memory under load.
 */
export function checkHeapBound(config: Pick<Config, 'cacheSize' | 'metricsMaxRoutes'>, heapLimit: number): void {
  const need = heapNeeded(config);
  if (heapLimit >= need) return;
  const mib = (n: number) => Math.ceil(n / 2 ** 20);
  throw new Error(
    `PORTICO_CACHE_SIZE=${config.cacheSize} and PORTICO_METRICS_MAX_ROUTES=${config.metricsMaxRoutes} need about ${mib(need)} MiB of heap, ` +
      `but this process may use ${mib(heapLimit)} MiB: lower them, or raise --max-old-space-size (e.g. NODE_OPTIONS=--max-old-space-size=${mib(need) + 32})`,
  );
}

/**
 * Logs when the routing table becomes unreachable and reachable again, and a start that is
 * still waiting for it when the cache's start-up wait ends.
 */
function watchRouting(routing: RoutingReader, cache: RouteCache, maxStaleSeconds: number, log: Logger): void {
  const where = (): string => (routing.describe === undefined ? '' : ` (${routing.describe()})`);
  routing.onAvailability((up) => {
    if (up) log.info(`routing table reachable${where()}`);
    else log.warn(`routing table unreachable${where()}: cached routes keep serving for at most ${maxStaleSeconds} s, others answer 503`);
  });
  const check = setTimeout(() => {
    if (!cache.isReady()) log.warn(`routing table not reachable yet${where()}: routes answer 503 and /readyz 503 until it is`);
  }, DEFAULT_STARTUP_WAIT_MS);
  check.unref();
}

/** `http://host:port` of a listener, as reached from this machine. */
export function urlOf(host: string, port: number): string {
  // A wildcard bind is reached on loopback from this machine.
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/**
 * The metrics port's server: `GET /metrics` (or HEAD) answers `text()`, anything else a JSON 404,
 * and its refusals are in the JSON shape too, as on the public port (a scraper's logs show why).
 * A gateway's own, or the sum over the workers of `portico gateway`'s primary.
 */
export function createMetricsServer(text: () => Promise<string>, contentType: string): Server {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ statusCode: 404, code: 'NOT_FOUND', error: 'Not Found', message: 'metrics are at GET /metrics' }));
      return;
    }
    text().then(
      (body) => {
        res.writeHead(200, { 'content-type': contentType });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`# metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
      },
    );
  });
  server.on('clientError', jsonClientErrors(GatewayErrors));
  return server;
}

/**
 * Starts a gateway on `config.host:config.gatewayPort` (0 picks a free port) reading routes
 * through a `RouteCache` over `routing`, with metrics on `config.metricsPort`. Used by
 * `portico gateway`, by `portico start` (embedded, in-process) and by tests.
 */
export async function startGateway(opts: StartGatewayOptions): Promise<Gateway> {
  const { config, routing } = opts;
  const log = opts.log ?? createLogger('gateway', config.logLevel);
  checkHeapBound(config, getHeapStatistics().heap_size_limit);
  // Before listening: a log path that cannot be opened stops the start with nothing left open.
  const accessLog = new AccessLog(config.accessLog);
  const server = createServer({
    ServerResponse: GatewayResponse,
    // Longer than the load balancer's idle timeout (PORTICO_KEEPALIVE_SECONDS), so it closes first.
    keepAliveTimeout: config.keepAliveSeconds * 1000,
    // No limit on a request's total time (Node's default cut every upload at 300 s); a body that
    // stops moving is ended by the inactivity timer below instead (`handleTimeout`). A head must
    // arrive whole in time, however it trickles: set explicitly, as Node's default is the smaller
    // of 60 s and requestTimeout (0 turned it off). Node checks it every
    // connectionsCheckingInterval (30 s by default: a 60 s limit acted at 60-90 s).
    requestTimeout: 0,
    headersTimeout: config.headersTimeoutSeconds * 1000,
    connectionsCheckingInterval: Math.min(30_000, Math.max(250, (config.headersTimeoutSeconds * 1000) / 4)),
    insecureHTTPParser: false,
    // Checked by the header stage instead, so the 400 is the JSON error like every other.
    requireHostHeader: false,
    // An upgrade request with a body is proxied as a plain request (see `upgradesWithoutBody`).
    shouldUpgradeCallback: upgradesWithoutBody,
  });
  let address: AddressInfo;
  try {
    address = await listen(server, config.gatewayPort, config.host, 'PORTICO_GATEWAY_PORT');
  } catch (err) {
    await accessLog.close();
    throw err;
  }
  const url = urlOf(config.host, address.port);
  const derivedUrl = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.gatewayPort}`;
  // Nothing happens between `listen` resolving and the listeners below being attached: no I/O
  // callback can run in between.
  const gatewayId = opts.gatewayId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const cache = new RouteCache(routing, {
    maxEntries: config.cacheSize,
    negativeTtlMs: config.negativeCacheMs,
    maxStaleMs: config.maxStaleSeconds * 1000,
    heartbeatMs: config.heartbeatMs,
    gateway: {
      id: gatewayId,
      url: config.gatewayUrl === derivedUrl ? url : config.gatewayUrl,
      pid: process.pid,
      startedAt: Date.now(),
    },
  });
  const authenticator = new BasicAuthenticator();
  const upstreams = new Upstreams({
    connections: config.upstreamConnections,
    connectTimeoutMs: config.connectTimeoutMs,
    bodyIdleMs: config.bodyIdleSeconds * 1000,
  });
  let listener: GatewayListener | undefined;
  const metrics = new GatewayMetrics({
    cache,
    auth: authenticator,
    inFlight: () => listener?.inFlight ?? 0,
    accessLogDropped: () => accessLog.dropped,
    processMetrics: opts.processMetrics ?? true,
    maxRoutes: config.metricsMaxRoutes,
  });
  listener = new GatewayListener({
    routes: cache,
    routesReady: () => cache.isReady(),
    authenticator,
    balancer: new LeastPendingBalancer(),
    upstreams,
    metrics,
    accessLog,
    log,
    trustedProxies: config.trustedProxies,
    maxBodyBytes: config.maxBodyBytes,
    timeoutSeconds: config.timeoutSeconds,
    connectTimeoutMs: config.connectTimeoutMs,
  });
  const l = listener;
  // Every client connection, upgraded ones included (closeAllConnections() knows only HTTP ones).
  const sockets = new Set<Socket>();
  server.on('connection', (sock: Socket) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
  });
  server.on('request', l.handleRequest);
  server.on('upgrade', l.handleUpgrade);
  server.on('clientError', l.handleClientError);
  server.on('checkExpectation', l.handleExpectation);
  server.on('checkContinue', l.handleContinue);
  server.on('connect', l.handleConnect);
  server.on('timeout', l.handleTimeout);
  server.timeout = config.bodyIdleSeconds * 1000;

  // Request stats for the controller's stats API, when the routing table takes them.
  const writeStats = routing.writeStats?.bind(routing);
  const stats = writeStats
    ? new StatsReporter({ routes: () => metrics.routes(), retired: () => metrics.takeRetired(), sink: { writeStats }, log, ...(opts.statsIntervalMs !== undefined ? { intervalMs: opts.statsIntervalMs } : {}) })
    : undefined;

  let metricsServer: Server | undefined;
  let metricsUrl = '';
  // `closeBy`: when closing must be over (a `performance.now()` time).
  const closeAll = async (closeBy: number) => {
    server.close();
    server.closeAllConnections();
    for (const sock of sockets) sock.destroy();
    // The exchanges of the connections just cut end on their 'close' events, a turn of the loop
    // later: let them be accounted for (metrics, access log) before the log closes.
    if (l.inFlight > 0) await settledBy(l.whenIdle(), Math.min(closeBy, performance.now() + 1000));
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    // A routing table that does not answer (a Redis that hangs; each command waits for
    // PORTICO_REDIS_TIMEOUT_MS) is not waited for past `closeBy`: the caller closes it. One that
    // answers gets a moment however late it is (its writes take a few ms).
    const by = Math.max(closeBy, performance.now() + LAST_WRITES_MS);
    const leave = async () => {
      if (!(await settledBy(Promise.all([stats?.stop(), cache.stop()]), by))) {
        log.warn('routing table not answering: the last stats are not reported, and this gateway stays in its live set until its heartbeat expires');
      }
    };
    await Promise.all([leave(), upstreams.close(), accessLog.close(by - performance.now())]);
    // Counted in a metric while serving; the process is about to go.
    if (accessLog.dropped > 0) log.warn('access log lines dropped', { dropped: accessLog.dropped });
  };
  try {
    if (opts.serveMetrics ?? true) {
      metricsServer = createMetricsServer(() => metrics.text(), metrics.registry.contentType);
      const m = await listen(metricsServer, config.metricsPort, config.host, 'PORTICO_METRICS_PORT');
      metricsUrl = `${urlOf(config.host, m.port)}/metrics`;
    }
    await cache.start();
    stats?.start();
    watchRouting(routing, cache, config.maxStaleSeconds, log);
  } catch (err) {
    await closeAll(performance.now() + CLOSE_GRACE_MS);
    throw err;
  }
  log.info('gateway listening', { url, metricsUrl: metricsUrl || undefined });

  let closing: Promise<void> | undefined;
  const closeWithin = (closeBy: number) => (closing ??= closeAll(closeBy));
  const close = () => closeWithin(performance.now() + CLOSE_GRACE_MS);
  let draining: Promise<void> | undefined;
  const drain = () =>
    (draining ??= (async () => {
      const deadline = performance.now() + config.drainSeconds * 1000;
      l.startDraining(() => server.closeIdleConnections());
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        l.whenIdle().then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), config.drainSeconds * 1000);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) log.warn('drain deadline reached; closing in-flight requests', { inFlight: l.inFlight });
      await closeWithin(Math.max(deadline, performance.now() + CLOSE_GRACE_MS));
    })());

  const stopListening = () => void server.close();
  return { id: gatewayId, url, metricsUrl, cache, metrics, listener: l, upstreams, authenticator, drain, stopListening, close, reopenLogs: () => accessLog.reopen() };
}
