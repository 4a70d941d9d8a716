import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseRedisUrl } from './redis.ts';

/**
 * Every `PORTICO_*` environment variable, in one table. `loadConfig(env)` is the only code that
 * reads the environment; the README's configuration table is checked against `VARIABLES` by a
 * test, so a variable added here must be documented there.
 */

type Kind =
  | { type: 'string' }
  | { type: 'token' }
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'url'; protocols: readonly string[] }
  | { type: 'redis' }
  | { type: 'path' }
  | { type: 'cidrs' }
  | { type: 'host' };

interface VariableSpec {
  readonly kind: Kind;
  readonly default: string | undefined;
  readonly doc: string;
}

const int = (min: number, max: number): Kind => ({ type: 'int', min, max });
const MiB = 1024 * 1024;

/** The variables, their defaults (as the string one would set) and what they do. */
export const VARIABLES = {
  PORTICO_HOST: { kind: { type: 'host' }, default: '127.0.0.1', doc: 'Address the gateway, admin and metrics listeners bind to.' },
  PORTICO_GATEWAY_PORT: { kind: int(0, 65535), default: '8080', doc: 'Gateway (public endpoint URLs) port.' },
  PORTICO_ADMIN_PORT: { kind: int(0, 65535), default: '8081', doc: 'Admin API and web UI port.' },
  PORTICO_METRICS_PORT: { kind: int(0, 65535), default: '9464', doc: 'Prometheus `/metrics` port of the gateway (0 picks a free port).' },
  PORTICO_DATA_DIR: { kind: { type: 'path' }, default: './.portico', doc: 'Embedded store, version builds, files and logs.' },
  PORTICO_ADMIN_TOKEN: { kind: { type: 'token' }, default: undefined, doc: 'Admin bearer token. Unset: the first start creates one in `$PORTICO_DATA_DIR/admin-token` (mode 0600). The CLI sends it.' },
  PORTICO_REDIS_URL: { kind: { type: 'redis' }, default: undefined, doc: 'Store and routing table in Redis (several gateways, separate controller): `redis://[[user]:password@]host:port[/db]`, `rediss://...` (TLS), or through Sentinel `redis+sentinel://[[user]:password@]sentinel[:port][,sentinel[:port]...]/master-name[/db]` (`?sentinelPassword=...` when the sentinels want one). Unset: embedded store.' },
  PORTICO_REDIS_TIMEOUT_MS: { kind: int(10, 60000), default: '250', doc: 'Longest the gateway waits on one Redis command before failing fast.' },
  PORTICO_GATEWAY_WORKERS: { kind: int(1, 256), default: '1', doc: 'Worker processes of `portico gateway` (needs Redis when > 1). They share the port (each accepts connections itself); a worker that dies is restarted, and the metrics port serves the sum over the workers, in which a dead worker\'s counters stay as it last reported them (what it counted after the last scrape is lost).' },
  PORTICO_GATEWAY_URL: { kind: { type: 'url', protocols: ['http:', 'https:'] }, default: undefined, doc: 'Public base URL of the gateway, used in endpoint URLs shown to users. Default: `http://PORTICO_HOST:PORTICO_GATEWAY_PORT`.' },
  PORTICO_MAX_BODY_BYTES: { kind: int(0, Number.MAX_SAFE_INTEGER), default: String(64 * MiB), doc: 'Largest request body the gateway streams to a replica (413 above). An endpoint may set its own `maxBodyBytes`.' },
  PORTICO_MAX_UPLOAD_BYTES: { kind: int(0, Number.MAX_SAFE_INTEGER), default: String(4096 * MiB), doc: 'Largest upload (`POST /api/v1/uploads`: source archives, model files) the admin API accepts.' },
  PORTICO_UPLOAD_GRACE_SECONDS: { kind: int(1, 365 * 86400), default: '86400', doc: 'An upload no version uses is deleted (with its file, unless a version has the same content) once this old. Keep it above the time between an upload and the version create that names it. An upload a version used goes once every version using it is deleted.' },
  PORTICO_TIMEOUT_SECONDS: { kind: int(1, 86400), default: '60', doc: 'Default time to first response byte from a replica (504 after, within about half a second: undici keeps such timers on a coarse clock, which keeps them cheap per request). An endpoint may set its own `timeoutSeconds`.' },
  PORTICO_CONNECT_TIMEOUT_MS: { kind: int(1, 600000), default: '5000', doc: 'Longest the gateway waits to connect to a replica.' },
  PORTICO_BODY_IDLE_SECONDS: { kind: int(1, 86400), default: '300', doc: 'A body that moves nothing for this long is ended: a request body the client stops sending (408) or the replica stops reading (504), a response body the replica stops sending (aborted) or the client stops reading (the connection is cut, within twice this). There is no limit on a request\'s total time.' },
  PORTICO_KEEPALIVE_SECONDS: { kind: int(1, 3600), default: '65', doc: 'How long the gateway keeps an idle client connection open (announced in `Keep-Alive: timeout=N`). Keep it above the idle timeout of the load balancer in front (AWS ALB 60 s, GCP 600 s), so that the balancer always closes first and never sends a request on a connection the gateway is closing.' },
  PORTICO_HEADERS_TIMEOUT_SECONDS: { kind: int(1, 3600), default: '60', doc: 'A request head (request line and headers) must arrive whole within this long (408), however slowly it trickles in.' },
  PORTICO_UPSTREAM_CONNECTIONS: { kind: int(1, 100000), default: '256', doc: 'Connections (kept alive) each gateway process may open to one replica: at most this many requests to it at once. More wait for a free connection, and the wait counts against the endpoint\'s time to first byte (504 after it).' },
  PORTICO_TRUSTED_PROXIES: { kind: { type: 'cidrs' }, default: '', doc: 'Comma-separated IPs/CIDRs whose `X-Forwarded-*` (and `Forwarded`, `X-Real-IP`, `True-Client-IP`...) headers the gateway keeps (e.g. your load balancer); from anyone else they are replaced or dropped.' },
  PORTICO_DRAIN_SECONDS: { kind: int(0, 3600), default: '30', doc: 'On SIGTERM, longest the gateway waits for in-flight requests before exiting. Meanwhile `/readyz` is 503 (take the gateway out of the load balancer on it), idle connections close, and requests still arriving are served with `connection: close`; requests cut at the deadline are logged with status 499. `portico start` then stops its replicas, which takes up to `PORTICO_STOP_GRACE_SECONDS` more: give a supervisor\'s stop timeout the sum.' },
  PORTICO_FLIP_ACK_MS: { kind: int(1, 600000), default: '2000', doc: 'Longest an alias PUT waits for every live gateway to acknowledge.' },
  PORTICO_CACHE_SIZE: { kind: int(1, 10_000_000), default: '10000', doc: 'Routing records each gateway process keeps in its LRU cache (and as many unknown routes, apart: a flood of bad URLs never evicts a real route).' },
  PORTICO_METRICS_MAX_ROUTES: { kind: int(1, 1_000_000), default: '2000', doc: 'Routes with their own Prometheus series per gateway process; beyond it the longest idle routes are dropped (memory and `/metrics` stay bounded).' },
  PORTICO_NEGATIVE_CACHE_MS: { kind: int(0, 60000), default: '1000', doc: 'How long an unknown route is remembered as unknown (a change to it clears it at once).' },
  PORTICO_MAX_STALE_SECONDS: { kind: int(0, 86400), default: '300', doc: 'While Redis is unreachable, cached routes keep serving for at most this long.' },
  PORTICO_HEARTBEAT_MS: { kind: int(50, 60000), default: '1000', doc: 'Gateway heartbeat period; a gateway silent for 3 periods leaves the live set.' },
  PORTICO_ACCESS_LOG: { kind: { type: 'string' }, default: 'stdout', doc: 'Gateway access log: `stdout`, `off`, or a file path (one JSON line per request), appended to by plain writes of 16 KiB of lines; a path that cannot be opened stops the gateway.' },
  PORTICO_LOG_LEVEL: { kind: { type: 'enum', values: ['debug', 'info', 'warn', 'error'] }, default: 'info', doc: 'Process log level (JSON lines on stderr).' },
  PORTICO_DOCKER_SOCKET: { kind: { type: 'path' }, default: undefined, doc: 'Adds target `docker` on this Docker engine socket.' },
  PORTICO_DOCKER_NETWORK: { kind: { type: 'enum', values: ['bridge', 'host'] }, default: 'bridge', doc: 'Networking of docker replicas: `bridge` (own address each) or `host` (assigned `PORT`; image builds run their steps on the host network too).' },
  PORTICO_REGISTRY: { kind: { type: 'string' }, default: undefined, doc: 'Registry prefix images are tagged with and pushed to (docker/kubernetes targets).' },
  PORTICO_REGISTRY_USERNAME: { kind: { type: 'string' }, default: undefined, doc: 'User for the registry images are pushed to (`PORTICO_REGISTRY`, or a target\'s `registry` in `PORTICO_TARGETS_FILE`): pushes, docker pulls, and the image pull Secret of kubernetes namespaces. Set with the password or not at all.' },
  PORTICO_REGISTRY_PASSWORD: { kind: { type: 'string' }, default: undefined, doc: 'Password or token of `PORTICO_REGISTRY_USERNAME` (never logged or returned).' },
  PORTICO_KUBECONFIG: { kind: { type: 'path' }, default: undefined, doc: 'Adds target `kubernetes` using this kubeconfig.' },
  PORTICO_KUBE_CONTEXT: { kind: { type: 'string' }, default: undefined, doc: 'Kubeconfig context (default: its current context).' },
  PORTICO_KUBE_NAMESPACE: { kind: { type: 'string' }, default: 'portico-{owner}-{project}', doc: 'Namespace of replicas, or a template with `{owner}` and `{project}`.' },
  PORTICO_TARGETS_FILE: { kind: { type: 'path' }, default: undefined, doc: 'JSON file defining several named targets (kinds local, docker, kubernetes) with their gateway URLs.' },
  PORTICO_BUILD_CONCURRENCY: { kind: int(1, 64), default: '2', doc: 'Version builds run at once.' },
  PORTICO_BUILD_TIMEOUT_SECONDS: { kind: int(1, 86400), default: '1800', doc: 'A build running longer, its code and image build together (waits for a build slot not counted), fails, and is stopped (its git, download and pip processes ended).' },
  PORTICO_CONTROLLER_LEASE_SECONDS: { kind: int(2, 600), default: '10', doc: 'On Redis, one controller is active: it renews a lease of this length, a second controller waits for it, and takes over once the first stops or has not renewed it for this long (SIGKILL, a lost machine).' },
  PORTICO_STOP_GRACE_SECONDS: { kind: int(0, 3600), default: '10', doc: 'Replica stop: SIGTERM, then SIGKILL after this long.' },
  PORTICO_LOG_RETENTION_BYTES: { kind: int(1024, Number.MAX_SAFE_INTEGER), default: String(16 * MiB), doc: 'Log bytes kept per endpoint of a version (its replicas together) and per build log; the oldest lines are dropped first.' },
  PORTICO_URL: { kind: { type: 'url', protocols: ['http:', 'https:'] }, default: 'http://127.0.0.1:8081', doc: 'Admin API the CLI talks to.' },
} as const satisfies Record<string, VariableSpec>;

