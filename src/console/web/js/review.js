// @ts-check
// The Review view: the quarterly access review (what `keyward review` reports) for the keys the
// viewer may read, and its CSV.

import { getItem } from "./api.js";
import { keyLink } from "./cells.js";
import { reviewCsv } from "./csv.js";
import { h, replace } from "./dom.js";
import { compactParams } from "./filters.js";
import { setTitle } from "./shell.js";
import { simpleTable } from "./table.js";

/** @typedef {import("./csv.js").Review} Review */
/** @typedef {import("./csv.js").ReviewKey} ReviewKey */

/** @type {import("./app.js").Mount} */
export function mountReview(host, { filters }) {
  setTitle("Access review");
  const summary = h("p", { id: "review-summary", class: "summary" });
  const csv = h("a", { id: "csv", class: "button", download: "keyward-access-review.csv", href: "#", "aria-disabled": "true" }, "Download CSV");
  const body = h("div", { id: "review" });
  replace(host, [summary, h("p", {}, csv), body]);
  /** @type {string | undefined} */
  let csvUrl;

  /**
   * @template {ReviewKey} T
   * @param {string} title @param {string} id @param {readonly T[]} rows
   * @param {[string, (row: T) => string | number][]} extra
   */
  const section = (title, id, rows, extra) =>
    h("section", { "aria-labelledby": `${id}-heading` }, [
      h("h2", { id: `${id}-heading` }, `${title} (${rows.length})`),
      simpleTable({
        id,
        caption: title,
        empty: "None.",
        rows,
        columns: [{ label: "Key", cell: (k) => keyLink(k, filters) }, { label: "Owner", cell: (k) => k.owner }, ...extra.map(([label, cell]) => ({ label, cell }))],
      }),
    ]);

  /** @param {Review} r */
  const render = (r) => {
    summary.textContent = `${r.keys} keys reviewed, ${r.generatedAt}.${r.source === "store" ? ` The cluster could not be read (${r.clusterUnavailable ?? "unknown"}): only the analytics store's records were used.` : ""}${r.notChecked.length ? ` Not checked: ${r.notChecked.join("; ")}.` : ""}`;
    /** @type {[string, (k: import("./csv.js").UnusedKey) => string | number][]} */
    const unused = [
      ["Last used", (k) => k.lastUsedAt ?? "never"],
      ["Idle days", (k) => k.idleDays],
    ];
    /** @type {[string, (k: import("./csv.js").StaleKey) => string | number][]} */
    const stale = [
      ["Key material since", (k) => k.since],
      ["Age (days)", (k) => k.ageDays],
      ["Rotation", (k) => (k.external ? "external" : k.rotation)],
    ];
    replace(body, [
      section("Unused for 90 days or more", "unused90", r.unused90, unused),
      section("Unused for 30 to 89 days", "unused30", r.unused30, unused),
      section("Scopes granted but never used", "unused-scopes", r.unusedScopes, [
        ["Granted", (k) => k.granted.join(", ")],
        ["Never used", (k) => k.unused.join(", ")],
      ]),
      section("Never rotated", "never-rotated", r.neverRotated, stale),
      section(`Key material older than ${r.options.olderThanDays} days`, "older-than", r.olderThan, stale),
      section(`Expiring within ${r.options.expiringWithinDays} days, or expired`, "expiring", r.expiringSoon, [
        ["Expires", (k) => k.expiresAt],
        ["Days left", (k) => k.daysLeft],
      ]),
      section("Without an owner label", "without-owner", r.withoutOwner, [["Labels", (k) => Object.entries(k.labels).map(([n, v]) => `${n}=${v}`).join(", ")]]),
    ]);
    if (csvUrl) URL.revokeObjectURL(csvUrl);
    csvUrl = URL.createObjectURL(new Blob([reviewCsv(r)], { type: "text/csv" }));
    csv.setAttribute("href", csvUrl);
    csv.removeAttribute("aria-disabled");
  };

  return async () => {
    render(/** @type {Review} */ (await getItem("review", compactParams({ namespace: filters.namespace, owner: filters.owner, selector: filters.selector }))));
  };
}
