// The single-page app: hash routes (the token never appears in a URL), one page module per
// route, each page torn down (its streams and timers aborted) when the operator leaves it.
import { getToken, signOut } from './api.js';
import { h, replace } from './dom.js';
import { setCrumbs } from './nav.js';
import { clearFlash, errorText } from './ui.js';
import { renderSignin } from './pages/signin.js';
import { renderProjects } from './pages/projects.js';
import { renderDeployments } from './pages/deployments.js';
import { renderEnvironment } from './pages/environment.js';
import { renderDeployment } from './pages/deployment.js';
import { renderVersion } from './pages/version.js';
import { renderAudit } from './pages/audit.js';

/**
 * @typedef {object} PageContext
 * @property {Record<string, string>} params   decoded route parameters
 * @property {HTMLElement} main                where the page renders
 * @property {AbortSignal} signal              aborted when the operator leaves the page
 * @property {string} hash                     the route as in the address bar
 * @property {() => void} rerender             renders the same route again
 */

/** @type {[RegExp, string[], (ctx: PageContext) => Promise<void> | void][]} */
const ROUTES = [
  [/^#\/signin$/, [], renderSignin],
  [/^#\/?$/, [], renderProjects],
  [/^#\/audit$/, [], renderAudit],
  [/^#\/p\/([^/]+)\/([^/]+)$/, ['owner', 'project'], renderDeployments],
  [/^#\/p\/([^/]+)\/([^/]+)\/environment$/, ['owner', 'project'], renderEnvironment],
  [/^#\/p\/([^/]+)\/([^/]+)\/d\/([^/]+)(?:\/(aliases|users|console))?$/, ['owner', 'project', 'deployment', 'tab'], renderDeployment],
  [/^#\/p\/([^/]+)\/([^/]+)\/d\/([^/]+)\/v\/([^/]+)(?:\/(logs|metrics))?$/, ['owner', 'project', 'deployment', 'version', 'tab'], renderVersion],
];

/** @type {AbortController | null} */
let current = null;

/** Where to go after signing in. */
let afterSignin = '#/';

/** @param {string} s */
function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

async function render() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const main = /** @type {HTMLElement} */ (document.getElementById('main'));
  const hash = location.hash || '#/';
  const signedIn = getToken() !== null;
  /** @type {HTMLElement} */ (document.getElementById('topnav')).hidden = !signedIn;
  if (!signedIn && hash !== '#/signin') {
    afterSignin = hash;
    location.replace('#/signin');
    return;
  }
  if (signedIn && hash === '#/signin') {
    location.replace(afterSignin);
    afterSignin = '#/';
    return;
  }
  setCrumbs([]);
  clearFlash();
  for (const [re, names, page] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    /** @type {Record<string, string>} */
    const params = {};
    names.forEach((n, i) => {
      const v = m[i + 1];
      if (v !== undefined) params[n] = safeDecode(v);
    });
    replace(main, h('p', { class: 'muted' }, 'Loading…'));
    try {
      await page({ params, main, signal: controller.signal, hash, rerender: () => void render() });
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err && typeof err === 'object' && 'status' in err && err.status === 401) return;
      replace(main, h('div', { class: 'error-box', role: 'alert' }, h('h1', null, 'Something went wrong'), h('p', null, errorText(err))));
    }
    return;
  }
  replace(main, h('h1', null, 'Not found'), h('p', null, 'No page here. ', h('a', { href: '#/' }, 'Projects')));
}

window.addEventListener('hashchange', () => void render());
window.addEventListener('portico:signed-out', () => {
  // Several refused calls may land at once: only the first one moves to sign-in (whose
  // hashchange renders it, with the message left for it).
  const hash = location.hash || '#/';
  if (hash === '#/signin') return;
  afterSignin = hash;
  location.hash = '#/signin';
});
/** @type {HTMLElement} */ (document.getElementById('signout')).addEventListener('click', () => signOut());
void render();