export type VariableName = keyof typeof VARIABLES;

/** The parsed configuration. Optional variables that are unset are `undefined`. */
export interface Config {
  readonly host: string;
  readonly gatewayPort: number;
  readonly adminPort: number;
  readonly metricsPort: number;
  readonly dataDir: string;
  readonly adminToken: string | undefined;
  readonly redisUrl: string | undefined;
  readonly redisTimeoutMs: number;
  readonly gatewayWorkers: number;
  readonly gatewayUrl: string;
  readonly maxBodyBytes: number;
  readonly maxUploadBytes: number;
  readonly uploadGraceSeconds: number;
  readonly timeoutSeconds: number;
  readonly connectTimeoutMs: number;
  readonly bodyIdleSeconds: number;
  readonly headersTimeoutSeconds: number;
  readonly keepAliveSeconds: number;
  readonly upstreamConnections: number;
  readonly trustedProxies: readonly string[];
  readonly drainSeconds: number;
  readonly flipAckMs: number;
  readonly cacheSize: number;
  readonly metricsMaxRoutes: number;
  readonly negativeCacheMs: number;
  readonly maxStaleSeconds: number;
  readonly heartbeatMs: number;
  readonly accessLog: string;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  readonly dockerSocket: string | undefined;
  readonly dockerNetwork: 'bridge' | 'host';
  readonly registry: string | undefined;
  /** Credentials for the registry's host (both variables set), else undefined. */
  readonly registryAuth: { readonly username: string; readonly password: string } | undefined;
  readonly kubeconfig: string | undefined;
  readonly kubeContext: string | undefined;
  readonly kubeNamespace: string;
  readonly targetsFile: string | undefined;
  readonly buildConcurrency: number;
  readonly buildTimeoutSeconds: number;
  readonly controllerLeaseSeconds: number;
  readonly stopGraceSeconds: number;
  readonly logRetentionBytes: number;
  readonly url: string;
}

