import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Registry, collectDefaultMetrics } from 'prom-client';
import { loadConfig, type Config } from '../../common/config.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { listen } from '../../common/http.ts';
import { createMetricsServer, startGateway, urlOf } from '../../gateway/main.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import { ClusterMetrics } from './cluster-metrics.ts';
import { UsageError, positionalsOnly, type Command } from './command.ts';
import { onStopSignals, takeStopSignals } from './signals.ts';

// After a clean shutdown the process should be idle and exit by itself; if a stray handle keeps
// it alive, it still exits this long after.
const EXIT_GRACE_MS = 1000;
// Longest the primary waits for workers beyond the drain deadline before killing them.
const WORKER_KILL_GRACE_MS = 5000;

/**
 * One gateway process: reads the routing table in Redis, serves until SIGTERM/SIGINT, then
 * drains (`/readyz` 503 at once, in-flight requests finish within PORTICO_DRAIN_SECONDS) and
 * resolves with the exit code. In a cluster worker, metrics are answered to the primary.
 */
async function runGateway(config: Config, log: Logger, inCluster: boolean): Promise<number> {
  // SIGHUP reopens the access log (log rotation); installed first, so a SIGHUP while starting
  // never ends the process.
  let onHangup = (): void => {};
  const hangup = () => onHangup();
  process.on('SIGHUP', hangup);
  // A stop from the first: one while the modules loaded ends the process before it starts; one
  // while it starts, once it has.
  const stops = await takeStopSignals();
  if (stops.requested !== undefined) {
    process.off('SIGHUP', hangup);
    log.info('stopped before starting', { why: stops.requested });
    return 0;
  }
  const routing = new RedisRoutingTable({ url: config.redisUrl as string, commandTimeoutMs: config.redisTimeoutMs });
  let gw;
  try {
    gw = await startGateway({ config, routing, serveMetrics: !inCluster, log });
  } catch (err) {
    log.error('gateway failed to start', { error: err instanceof Error ? err.message : String(err) });
    await routing.close().catch(() => {});
    process.off('SIGHUP', hangup);
    return 1;
  }
  if (inCluster) {
    // The primary takes this worker out of the live set if it dies without doing so itself.
    process.send?.({ portico: 'gateway-id', id: gw.id } satisfies WorkerMessage);
    AggregatorRegistry.setRegistries([gw.metrics.registry]);
    // Constructing one installs the worker's answer to the primary's metrics requests.
    new AggregatorRegistry();
  }
  const gateway = gw;
  onHangup = () => {
    log.info('SIGHUP: reopening the access log');
    gateway.reopenLogs();
  };
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      process.off('SIGHUP', hangup);
      log.info('draining', { why, inFlight: gateway.listener.inFlight });
      gateway
        .drain()
        .then(() => routing.close())
        .then(
          () => {
            log.info('stopped');
            resolve(0);
          },
          (err: unknown) => {
            log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
            resolve(1);
          },
        );
    };
    stops.started(stop);
    if (inCluster && cluster.worker) {
      // The primary went away (killed, out of memory): nobody will forward signals any more, and
      // a restarted gateway needs the port. Node's cluster ended such a worker at once, cutting
      // its requests in flight and their access-log lines; now it stops accepting at once and
      // drains as on SIGTERM.
      cluster.worker.exitedAfterDisconnect = true;
      process.once('disconnect', () => {
        gateway.stopListening();
        stop('primary disconnected');
      });
    }
  });
}

/** What a worker tells the primary: the id it registered in the live set under. */
interface WorkerMessage {
  readonly portico: 'gateway-id';
  readonly id: string;
}

/**
 * Takes a dead worker's registration out of the live set at once, so that alias changes do not
 * wait for it until its heartbeat expires (three periods). Best effort: the expiry still does.
 */
async function unregisterDead(config: Config, id: string, log: Logger): Promise<void> {
  const table = new RedisRoutingTable({ url: config.redisUrl as string, commandTimeoutMs: Math.max(config.redisTimeoutMs, 1000) });
  try {
    if (await table.whenAvailable(2000)) await table.unregister(id);
    log.info('dead worker left the live set', { id });
  } catch (err) {
    log.warn('dead worker not removed from the live set (its heartbeat will expire)', { id, error: err instanceof Error ? err.message : String(err) });
  } finally {
    await table.close();
  }
}

