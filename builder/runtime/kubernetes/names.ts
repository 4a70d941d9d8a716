import { createHash } from 'node:crypto';

/** Hex SHA-256 of `text`, cut to `length` characters. */
export function shortHash(text: string, length = 8): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Lower-cases, turns every run of characters outside `[a-z0-9]` into one `-`, trims `-`. */
function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

/** Cuts `text` to at most `max` characters without leaving a trailing `-`. */
function cut(text: string, max: number): string {
  return text.slice(0, max).replace(/-+$/, '');
}

/**
 * A DNS-1035 label (what Service names need; also a valid DNS-1123 label and subdomain) for any
 * text: the text itself when it already is one of at most 63 characters, else its slug cut short
 * and suffixed with a hash of the original, so two different inputs never share a name.
 */
export function dnsLabel(text: string): string {
  if (text.length <= 63 && DNS_LABEL.test(text)) return text;
  return hashedLabel(text, text);
}

/** `<slug of readable>-<hash of identity>`, at most 63 characters, starting with a letter. */
function hashedLabel(readable: string, identity: string): string {
  const hash = shortHash(identity);
  let base = slug(readable);
  if (!/^[a-z]/.test(base)) base = `p-${base}`.replace(/-+$/, '');
  return `${cut(base, 63 - hash.length - 1)}-${hash}`;
}

/**
 * The name of the Deployment, Service and PodDisruptionBudget of one endpoint: readable
 * (`<deployment>-<version>-<endpoint>`) and always suffixed with a hash of the whole key
 * (`owner/project/deployment/version/endpoint`). The hash keeps names unique when slugging
 * merges two keys (`1.0` and `1-0`) and when a fixed namespace holds several projects.
 */
export function resourceName(key: string): string {
  const [, , deployment = '', version = '', endpoint = ''] = key.split('/');
  return hashedLabel(`${deployment}-${version}-${endpoint}`, key);
}

/** A stable 16-hex-digit id of an endpoint key: the label its pods are selected by. */
export function endpointId(key: string): string {
  return shortHash(key, 16);
}

/**
 * The namespace of a project: `{owner}` and `{project}` in `template` replaced, and the result
 * made a DNS-1123 label (kept as is when it already is one, else slugged and hash-suffixed, so
 * `Acme` and `acme` get different namespaces).
 */
export function namespaceFor(template: string, owner: string, project: string): string {
  return dnsLabel(template.replaceAll('{owner}', owner).replaceAll('{project}', project));
}

/** A valid label value for any text: as is when valid, else slugged and hash-suffixed. */
export function labelValue(text: string): string {
  if (text.length <= 63 && LABEL_VALUE.test(text)) return text;
  const hash = shortHash(text);
  const base = cut(text.replace(/[^-A-Za-z0-9_.]+/g, '-').replace(/^[^A-Za-z0-9]+/, ''), 63 - hash.length - 1).replace(/[^A-Za-z0-9]+$/, '');
  return base === '' ? hash : `${base}-${hash}`;
}

/** Whether `name` is a DNS-1123 label Kubernetes accepts as a Service/Deployment/namespace name. */
export function isDnsLabel(name: string): boolean {
  return name.length <= 63 && DNS_LABEL.test(name);
}
