import type { DeploymentRecord, EndpointRecord, GatewayInfo } from '../../../gateway/routing/contract.ts';

/** A deployment of acme/mnist whose `production` alias points at `version`. */
export function deployment(name: string, version = 'v1'): DeploymentRecord {
  return { owner: 'acme', project: 'mnist', deployment: name, auth: 'none', users: {}, aliases: { production: { version } } };
}

/** Endpoint `predict` of version `version` of acme/mnist/web, with one replica. */
export function endpoint(version: string, endpointName = 'predict'): EndpointRecord {
  return {
    owner: 'acme',
    project: 'mnist',
    deployment: 'web',
    version,
    endpoint: endpointName,
    replicas: [{ id: `${version}-0`, address: '127.0.0.1:9001' }],
    timeoutSeconds: null,
    maxBodyBytes: null,
  };
}

/** A gateway as it registers in the live set. */
export function gateway(id: string): GatewayInfo {
  return { id, url: `http://127.0.0.1:8080/${id}`, pid: 4242, startedAt: 1_700_000_000_000 };
}

/** The version a deployment's `production` alias points at (single-version aliases only). */
export function productionVersion(d: DeploymentRecord | null | undefined): string | undefined {
  const target = d?.aliases['production'];
  return target && 'version' in target ? target.version : undefined;
}
