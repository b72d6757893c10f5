// Pure functions from a Decision to what the caller sees: the headers and body
// of a denial, the headers added on OK, and the metadata for access logs. The
// gRPC and HTTP front ends both render from here, so they answer alike.
import type { Decision } from "../check/decision.ts";
import { REQUEST_ID_HEADER, REQUEST_ID_UNUSABLE } from "../check/event.ts";
import { effectiveLimits, type CappedKind } from "./maximums.ts";
import { REASONS } from "../check/reasons.ts";

export interface ResponseOptions {
  keyIdHeader: string;
  ownerHeader: string;
  realm: string;
}

export type HeaderList = readonly (readonly [string, string])[];

// One body per status. Unknown, expired, disabled and revoked keys all get the
// 401 body, byte for byte: the caller cannot tell them apart.
const BODIES: Record<number, string> = {
  400: '{"error":"bad_request","message":"the request could not be checked"}',
  401: '{"error":"unauthorized","message":"a valid API key is required"}',
  403: '{"error":"forbidden","message":"this key may not make this request"}',
  429: '{"error":"too_many_requests","message":"the rate limit or quota of this key is used up"}',
  500: '{"error":"internal_error","message":"the request could not be checked"}',
  503: '{"error":"unavailable","message":"the request could not be checked"}',
};

export function denialBody(status: number): string {
  return BODIES[status] ?? BODIES[403] ?? "";
}

/** Headers of a denial, as sent to the downstream client. */
export function denialHeaders(d: Decision, responseOptions: ResponseOptions): HeaderList {
  const out: [string, string][] = [["content-type", "application/json"]];
  if (d.status === 401) {
    const presented = d.reason !== "missing_key";
    out.push(["www-authenticate", presented ? `Bearer realm="${responseOptions.realm}", error="invalid_token"` : `Bearer realm="${responseOptions.realm}"`]);
  }
  const l = d.limit;
  if (d.status === 429 && l) {
    out.push(["retry-after", String(l.retryAfterSeconds)]);
    if (l.limit !== undefined) out.push(["ratelimit-limit", String(l.limit)]);
    out.push(["ratelimit-remaining", String(l.remaining)]);
    out.push(["ratelimit-reset", String(l.resetSeconds)]);
  }
  return out;
}

/** Headers added to an allowed request before it goes upstream (they replace any the client sent). */
export function okHeaders(d: Decision, responseOptions: ResponseOptions): HeaderList {
  const e = d.entry;
  if (!e) return [];
  return [
    [responseOptions.keyIdHeader, e.id],
    [responseOptions.ownerHeader, e.record.owner],
  ];
}

/** Headers the client sees on an allowed response: the current rate-limit state, if any. */
export function okResponseHeaders(d: Decision): HeaderList {
  const l = d.limit;
  if (!l || l.limit === undefined) return [];
  return [
    ["ratelimit-limit", String(l.limit)],
    ["ratelimit-remaining", String(l.remaining)],
    ["ratelimit-reset", String(l.resetSeconds)],
  ];
}

/**
 * True when the answer to `d` depends on more than its reason, key entry, rule and the
 * credentials to strip (and the front's ResponseOptions): the RateLimit-* and Retry-After
 * headers of a key with limits change with every call. Everything above reads only those,
 * so any other decision may be answered from a cache (response-cache.ts).
 */
export function responseVaries(d: Decision): boolean {
  const l = d.limit;
  return l !== undefined && (l.limit !== undefined || d.status === 429);
}

export type MetadataValue = string | readonly string[];

/** Flat metadata for access logs (Envoy dynamic_metadata) and decision logs. Never contains the key. */
export function decisionMetadata(d: Decision): Record<string, MetadataValue> {
  const m: Record<string, MetadataValue> = { decision: REASONS[d.reason].outcome, reason: d.reason };
  if (d.entry) {
    m.key_id = d.entry.id;
    m.uid = d.entry.record.uid;
    m.owner = d.entry.record.owner;
    m.apikey = d.entry.record.ref;
    m.scopes = d.entry.record.scopeList;
  }
  if (d.rule) {
    m.policy = d.rule.policy.ref;
    m.rule = d.rule.name;
    // The route without the method (the access log has it): a pure function of the rule, so
    // responses stay cacheable.
    m.route_pattern = d.rule.pattern;
    // A request id the key may be in is never recorded (src/analytics/rows.ts).
    if (d.rule.policy.credentials.headers.includes(REQUEST_ID_HEADER)) m[REQUEST_ID_UNUSABLE] = "true";
  }
  const capped = cappedKinds(d);
  if (capped.length > 0) m.limits_capped = capped;
  if (d.pathProblem !== undefined) m.path_problem = d.pathProblem;
  return m;
}

const NONE: readonly CappedKind[] = [];

/** The limit kinds the policy's maximums held this key to, when its limits were spent or refused. */
export function cappedKinds(d: Decision): readonly CappedKind[] {
  return d.limit !== undefined && d.entry && d.rule ? effectiveLimits(d.entry, d.rule.policy).capped : NONE;
}
