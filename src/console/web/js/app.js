// @ts-check
// The console's one page: the view named by the URL (`?view=keys|key|alerts|review`) in the
// shared frame, loaded now and kept live.

import { mountAlerts } from "./alerts.js";
import { byId } from "./dom.js";
import { mountKey } from "./key.js";
import { mountKeys } from "./keys.js";
import { mountReview } from "./review.js";
import { initShell, markLoaded, startLive } from "./shell.js";

/** @typedef {(host: HTMLElement, ctx: import("./shell.js").Context) => (() => Promise<void>) | undefined} Mount */

/** @type {Record<import("./filters.js").View, Mount>} */
const MOUNTS = { keys: mountKeys, key: mountKey, alerts: mountAlerts, review: mountReview };

const ctx = initShell();
const load = MOUNTS[ctx.view](byId("view"), ctx);
if (load === undefined || ctx.problems.length > 0) markLoaded();
else startLive(ctx.params, load);
