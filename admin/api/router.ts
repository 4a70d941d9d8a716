/**
 * Matches a request path against the declared route templates: a route and its raw (still
 * percent-encoded) path parameters, or the methods the path allows (405), or nothing (404).
 */
import { PorticoError } from '../../common/errors.ts';
import { ControlErrors } from '../../builder/errors.ts';
import type { Method, Route } from './route.ts';

type Segment = { literal: string } | { param: string };

interface Compiled {
  readonly route: Route;
  readonly segments: readonly Segment[];
}

/** The outcome of matching one path. */
export type Match =
  | { readonly kind: 'route'; readonly route: Route; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: 'method'; readonly allow: readonly string[] }
  | { readonly kind: 'none' };

/** A route table built once from the declarations. */
export class Router {
  readonly routes: readonly Route[];
  readonly #compiled: readonly Compiled[];

  constructor(routes: readonly Route[]) {
    const seen = new Set<string>();
    for (const r of routes) {
      const key = `${r.method} ${r.path.replace(/\{[^}]+\}/g, '{}')}`;
      if (seen.has(key)) throw new Error(`route ${r.method} ${r.path} is declared twice`);
      seen.add(key);
    }
    const ids = new Set(routes.map((r) => r.id));
    if (ids.size !== routes.length) throw new Error('route ids must be unique');
    this.routes = routes;
    this.#compiled = routes.map((route) => ({
      route,
      segments: route.path.split('/').slice(1).map((s): Segment => {
        const m = /^\{([^}]+)\}$/.exec(s);
        return m ? { param: m[1]! } : { literal: s };
      }),
    }));
  }

  /**
   * Matches `method` + `pathname` (still percent-encoded). Parameters stay encoded: they are
   * decoded (`decodeParams`, a 400 for a segment that does not decode) after authentication.
   */
  match(method: string, pathname: string): Match {
    const parts = pathname.split('/').slice(1);
    const wanted = method === 'HEAD' ? 'GET' : method;
    const allow = new Set<string>();
    for (const c of this.#compiled) {
      if (c.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const seg = c.segments[i]!;
        const part = parts[i]!;
        if ('literal' in seg) ok = seg.literal === part;
        else params[seg.param] = part;
      }
      if (!ok) continue;
      if (c.route.method === wanted) return { kind: 'route', route: c.route, params };
      allow.add(c.route.method);
      if (c.route.method === 'GET') allow.add('HEAD');
    }
    return allow.size > 0 ? { kind: 'method', allow: [...allow] } : { kind: 'none' };
  }

  /** Methods declared for a template path (tests, documentation). */
  methodsOf(path: string): Method[] {
    return this.routes.filter((r) => r.path === path).map((r) => r.method);
  }
}

/** The path parameters of a match, percent-decoded; a segment that does not decode is a 400. */
export function decodeParams(params: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) out[k] = decodeSegment(v);
  return out;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch (err) {
    throw new PorticoError(ControlErrors.BAD_REQUEST, `The path segment ${JSON.stringify(s)} is not valid percent-encoding.`, { cause: err });
  }
}
