// A batch of request rows as it crosses to the analytics writer thread (ADR 57): columns, not
// objects. Numbers go in one Float64Array and the strings that repeat (policy, rule, route,
// method, host, outcome, reason, ...) as ids into a string table kept across
// batches, so a batch carries only the strings the writer thread has not been sent yet; the
// strings that rarely repeat (path, source, request id) or are as many as the keys (uid, key id)
// go as one joined string and their lengths. The typed arrays' buffers are transferred, not
// copied. The check thread encodes
// (RowBatchEncoder), the writer thread decodes (RowBatchDecoder) into RequestRows.
//
// The table is kept in step by `base`: a batch's new strings take the ids after the `base`
// strings the writer must already hold. The writer refuses (AnalyticsBatchOutOfStep) a batch
// whose base is not the length of its table, and starts a new table at a batch of base 0. The
// encoder starts a new table (base 0) when its table outgrows its bounds and after any write the
// writer did not confirm (a refused batch, a thread that died: the rows are encoded again from
// the queue's row objects, so no table delta is ever lost with a batch). A restarted writer
// thread has an empty table: the first batch it gets is either of base 0, or refused and then
// sent again from a new table.
//
// Only RequestRow's named fields are read: nothing else a row object might hold is encoded.
import { KeywardError } from "../errors.ts";
import type { RequestRow } from "./row.ts";

/** Fields sent as ids into the string table: few distinct values, whatever the number of keys. */
const TABLE_FIELDS = ["front", "policy", "rule", "route", "method", "host", "outcome", "reason", "network", "country"] as const;
/**
 * Fields sent in the batch's joined string: mostly distinct per row, or as many as the keys (a
 * table of 100,000 keys' uids and ids would start anew at nearly every batch).
 */
const RAW_FIELDS = ["uid", "keyId", "path", "source", "requestId"] as const;
/** Numeric fields; NaN stands for undefined. */
const NUMBER_FIELDS = ["at", "status", "checkMicros", "upstreamStatus", "upstreamMicros", "requestBytes", "responseBytes"] as const;

const T = TABLE_FIELDS.length;
const R = RAW_FIELDS.length;
const N = NUMBER_FIELDS.length;

/** One batch of rows, as posted to the writer thread (its typed arrays' buffers in the transfer list). */
export interface RowBatch {
  rows: number;
  /** Table strings the writer must hold already; 0 starts a new table. */
  base: number;
  /** The strings of ids base+1, base+2, ...: new to the writer. */
  strings: string[];
  /** rows × TABLE_FIELDS ids; 0 is undefined. */
  ids: Uint32Array;
  /** rows × NUMBER_FIELDS. */
  numbers: Float64Array;
  /** rows × RAW_FIELDS lengths plus one; 0 is undefined. */
  lengths: Uint32Array;
  /** The raw fields' values, joined. */
  raw: string;
}

/** The buffers to transfer with a batch. */
export function batchTransfer(b: RowBatch): ArrayBuffer[] {
  return [b.ids.buffer as ArrayBuffer, b.numbers.buffer as ArrayBuffer, b.lengths.buffer as ArrayBuffer];
}

export interface RowTableLimits {
  /** Strings in the table at most before it starts anew (between batches). */
  maxStrings: number;
  /** UTF-16 units in the table at most before it starts anew. */
  maxChars: number;
}

/** About 4 MiB of strings on each side at most: enough for the keys, routes and hosts of a busy data plane. */
export const DEFAULT_ROW_TABLE_LIMITS: RowTableLimits = { maxStrings: 65_536, maxChars: 2 * 1024 * 1024 };

/** The check thread's side: encodes batches against the table the writer thread is known to hold. */
export class RowBatchEncoder {
  private readonly limits: RowTableLimits;
  private table = new Map<string, number>();
  private chars = 0;
  /** Strings the writer holds once the batches sent so far are taken. */
  private sent = 0;
  private fresh: string[] = [];

  constructor(limits: RowTableLimits = DEFAULT_ROW_TABLE_LIMITS) {
    this.limits = limits;
  }

  /** Strings in the table now. */
  get size(): number {
    return this.table.size;
  }

  /** Starts a new table: the next batch has base 0 and carries every string it uses. */
  reset(): void {
    this.table = new Map();
    this.chars = 0;
    this.sent = 0;
  }

