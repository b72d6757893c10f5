// What the usage module learns about one request: a check decision from the
// ext_authz fronts, or an upstream answer from Envoy's access log. It sits
// beside the check vocabulary, so the data plane (which batches these events in
// its worker processes) and usage share it without importing each other.
import type { CheckInput, Decision } from "./decision.ts";
import { clientAddress, upperMethod } from "./decision.ts";
import type { KeyEntry } from "../index/keys.ts";
import type { CompiledRule } from "../policy/policy.ts";
import { REASONS, type Outcome } from "./reasons.ts";

/** The ApiKey a request was attributed to. Never carries the key, only its public id. */
export interface KeyRef {
  namespace: string;
  name: string;
  uid: string;
  /** Public key id of the version used (`<prefix>_<8 chars>`). */
  keyId: string;
  owner: string;
  /** The key's quota, when it has one (decides the "current period"). */
  quota?: { requests: number; per: "day" | "month" };
}

export interface CheckEvent {
  /** ms since the epoch. */
  at: number;
  /** undefined when no key was found (missing or unknown key): counted in metrics only. */
  key: KeyRef | undefined;
  outcome: Outcome | "cancelled";
  reason: string;
  status: number;
  front: string;
  policy?: string;
  rule?: string;
  /** `METHOD /path/pattern` of the matched rule: bounded, unlike the request path. */
  route?: string;
  method?: string;
  host?: string;
  /** Request path without the query string (which can carry a key). */
  path?: string;
  /** The client address as the check saw it (after trusted X-Forwarded-For hops). */
  source?: string;
  latencySeconds: number;
  /** Envoy's x-request-id, when it passed requestIdOf's checks. */
  requestId?: string;
}

/** One upstream answer, from an Envoy access log entry joined to a key through ext_authz metadata. */
export interface UpstreamEvent {
  at: number;
  key: KeyRef;
  responseCode: number;
  /** Seconds from the first request byte to the last upstream response byte, when known. */
  upstreamSeconds?: number;
  route?: string;
}

/** Routes by rule and method, so a check with a rule does not build its route string anew. */
const routes = new WeakMap<CompiledRule, Map<string, string>>();
/** Methods remembered per rule at most (a method is the client's to choose). */
const ROUTE_METHODS = 32;

/** `METHOD /pattern` of a rule: the route rows and metrics are counted by. */
export function routeOf(method: string | undefined, rule: CompiledRule): string {
  const m = method ?? "*";
  let byMethod = routes.get(rule);
  if (!byMethod) {
    byMethod = new Map();
    routes.set(rule, byMethod);
  }
  let route = byMethod.get(m);
  if (route === undefined) {
    route = `${m} ${rule.pattern}`;
    if (byMethod.size < ROUTE_METHODS) byMethod.set(m, route);
  }
  return route;
}

/** Path without query string or fragment. */
export function stripQuery(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  // Two scans for one character each are cheaper than one regular expression, once per check.
  const q = path.indexOf("?");
  const h = path.indexOf("#");
  const cut = q === -1 ? h : h === -1 ? q : Math.min(q, h);
  return cut === -1 ? path : path.slice(0, cut);
}

/** The KeyRef of a key version; built without a spread, which V8 does not make as cheaply as a literal. */
function keyRefOf(e: KeyEntry): KeyRef {
  const rec = e.record;
  const quota = rec.limits.quota;
  const ref: KeyRef = { namespace: rec.namespace, name: rec.name, uid: rec.uid, keyId: e.id, owner: rec.owner };
  if (quota) ref.quota = { requests: quota.requests, per: quota.per };
  return ref;
}

/** The header Envoy puts its request id in (and logs as request_id). */
export const REQUEST_ID_HEADER = "x-request-id";
/** Check metadata set when the matched policy reads keys from x-request-id: that request's id may be its key. */
export const REQUEST_ID_UNUSABLE = "request_id_unusable";
/** Longest request id kept: a UUID is 36 characters; tracers' ids are shorter than 64. */
export const MAX_REQUEST_ID = 64;

/** An ASCII letter or digit. */
function alphanumeric(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * A request id fit to be stored: at most MAX_REQUEST_ID characters, a letter or digit first, then
 * letters, digits, '-', '.' and ':'; else undefined. No '_': every key in keyward's format has one,
 * so a key sent as a request id is never recorded as one. Any value that cannot be an id is
 * dropped rather than cut, so nothing but an id is kept. Read character by character, once per
 * check: cheaper than a regular expression there.
 */
export function checkRequestId(v: string | undefined): string | undefined {
  if (v === undefined || v.length === 0 || v.length > MAX_REQUEST_ID) return undefined;
  if (!alphanumeric(v.charCodeAt(0))) return undefined;
  for (let i = 1; i < v.length; i++) {
    const c = v.charCodeAt(i);
    // '-' 0x2d, '.' 0x2e, ':' 0x3a
    if (!alphanumeric(c) && c !== 0x2d && c !== 0x2e && c !== 0x3a) return undefined;
  }
  return v;
}

/**
 * The request id of a check: Envoy's x-request-id, read only when the matched policy does not
 * take keys from that header (then it could be a key), and only when it passes checkRequestId.
 */
export function requestIdOf(input: CheckInput | undefined, d: Pick<Decision, "rule">): string | undefined {
  if (!input) return undefined;
  const cred = d.rule?.policy.credentials;
  if (cred?.headers.includes(REQUEST_ID_HEADER)) return undefined;
  return checkRequestId(input.header(REQUEST_ID_HEADER));
}

export interface FromDecisionOptions {
  xffTrustedHops: number;
  front: string;
  at: number;
}

/** The usage view of one answered (or cancelled) check. */
export function fromDecision(d: Decision, input: CheckInput | undefined, seconds: number, cancelled: boolean, options: FromDecisionOptions): CheckEvent {
  const e = d.entry;
  const method = upperMethod(input?.method);
  return {
    at: options.at,
    key: e?.record ? keyRefOf(e) : undefined,
    outcome: cancelled ? "cancelled" : REASONS[d.reason].outcome,
    reason: cancelled ? "cancelled" : d.reason,
    status: d.status,
    front: options.front,
    policy: d.rule?.policy.ref,
    rule: d.rule?.name,
    route: d.rule ? routeOf(method, d.rule) : undefined,
    method,
    host: input?.host,
    path: stripQuery(input?.path),
    source: input ? clientAddress(input.peerAddress, input.forwardedFor, options.xffTrustedHops) : undefined,
    latencySeconds: seconds,
    requestId: requestIdOf(input, d),
  };
}
