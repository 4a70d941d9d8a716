/**
 * Names shared by the image builder (builder/build/image.ts) and the docker runtime: the labels
 * Portico puts on images and containers, and where things live inside an endpoint image.
 */

/** Every image and container Portico makes carries `portico.managed=true`. */
export const LABEL_MANAGED = 'portico.managed';
export const LABEL_OWNER = 'portico.owner';
export const LABEL_PROJECT = 'portico.project';
export const LABEL_DEPLOYMENT = 'portico.deployment';
export const LABEL_VERSION = 'portico.version';
export const LABEL_ENDPOINT = 'portico.endpoint';
/** Containers: the runtime key `owner/project/deployment/version/endpoint`. */
export const LABEL_KEY = 'portico.key';
/** Containers: the replica id within its endpoint (`r1`, `r2`...). */
export const LABEL_REPLICA = 'portico.replica';
/** Containers: the `specHash` of the spec the container was made from. */
export const LABEL_SPEC_HASH = 'portico.spec-hash';
/** Containers: the port the app was told to listen on (`PORT`). */
export const LABEL_PORT = 'portico.port';
/** Containers: `bridge` or `host`, the networking the container was made with. */
export const LABEL_NETWORK = 'portico.network';
/** Containers: the name of the target that made the container (several may share an engine). */
export const LABEL_TARGET = 'portico.target';

/** Where an endpoint image holds the version's code (Valohai's layout); also its working directory. */
export const IMAGE_CODE_DIR = '/valohai/repository';
/** Where an endpoint image holds the bundled WSGI runner (wsgi endpoints only). */
export const IMAGE_WSGI_RUNNER = '/opt/portico/wsgi_runner.py';

/** The identity labels of an endpoint's image and containers. */
export function identityLabels(id: {
  readonly owner: string;
  readonly project: string;
  readonly deployment: string;
  readonly version: string;
  readonly endpoint: string;
}): Record<string, string> {
  return {
    [LABEL_MANAGED]: 'true',
    [LABEL_OWNER]: id.owner,
    [LABEL_PROJECT]: id.project,
    [LABEL_DEPLOYMENT]: id.deployment,
    [LABEL_VERSION]: id.version,
    [LABEL_ENDPOINT]: id.endpoint,
  };
}