/** Thrown by `loadConfig` with one line per bad variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Parsed = string | number | boolean | string[] | undefined;

function parseValue(name: string, spec: VariableSpec, raw: string, problems: string[]): Parsed {
  const kind = spec.kind;
  switch (kind.type) {
    case 'string':
      return raw;
    case 'token':
      // What the admin API takes after "Authorization: Bearer " (RFC 6750); the value, a secret, is not shown.
      if (!/^[A-Za-z0-9._~+/=-]{1,4096}$/.test(raw)) {
        problems.push(`${name}: expected 1 to 4096 letters, digits and . _ ~ + / = - (it is sent as "Authorization: Bearer <token>", which cannot carry other characters)`);
        return undefined;
      }
      return raw;
    case 'host':
      if (raw === '' || /[\s/]/.test(raw)) {
        problems.push(`${name}=${JSON.stringify(raw)}: expected a host name or IP address`);
        return undefined;
      }
      if (/^\[.*\]$/.test(raw)) {
        problems.push(`${name}=${JSON.stringify(raw)}: write an IPv6 address without brackets (${raw.slice(1, -1)})`);
        return undefined;
      }
      // `0.0.0.0:8080` failed only when the gateway listened, as a host name not found.
      if (raw.includes(':') && isIP(raw) !== 6) {
        problems.push(`${name}=${JSON.stringify(raw)}: expected a host name or IP address without a port (PORTICO_GATEWAY_PORT, PORTICO_ADMIN_PORT, PORTICO_METRICS_PORT set the ports)`);
        return undefined;
      }
      return raw;
    case 'path':
      if (raw === '') {
        problems.push(`${name}: expected a path, got an empty value`);
        return undefined;
      }
      return resolve(raw);
    case 'int': {
      if (!/^\d+$/.test(raw.trim())) {
        problems.push(`${name}=${JSON.stringify(raw)}: expected a whole number from ${kind.min} to ${kind.max}`);
        return undefined;
      }
      const n = Number(raw.trim());
      if (n < kind.min || n > kind.max) {
        problems.push(`${name}=${raw}: must be from ${kind.min} to ${kind.max}`);
        return undefined;
      }
      return n;
    }
    case 'bool':
      if (['1', 'true', 'yes'].includes(raw)) return true;
      if (['0', 'false', 'no'].includes(raw)) return false;
      problems.push(`${name}=${JSON.stringify(raw)}: expected true or false`);
      return undefined;
    case 'enum':
      if (!kind.values.includes(raw)) {
        problems.push(`${name}=${JSON.stringify(raw)}: expected one of ${kind.values.join(', ')}`);
        return undefined;
      }
      return raw;
    case 'redis':
      try {
        parseRedisUrl(raw);
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
        return undefined;
      }
      return raw.startsWith('redis+sentinel:') ? raw : raw.replace(/\/+$/, '');
    case 'url': {
      let u: URL;
      try {
        u = new URL(raw);
      } catch {
        problems.push(`${name}=${JSON.stringify(raw)}: not a URL`);
        return undefined;
      }
      if (!kind.protocols.includes(u.protocol)) {
        problems.push(`${name}=${JSON.stringify(raw)}: expected a ${kind.protocols.join(' or ')} URL`);
        return undefined;
      }
      return raw.replace(/\/+$/, '');
    }
    case 'cidrs': {
      const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
      for (const item of items) {
        const [ip, bits, extra] = item.split('/');
        const family = isIP(ip ?? '');
        const maxBits = family === 6 ? 128 : 32;
        const bitsOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= maxBits);
        if (!family || !bitsOk || extra !== undefined) {
          problems.push(`${name}: ${JSON.stringify(item)} is not an IP address or CIDR`);
          return undefined;
        }
      }
      return items;
    }
  }
}

/** The ports a command listens on, all on `PORTICO_HOST`. */
type PortVariable = 'PORTICO_GATEWAY_PORT' | 'PORTICO_ADMIN_PORT' | 'PORTICO_METRICS_PORT';
/** Files and folders a command opens when it starts. */
type FileVariable = 'PORTICO_ACCESS_LOG' | 'PORTICO_DATA_DIR' | 'PORTICO_TARGETS_FILE' | 'PORTICO_KUBECONFIG';

