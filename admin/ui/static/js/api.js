// The admin API client: every call sends the token as `Authorization: Bearer` (never in a URL);
// a 401 forgets the token and sends the operator back to sign-in with a message.

const TOKEN_KEY = 'portico.token';
const MESSAGE_KEY = 'portico.signinMessage';

/** The admin token of this browser tab (sessionStorage), or null. @returns {string | null} */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps the admin token for this tab only (sessionStorage, never a URL or localStorage). @param {string} token */
export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** Forgets the token; `message` is shown on the sign-in page. @param {string} [message] */
export function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (message) sessionStorage.setItem(MESSAGE_KEY, message);
  else sessionStorage.removeItem(MESSAGE_KEY);
  window.dispatchEvent(new CustomEvent('portico:signed-out'));
}

/** The message left for the sign-in page, once. @returns {string | null} */
export function takeSigninMessage() {
  const m = sessionStorage.getItem(MESSAGE_KEY);
  sessionStorage.removeItem(MESSAGE_KEY);
  return m;
}

/** An error answer of the API (the contract's JSON error shape). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * What a failed fetch (the browser says only "Failed to fetch") tells the operator; an abort
 * (the operator left the page) is passed on as is.
 * @param {unknown} err
 */
function unreachable(err) {
  if (err instanceof TypeError) return new ApiError(0, 'UNREACHABLE', `The admin API cannot be reached (${err.message}): is the controller running, is the network up?`);
  return err;
}

/** Path segments, each percent-encoded, joined with `/`. @param {string[]} segments */
export function path(...segments) {
  return segments.map(encodeURIComponent).join('/');
}

/** API path of a project. @param {string} owner @param {string} project */
export const projectPath = (owner, project) => `/projects/${path(owner, project)}`;
/** API path of a deployment. @param {string} owner @param {string} project @param {string} deployment */
export const deploymentPath = (owner, project, deployment) => `${projectPath(owner, project)}/deployments/${path(deployment)}`;
/** API path of a version. @param {{owner: string, project: string, deployment: string}} d @param {string} version */
export const versionPath = (d, version) => `${deploymentPath(d.owner, d.project, d.deployment)}/versions/${path(version)}`;

/** @param {string} [token] */
function headers(token, json = false) {
  /** @type {Record<string, string>} */
  const h = { accept: 'application/json' };
  const t = token ?? getToken();
  if (t) h.authorization = `Bearer ${t}`;
  if (json) h['content-type'] = 'application/json';
  return h;
}

/**
 * @param {Response} res
 * @param {boolean} [quiet] a refused token does not sign the operator out (sign-in's own check)
 */
async function failure(res, quiet = false) {
  let code = 'HTTP_' + res.status;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && typeof body.message === 'string') message = body.message;
    if (body && typeof body.code === 'string') code = body.code;
  } catch {
    // not JSON
  }
  if (res.status === 401 && !quiet) signOut('The admin token was refused: sign in again.');
  return new ApiError(res.status, code, message);
}

/**
 * Calls `/api/v1{apiPath}` and answers the parsed JSON (undefined for 204).
 * @param {string} method
 * @param {string} apiPath
 * @param {unknown} [body]
 * @param {{signal?: AbortSignal, token?: string}} [opts]
 * @returns {Promise<any>}
 */
export async function api(method, apiPath, body, opts = {}) {
  const res = await fetch(`/api/v1${apiPath}`, {
    method,
    headers: headers(opts.token, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: opts.signal,
    cache: 'no-store',
    credentials: 'omit',
  }).catch((err) => {
    throw unreachable(err);
  });
  if (!res.ok) throw await failure(res, opts.token !== undefined);
  if (res.status === 204) return undefined;
  const text = await res.text();
  return text === '' ? undefined : JSON.parse(text);
}

/**
 * Follows an NDJSON stream (`follow=true` logs): calls `onItem` for each JSON line until the
 * stream ends or `signal` aborts (then it resolves quietly).
 * @param {string} apiPath
 * @param {AbortSignal} signal
 * @param {(item: any) => void} onItem
 */
export async function followNdjson(apiPath, signal, onItem) {
  let res;
  try {
    res = await fetch(`/api/v1${apiPath}`, { headers: { ...headers(), accept: 'application/x-ndjson' }, signal, cache: 'no-store', credentials: 'omit' });
  } catch (err) {
    if (signal.aborted) return;
    throw unreachable(err);
  }
  if (!res.ok) throw await failure(res);
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', onAbort, { once: true });
  let buffered = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let nl;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line !== '') onItem(JSON.parse(line));
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
