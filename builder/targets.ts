import { readFile } from 'node:fs/promises';
import type { Config } from '../common/config.ts';
import type { Logger } from '../common/log.ts';
import Dockerode from 'dockerode';
import { DockerRuntime } from './runtime/docker.ts';
import { LocalRuntime } from './runtime/local.ts';
import { KubernetesRuntime, loadKubeConfig, type ListenHost } from './runtime/kubernetes.ts';
import { registryHost } from './runtime/docker/registry.ts';
import type { RegistryAuth, Runtime, RuntimeHooks } from './runtime/runtime.ts';

/** A target as configured: where replicas run, and the public gateway URL of its endpoints. */
export interface Target {
  readonly name: string;
  readonly kind: 'local' | 'docker' | 'kubernetes';
  readonly gatewayUrl: string;
  readonly runtime: Runtime;
  /** Docker engine building this target's images (docker and kubernetes targets with an engine). */
  readonly docker?: {
    readonly socket: string;
    readonly registry: string | undefined;
    /** `PORTICO_REGISTRY_USERNAME`/`_PASSWORD`, when set and the target has a registry. */
    readonly registryAuth?: RegistryAuth;
    /** Network of the build's RUN steps: `host` when the target's containers use it (an engine without a bridge). */
    readonly buildNetwork?: 'host';
  };
}

/** The configured credentials for `registry` (a prefix such as `registry.example.com/ml`), if any. */
export function registryAuthFor(config: Pick<Config, 'registryAuth'>, registry: string | undefined): RegistryAuth | undefined {
  if (!registry || !config.registryAuth) return undefined;
  return { ...config.registryAuth, serveraddress: registryHost(`${registry.replace(/\/+$/, '')}/x`) };
}

/** One entry of `PORTICO_TARGETS_FILE`. */
export type TargetSpec =
  | { readonly name: string; readonly kind: 'local'; readonly gatewayUrl?: string }
  | { readonly name: string; readonly kind: 'docker'; readonly socket: string; readonly network?: 'bridge' | 'host'; readonly registry?: string; readonly gatewayUrl?: string }
  | {
      readonly name: string;
      readonly kind: 'kubernetes';
      readonly kubeconfig: string;
      readonly context?: string;
      readonly namespace?: string;
      readonly registry?: string;
      /** Docker engine that builds (and pushes) this target's images. */
      readonly dockerSocket?: string;
      readonly gatewayUrl?: string;
      /** `restricted`: replica pods meet that Pod Security Standard. */
      readonly podSecurity?: 'restricted';
      /** With `podSecurity`: the UID replicas run as. */
      readonly runAsUser?: number;
      /** What replicas are told to listen on: `::` for IPv6-only clusters. */
      readonly listenHost?: ListenHost;
    };

/** Thrown for a targets file that cannot be used; the message names the file and the entry. */
export class TargetsError extends Error {
  override readonly name = 'TargetsError';
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** The fields each kind of target takes: any other is refused, so a misspelt one is not dropped unseen. */
const FIELDS: Record<TargetSpec['kind'], readonly string[]> = {
  local: ['name', 'kind', 'gatewayUrl'],
  docker: ['name', 'kind', 'gatewayUrl', 'socket', 'network', 'registry'],
  kubernetes: ['name', 'kind', 'gatewayUrl', 'kubeconfig', 'context', 'namespace', 'registry', 'dockerSocket', 'podSecurity', 'runAsUser', 'listenHost'],
};

/**
 * Reads and checks `PORTICO_TARGETS_FILE`: `{"targets": [{"name", "kind", ...}]}`. Every problem is
 * reported at once with the entry's index.
 */
export function parseTargetsFile(text: string, file: string): TargetSpec[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new TargetsError(`${file}: not JSON: ${(err as Error).message}`);
  }
  const list = (doc as { targets?: unknown })?.targets;
  if (!Array.isArray(list) || list.length === 0) throw new TargetsError(`${file}: expected {"targets": [ ... ]} with at least one target`);
  const problems: string[] = [];
  for (const k of Object.keys(doc as object)) if (k !== 'targets') problems.push(`${file}: ${k}: unknown field (expected targets)`);
  const names = new Set<string>();
  list.forEach((t: Record<string, unknown>, i) => {
    const at = `${file}: targets[${i}]`;
    if (typeof t !== 'object' || t === null) return problems.push(`${at}: expected an object`);
    if (typeof t.name !== 'string' || !NAME.test(t.name)) problems.push(`${at}.name: expected a name matching ${NAME.source}`);
    else if (names.has(t.name)) problems.push(`${at}.name: ${t.name} is defined twice`);
    else names.add(t.name);
    if (t.gatewayUrl !== undefined && (typeof t.gatewayUrl !== 'string' || !/^https?:\/\/\S+$/.test(t.gatewayUrl))) problems.push(`${at}.gatewayUrl: expected an http(s) URL`);
    const str = (k: string, required: boolean) => {
      if (t[k] === undefined ? required : typeof t[k] !== 'string' || t[k] === '') problems.push(`${at}.${k}: expected a non-empty string`);
    };
    switch (t.kind) {
      case 'local':
        break;
      case 'docker':
        str('socket', true);
        str('registry', false);
        if (t.network !== undefined && t.network !== 'bridge' && t.network !== 'host') problems.push(`${at}.network: expected bridge or host`);
        break;
      case 'kubernetes':
        str('kubeconfig', true);
        str('context', false);
        str('namespace', false);
        str('registry', false);
        str('dockerSocket', false);
        if (t.podSecurity !== undefined && t.podSecurity !== 'restricted') problems.push(`${at}.podSecurity: expected "restricted" (or no podSecurity: pods as their image says)`);
        if (t.runAsUser !== undefined) {
          if (!Number.isInteger(t.runAsUser) || (t.runAsUser as number) < 1 || (t.runAsUser as number) > 2147483647) problems.push(`${at}.runAsUser: expected a user id from 1 to 2147483647 (not root)`);
          else if (t.podSecurity === undefined) problems.push(`${at}.runAsUser: only with "podSecurity": "restricted"`);
        }
        if (t.listenHost !== undefined && t.listenHost !== '0.0.0.0' && t.listenHost !== '::') problems.push(`${at}.listenHost: expected "0.0.0.0" or "::"`);
        break;
      default:
        problems.push(`${at}.kind: expected local, docker or kubernetes`);
        return undefined;
    }
    const known = FIELDS[t.kind];
    for (const k of Object.keys(t)) if (!known.includes(k)) problems.push(`${at}.${k}: unknown field of a ${t.kind} target (known: ${known.join(', ')})`);
    return undefined;
  });
  if (problems.length > 0) throw new TargetsError(problems.join('\n'));
  return list as TargetSpec[];
}

