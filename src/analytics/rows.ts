// What becomes a row, and from which half of a request (ADR 37).
//
// Every attributed request is one row, built in one place:
//  - from Envoy's access log entry, when the access log is on and the request
//    was allowed by keyward's gRPC front with a request id: the entry carries
//    the upstream's answer and, in the dynamic metadata keyward's check
//    returned, the key, policy, rule and route;
//  - from the check otherwise: every denial (Envoy's UAEX entry is never a
//    row), a cancelled check, a check without a request id, the HTTP front, or
//    any check when the access log is off.
// (The access log's rows are built by src/usage/access-rows.ts.) So no join is needed, whichever replica got the check and whichever got the
// access log stream, and nothing is counted twice. Requests without a known key
// are never rows.
//
// A row never holds the key, a header, or the query string: the path is cut
// at `?` or `#` and at MAX_ROW_PATH, the request id passes checkRequestId.
import type { ApiKey } from "../api/types.ts";
import { timestampMs } from "../api/timestamps.ts";
import { stripQuery, type CheckEvent } from "../check/event.ts";
import type { CountryLookup } from "./geo.ts";
import { readIp } from "../index/cidr.ts";
import { networkOf } from "./network.ts";
import { MAX_ROW_PATH, type KeyRecord, type RequestRow } from "./row.ts";

/** The front Envoy's ext_authz filter calls: its allowed checks are in Envoy's access log. */
export const ENVOY_FRONT = "grpc";

/** Path without query string or fragment, cut at MAX_ROW_PATH. */
export function rowPath(path: string | undefined): string | undefined {
  const p = stripQuery(path);
  return p !== undefined && p.length > MAX_ROW_PATH ? p.slice(0, MAX_ROW_PATH) : p;
}

type Geography = Pick<RequestRow, "source" | "network" | "country">;

/** Source, its network and its country; nothing when the source is not an address. */
export function geography(source: string | undefined, geo: CountryLookup | undefined): Geography {
  if (source === undefined) return {};
  const g: Geography = { source };
  placeRow(g, geo);
  return g;
}

/** The access log, when on, makes this check's row (see the top of this file). */
export function leftToAccessLog(e: CheckEvent, accessLogOn: boolean): boolean {
  return accessLogOn && e.front === ENVOY_FRONT && e.outcome === "allowed" && e.requestId !== undefined;
}

/** readIp's working space (rows are made synchronously). */
const SCRATCH = new Uint8Array(16);

/** Whether `source` is an address (read without allocating): a source that is not one (a proxy's odd X-Forwarded-For) is never kept. */
export function isAddress(source: string): boolean {
  return readIp(source, SCRATCH) !== 0;
}

/**
 * The row of an answered check, without its network and country; undefined without a key. Built
 * field by field (no spreads, no undefined fields): one is made for each check with a key, on the
 * thread answering checks, so it does no more than it must there. Its source is kept only when it
 * is an address (read without allocating); placeGeography gives the network and country, on the
 * writer thread when the writer places them (AnalyticsWriter.placesGeography).
 */
export function unplacedRowFromCheck(e: CheckEvent): RequestRow | undefined {
  const k = e.key;
  if (!k) return undefined;
  const row: RequestRow = { at: e.at, uid: k.uid, keyId: k.keyId, front: e.front, outcome: e.outcome, reason: e.reason, status: e.status, checkMicros: Math.round(e.latencySeconds * 1e6) };
  if (e.requestId !== undefined) row.requestId = e.requestId;
  if (e.policy !== undefined) row.policy = e.policy;
  if (e.rule !== undefined) row.rule = e.rule;
  if (e.route !== undefined) row.route = e.route;
  if (e.method !== undefined) row.method = e.method;
  if (e.host !== undefined) row.host = e.host;
  const path = rowPath(e.path);
  if (path !== undefined) row.path = path;
  const source = e.source;
  if (source !== undefined && isAddress(source)) row.source = source;
  return row;
}

/** The row of an answered check with its network and, with `geo`, its country; undefined without a key. */
export function rowFromCheck(e: CheckEvent, geo: CountryLookup | undefined): RequestRow | undefined {
  const row = unplacedRowFromCheck(e);
  if (row) placeRow(row, geo);
  return row;
}

/** Gives a row with a source its network and country, in place; a source that is not an address is left out. */
function placeRow(r: Geography, geo: CountryLookup | undefined): void {
  const source = r.source;
  if (source === undefined) return;
  if (r.network === undefined) {
    const network = networkOf(source);
    // Only an address is kept: a source that is not one (a proxy's odd X-Forwarded-For) is left out.
    if (network === undefined) {
      delete r.source;
      delete r.country;
      return;
    }
    r.network = network;
  }
  if (r.country === undefined && geo) {
    const country = geo.country(source);
    if (country !== undefined) r.country = country;
  }
}

/**
 * Gives rows with a source their network and country, in place: what a writer that places them
 * (AnalyticsWriter.placesGeography) does on its own thread. A row whose country was looked up
 * already and is unknown is looked up again, with the same answer.
 */
export function placeGeography(rows: readonly RequestRow[], geo: CountryLookup): void {
  for (const r of rows) placeRow(r, geo);
}

/** What a key record is made of, as an ApiKey or a compact record of one holds it. */
export interface KeyRecordSource {
  uid: string | undefined;
  namespace: string;
  name: string;
  owner: string;
  labels: Readonly<Record<string, string>> | undefined;
  scopes: readonly string[] | undefined;
  /** metadata.creationTimestamp, ms since the epoch. */
  createdMs: number | undefined;
  /** spec.expiresAt, RFC 3339. */
  expiresAt: string | undefined;
}

/**
 * The store's record of a key from its parts; `deletedAt` once it is gone. Labels and scopes are
 * taken as given (a caller holding them frozen shares them): nothing here changes them.
 */
export function keyRecordFrom(k: KeyRecordSource, deletedAt?: number): KeyRecord | undefined {
  if (!k.uid) return undefined;
  const created = k.createdMs ?? NaN;
  const expires = k.expiresAt ? Date.parse(k.expiresAt) : NaN;
  return {
    uid: k.uid,
    namespace: k.namespace,
    name: k.name,
    owner: k.owner,
    labels: k.labels ?? NO_LABELS,
    scopes: k.scopes ?? NO_SCOPES,
    createdAt: Number.isFinite(created) ? created : 0,
    ...(Number.isFinite(expires) ? { expiresAt: expires } : {}),
    ...(deletedAt !== undefined ? { deletedAt } : {}),
  };
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});
const NO_SCOPES: readonly string[] = Object.freeze([]);

/** The store's record of an ApiKey; `deletedAt` once it is gone. Its labels and scopes are copies. */
export function keyRecordOf(ak: ApiKey, deletedAt?: number): KeyRecord | undefined {
  const m = ak.metadata;
  return keyRecordFrom(
    {
      uid: m.uid,
      namespace: m.namespace,
      name: m.name,
      owner: ak.spec.owner,
      labels: { ...(m.labels ?? {}) },
      scopes: [...(ak.spec.scopes ?? [])],
      createdMs: timestampMs(m.creationTimestamp),
      expiresAt: ak.spec.expiresAt,
    },
    deletedAt,
  );
}

/** `o` without its undefined fields (rows stay small and compare cleanly). */
export function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