/**
 * What a starting command will use, for `loadConfig` to check up front, so that a port given
 * twice or a path that cannot work is named in the same message as every other bad variable
 * (rather than one at a time, as each start fails further on).
 */
export interface ConfigUse {
  readonly ports?: readonly PortVariable[];
  readonly files?: readonly FileVariable[];
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function canAccess(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `path` cannot be created and written (its missing folders are created, as the data dir's
 * and the access log's are), or null: the nearest existing ancestor must be a writable folder.
 */
function whyNotCreatable(path: string): string | null {
  let dir = dirname(path);
  for (;;) {
    const st = statOrNull(dir);
    if (st !== null) {
      if (!st.isDirectory()) return `${dir} is not a directory`;
      return canAccess(dir, constants.W_OK | constants.X_OK) ? null : `${dir} is not writable`;
    }
    if (dirname(dir) === dir) return `${dir} does not exist`;
    dir = dirname(dir);
  }
}

/** Why the file or folder `name` names cannot be used as the command will use it, or null. */
function whyUnusable(name: FileVariable, path: string): string | null {
  const st = statOrNull(path);
  switch (name) {
    case 'PORTICO_DATA_DIR':
      if (st === null) return whyNotCreatable(path);
      if (!st.isDirectory()) return 'not a directory';
      return canAccess(path, constants.W_OK | constants.X_OK) ? null : 'not writable';
    case 'PORTICO_ACCESS_LOG':
      if (st === null) return whyNotCreatable(path);
      if (st.isDirectory()) return 'is a directory';
      return canAccess(path, constants.W_OK) ? null : 'not writable';
    case 'PORTICO_TARGETS_FILE':
    case 'PORTICO_KUBECONFIG':
      if (st === null) return 'does not exist';
      if (!st.isFile()) return 'not a file';
      return canAccess(path, constants.R_OK) ? null : 'not readable';
  }
}

function checkUse(v: Readonly<Record<string, Parsed>>, use: ConfigUse, problems: string[]): void {
  const byPort = new Map<number, PortVariable[]>();
  for (const name of use.ports ?? []) {
    const port = v[name];
    // 0 picks a free port: never a clash.
    if (typeof port === 'number' && port !== 0) byPort.set(port, [...(byPort.get(port) ?? []), name]);
  }
  for (const [port, names] of byPort) {
    if (names.length > 1) problems.push(`${names.join(', ')}: the same port ${port} (each needs its own)`);
  }
  for (const name of use.files ?? []) {
    const path = v[name];
    if (typeof path !== 'string' || (name === 'PORTICO_ACCESS_LOG' && (path === 'stdout' || path === 'off'))) continue;
    const why = whyUnusable(name, resolve(path));
    if (why !== null) problems.push(`${name}=${path}: ${why}`);
  }
}

/**
 * Reads every `PORTICO_*` variable from `env`: defaults first, then the environment. Every
 * problem is collected and reported at once in a `ConfigError`; an unknown `PORTICO_*` name is a
 * problem too (a typo must not silently fall back to a default). With `use`, what a starting
 * command will listen on and open is checked too, in the same message. The result is frozen.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, use: ConfigUse = {}): Config {
  const problems: string[] = [];
  const v: Record<string, Parsed> = {};
  for (const [name, spec] of Object.entries(VARIABLES) as [string, VariableSpec][]) {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? spec.default : raw;
    v[name] = value === undefined ? undefined : parseValue(name, spec, value, problems);
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith('PORTICO_') && !(name in VARIABLES)) {
      problems.push(`${name}: unknown variable (see the configuration table in README.md)`);
    }
  }
  const user = v.PORTICO_REGISTRY_USERNAME as string | undefined;
  const password = v.PORTICO_REGISTRY_PASSWORD as string | undefined;
  if ((user === undefined) !== (password === undefined)) {
    problems.push(`${user === undefined ? 'PORTICO_REGISTRY_USERNAME' : 'PORTICO_REGISTRY_PASSWORD'}: must be set too (registry credentials are a username and a password)`);
  } else if (user !== undefined && v.PORTICO_REGISTRY === undefined && v.PORTICO_TARGETS_FILE === undefined) {
    problems.push('PORTICO_REGISTRY_USERNAME: credentials are for PORTICO_REGISTRY (or the registries of PORTICO_TARGETS_FILE), and neither is set');
  }
  checkUse(v, use, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const str = (n: VariableName) => v[n] as string;
  const optStr = (n: VariableName) => v[n] as string | undefined;
  const num = (n: VariableName) => v[n] as number;
  const host = str('PORTICO_HOST');
  const gatewayPort = num('PORTICO_GATEWAY_PORT');
  const urlHost = host.includes(':') ? `[${host}]` : host;

  const config: Config = {
    host,
    gatewayPort,
    adminPort: num('PORTICO_ADMIN_PORT'),
    metricsPort: num('PORTICO_METRICS_PORT'),
    dataDir: str('PORTICO_DATA_DIR'),
    adminToken: optStr('PORTICO_ADMIN_TOKEN'),
    redisUrl: optStr('PORTICO_REDIS_URL'),
    redisTimeoutMs: num('PORTICO_REDIS_TIMEOUT_MS'),
    gatewayWorkers: num('PORTICO_GATEWAY_WORKERS'),
    gatewayUrl: optStr('PORTICO_GATEWAY_URL') ?? `http://${urlHost}:${gatewayPort}`,
    maxBodyBytes: num('PORTICO_MAX_BODY_BYTES'),
    maxUploadBytes: num('PORTICO_MAX_UPLOAD_BYTES'),
    uploadGraceSeconds: num('PORTICO_UPLOAD_GRACE_SECONDS'),
    timeoutSeconds: num('PORTICO_TIMEOUT_SECONDS'),
    connectTimeoutMs: num('PORTICO_CONNECT_TIMEOUT_MS'),
    bodyIdleSeconds: num('PORTICO_BODY_IDLE_SECONDS'),
    headersTimeoutSeconds: num('PORTICO_HEADERS_TIMEOUT_SECONDS'),
    keepAliveSeconds: num('PORTICO_KEEPALIVE_SECONDS'),
    upstreamConnections: num('PORTICO_UPSTREAM_CONNECTIONS'),
    trustedProxies: Object.freeze((v.PORTICO_TRUSTED_PROXIES as string[] | undefined) ?? []),
    drainSeconds: num('PORTICO_DRAIN_SECONDS'),
    flipAckMs: num('PORTICO_FLIP_ACK_MS'),
    cacheSize: num('PORTICO_CACHE_SIZE'),
    metricsMaxRoutes: num('PORTICO_METRICS_MAX_ROUTES'),
    negativeCacheMs: num('PORTICO_NEGATIVE_CACHE_MS'),
    maxStaleSeconds: num('PORTICO_MAX_STALE_SECONDS'),
    heartbeatMs: num('PORTICO_HEARTBEAT_MS'),
    accessLog: str('PORTICO_ACCESS_LOG'),
    logLevel: str('PORTICO_LOG_LEVEL') as Config['logLevel'],
    dockerSocket: optStr('PORTICO_DOCKER_SOCKET'),
    dockerNetwork: str('PORTICO_DOCKER_NETWORK') as Config['dockerNetwork'],
    registry: optStr('PORTICO_REGISTRY'),
    registryAuth: user !== undefined && password !== undefined ? Object.freeze({ username: user, password }) : undefined,
    kubeconfig: optStr('PORTICO_KUBECONFIG'),
    kubeContext: optStr('PORTICO_KUBE_CONTEXT'),
    kubeNamespace: str('PORTICO_KUBE_NAMESPACE'),
    targetsFile: optStr('PORTICO_TARGETS_FILE'),
    buildConcurrency: num('PORTICO_BUILD_CONCURRENCY'),
    buildTimeoutSeconds: num('PORTICO_BUILD_TIMEOUT_SECONDS'),
    controllerLeaseSeconds: num('PORTICO_CONTROLLER_LEASE_SECONDS'),
    stopGraceSeconds: num('PORTICO_STOP_GRACE_SECONDS'),
    logRetentionBytes: num('PORTICO_LOG_RETENTION_BYTES'),
    url: str('PORTICO_URL'),
  };
  return Object.freeze(config);
}
