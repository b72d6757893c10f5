// Request rows as the queue holds them (ADR 65): columns, written as each row comes, never a
// row object. A RowColumns holds up to a batch of rows: their numbers in a Float64Array, the
// fields with few distinct values (front, policy, rule, route, method, host, outcome, reason,
// network, country) as ids into a StringTable, and the others (key uid and id, path, source,
// request id) as their UTF-8 bytes, row after row, in one Uint8Array, with their lengths. So a
// queued row is a few typed-array slots, not an object, and holds no string: the thread
// answering checks makes no object per row, and the collector has nothing of a waiting row to
// copy, promote and sweep (a full queue keeps every waiting row through the young generation's
// collections, ADR 65), not even the request's path and source, which the decoder made for that
// request alone (ADR 74). The same columns cross to the writer thread (row-batch.ts) without
// another encoding pass: the raw fields' bytes as they are.
//
// A row of a check is written straight from the check's event (appendCheck); other rows (the
// access log's, or a check's row with its network and country placed) from a RequestRow
// (appendRow). Only the row's named fields are read: nothing else an event or a row object holds
// is copied. The path is cut at `?`, `#` and MAX_ROW_PATH (rowPath), a source is kept only when
// it is an address, and an event without a key makes no row.
import type { CheckEvent } from "../check/event.ts";
import type { RequestRow } from "./row.ts";
import { isAddress, rowPath } from "./rows.ts";

/** Fields sent as ids into the string table: few distinct values, whatever the number of keys. */
export const TABLE_FIELDS = ["front", "policy", "rule", "route", "method", "host", "outcome", "reason", "network", "country"] as const;
/**
 * Fields kept as strings: mostly distinct per row, or as many as the keys (a table of 100,000
 * keys' uids and ids would start anew at nearly every batch).
 */
export const RAW_FIELDS = ["uid", "keyId", "path", "source", "requestId"] as const;
/** Numeric fields; NaN stands for undefined. */
export const NUMBER_FIELDS = ["at", "status", "checkMicros", "upstreamStatus", "upstreamMicros", "requestBytes", "responseBytes"] as const;

export const T = TABLE_FIELDS.length;
export const R = RAW_FIELDS.length;
export const N = NUMBER_FIELDS.length;
/** Raw bytes first allotted per row: a uid, a key id, a short path and an address. Grown as rows need. */
const BYTES_PER_ROW = 128;

export interface RowTableLimits {
  /** Strings in the table at most before it starts anew (between batches). */
  maxStrings: number;
  /** UTF-16 units in the table at most before it starts anew. */
  maxChars: number;
}

/** About 4 MiB of strings on each side at most: enough for the keys, routes and hosts of a busy data plane. */
export const DEFAULT_ROW_TABLE_LIMITS: RowTableLimits = { maxStrings: 65_536, maxChars: 2 * 1024 * 1024 };

/** Strings by id (1, 2, ...; 0 is none), only ever added to: a new table is a new object. */
export class StringTable {
  readonly strings: string[] = [];
  private readonly ids = new Map<string, number>();
  private chars = 0;

  /** Whether the table has outgrown `limits`: rows of a new batch then go to a new table. */
  full(limits: RowTableLimits): boolean {
    return this.strings.length >= limits.maxStrings || this.chars >= limits.maxChars;
  }

  id(s: string | undefined): number {
    // null too: a field the row lacks, whatever its type says.
    if (s == null) return 0;
    let id = this.ids.get(s);
    if (id === undefined) {
      this.strings.push(s);
      id = this.strings.length;
      this.ids.set(s, id);
      this.chars += s.length;
    }
    return id;
  }
}

/** Up to `capacity` rows in columns; rows [start, end) are held, against `table`'s ids. */
export class RowColumns {
  readonly capacity: number;
  table: StringTable;
  /** Rows before it were taken or dropped. */
  start = 0;
  end = 0;
  /** Rows' allocated slots (grown up to capacity). */
  private slots: number;
  numbers: Float64Array;
  ids: Uint32Array;
  /** Each raw field's length (UTF-16 code units) plus one; 0 is none. */
  lengths: Uint32Array;
  /** The raw fields' UTF-8 bytes, row after row (a field that is none adds nothing). */
  bytes: Uint8Array;
  /** Where each row's raw bytes end in `bytes` (row i's start where row i − 1's end). */
  rawEnds: Uint32Array;
  /** Each table field's last value and its id (undefined's is 0). */
  private readonly lastText: (string | undefined)[] = new Array<string | undefined>(T).fill(undefined);
  private readonly lastId = new Uint32Array(T);

