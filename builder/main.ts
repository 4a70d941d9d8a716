import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/log.ts';
import { endpointKey, type RoutingWriter } from '../gateway/routing/contract.ts';
import { BlobStore } from './build/blobs.ts';
import { Controller } from './controller.ts';
import { createTargets } from './targets.ts';
import { Publisher } from './publisher.ts';
import { endpointRecord, Reconciler, versionRuns } from './reconciler.ts';
import type { Runtime, RuntimeHooks } from './runtime/runtime.ts';
import { ControllerLease, type LeaseOwner } from './store/lease.ts';
import { openStore } from './store/open.ts';
import { checkStoreIdentity, STORE_LOST_HELP, storeIdFile, type StoreIdentity } from './store-identity.ts';
import type { Store } from './store/store.ts';
import { metadataRecorder, openMetricStore } from './telemetry/collect.ts';
import { LogStore } from './telemetry/logs.ts';

/** A running controller: the operations, and how to stop it. */
export interface RunningController {
  readonly controller: Controller;
  readonly store: Store;
  /** The admin token created on this start (first start without PORTICO_ADMIN_TOKEN), else null. */
  readonly createdToken: string | null;
  /** `$PORTICO_DATA_DIR/admin-token` (mode 0600) when it holds the first admin token, else null. */
  readonly tokenFile: string | null;
  /** `tokenFile` holds a token that was revoked since (a rotation): it no longer signs in. */
  readonly tokenFileRevoked: boolean;
  /**
   * Stops reconciling and closes the store. With `stopReplicas`, every local replica is stopped first
   * (`portico start`); without, replicas keep serving for the next controller to adopt.
   */
  close(opts?: { stopReplicas?: boolean }): Promise<void>;
}

/** How often the reconciler passes without being asked. */
const RECONCILE_INTERVAL_MS = 5000;

/** How often the blob store is cleaned without being asked (expired uploads): twice per grace period, at least hourly. */
function cleanIntervalMs(config: Config): number {
  return Math.max(500, Math.min(config.uploadGraceSeconds * 500, 3600_000));
}

/**
 * Starts the control path: store, runtimes, publisher, reconciler and the operations over them.
 * On start it adopts the replicas a previous controller left running, rewrites the routing
 * table from the store, resumes unfinished builds and reconciles.
 */
