import { PorticoError } from '../common/errors.ts';
import { GatewayErrors } from './errors.ts';
import type { Stage } from './exchange.ts';

/**
 * The public path grammar:
 * `/{owner}/{project}/{deployment}/{version-or-alias}/{endpoint}[/rest][?query]`.
 */

/** What a request target parses into. Route fields are percent-decoded; the rest are raw. */
export interface RoutePath {
  owner: string;
  project: string;
  deployment: string;
  /** The version name or alias name, decoded. */
  target: string;
  endpoint: string;
  /** The five route segments exactly as the client sent them (no trailing slash): `X-VH-Prefix`. */
  prefix: string;
  /** Everything after the endpoint segment up to `?`, raw: `''` or `/...`. */
  rest: string;
  /** `''` or `?...`, raw. */
  query: string;
}

function decode(raw: string): string | null {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

// A decoded segment that is, or (once `/`, `\` inside it are taken as separators, tabs and
// newlines dropped, as a URL parser does, and `;parameters` cut off, as Java servlet containers
// and Python's urljoin do: `..;x` is `..` to them) contains, a dot segment could walk out of the
// prefix.
function hasDotSegment(decoded: string): boolean {
  if (decoded === '.' || decoded === '..') return true;
  if (!decoded.includes('.')) return false;
  for (let part of decoded.replace(/[\t\n\r]/g, '').split(/[/\\]/)) {
    const semi = part.indexOf(';');
    if (semi !== -1) part = part.slice(0, semi);
    if (part === '.' || part === '..') return true;
  }
  return false;
}

/**
 * Parses a request target (`req.url`) into `out`. Returns `null` on success, else why the path
 * is refused (a 400 `BAD_PATH`): a target that is not origin-form (absolute-form, `*`) or holds
 * a `#`, fewer than five route segments, an empty route segment or one that decodes to contain
 * `/`, `\` or NUL, any segment (rest included) that decodes to `.` or `..` (or holds one between
 * encoded slashes or backslashes, or before a `;`), NUL in the rest, or bad percent-encoding
 * anywhere in the path.
 * Never consults a host: the upstream is chosen elsewhere, from the routing table only.
 */
export function parseRoutePath(url: string, out: RoutePath): string | null {
  if (url.charCodeAt(0) !== 47 /* / */) return 'the request target must be a path starting with /';
  // A fragment is never sent (RFC 9112 3.2), and a replica parsing the target as a URL would
  // end the path at `#`: `/.../predict/..#` would be `..` to it, a step out of the prefix.
  if (url.includes('#')) return 'a request target has no fragment (#)';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  out.query = q === -1 ? '' : url.slice(q);

  let start = 1;
  const seg: string[] = [];
  for (let i = 0; i < 5; i++) {
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const raw = path.slice(start, end);
    if (raw === '') return start >= path.length ? 'missing route segments' : 'empty route segment';
    const decoded = decode(raw);
    if (decoded === null) return 'bad percent-encoding in the path';
    if (decoded === '.' || decoded === '..') return 'dot segment in the path';
    if (decoded.includes('/') || decoded.includes('\\') || decoded.includes('\0')) {
      return 'a route segment may not contain /, \\ or NUL';
    }
    seg.push(decoded);
    start = end + 1;
    if (end === path.length && i < 4) return 'missing route segments';
  }
  const prefixEnd = start - 1;
  out.prefix = path.slice(0, prefixEnd);
  out.rest = path.slice(prefixEnd);
  out.owner = seg[0] as string;
  out.project = seg[1] as string;
  out.deployment = seg[2] as string;
  out.target = seg[3] as string;
  out.endpoint = seg[4] as string;

  const rest = out.rest;
  if (rest.length > 1 && (rest.includes('.') || rest.includes('%') || rest.includes('\\'))) {
    const parts = rest.split('/');
    for (let i = 1; i < parts.length; i++) {
      const decoded = decode(parts[i] as string);
      if (decoded === null) return 'bad percent-encoding in the path';
      if (hasDotSegment(decoded)) return 'dot segment in the path';
      // A C or WSGI server would end the segment there: `..%00` is `..` to it.
      if (decoded.includes('\0')) return 'NUL in the path';
    }
  }
  return null;
}

/** Stage: the route grammar; a path it refuses is a 400 `BAD_PATH` saying why. */
export const checkPath: Stage = (ex) => {
  const why = parseRoutePath(ex.req.url ?? '', ex);
  return why === null ? undefined : new PorticoError(GatewayErrors.BAD_PATH, `${why}; ${GatewayErrors.BAD_PATH.message}`);
};
