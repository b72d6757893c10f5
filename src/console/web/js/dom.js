// @ts-check
// A small element builder: text always goes in as text (never as HTML), so names, labels and
// owners from ApiKeys cannot inject markup.

/**
 * @typedef {string | number | Node | null | undefined | false} Child
 */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Readonly<Record<string, string | number | boolean | undefined>>} [attrs]
 * @param {readonly Child[] | Child} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (name === "style") throw new Error("set styles through el.style: the console's Content-Security-Policy refuses style attributes");
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {readonly Child[] | Child} children */
export function append(el, children) {
  const list = /** @type {readonly Child[]} */ (Array.isArray(children) ? children : [children]);
  for (const c of list) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "object" ? c : String(c));
  }
}

/**
 * The element with this id; throws when the page lacks it.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

/** @param {Element} el @param {readonly Child[] | Child} children */
export function replace(el, children) {
  el.replaceChildren();
  append(el, children);
}