  constructor(capacity: number, table: StringTable) {
    if (capacity < 1) throw new RangeError("row columns hold at least one row");
    this.capacity = capacity;
    this.table = table;
    this.slots = Math.min(capacity, 64);
    this.numbers = new Float64Array(this.slots * N);
    this.ids = new Uint32Array(this.slots * T);
    this.lengths = new Uint32Array(this.slots * R);
    this.rawEnds = new Uint32Array(this.slots);
    this.bytes = new Uint8Array(this.slots * BYTES_PER_ROW);
  }

  /** Rows held. */
  get count(): number {
    return this.end - this.start;
  }

  get full(): boolean {
    return this.end === this.capacity;
  }

  /** Empties it for rows against `table`, keeping its buffers. */
  clear(table: StringTable): void {
    // The last values' ids were of the table before.
    this.lastText.fill(undefined);
    this.lastId.fill(0);
    this.table = table;
    this.start = 0;
    this.end = 0;
  }

  /** The row of a check with a key, straight from its event (as unplacedRowFromCheck makes it); false without a key. */
  appendCheck(e: CheckEvent): boolean {
    const k = e.key;
    if (!k) return false;
    const i = this.begin();
    this.texts(i, e.front, e.policy, e.rule, e.route, e.method, e.host, e.outcome, e.reason, undefined, undefined);
    this.nums(i, e.at, e.status, Math.round(e.latencySeconds * 1e6), undefined, undefined, undefined, undefined);
    const source = e.source;
    this.raws(i, k.uid, k.keyId, rowPath(e.path), source !== undefined && isAddress(source) ? source : undefined, e.requestId);
    this.end = i + 1;
    return true;
  }

  /** A row as it is (its network and country as placed, the access log's upstream fields). */
  appendRow(r: RequestRow): void {
    const i = this.begin();
    this.texts(i, r.front, r.policy, r.rule, r.route, r.method, r.host, r.outcome, r.reason, r.network, r.country);
    this.nums(i, r.at, r.status, r.checkMicros, r.upstreamStatus, r.upstreamMicros, r.requestBytes, r.responseBytes);
    // uid and keyId are required, but a row without one (whatever its type says) keeps it missing: the store refuses it.
    this.raws(i, r.uid, r.keyId, r.path, r.source, r.requestId);
    this.end = i + 1;
  }

  /** Moves `n` rows from the front of `from` (against the same table) to the end of this one. */
  takeFrom(from: RowColumns, n: number): void {
    if (from.table !== this.table) throw new Error("row columns of different string tables");
    if (n > from.count || this.end + n > this.capacity) throw new RangeError("more rows than held or room for");
    const a = from.start;
    const b = a + n;
    const at = this.end;
    this.reserve(at + n);
    this.numbers.set(from.numbers.subarray(a * N, b * N), at * N);
    this.ids.set(from.ids.subarray(a * T, b * T), at * T);
    this.lengths.set(from.lengths.subarray(a * R, b * R), at * R);
    const fromStart = from.rawStart(a);
    const to = this.rawStart(at);
    const size = from.rawStart(b) - fromStart;
    this.reserveBytes(to + size);
    this.bytes.set(from.bytes.subarray(fromStart, fromStart + size), to);
    for (let i = 0; i < n; i++) this.rawEnds[at + i] = (from.rawEnds[a + i] as number) - fromStart + to;
    this.end = at + n;
    from.start = b;
  }

  /** Drops the oldest `n` rows held. */
  dropFront(n: number): void {
    this.start = Math.min(this.end, this.start + n);
  }

  /** The raw fields' bytes of rows [start, end), a view of the columns' own (a field that is none adds nothing). */
  rawBytes(): Uint8Array {
    return this.bytes.subarray(this.rawStart(this.start), this.rawStart(this.end));
  }

  /** Where row i's raw bytes start (row `end`'s: where the next row's will). */
  private rawStart(i: number): number {
    return i === 0 ? 0 : (this.rawEnds[i - 1] as number);
  }