  encode(rows: readonly RequestRow[]): RowBatch {
    if (this.table.size >= this.limits.maxStrings || this.chars >= this.limits.maxChars) this.reset();
    const n = rows.length;
    const ids = new Uint32Array(n * T);
    const numbers = new Float64Array(n * N);
    const lengths = new Uint32Array(n * R);
    const raw: string[] = [];
    const base = this.sent;
    this.fresh = [];
    for (let i = 0; i < n; i++) {
      const r = rows[i] as RequestRow;
      let o = i * T;
      ids[o] = this.id(r.front);
      ids[o + 1] = this.id(r.policy);
      ids[o + 2] = this.id(r.rule);
      ids[o + 3] = this.id(r.route);
      ids[o + 4] = this.id(r.method);
      ids[o + 5] = this.id(r.host);
      ids[o + 6] = this.id(r.outcome);
      ids[o + 7] = this.id(r.reason);
      ids[o + 8] = this.id(r.network);
      ids[o + 9] = this.id(r.country);
      o = i * N;
      numbers[o] = r.at;
      numbers[o + 1] = r.status;
      numbers[o + 2] = r.checkMicros;
      numbers[o + 3] = r.upstreamStatus ?? NaN;
      numbers[o + 4] = r.upstreamMicros ?? NaN;
      numbers[o + 5] = r.requestBytes ?? NaN;
      numbers[o + 6] = r.responseBytes ?? NaN;
      o = i * R;
      // uid and keyId are required, but a row without one (whatever its type says) keeps it missing: the store refuses it.
      lengths[o] = pushRaw(raw, r.uid);
      lengths[o + 1] = pushRaw(raw, r.keyId);
      lengths[o + 2] = pushRaw(raw, r.path);
      lengths[o + 3] = pushRaw(raw, r.source);
      lengths[o + 4] = pushRaw(raw, r.requestId);
    }
    this.sent = this.table.size;
    const strings = this.fresh;
    this.fresh = [];
    return { rows: n, base, strings, ids, numbers, lengths, raw: raw.join("") };
  }

  private id(s: string | undefined): number {
    // null too: a field the row lacks, whatever its type says.
    if (s == null) return 0;
    let id = this.table.get(s);
    if (id === undefined) {
      id = this.table.size + 1;
      this.table.set(s, id);
      this.chars += s.length;
      this.fresh.push(s);
    }
    return id;
  }
}

/** Adds a raw field's value to the batch; its length plus one, or 0 when it has none. */
function pushRaw(raw: string[], s: string | undefined | null): number {
  if (s == null) return 0;
  raw.push(s);
  return s.length + 1;
}

function outOfStep(message: string): KeywardError {
  return new KeywardError("AnalyticsBatchOutOfStep", message);
}

/** The writer thread's side: the table the batches were encoded against, and the rows again. */
export class RowBatchDecoder {
  private table: string[] = [];

  /** Strings in the table now. */
  get size(): number {
    return this.table.length;
  }

  /** The batch's rows; throws AnalyticsBatchOutOfStep, taking nothing of it, when it does not fit this table. */
  decode(b: RowBatch): RequestRow[] {
    if (b.base !== 0 && b.base !== this.table.length) throw outOfStep(`the row batch expects ${b.base} table strings, the writer holds ${this.table.length}`);
    if (b.ids.length !== b.rows * T || b.numbers.length !== b.rows * N || b.lengths.length !== b.rows * R) throw outOfStep("the row batch's columns do not match its row count");
    const held = b.base + b.strings.length;
    for (const id of b.ids) if (id > held) throw outOfStep(`the row batch uses string ${id}, the table holds ${held}`);
    let rawLength = 0;
    for (const len of b.lengths) if (len > 0) rawLength += len - 1;
    if (rawLength !== b.raw.length) throw outOfStep("the row batch's raw strings do not match their lengths");
    // The batch fits: its strings join the table (a new one at base 0), then its rows are read.
    if (b.base === 0) this.table = [];
    for (const s of b.strings) this.table.push(s);
    const table = this.table;
    const str = (id: number): string | undefined => (id === 0 ? undefined : table[id - 1]);
    let at = 0;
    const cut = (len: number): string | undefined => {
      if (len === 0) return undefined;
      const s = b.raw.slice(at, at + len - 1);
      at += len - 1;
      return s;
    };
    const rows = new Array<RequestRow>(b.rows);
    for (let i = 0; i < b.rows; i++) {
      const o = i * T;
      const u = i * N;
      const r = i * R;
      // A required field the row lacked stays missing: the store refuses the row, as it would have.
      const row: RequestRow = {
        at: b.numbers[u] as number,
        uid: cut(b.lengths[r] as number) as string,
        keyId: cut(b.lengths[r + 1] as number) as string,
        front: str(b.ids[o] as number) as string,
        outcome: str(b.ids[o + 6] as number) as RequestRow["outcome"],
        reason: str(b.ids[o + 7] as number) as string,
        status: b.numbers[u + 1] as number,
        checkMicros: b.numbers[u + 2] as number,
      };
      set(row, "policy", str(b.ids[o + 1] as number));
      set(row, "rule", str(b.ids[o + 2] as number));
      set(row, "route", str(b.ids[o + 3] as number));
      set(row, "method", str(b.ids[o + 4] as number));
      set(row, "host", str(b.ids[o + 5] as number));
      set(row, "network", str(b.ids[o + 8] as number));
      set(row, "country", str(b.ids[o + 9] as number));
      set(row, "path", cut(b.lengths[r + 2] as number));
      set(row, "source", cut(b.lengths[r + 3] as number));
      set(row, "requestId", cut(b.lengths[r + 4] as number));
      for (let f = 3; f < N; f++) {
        const v = b.numbers[u + f] as number;
        if (!Number.isNaN(v)) row[NUMBER_FIELDS[f] as "upstreamStatus"] = v;
      }
      rows[i] = row;
    }
    return rows;
  }
}

type OptionalText = "policy" | "rule" | "route" | "method" | "host" | "network" | "country" | "path" | "source" | "requestId";

function set(row: RequestRow, k: OptionalText, v: string | undefined): void {
  if (v !== undefined) row[k] = v;
}
