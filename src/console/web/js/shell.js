// @ts-check
// What every view shares: the filter form filled from the URL, the navigation carrying the
// filters, the error banner, the "updated HH:MM:SS" line and the polling.

import { ApiError, describeError } from "./api.js";
import { byId, replace } from "./dom.js";
import { FILTER_NAMES, compactParams, filterProblems, readFilters, readView, viewHref } from "./filters.js";
import { formatClock } from "./format.js";
import { Poller } from "./live.js";

/** @typedef {import("./filters.js").Filters} Filters */
/** @typedef {import("./filters.js").View} View */

/** Seconds between polls unless the URL says `refresh=N` (0: no polling). */
export const DEFAULT_REFRESH_SECONDS = 5;

/**
 * @typedef {object} Context
 * @property {URLSearchParams} params
 * @property {View} view
 * @property {Filters} filters
 * @property {string[]} problems what is wrong with the filters (nothing is loaded then)
 */

/**
 * Fills the shared parts of the page from its URL.
 * @returns {Context}
 */
export function initShell() {
  const params = new URLSearchParams(location.search);
  const view = readView(params);
  const filters = readFilters(params);
  for (const name of FILTER_NAMES) {
    const input = document.getElementById(`f-${name}`);
    if (input instanceof HTMLInputElement) input.value = filters[name];
  }
  const viewInput = byId("f-view");
  if (viewInput instanceof HTMLInputElement) {
    viewInput.value = view;
    viewInput.disabled = view === "keys";
  }
  const keyInput = byId("f-key");
  if (keyInput instanceof HTMLInputElement && view === "key") {
    keyInput.value = params.get("key") ?? "";
    keyInput.disabled = false;
  }
  for (const a of document.querySelectorAll("a[data-view]")) {
    const target = readView(new URLSearchParams({ view: a.getAttribute("data-view") ?? "" }));
    a.setAttribute("href", viewHref(target, filters));
    if (target === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  byId("reset").setAttribute("href", viewHref(view, { namespace: "", owner: "", selector: "", since: "", until: "" }, view === "key" ? { key: params.get("key") ?? "" } : {}));
  // submitted as the form would be, but without the empty fields (`owner=` and the like)
  const form = document.querySelector("form.filters");
  if (form instanceof HTMLFormElement) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      /** @type {Record<string, string>} */
      const values = {};
      for (const [name, value] of new FormData(form)) if (typeof value === "string") values[name] = value;
      location.assign(`?${compactParams(values).toString()}`);
    });
  }
  const problems = filterProblems(filters, Date.now());
  if (problems.length) showError(problems.join(" "));
  return { params, view, filters, problems };
}

/** @param {string} text */
export function setTitle(text) {
  byId("title").textContent = text;
  document.title = `${text} · keyward console`;
}

/** @param {string} message */
export function showError(message) {
  const banner = byId("error");
  replace(banner, message);
  banner.hidden = false;
}

export function clearError() {
  const banner = byId("error");
  banner.hidden = true;
  banner.replaceChildren();
}

/** @param {unknown} err */
export function reportError(err) {
  if (err instanceof ApiError) showError(describeError(err.status, err.message));
  else showError(`The page failed: ${err instanceof Error ? err.message : String(err)}`);
}

/** @param {number} at */
export function markUpdated(at) {
  const el = byId("updated");
  el.textContent = `updated ${formatClock(at)}`;
  el.setAttribute("data-at", String(at));
}

/** Marks the page as having finished its first round (for tests and the bench). */
export function markLoaded() {
  document.body.setAttribute("data-loaded", "true");
}

/**
 * Runs `load` now and every refresh interval while the tab is shown; errors go to the banner and
 * a good round clears it.
 * @param {URLSearchParams} params
 * @param {() => Promise<void>} load
 */
export function startLive(params, load) {
  const r = Number(params.get("refresh") ?? DEFAULT_REFRESH_SECONDS);
  const seconds = Number.isFinite(r) && r >= 0 ? r : DEFAULT_REFRESH_SECONDS;
  const poller = new Poller({
    intervalMs: seconds * 1000,
    doc: document,
    run: async () => {
      try {
        await load();
        clearError();
        markUpdated(Date.now());
      } catch (err) {
        reportError(err);
      } finally {
        markLoaded();
      }
    },
  });
  poller.start();
  return poller;
}
