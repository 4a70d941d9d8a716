import { loadConfig, type Config } from '../../common/config.ts';
import { createLogger, type Logger } from '../../common/log.ts';
import { startController, type RunningController } from '../../builder/main.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { EmbeddedRoutingTable } from '../../gateway/routing/embedded.ts';
import { RedisRoutingTable } from '../../gateway/routing/redis.ts';
import type { RoutingTable } from '../../gateway/routing/contract.ts';
import { startAdminServer, type AdminServer } from '../api/server.ts';
import { createUi } from '../ui/serve.ts';
import { UsageError, positionalsOnly, type Command } from './command.ts';
import { describeRedisUrl, isRedisOutage } from '../../common/redis.ts';
import { takeStopSignals, type StopRequests } from './signals.ts';

/** The controller writes with more patience than the gateway reads (it must not give up on a busy Redis). */
const CONTROLLER_REDIS_TIMEOUT_MS = 5000;

/** What `portico start` / `portico controller` run, and how they stop. */
interface Running {
  readonly gateway: Gateway | null;
  readonly controller: RunningController;
  readonly admin: AdminServer;
  readonly tables: readonly RoutingTable[];
}

function redisTable(config: Config, timeoutMs: number): RedisRoutingTable {
  return new RedisRoutingTable({ url: config.redisUrl as string, commandTimeoutMs: timeoutMs });
}

/**
 * Starts the controller (store, runtimes, reconciler), the admin API + web UI and, with
 * `withGateway`, a gateway in the same process. Embedded store: one routing table in memory
 * shared by both; Redis: each side has its own connection.
 */
async function startAll(config: Config, log: Logger, withGateway: boolean, signal: AbortSignal): Promise<Running> {
  let writer: RoutingTable;
  let reader: RoutingTable;
  if (config.redisUrl) {
    writer = redisTable(config, Math.max(config.redisTimeoutMs, CONTROLLER_REDIS_TIMEOUT_MS));
    reader = withGateway ? redisTable(config, config.redisTimeoutMs) : writer;
  } else {
    writer = reader = new EmbeddedRoutingTable();
  }
  const tables = writer === reader ? [writer] : [writer, reader];
  let controller: RunningController | undefined;
  let gateway: Gateway | null = null;
  try {
    controller = await startController({ config, routing: writer, log, signal });
    if (withGateway) gateway = await startGateway({ config, routing: reader, log: createLogger('gateway', config.logLevel) });
    const admin = await startAdminServer({
      control: controller.controller,
      host: config.host,
      port: config.adminPort,
      maxUploadBytes: config.maxUploadBytes,
      logger: createLogger('admin', config.logLevel),
      ui: createUi(),
    });
    return { gateway, controller, admin, tables };
  } catch (err) {
    await gateway?.close().catch(() => {});
    await controller?.close().catch(() => {});
    for (const t of tables) await t.close().catch(() => {});
    throw err;
  }
}

function announce(r: Running, config: Config): void {
  const lines = ['Portico is running'];
  if (r.gateway) lines.push(`  gateway    ${r.gateway.url}/{owner}/{project}/{deployment}/{version-or-alias}/{endpoint}`);
  lines.push(`  admin      ${r.admin.url}/  (API ${r.admin.url}/api/v1, web UI ${r.admin.url}/)`);
  if (r.gateway?.metricsUrl) lines.push(`  metrics    ${r.gateway.metricsUrl}`);
  lines.push(`  store      ${config.redisUrl ? `Redis ${describeRedisUrl(config.redisUrl)}` : `embedded, ${config.dataDir}`}`);
  if (r.controller.createdToken) lines.push(`  admin token created and saved in ${r.controller.tokenFile} (mode 0600)`);
  else if (r.controller.tokenFileRevoked) lines.push(`  admin token file ${r.controller.tokenFile} holds a revoked token: delete it, and use a named token (PORTICO_ADMIN_TOKEN for the CLI)`);
  else if (r.controller.tokenFile) lines.push(`  admin token in ${r.controller.tokenFile}`);
  else if (config.adminToken) lines.push('  admin token from PORTICO_ADMIN_TOKEN');
  process.stdout.write(lines.join('\n') + '\n');
}

/**
 * Runs until SIGTERM/SIGINT (`stops`; at once for one that came while it started), then stops in
 * order: gateway drain, controller, admin, tables. SIGHUP reopens the gateway's file access log
 * (log rotation) and never stops the process.
 */
