// The usage API's requests, read strictly: a known view, only its own query
// parameters, each given once and well-formed. Anything else is a 400 with a
// message that says what is wrong (docs/usage.md, Usage API).
import { parseSelector } from "../analytics/selector.ts";
import { isKeywardError } from "../errors.ts";
import { parseDuration } from "../util/duration.ts";

import { API_PREFIX, type View } from "../console/views.ts";

export { API_PREFIX, type View };

const COMMON = ["namespace", "owner", "selector", "key", "since", "until"] as const;
const PARAMS: Record<View, readonly string[]> = {
  keys: [...COMMON, "limit"],
  timeline: [...COMMON, "step"],
  "status-codes": COMMON,
  endpoints: [...COMMON, "limit", "by"],
  countries: [...COMMON, "limit"],
  networks: [...COMMON, "limit"],
  inventory: [...COMMON, "sort", "order", "limit", "offset"],
  key: COMMON,
  latency: [...COMMON, "step"],
  denials: [...COMMON, "limit"],
  alerts: [...COMMON, "state"],
  review: ["namespace", "owner", "selector"],
};

export const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 20;
/** The inventory lists every key the caller may see: up to this many at once. */
export const MAX_INVENTORY_LIMIT = 10_000;
const LIMITS: Partial<Record<View, { max: number; default: number }>> = {
  inventory: { max: MAX_INVENTORY_LIMIT, default: MAX_INVENTORY_LIMIT },
  denials: { max: MAX_LIMIT, default: 50 },
};
export const INVENTORY_SORTS = ["name", "owner", "state", "expiresAt", "lastUsedAt", "requests24h", "requests"] as const;
export type InventorySort = (typeof INVENTORY_SORTS)[number];
const DEFAULT_RANGE_MS = 86_400_000;

export interface ApiRequest {
  view: View;
  namespace?: string;
  owner?: string;
  selector?: string;
  /** `namespace/name` or a key id. */
  key?: string;
  since: number;
  until: number;
  limit: number;
  step: "hour" | "day";
  by: "route" | "path";
  /** Whether since or until was given (the inventory's range-dependent column). */
  ranged: boolean;
  /** inventory */
  sort: InventorySort;
  order: "asc" | "desc";
  offset: number;
  /** alerts: the firing ones only, or also those that started or resolved in the range. */
  state: "firing" | "all";
}

