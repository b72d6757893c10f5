// Joins one Envoy HTTP access log entry to the key that made the request,
// through the dynamic metadata keyward's ext_authz server returned for it
// (Envoy files it under the ext_authz filter's name). Only the public key id,
// the ApiKey's namespace/name and the upstream answer are read: the entry's
// path and headers (which may carry the key) are never looked at.
//
// A request the external authorizer denied never reached the upstream: Envoy answered
// it (401, 403, 429, ...) and flags the entry UAEX (response_flags.unauthorized_details).
// Such an entry, or one whose keyward metadata says the decision was not "allowed", is
// never counted as an upstream answer.
import type { Duration, HttpLogEntry, StructValue } from "./proto.ts";

/** Filter metadata namespaces searched for keyward's metadata, in order. */
export const DEFAULT_METADATA_NAMESPACES = ["envoy.filters.http.ext_authz", "keyward"] as const;

export interface JoinedEntry {
  /** `namespace/name` of the ApiKey. */
  apikey: string;
  keyId: string;
  responseCode: number;
  /** ms since the epoch, from start_time. */
  at: number | undefined;
  upstreamSeconds: number | undefined;
}

export type JoinResult = { kind: "joined"; entry: JoinedEntry } | { kind: "denied" } | { kind: "unattributed" } | { kind: "invalid"; why: string };

/** What one entry counted as: an upstream answer of a key, an authorizer's denial, no key, or unreadable. */
export type JoinKind = JoinResult["kind"];

const KEY_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const APIKEY_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const str = (v: StructValue | undefined): string | undefined => (typeof v?.stringValue === "string" ? v.stringValue : undefined);

function seconds(d: Duration | undefined): number | undefined {
  if (!d || (d.seconds === undefined && d.nanos === undefined)) return undefined;
  return Number(d.seconds ?? 0) + (d.nanos ?? 0) / 1e9;
}

/** keyward's metadata in an entry: the first of `namespaces` whose fields have a key_id. */
export function keywardFields(e: HttpLogEntry, namespaces: readonly string[] = DEFAULT_METADATA_NAMESPACES): Record<string, StructValue> | undefined {
  const fm = e.common_properties?.metadata?.filter_metadata ?? {};
  for (const ns of namespaces) {
    const f = fm[ns]?.fields;
    if (f && str(f.key_id) !== undefined) return f;
  }
  return undefined;
}

export function joinEntry(e: HttpLogEntry, namespaces: readonly string[] = DEFAULT_METADATA_NAMESPACES): JoinResult {
  const fields = keywardFields(e, namespaces);
  if (!fields) return { kind: "unattributed" };
  if (deniedByAuthorizer(e, fields)) return { kind: "denied" };
  const keyId = str(fields.key_id) ?? "";
  const apikey = str(fields.apikey) ?? "";
  if (!KEY_ID_RE.test(keyId)) return { kind: "invalid", why: "key_id is not a key id" };
  if (!APIKEY_RE.test(apikey)) return { kind: "invalid", why: "apikey is not namespace/name" };
  const code = e.response?.response_code?.value;
  if (code === undefined || !Number.isInteger(code) || code < 100 || code > 599) return { kind: "invalid", why: "no response code" };
  const st = e.common_properties?.start_time;
  const at = st?.seconds !== undefined ? Number(st.seconds) * 1000 + Math.floor((st.nanos ?? 0) / 1e6) : undefined;
  return {
    kind: "joined",
    entry: { apikey, keyId, responseCode: code, at: at !== undefined && Number.isFinite(at) ? at : undefined, upstreamSeconds: seconds(e.common_properties?.time_to_last_upstream_rx_byte) },
  };
}

/** Envoy answered the request itself because an authorizer (keyward) denied it. */
function deniedByAuthorizer(e: HttpLogEntry, fields: Record<string, StructValue>): boolean {
  if (e.common_properties?.response_flags?.unauthorized_details != null) return true;
  const decision = str(fields.decision);
  return decision !== undefined && decision !== "allowed";
}
