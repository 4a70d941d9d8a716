// The projects the operator has opened, remembered in localStorage (names only, never secrets).

const KEY = 'portico.projects';
const MAX = 20;

/** The projects opened before, most recent first. @returns {{owner: string, project: string}[]} */
export function rememberedProjects() {
  try {
    const list = JSON.parse(localStorage.getItem(KEY) ?? '[]');
    if (!Array.isArray(list)) return [];
    return list.filter((p) => p && typeof p.owner === 'string' && typeof p.project === 'string');
  } catch {
    return [];
  }
}

/** Puts a project first in the remembered list. @param {string} owner @param {string} project */
export function rememberProject(owner, project) {
  const list = rememberedProjects().filter((p) => p.owner !== owner || p.project !== project);
  list.unshift({ owner, project });
  localStorage.setItem(KEY, JSON.stringify(list.slice(0, MAX)));
}

/** Drops a project from the remembered list. @param {string} owner @param {string} project */
export function forgetProject(owner, project) {
  localStorage.setItem(KEY, JSON.stringify(rememberedProjects().filter((p) => p.owner !== owner || p.project !== project)));
}