function serveUntilSignal(r: Running, log: Logger, stopReplicas: boolean, stops: StopRequests): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const hangup = () => {
      log.info(r.gateway ? 'SIGHUP: reopening the access log' : 'SIGHUP: nothing to reopen');
      r.gateway?.reopenLogs();
    };
    process.on('SIGHUP', hangup);
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      process.off('SIGHUP', hangup);
      log.info('stopping', { signal });
      (async () => {
        await r.gateway?.drain();
        await r.controller.close({ stopReplicas });
        await r.admin.close();
        for (const t of r.tables) await t.close();
      })().then(
        () => resolve(0),
        (err: unknown) => {
          log.error('shutdown failed', { error: String((err as Error).stack ?? err) });
          resolve(1);
        },
      );
    };
    stops.started(stop);
  });
}

async function run(args: readonly string[], env: Readonly<Record<string, string | undefined>>, withGateway: boolean): Promise<number> {
  const positionals = positionalsOnly(args);
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const config = loadConfig(
    env,
    withGateway
      ? { ports: ['PORTICO_GATEWAY_PORT', 'PORTICO_ADMIN_PORT', 'PORTICO_METRICS_PORT'], files: ['PORTICO_DATA_DIR', 'PORTICO_ACCESS_LOG', 'PORTICO_TARGETS_FILE', 'PORTICO_KUBECONFIG'] }
      : { ports: ['PORTICO_ADMIN_PORT'], files: ['PORTICO_DATA_DIR', 'PORTICO_TARGETS_FILE', 'PORTICO_KUBECONFIG'] },
  );
  const log = createLogger(withGateway ? 'portico' : 'controller', config.logLevel);
  if (!withGateway && !config.redisUrl) {
    process.stderr.write('portico controller: set PORTICO_REDIS_URL (gateways in other processes read the routing table from Redis); for one process use `portico start`\n');
    return 2;
  }
  if (withGateway && config.gatewayWorkers > 1) {
    process.stderr.write(
      `portico start: PORTICO_GATEWAY_WORKERS=${config.gatewayWorkers} is for \`portico gateway\` (which needs PORTICO_REDIS_URL: the embedded store serves one gateway process); \`portico start\` runs one gateway\n`,
    );
    return 2;
  }
  // A stop from the first (exit 0, as once started): one that came while the modules loaded ends
  // it before it starts; one while it starts (a standby controller waiting for the lease, a store
  // that is slow to open) stops the start, or the process once started.
  const stops = await takeStopSignals();
  const stoppedBeforeStarting = () => {
    log.info('stopped before starting', { why: stops.requested });
    return 0;
  };
  if (stops.requested !== undefined) return stoppedBeforeStarting();
  let running: Running;
  try {
    running = await startAll(config, log, withGateway, stops.signal);
  } catch (err) {
    if (stops.requested !== undefined) return stoppedBeforeStarting();
    // ioredis says only "Command timed out" (or "Connection is closed."): say what did not answer.
    const why = config.redisUrl !== undefined && isRedisOutage(err)
      ? `Redis at ${describeRedisUrl(config.redisUrl)} does not answer (${(err as Error).message})`
      : (err as Error).message;
    process.stderr.write(`portico: cannot start: ${why}\n`);
    return 1;
  }
  announce(running, config);
  const code = await serveUntilSignal(running, log, withGateway, stops);
  // Anything left (a replica's pipe, a stray timer) must not keep a stopped Portico alive.
  setTimeout(() => process.exit(code), 1000).unref();
  return code;
}

/** `portico start`: controller + gateway + admin API in one process. */
export const startCommand: Command = {
  name: 'start',
  handlesStopSignals: true,
  help: `Usage: portico start

Runs the controller (builds, replicas, reconciler), a gateway and the admin API + web UI in one
process: what \`npm start\` runs. With PORTICO_REDIS_URL unset the store is embedded under
PORTICO_DATA_DIR (default ./.portico) and replicas run as local child processes.

Listens on PORTICO_GATEWAY_PORT (8080), PORTICO_ADMIN_PORT (8081) and PORTICO_METRICS_PORT (9464)
on PORTICO_HOST (127.0.0.1). The first start without PORTICO_ADMIN_TOKEN creates an admin token
in $PORTICO_DATA_DIR/admin-token (mode 0600).

SIGTERM or Ctrl-C: the gateway drains (PORTICO_DRAIN_SECONDS), replicas are stopped, exit 0
(also when it comes while Portico is still starting).
SIGHUP: a file access log (PORTICO_ACCESS_LOG=<path>) is reopened at its path (log rotation).
`,
  run: (args, env) => run(args, env, true),
};

/** `portico controller`: controller + admin API, gateways elsewhere (Redis). */
export const controllerCommand: Command = {
  name: 'controller',
  handlesStopSignals: true,
  help: `Usage: portico controller

Runs the controller and the admin API + web UI without a gateway; run \`portico gateway\`
processes beside it. Needs PORTICO_REDIS_URL: store and routing table live in Redis.

SIGTERM: stops reconciling and exits 0; replicas keep serving, and the next controller adopts
them. A standby (another controller holds the store's lease) stopped while it waits exits 0 too.
`,
  run: (args, env) => run(args, env, false),
};
