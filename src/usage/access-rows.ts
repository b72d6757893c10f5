// The row of an Envoy access log entry: an upstream answer to a request keyward
// allowed through its gRPC front, with a request id. Such a check leaves its row
// to the access log (src/analytics/rows.ts, ADR 37); the entry carries what the
// check knew in the dynamic metadata keyward returned (key id, ApiKey, uid,
// policy, rule, route pattern) and Envoy's own view: the client address, the
// upstream's status and timing, the body sizes and how long the check took.
// The entry's headers are never read; its path is cut at `?` and MAX_ROW_PATH.
import type { HttpLogEntry, StructValue } from "../accesslog/proto.ts";
import { DEFAULT_METADATA_NAMESPACES, joinEntry, keywardFields } from "../accesslog/join.ts";
import type { CountryLookup } from "../analytics/geo.ts";
import type { RequestRow } from "../analytics/row.ts";
import { defined, ENVOY_FRONT, geography, rowPath } from "../analytics/rows.ts";
import { checkRequestId, REQUEST_ID_UNUSABLE } from "../check/event.ts";

const METHODS = ["", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const;
const HOST_RE = /^[A-Za-z0-9.:[\]-]{1,253}$/;

const str = (v: StructValue | undefined): string | undefined => (typeof v?.stringValue === "string" ? v.stringValue : undefined);
const count = (v: string | number | undefined): number | undefined => {
  const n = typeof v === "string" ? Number(v) : v;
  return n !== undefined && Number.isFinite(n) && n >= 0 ? n : undefined;
};
function micros(d: { seconds?: string; nanos?: number } | undefined): number | undefined {
  if (!d || (d.seconds === undefined && d.nanos === undefined)) return undefined;
  return Math.round(Number(d.seconds ?? 0) * 1e6 + (d.nanos ?? 0) / 1e3);
}

export interface AccessLogRowOptions {
  geo: CountryLookup | undefined;
  /** The uid of ApiKey namespace/name, when the metadata has none (a check answered by an older keyward). */
  uidOf: (namespace: string, name: string) => string | undefined;
  namespaces?: readonly string[];
  /** The time of an entry without start_time. */
  now: () => number;
}

/**
 * The row of an access log entry: an upstream answer to a request keyward allowed, with a request
 * id (the check left its row to the access log). undefined for everything else: denials (UAEX),
 * entries without a key, without a usable request id, or whose key is unknown.
 */
export function rowFromAccessLog(entry: HttpLogEntry, options: AccessLogRowOptions): RequestRow | undefined {
  const namespaces = options.namespaces ?? DEFAULT_METADATA_NAMESPACES;
  const j = joinEntry(entry, namespaces);
  if (j.kind !== "joined") return undefined;
  const fields = keywardFields(entry, namespaces) ?? {};
  if (str(fields[REQUEST_ID_UNUSABLE]) !== undefined) return undefined;
  const requestId = checkRequestId(entry.request?.request_id);
  if (requestId === undefined) return undefined;
  const { apikey, keyId } = j.entry;
  const [ns = "", name = ""] = apikey.split("/");
  const uid = str(fields.uid) ?? options.uidOf(ns, name);
  if (uid === undefined) return undefined;
  const cp = entry.common_properties ?? {};
  const method = METHODS[entry.request?.request_method ?? 0] || undefined;
  const pattern = str(fields.route_pattern);
  const authority = entry.request?.authority;
  const sent = micros(cp.time_to_first_upstream_tx_byte);
  const received = micros(cp.time_to_last_upstream_rx_byte);
  const checkMs = fields.ext_authz_duration?.numberValue;
  return {
    at: j.entry.at ?? options.now(),
    requestId,
    uid,
    keyId,
    front: ENVOY_FRONT,
    ...defined({
      policy: str(fields.policy),
      rule: str(fields.rule),
      route: pattern !== undefined ? `${method ?? "*"} ${pattern}` : undefined,
      method,
      host: authority !== undefined && HOST_RE.test(authority) ? authority : undefined,
      path: rowPath(entry.request?.path),
    }),
    outcome: "allowed",
    reason: "ok",
    status: 200,
    ...geography(cp.downstream_remote_address?.socket_address?.address, options.geo),
    checkMicros: typeof checkMs === "number" && Number.isFinite(checkMs) && checkMs >= 0 ? Math.round(checkMs * 1000) : 0,
    upstreamStatus: j.entry.responseCode,
    ...defined({
      upstreamMicros: sent !== undefined && received !== undefined && received >= sent ? received - sent : received,
      requestBytes: count(entry.request?.request_body_bytes),
      responseBytes: count(entry.response?.response_body_bytes),
    }),
  };
}

