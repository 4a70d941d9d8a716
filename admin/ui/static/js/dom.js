// DOM helpers. Text always goes in as text nodes (textContent); nothing here parses HTML, so
// data from the API can never become markup.

/**
 * @typedef {Node | string | number | null | undefined | false | Child[]} Child
 */

/**
 * Creates an element. `props`: `class`, `for`, `data-*`/`aria-*`/other attributes (strings),
 * `on<event>` functions, and DOM properties (`value`, `checked`, `disabled`, `hidden`...).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [props]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || (v === false && !PROPS.has(k))) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === 'class') el.className = String(v);
    else if (PROPS.has(k)) /** @type {any} */ (el)[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Properties set as DOM properties rather than attributes. */
const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected', 'textContent', 'multiple', 'required', 'readOnly', 'open']);

/**
 * Appends children (text as text nodes; arrays flattened; null/false skipped).
 * @param {Node} el
 * @param {Child[]} children
 */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * Replaces an element's children.
 * @param {Element} el
 * @param {...Child} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * A `<select>` of options `[value, label]` (or plain strings), `selected` chosen.
 * @param {Record<string, unknown>} props
 * @param {(string | [string, string])[]} options
 * @param {string} [selected]
 */
export function select(props, options, selected) {
  return h('select', props, options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value, selected: value === selected }, label);
  }));
}

/**
 * A labelled form field.
 * @param {string} label
 * @param {HTMLElement} control
 * @param {string} [hint]
 */
export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}
