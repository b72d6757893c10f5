// The analytics store's two records: one row per attributed request, and the
// ApiKey it belongs to. Rows carry only the key's uid and public key id; who
// owns the key and its labels (the tags views filter on) live once per ApiKey
// in KeyRecord, so a row stays small and a relabelled key is filtered by its
// current tags. Requests without a known key are never rows: an attacker
// without a valid key cannot make the store grow (they are counted in metrics).
//
// Nothing here ever holds the key itself, the query string, or a header.
import type { Outcome } from "../check/reasons.ts";
import type { RowColumns } from "./row-columns.ts";

/** Longest raw path kept in a row; longer paths are cut at this many UTF-16 units. */
export const MAX_ROW_PATH = 256;

/** One request attributed to a key: what the check decided, joined with what the upstream answered. */
export interface RequestRow {
  /** ms since the epoch, when the check was answered. */
  at: number;
  /** Envoy's x-request-id when the front had one: the join key with the access log. */
  requestId?: string;
  /** The ApiKey's uid: a deleted and recreated ApiKey is a new key. */
  uid: string;
  /** Public key id of the version used (`<prefix>_<8 chars>`). */
  keyId: string;
  /** `grpc` or `http`. */
  front: string;
  /** ApiKeyPolicy `namespace/name` and rule name that matched, if any. */
  policy?: string;
  rule?: string;
  /** `METHOD /pattern` of the matched rule. */
  route?: string;
  method?: string;
  host?: string;
  /** Raw path without query string or fragment, at most MAX_ROW_PATH long. */
  path?: string;
  outcome: Outcome | "cancelled";
  /** keyward's reason code (`allowed`, `scope_missing`, `rate_limited`, ...). */
  reason: string;
  /** The status keyward answered (200 when allowed). */
  status: number;
  /** Client address as the check saw it. */
  source?: string;
  /** The source's network: its /24 (IPv4) or /48 (IPv6). */
  network?: string;
  /** ISO 3166 alpha-2 country of the source, `private` for private and loopback addresses, undefined when unknown. */
  country?: string;
  /** Check latency in microseconds. */
  checkMicros: number;
  /** From Envoy's access log, when it is on and the request reached the upstream. */
  upstreamStatus?: number;
  upstreamMicros?: number;
  requestBytes?: number;
  responseBytes?: number;
}

/** An ApiKey as the store knows it. Kept after the ApiKey is deleted (deletedAt set), for audit and billing. */
export interface KeyRecord {
  uid: string;
  namespace: string;
  name: string;
  /** The ApiKey's `spec.owner`. */
  owner: string;
  /** The ApiKey's labels: the tags views filter on. */
  labels: Readonly<Record<string, string>>;
  /** Scopes granted, for the access review. */
  scopes: readonly string[];
  /** ms since the epoch. */
  createdAt: number;
  expiresAt?: number;
  deletedAt?: number;
}

/** What the ingest side needs of a store. Both calls are batches; a rejected promise means nothing of the batch is known to be written. */
export interface AnalyticsWriter {
  writeRequests(rows: readonly RequestRow[]): Promise<void>;
  /**
   * A batch as the queue holds it, in columns (row-columns.ts): a writer that takes them so (the
   * writer thread, ADR 65) is given no row objects. The columns are the writer's until the
   * promise settles; the queue keeps them for a write that is refused.
   */
  writeColumns?(rows: RowColumns): Promise<void>;
  upsertKeys(keys: readonly KeyRecord[]): Promise<void>;
  /**
   * Called before the records of the `count` ApiKeys listed at start are handed over
   * (recordKeys): a writer may write them with less memory (the writer thread's page cache,
   * ADR 63).
   */
  beforeKeyRecords?(count: number): Promise<void>;
  /**
   * Called once they have all been handed over and written: a writer that grew with them lets
   * go of it (the writer thread starts anew, ADR 63). Rows and records written meanwhile or
   * after are written as any others.
   */
  afterKeyRecords?(count: number): Promise<void>;
  /**
   * The writer gives rows with a source their network and country itself (the writer thread,
   * ADR 56, 57), so rows are made without them, and the country database is opened by the writer.
   */
  readonly placesGeography?: boolean;
}
