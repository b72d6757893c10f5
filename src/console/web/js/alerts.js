// @ts-check
// The Alerts view: firing alerts, then recent ones, across the keys the viewer may read.

import { getItems } from "./api.js";
import { alertsTable } from "./cells.js";
import { h, replace } from "./dom.js";
import { compactParams } from "./filters.js";
import { setTitle } from "./shell.js";

/** @typedef {import("./types.js").AlertRecord} AlertRecord */

/** @type {import("./app.js").Mount} */
export function mountAlerts(host, { filters }) {
  setTitle("Alerts");
  const firingHost = h("div", { id: "firing" });
  const recentHost = h("div", { id: "recent" });
  replace(host, [
    h("section", { "aria-labelledby": "firing-heading" }, [h("h2", { id: "firing-heading" }, "Firing"), firingHost]),
    h("section", { "aria-labelledby": "recent-heading" }, [h("h2", { id: "recent-heading" }, "Recent"), recentHost]),
  ]);
  return async () => {
    /** @type {AlertRecord[]} */
    const alerts = await getItems("alerts", compactParams({ ...filters, state: "all" }));
    const now = Date.now();
    const firing = alerts.filter((a) => a.state === "firing").sort((a, b) => b.startsAt - a.startsAt);
    const recent = alerts.filter((a) => a.state !== "firing").sort((a, b) => (b.endsAt ?? b.startsAt) - (a.endsAt ?? a.startsAt));
    replace(firingHost, alertsTable(firing, { caption: "Firing alerts", empty: "No alert is firing.", now, filters, id: "firing-table" }));
    replace(recentHost, alertsTable(recent, { caption: "Resolved alerts, newest first", empty: "No recent alerts.", now, filters, id: "recent-table" }));
  };
}