export async function startController(opts: {
  config: Config;
  routing: RoutingWriter;
  log: Logger;
  /** Extra `pip install` arguments (tests: `--no-index --find-links DIR`). */
  pipArgs?: readonly string[];
  /** The clock uploads expire by (tests move it on). Default `Date.now`. */
  now?: () => number;
  /**
   * Called when another controller took the lease from this one (on Redis; see
   * `store/lease.ts`). Default: the error is logged and the process exits 1, leaving its replicas
   * to the controller that took over (a supervisor restarts this one as the standby).
   */
  onLeaseLost?: (owner: LeaseOwner | null) => void;
  /** Aborts the start while it waits for the lease (a standby stopped): it rejects. */
  signal?: AbortSignal;
}): Promise<RunningController> {
  const { config, routing, log } = opts;
  // Private when Portico creates it: it holds the replicas' raw output (secrets they print, in
  // clear), uploads, model files and the admin token. A folder that exists keeps its mode.
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  // On Redis, one active controller: a second one waits here until the first stops.
  const lease = config.redisUrl === undefined ? null : await ControllerLease.acquire({
    url: config.redisUrl,
    ttlMs: config.controllerLeaseSeconds * 1000,
    onWaiting: (o) => log.warn(`another controller is active on this store (process ${o.pid} on ${o.host}, since ${o.since}); waiting to take over once it stops or has not renewed its lease for PORTICO_CONTROLLER_LEASE_SECONDS`),
    ...(opts.signal ? { signal: opts.signal } : {}),
    onLost: opts.onLeaseLost ?? ((o) => {
      log.error(`another controller${o ? ` (process ${o.pid} on ${o.host})` : ''} took over this store: this one stopped renewing its lease for over PORTICO_CONTROLLER_LEASE_SECONDS (stalled?), and exits, leaving its replicas to the one that took over`);
      process.exit(1);
    }),
  });
  let store: Store;
  try {
    store = await openStore(config);
  } catch (err) {
    await lease?.release();
    throw err;
  }
  const blobs = new BlobStore(join(config.dataDir, 'blobs'));
  let mask = (line: string) => line;
  const logs = new LogStore({ root: join(config.dataDir, 'logs'), maxBytes: config.logRetentionBytes, mask: (l) => mask(l) });
  await logs.init();
  const metrics = await openMetricStore(config);
  const recordMetadata = metadataRecorder(metrics, (l) => mask(l));
  const publisher = new Publisher(routing, { ackTimeoutMs: config.flipAckMs });

  const hooks: RuntimeHooks = {
    async beforeStop(key, replicaIds) {
      const [owner, project, deployment, version, endpoint] = key.split('/') as [string, string, string, string, string];
      const current = publisher.current({ owner, project, deployment, version, endpoint });
      if (!current) return;
      const stopping = new Set(replicaIds);
      const ack = await publisher.putEndpoint({ ...current, replicas: current.replicas.filter((r) => !stopping.has(r.id)) });
      if (ack && ack.missing.length > 0) log.warn('gateways did not acknowledge a replica removal in time', { key, missing: ack.missing });
    },
    logs: {
      write(e) {
        logs.append(e.key, { at: e.at, stream: e.stream, replica: e.replica, line: e.line });
        recordMetadata(e); // vh_metadata lines also become metrics
      },
    },
  };

  const runtimes = new Map<string, Runtime>();
  /** Closes what was opened above (and the runtimes below), in order; the lease goes last (a standby may then take over). */
  const closeOpened = async (): Promise<void> => {
    for (const rt of runtimes.values()) await rt.close();
    await logs.close();
    await metrics.close();
    await store.close();
    await lease?.release();
  };
  let targets;
  try {
    targets = await createTargets(config, hooks, log);
  } catch (err) {
    await closeOpened();
    throw err;
  }
  for (const t of targets) runtimes.set(t.name, t.runtime);

  let identity: StoreIdentity;
  try {
    identity = await checkStoreIdentity(store, config.dataDir, async () => {
      for (const rt of runtimes.values()) if ((await rt.list()).length > 0) return true;
      return false;
    });
  } catch (err) {
    await closeOpened();
    throw err;
  }
  if (identity.problem !== null) {
    log.error(`the store was lost or replaced: ${identity.problem}. No replica and no route is removed; replicas the store does not name keep running. Restore the store from its backup and restart the controller, or ${STORE_LOST_HELP}`, { storeFile: storeIdFile(config.dataDir) });
  }
  const reconciler = new Reconciler({
    store,
    runtimes,
    publisher,
    onError: (err) => log.error('reconcile failed', { error: String((err as Error).stack ?? err) }),
    storeId: identity.id,
    onStoreLost: (report) => {
      if (report.kept.length > 0) {
        log.error(`replicas the store does not name were not removed: the store was lost or replaced (${STORE_LOST_HELP})`, { kept: report.kept });
        return;
      }
      log.error(`the store was lost or replaced: the controller started on store ${String(report.expected)}, the store's id is now ${String(report.found)} (Redis restarted empty or flushed, a failover to an empty replica, or another database). Until the controller is restarted no replica and no route is removed; the routes it last wrote are written again. Restore the store from its backup and restart the controller, or ${STORE_LOST_HELP}`);
      // The routing table may have gone with the store (one Redis): the gateways keep routing to
      // the replicas that still run.
      publisher.republish().catch((err: unknown) => log.error('routes not written again after the store was lost', { error: String(err) }));
    },
  });
  const controller = new Controller({
    config,
    store,
    routing,
    publisher,
    reconciler,
    targets,
    blobs,
    logs,
    metrics,
    log: (msg, extra) => log.error(msg, extra),
    ...(opts.pipArgs ? { pipArgs: opts.pipArgs } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  mask = (l) => controller.maskSecrets(l);

  try {
    await controller.loadSecrets();
    const createdToken = await controller.bootstrapToken();
    const tokenPath = join(config.dataDir, 'admin-token');
    if (createdToken) {
      await writeFile(tokenPath, createdToken + '\n', { mode: 0o600 });
      await chmod(tokenPath, 0o600);
    }
    const tokenFile = createdToken || (await access(tokenPath).then(() => true, () => false)) ? tokenPath : null;
    // A token file left after its token was revoked (a rotation) is said to be stale at start.
    const tokenFileRevoked = tokenFile !== null && createdToken === null && !config.adminToken
      && (await controller.authenticate((await readFile(tokenPath, 'utf8').catch(() => '')).trim())) === null;

    // Routing first, from what is stored and what already runs (adopted replicas keep serving).
    await reconciler.observeAll();
    const deployments = [];
    const endpoints = [];
    for (const d of await store.listAllDeployments()) {
      const ref = { owner: d.owner, project: d.project, deployment: d.name };
      const record = await controller.deploymentRecord(ref);
      if (record) deployments.push(record);
      for (const v of await store.listVersions(ref)) {
        if (v.codeDir === undefined) continue;
        for (const e of v.endpoints) {
          const key = `${d.owner}/${d.project}/${d.name}/${v.name}/${e.name}`;
          const status = versionRuns(v) ? reconciler.status(key, d.target) : undefined;
          // Replicas its runtime cannot see yet (the cluster does not answer) keep their routes.
          const kept = status?.unknown !== undefined ? (await routing.getEndpoint(endpointKey({ ...ref, version: v.name, endpoint: e.name })))?.replicas : undefined;
          endpoints.push(endpointRecord(v, e, status, kept));
        }
      }
    }
    // On a lost or replaced store the routes it does not name stay: they lead to replicas that run.
    await publisher.resync(deployments, endpoints, { keepOthers: identity.problem !== null });
    await controller.resumeBuilds();
    await reconciler.start(RECONCILE_INTERVAL_MS);
    // Also frees what a previous process left (a crash between a file's write and its record's).
    void controller.cleanBlobs({ orLater: true });
    const cleaning = setInterval(() => void controller.cleanBlobs({ orLater: true }), cleanIntervalMs(config));
    cleaning.unref();

    return {
      controller,
      store,
      createdToken,
      tokenFile,
      tokenFileRevoked,
      async close(closeOpts = {}) {
        clearInterval(cleaning);
        await controller.close();
        await reconciler.close();
        if (closeOpts.stopReplicas) {
          // Local replicas are this process's children in spirit; containers and pods stay.
          for (const t of targets) {
            if (t.kind !== 'local') continue;
            for (const s of await t.runtime.list()) await t.runtime.remove(s.key);
          }
        }
        await closeOpened();
      },
    };
  } catch (err) {
    await controller.close();
    await reconciler.close();
    await closeOpened();
    throw err;
  }
}