  /** The next row's index, with room for it. */
  private begin(): number {
    const i = this.end;
    if (i >= this.capacity) throw new RangeError("row columns are full");
    this.reserve(i + 1);
    return i;
  }

  /** Row i's TABLE_FIELDS, in their order. */
  private texts(i: number, front: string, policy: string | undefined, rule: string | undefined, route: string | undefined, method: string | undefined, host: string | undefined, outcome: string, reason: string, network: string | undefined, country: string | undefined): void {
    const ids = this.ids;
    const o = i * T;
    ids[o] = this.text(0, front);
    ids[o + 1] = this.text(1, policy);
    ids[o + 2] = this.text(2, rule);
    ids[o + 3] = this.text(3, route);
    ids[o + 4] = this.text(4, method);
    ids[o + 5] = this.text(5, host);
    ids[o + 6] = this.text(6, outcome);
    ids[o + 7] = this.text(7, reason);
    ids[o + 8] = this.text(8, network);
    ids[o + 9] = this.text(9, country);
  }

  /** The id of TABLE_FIELDS[f]'s value `s`: the last row's, when it was the same, without a lookup in the table. */
  private text(f: number, s: string | undefined): number {
    if (s === this.lastText[f]) return this.lastId[f] as number;
    const id = this.table.id(s);
    this.lastText[f] = s;
    this.lastId[f] = id;
    return id;
  }

  /** Row i's NUMBER_FIELDS, in their order; NaN for none. */
  private nums(i: number, at: number, status: number, checkMicros: number, upstreamStatus: number | undefined, upstreamMicros: number | undefined, requestBytes: number | undefined, responseBytes: number | undefined): void {
    const numbers = this.numbers;
    const o = i * N;
    numbers[o] = at;
    numbers[o + 1] = status;
    numbers[o + 2] = checkMicros;
    numbers[o + 3] = upstreamStatus ?? NaN;
    numbers[o + 4] = upstreamMicros ?? NaN;
    numbers[o + 5] = requestBytes ?? NaN;
    numbers[o + 6] = responseBytes ?? NaN;
  }

  /** Row i's RAW_FIELDS, their lengths and their bytes. */
  private raws(i: number, uid: string, keyId: string, path: string | undefined, source: string | undefined, requestId: string | undefined): void {
    const o = i * R;
    const lengths = this.lengths;
    // A required field missing whatever its type says (null too) stays missing: the store refuses the row.
    const l0 = (lengths[o] = rawLength(uid));
    const l1 = (lengths[o + 1] = rawLength(keyId));
    const l2 = (lengths[o + 2] = rawLength(path));
    const l3 = (lengths[o + 3] = rawLength(source));
    const l4 = (lengths[o + 4] = rawLength(requestId));
    let at = this.rawStart(i);
    // Room for the longest encoding: three bytes per UTF-16 code unit.
    this.reserveBytes(at + 3 * (l0 + l1 + l2 + l3 + l4));
    const bytes = this.bytes;
    at = putUtf8(bytes, at, uid);
    at = putUtf8(bytes, at, keyId);
    at = putUtf8(bytes, at, path);
    at = putUtf8(bytes, at, source);
    this.rawEnds[i] = putUtf8(bytes, at, requestId);
  }

  /** Room for `size` bytes of raw fields. */
  private reserveBytes(size: number): void {
    if (size <= this.bytes.length) return;
    let length = this.bytes.length;
    while (length < size) length *= 2;
    this.bytes = grown(this.bytes, length);
  }

  /** Room for `rows` rows' numbers, ids and lengths. */
  private reserve(rows: number): void {
    if (rows <= this.slots) return;
    let slots = this.slots;
    while (slots < rows) slots *= 2;
    slots = Math.min(slots, this.capacity);
    this.numbers = grown(this.numbers, slots * N);
    this.ids = grown(this.ids, slots * T);
    this.lengths = grown(this.lengths, slots * R);
    this.rawEnds = grown(this.rawEnds, slots);
    this.slots = slots;
  }
}

/** A raw field's length plus one, or 0 when it has none (null too, whatever its type says). */
function rawLength(s: string | undefined | null): number {
  return s == null ? 0 : s.length + 1;
}