/**
 * The cluster primary: runs `config.gatewayWorkers` workers sharing the gateway port, restarts
 * one that dies, serves every worker's metrics (summed, dead workers' counters kept: `ClusterMetrics`) on the metrics port, and on
 * SIGTERM/SIGINT has each worker drain, exiting 0 when all of them did.
 */
async function runPrimary(config: Config, log: Logger): Promise<number> {
  const ids = new WeakMap<Worker, string>();
  // A worker answers metrics requests once it has told its live-set id (see `runGateway`).
  // The primary's process metrics count with the workers'.
  const own = new Registry();
  collectDefaultMetrics({ register: own });
  const aggregator = new ClusterMetrics({ answers: (w) => ids.has(w), own });
  const metricsServer = createMetricsServer(() => aggregator.text(), aggregator.contentType);
  let metricsUrl: string;
  try {
    // PORTICO_METRICS_PORT=0 picks a free port: the one it got is what to log.
    metricsUrl = `${urlOf(config.host, (await listen(metricsServer, config.metricsPort, config.host, 'PORTICO_METRICS_PORT')).port)}/metrics`;
  } catch (err) {
    log.error('cannot serve metrics', { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }

  const listened = new WeakSet<Worker>();
  cluster.on('message', (worker, msg: Partial<WorkerMessage> | null) => {
    if (msg?.portico === 'gateway-id' && typeof msg.id === 'string') ids.set(worker, msg.id);
  });
  // Workers accept from the shared socket themselves. With the default round-robin scheduling the
  // primary accepts every connection and hands it over: one handed to a worker that dies before
  // taking it is never served nor closed, and its client waits forever. Now a dying worker's
  // connections are reset and those not yet accepted go to the other workers. (Read at the first
  // fork.)
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  let failed = false;
  // Whether a worker has ever listened: until then a worker that dies could not start (port taken,
  // Redis URL wrong...) and a restart would fare no better.
  let started = false;
  let restartDelayMs = 100;
  // The workers whose process has not exited yet. Not `cluster.workers`: Node keeps a worker in it
  // until both its 'exit' and its 'disconnect' have happened, in either order, so an exit seen
  // before the disconnect would leave it there with nothing to call `finish` again.
  const running = new Set<Worker>();
  const fork = () => {
    if (!stopping) running.add(cluster.fork());
  };
  // SIGHUP (log rotation): every worker reopens its access log. Only workers already serving: one
  // still loading its modules would die of it (and opens the log at its path when it starts).
  const hangup = () => {
    for (const w of running) if (listened.has(w)) w.process.kill('SIGHUP');
  };
  process.on('SIGHUP', hangup);
  return new Promise<number>((resolve) => {
    const finish = () => {
      if (running.size > 0) return;
      process.off('SIGHUP', hangup);
      metricsServer.close();
      metricsServer.closeAllConnections();
      log.info('stopped');
      resolve(failed ? 1 : 0);
    };
    const stopAll = (why: string) => {
      if (stopping) return;
      stopping = true;
      log.info('draining workers', { why });
      for (const w of running) w.process.kill('SIGTERM');
      const killer = setTimeout(() => {
        for (const w of running) w.process.kill('SIGKILL');
      }, config.drainSeconds * 1000 + WORKER_KILL_GRACE_MS);
      killer.unref();
      finish();
    };
    cluster.on('listening', (worker) => {
      listened.add(worker);
      started = true;
      restartDelayMs = 100;
    });
    cluster.on('exit', (worker, code, signal) => {
      running.delete(worker);
      if (stopping) {
        // A worker still loading its modules when the stop came had no handler yet: the signal
        // ended it, with nothing to drain. That is no failure (it made the whole exit 1).
        const stoppedWhileLoading = !listened.has(worker) && (signal === 'SIGTERM' || signal === 'SIGINT');
        if (code !== 0 && !stoppedWhileLoading) failed = true;
        finish();
        return;
      }
      if (!started) {
        log.error('worker failed to start; stopping', { pid: worker.process.pid, code, signal });
        failed = true;
        stopAll('worker failed to start');
        return;
      }
      // After the first start the setup is known to work: a worker dying even before it listens
      // was killed (by the OOM killer, say), and is restarted like any other.
      log.warn(listened.has(worker) ? 'worker died; restarting it' : 'worker died while starting; restarting it', { pid: worker.process.pid, code, signal });
      const id = ids.get(worker);
      if (id !== undefined) void unregisterDead(config, id, log);
      setTimeout(fork, restartDelayMs).unref();
      restartDelayMs = Math.min(restartDelayMs * 2, 5000);
    });
    // A second stop signal ends the workers with the primary: they would drain on when it is gone.
    onStopSignals(stopAll, () => {
      for (const w of running) w.process.kill('SIGKILL');
    });
    for (let i = 0; i < config.gatewayWorkers; i++) fork();
    log.info('gateway primary started', { workers: config.gatewayWorkers, metrics: metricsUrl });
  });
}

/**
 * `portico gateway`: runs the gateway alone against the routing table in Redis
 * (`PORTICO_REDIS_URL`, required), with `PORTICO_GATEWAY_WORKERS` processes sharing the port.
 * Exits 0 after a SIGTERM/SIGINT drain, 1 when it cannot start, 2 on bad configuration.
 */
export const gatewayCommand: Command = {
  name: 'gateway',
  handlesStopSignals: true,
  help: `Usage: portico gateway

Runs the gateway alone: it serves endpoint URLs on PORTICO_HOST:PORTICO_GATEWAY_PORT, reading the
routing table a controller publishes to Redis, and Prometheus metrics on PORTICO_METRICS_PORT.
Any number of gateways may share one Redis.

Requires PORTICO_REDIS_URL (\`portico start\` runs an embedded gateway without Redis).
PORTICO_GATEWAY_WORKERS > 1 runs that many worker processes sharing the port; the metrics port
then serves the sum over all workers (process_* and nodejs_* over the primary too; the
counters of a worker that died stay in it, as it last reported them, so the sums never go back). A worker that dies is restarted (after 100 ms, doubling up
to 5 s while no worker comes up in between), unless none has started yet: then the gateway exits 1.

On SIGTERM (or SIGINT): /readyz answers 503 at once, requests in flight finish, idle
connections close, and the process exits 0 within PORTICO_DRAIN_SECONDS (about 2 s more at most,
when requests or a Redis that does not answer hold it to the end: the last request stats then
go unreported, and the gateway leaves Redis's live set when its heartbeat expires); one while it
starts (loading its modules takes a second or so) ends it with exit 0 too. A second SIGTERM or
SIGINT during the drain, a second or more after the first, ends the process (workers included) at
once: requests still in flight are cut and get no access log line. One within a second of the
first is a copy of it (Ctrl-C signals the whole process group) and changes nothing.
Workers whose primary was killed (SIGKILL, out of memory) free the port at once, so that a
restarted gateway can take it, and drain what they have in flight as on SIGTERM.
On SIGHUP: a file access log (PORTICO_ACCESS_LOG=<path>) is reopened at its path, in every
worker, so that log rotation can move the old file away (logrotate's default "create" mode).

Options:
  -h, --help   Show this help.
`,
  async run(args, env) {
    const positionals = positionalsOnly(args);
    if (positionals.length > 0) throw new UsageError('takes no arguments');
    const config = loadConfig(env, { ports: ['PORTICO_GATEWAY_PORT', 'PORTICO_METRICS_PORT'], files: ['PORTICO_ACCESS_LOG'] });
    if (config.redisUrl === undefined) {
      process.stderr.write(
        'portico gateway: PORTICO_REDIS_URL is not set. A separate gateway reads the routing table from Redis;\n' +
          'set PORTICO_REDIS_URL=redis://host:6379 (the controller must use the same), or run `portico start`\n' +
          'for the single-process setup with an embedded gateway.\n',
      );
      return 2;
    }
    const log = createLogger(cluster.isWorker ? `gateway-worker-${process.pid}` : 'gateway', config.logLevel);
    const inCluster = cluster.isWorker;
    const code = config.gatewayWorkers > 1 && cluster.isPrimary ? await runPrimary(config, log) : await runGateway(config, log, inCluster);
    // A cluster worker's IPC channel keeps it alive; elsewhere this only fires if a stray handle does.
    if (inCluster) process.exit(code);
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
    return code;
  },
};