export class BadRequest extends Error {
  readonly status: 400 | 404;
  constructor(message: string, status: 400 | 404 = 400) {
    super(message);
    this.name = "BadRequest";
    this.status = status;
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KEY_ID = /^[A-Za-z0-9_-]{1,128}$/;
// Printable, no control characters: an owner is an ApiKey's spec.owner.
const OWNER = /^[^\p{Cc}]{1,253}$/u;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** A time: RFC 3339, a UTC date (its midnight), or a duration before `now` (24h, 90m). */
export function parseTime(name: string, text: string, now: number): number {
  let ms: number | undefined;
  if (RFC3339.test(text)) ms = Date.parse(text);
  else if (DATE.test(text)) ms = Date.parse(`${text}T00:00:00Z`);
  else {
    try {
      ms = now - parseDuration(text);
    } catch {
      ms = undefined;
    }
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new BadRequest(`${name}: "${text}" is not a time; give RFC 3339 (2026-06-01T00:00:00Z), a date (2026-06-01) or a duration before now (24h)`);
  }
  return Math.floor(ms);
}

function checkKey(key: string): void {
  const slash = key.indexOf("/");
  if (slash === -1) {
    if (!KEY_ID.test(key)) throw new BadRequest(`key: "${key}" is neither namespace/name nor a key id`);
    return;
  }
  if (!DNS_LABEL.test(key.slice(0, slash)) || !DNS_SUBDOMAIN.test(key.slice(slash + 1))) {
    throw new BadRequest(`key: "${key}" is not namespace/name with a valid namespace and ApiKey name`);
  }
}

/** Reads one request's path and query; throws BadRequest (400, or 404 for an unknown path). */
export function parseApiRequest(url: URL, now: number): ApiRequest {
  if (!url.pathname.startsWith(API_PREFIX)) throw new BadRequest(`no such path; the views are under ${API_PREFIX}`, 404);
  const view = url.pathname.slice(API_PREFIX.length);
  if (!Object.hasOwn(PARAMS, view)) throw new BadRequest(`no such view; the views are ${Object.keys(PARAMS).join(", ")}`, 404);
  const allowed = PARAMS[view as View];
  const seen = new Map<string, string>();
  for (const [name, value] of url.searchParams) {
    if (!allowed.includes(name)) throw new BadRequest(`unknown query parameter "${name}"; ${view} takes ${allowed.join(", ")}`);
    if (seen.has(name)) throw new BadRequest(`query parameter "${name}" is given more than once`);
    if (value === "") throw new BadRequest(`query parameter "${name}" is empty`);
    seen.set(name, value);
  }
  const bounds = LIMITS[view as View] ?? { max: MAX_LIMIT, default: DEFAULT_LIMIT };
  const req: ApiRequest = {
    view: view as View,
    since: now - DEFAULT_RANGE_MS,
    until: now,
    limit: bounds.default,
    step: "hour",
    by: "route",
    ranged: seen.has("since") || seen.has("until"),
    sort: "name",
    order: "asc",
    offset: 0,
    state: "all",
  };
  const namespace = seen.get("namespace");
  if (namespace !== undefined) {
    if (!DNS_LABEL.test(namespace)) throw new BadRequest(`namespace: "${namespace}" is not a namespace name`);
    req.namespace = namespace;
  }
  const owner = seen.get("owner");
  if (owner !== undefined) {
    if (!OWNER.test(owner)) throw new BadRequest("owner: at most 253 characters, no control characters");
    req.owner = owner;
  }
  const selector = seen.get("selector");
  if (selector !== undefined) {
    if (selector.length > 1024) throw new BadRequest("selector: at most 1024 characters");
    try {
      parseSelector(selector);
    } catch (err) {
      if (isKeywardError(err)) throw new BadRequest(`selector: ${err.message}`);
      throw err;
    }
    req.selector = selector;
  }
  const key = seen.get("key");
  if (key !== undefined) {
    checkKey(key);
    if (namespace !== undefined && key.includes("/") && key.slice(0, key.indexOf("/")) !== namespace) {
      throw new BadRequest(`key "${key}" is not in namespace "${namespace}"`);
    }
    req.key = key;
  }
  const since = seen.get("since");
  const until = seen.get("until");
  if (until !== undefined) req.until = parseTime("until", until, now);
  if (since !== undefined) req.since = parseTime("since", since, now);
  else if (until !== undefined) req.since = req.until - DEFAULT_RANGE_MS;
  if (req.since >= req.until) throw new BadRequest("since must be before until");
  const limit = seen.get("limit");
  if (limit !== undefined) {
    if (!/^\d{1,7}$/.test(limit) || Number(limit) < 1 || Number(limit) > bounds.max) throw new BadRequest(`limit: a whole number from 1 to ${bounds.max}`);
    req.limit = Number(limit);
  }
  const step = seen.get("step");
  if (step !== undefined) {
    if (step !== "hour" && step !== "day") throw new BadRequest('step: "hour" or "day"');
    req.step = step;
  }
  const by = seen.get("by");
  if (by !== undefined) {
    if (by !== "route" && by !== "path") throw new BadRequest('by: "route" or "path"');
    req.by = by;
  }
  readConsoleParams(req, seen);
  if ((req.view === "timeline" || req.view === "latency" || req.view === "key") && req.key === undefined) throw new BadRequest(`${req.view} needs key (namespace/name or a key id)`);
  return req;
}

/** The console's own parameters: the inventory's sort, order and offset, the alerts' state. */
function readConsoleParams(req: ApiRequest, seen: ReadonlyMap<string, string>): void {
  const sort = seen.get("sort");
  if (sort !== undefined) {
    if (!(INVENTORY_SORTS as readonly string[]).includes(sort)) throw new BadRequest(`sort: one of ${INVENTORY_SORTS.join(", ")}`);
    req.sort = sort as InventorySort;
  }
  const order = seen.get("order");
  if (order !== undefined) {
    if (order !== "asc" && order !== "desc") throw new BadRequest('order: "asc" or "desc"');
    req.order = order;
  }
  const offset = seen.get("offset");
  if (offset !== undefined) {
    if (!/^\d{1,7}$/.test(offset)) throw new BadRequest("offset: a whole number from 0");
    req.offset = Number(offset);
  }
  const state = seen.get("state");
  if (state !== undefined) {
    if (state !== "firing" && state !== "all") throw new BadRequest('state: "firing" or "all"');
    req.state = state;
  }
}