/**
 * Writes `s` (none: nothing) as UTF-8 into `bytes` at `at`, which has room for three bytes per
 * code unit; returns where it ends. ASCII is written here, byte by byte: the paths, addresses,
 * uids and ids of nearly every row are, and no view or call is made for them. The rest of a
 * string that is not goes through TextEncoder, which writes a lone surrogate as U+FFFD (three
 * bytes, one code unit again when decoded), so every field decodes to as many code units as its
 * length says.
 */
function putUtf8(bytes: Uint8Array, at: number, s: string | undefined | null): number {
  if (s == null) return at;
  const n = s.length;
  for (let k = 0; k < n; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x80) return at + ENCODER.encodeInto(s.slice(k), bytes.subarray(at)).written;
    bytes[at++] = c;
  }
  return at;
}

const ENCODER = new TextEncoder();
// BOM kept: a field that starts with U+FEFF is that field's first code unit, not a mark to drop.
const DECODER = new TextDecoder("utf-8", { ignoreBOM: true });

/** The raw fields' text from their bytes (rawBytes, RowBatch.raw), as one string to cut by their lengths. */
export function rawText(bytes: Uint8Array): string {
  return DECODER.decode(bytes);
}

function grown<A extends Float64Array | Uint32Array | Uint8Array>(a: A, length: number): A {
  const b = new (a.constructor as new (n: number) => A)(length);
  b.set(a);
  return b;
}

/** Rows as objects from their columns, against `strings` (the table the ids index); the raw fields cut from `raw` by their lengths. */
export function rowsOfColumns(rows: number, ids: Uint32Array, numbers: Float64Array, lengths: Uint32Array, raw: string, strings: readonly string[]): RequestRow[] {
  const str = (id: number): string | undefined => (id === 0 ? undefined : strings[id - 1]);
  const cut = cutter(raw);
  const out = new Array<RequestRow>(rows);
  for (let i = 0; i < rows; i++) {
    const o = i * T;
    const u = i * N;
    const r = i * R;
    // A required field the row lacked stays missing: the store refuses the row, as it would have.
    const row: RequestRow = {
      at: numbers[u] as number,
      uid: cut(lengths[r] as number) as string,
      keyId: cut(lengths[r + 1] as number) as string,
      front: str(ids[o] as number) as string,
      outcome: str(ids[o + 6] as number) as RequestRow["outcome"],
      reason: str(ids[o + 7] as number) as string,
      status: numbers[u + 1] as number,
      checkMicros: numbers[u + 2] as number,
    };
    set(row, "policy", str(ids[o + 1] as number));
    set(row, "rule", str(ids[o + 2] as number));
    set(row, "route", str(ids[o + 3] as number));
    set(row, "method", str(ids[o + 4] as number));
    set(row, "host", str(ids[o + 5] as number));
    set(row, "network", str(ids[o + 8] as number));
    set(row, "country", str(ids[o + 9] as number));
    set(row, "path", cut(lengths[r + 2] as number));
    set(row, "source", cut(lengths[r + 3] as number));
    set(row, "requestId", cut(lengths[r + 4] as number));
    for (let f = 3; f < N; f++) {
      const v = numbers[u + f] as number;
      if (!Number.isNaN(v)) row[NUMBER_FIELDS[f] as "upstreamStatus"] = v;
    }
    out[i] = row;
  }
  return out;
}

/** Cuts `text` into its fields, one after another, each by its length plus one (0: none). */
function cutter(text: string): (len: number) => string | undefined {
  let at = 0;
  return (len) => {
    if (len === 0) return undefined;
    const s = text.slice(at, at + len - 1);
    at += len - 1;
    return s;
  };
}

/** The rows held, as objects (a writer that takes no columns: the CLI's store, inline SQLite, tests). */
export function rowsOf(c: RowColumns): RequestRow[] {
  const a = c.start;
  const b = c.end;
  return rowsOfColumns(b - a, c.ids.subarray(a * T, b * T), c.numbers.subarray(a * N, b * N), c.lengths.subarray(a * R, b * R), rawText(c.rawBytes()), c.table.strings);
}

type OptionalText = "policy" | "rule" | "route" | "method" | "host" | "network" | "country" | "path" | "source" | "requestId";

function set(row: RequestRow, k: OptionalText, v: string | undefined): void {
  if (v !== undefined) row[k] = v;
}