/** The target specs the configuration asks for: the targets file, or `local` plus those of the variables. */
export async function targetSpecs(config: Config): Promise<TargetSpec[]> {
  if (config.targetsFile) {
    let text: string;
    try {
      text = await readFile(config.targetsFile, 'utf8');
    } catch (err) {
      throw new TargetsError(`PORTICO_TARGETS_FILE ${config.targetsFile}: ${(err as Error).message}`);
    }
    return parseTargetsFile(text, config.targetsFile);
  }
  const specs: TargetSpec[] = [{ name: 'local', kind: 'local' }];
  if (config.dockerSocket) {
    specs.push({ name: 'docker', kind: 'docker', socket: config.dockerSocket, network: config.dockerNetwork, ...(config.registry ? { registry: config.registry } : {}) });
  }
  if (config.kubeconfig) {
    specs.push({
      name: 'kubernetes',
      kind: 'kubernetes',
      kubeconfig: config.kubeconfig,
      namespace: config.kubeNamespace,
      ...(config.kubeContext ? { context: config.kubeContext } : {}),
      ...(config.registry ? { registry: config.registry } : {}),
      ...(config.dockerSocket ? { dockerSocket: config.dockerSocket } : {}),
    });
  }
  return specs;
}

/** Creates the runtimes of the configured targets. */
export async function createTargets(config: Config, hooks: RuntimeHooks, log: Logger): Promise<Target[]> {
  const targets: Target[] = [];
  for (const spec of await targetSpecs(config)) {
    const gatewayUrl = spec.gatewayUrl ?? config.gatewayUrl;
    switch (spec.kind) {
      case 'local':
        targets.push({
          name: spec.name,
          kind: 'local',
          gatewayUrl,
          runtime: new LocalRuntime({ dataDir: config.dataDir, stopGraceSeconds: config.stopGraceSeconds, logRetentionBytes: config.logRetentionBytes, hooks }),
        });
        break;
      case 'docker': {
        const registryAuth = registryAuthFor(config, spec.registry);
        const runtime = new DockerRuntime({
          docker: new Dockerode({ socketPath: spec.socket }),
          target: spec.name,
          network: spec.network ?? 'bridge',
          hooks,
          stopGraceSeconds: config.stopGraceSeconds,
          ...(registryAuth ? { registryAuth } : {}),
        });
        const docker = { socket: spec.socket, registry: spec.registry, ...(registryAuth ? { registryAuth } : {}), ...(spec.network === 'host' ? { buildNetwork: 'host' as const } : {}) };
        targets.push({ name: spec.name, kind: 'docker', gatewayUrl, runtime, docker });
        break;
      }
      case 'kubernetes': {
        const registryAuth = registryAuthFor(config, spec.registry);
        let kubeConfig: ReturnType<typeof loadKubeConfig>;
        try {
          kubeConfig = loadKubeConfig(spec.kubeconfig, spec.context);
        } catch (err) {
          const from = config.targetsFile ? `${config.targetsFile}: target ${spec.name}, kubeconfig ${spec.kubeconfig}` : `PORTICO_KUBECONFIG=${spec.kubeconfig}`;
          throw new TargetsError(`${from}: ${(err as Error).message}`);
        }
        const runtime = new KubernetesRuntime({
          kubeConfig,
          ...(registryAuth ? { imagePullAuth: registryAuth } : {}),
          namespaceTemplate: spec.namespace ?? config.kubeNamespace,
          target: spec.name,
          hooks,
          stopGraceSeconds: config.stopGraceSeconds,
          ...(spec.podSecurity ? { podSecurity: spec.podSecurity } : {}),
          ...(spec.runAsUser !== undefined ? { runAsUser: spec.runAsUser } : {}),
          ...(spec.listenHost !== undefined ? { listenHost: spec.listenHost } : {}),
          onError: (message, err) => log.warn(message, { target: spec.name, error: String(err) }),
        });
        // Its engine builds only; with the variables, PORTICO_DOCKER_NETWORK says how it is networked.
        const buildNetwork = !config.targetsFile && config.dockerNetwork === 'host' ? { buildNetwork: 'host' as const } : {};
        const docker = spec.dockerSocket ? { socket: spec.dockerSocket, registry: spec.registry, ...(registryAuth ? { registryAuth } : {}), ...buildNetwork } : undefined;
        targets.push({ name: spec.name, kind: 'kubernetes', gatewayUrl, runtime, ...(docker ? { docker } : {}) });
        break;
      }
    }
  }
  return targets;
}
