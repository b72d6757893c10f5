// A batch of request rows as it crosses to the analytics writer thread (ADR 57, 65): the queue's
// columns (row-columns.ts), not objects. Numbers go in one Float64Array and the strings that
// repeat (policy, rule, route, method, host, outcome, reason, ...) as ids into a string table
// kept across batches, so a batch carries only the strings the writer thread has not been sent
// yet; the strings that rarely repeat (path, source, request id) or are as many as the keys (uid,
// key id) go as their UTF-8 bytes and their lengths (ADR 74). The batch's typed arrays are copies of the
// queue's columns, and their buffers are transferred: the queue keeps its rows until the writer
// confirms the write. The check thread encodes (RowBatchEncoder), the writer
// thread decodes (RowBatchDecoder) into RequestRows.
//
// The table is kept in step by `base`: a batch's new strings take the ids after the `base`
// strings the writer must already hold. The writer refuses (AnalyticsBatchOutOfStep) a batch
// whose base is not the length of its table, and starts a new table at a batch of base 0. The
// queue's rows hold ids of the table they were written against (StringTable, only ever added
// to; a new table is a new object, started by the queue between batches when one outgrows its
// bounds). The encoder sends a batch against its rows' table: the strings the writer was not
// sent yet when it holds that table, else (another table, or after any write the writer did not
// confirm: a refused batch, a thread that died) base 0 and every string of the table. A
// restarted writer thread has an empty table: the first batch it gets is either of base 0, or
// refused and then sent again at base 0.
//
// Only RequestRow's named fields are ever written into columns: nothing else a row object or an
// event might hold is encoded.
import { KeywardError } from "../errors.ts";
import type { RequestRow } from "./row.ts";
import { DEFAULT_ROW_TABLE_LIMITS, N, R, rawText, RowColumns, rowsOfColumns, StringTable, T, type RowTableLimits } from "./row-columns.ts";

export { DEFAULT_ROW_TABLE_LIMITS, type RowTableLimits } from "./row-columns.ts";

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
  /** rows × RAW_FIELDS lengths (UTF-16 code units) plus one; 0 is undefined. */
  lengths: Uint32Array;
  /** The raw fields' values as UTF-8, one after another. */
  raw: Uint8Array;
}

/** The buffers to transfer with a batch. */
export function batchTransfer(b: RowBatch): ArrayBuffer[] {
  return [b.ids.buffer as ArrayBuffer, b.numbers.buffer as ArrayBuffer, b.lengths.buffer as ArrayBuffer, b.raw.buffer as ArrayBuffer];
}

/** The check thread's side: encodes batches against the table the writer thread is known to hold. */
export class RowBatchEncoder {
  private readonly limits: RowTableLimits;
  /** The table the writer holds, as far as known, and how many of its strings it was sent. */
  private held: StringTable | undefined;
  private sent = 0;
  /** The table of rows handed over as objects (encode). */
  private own = new StringTable();

  constructor(limits: RowTableLimits = DEFAULT_ROW_TABLE_LIMITS) {
    this.limits = limits;
  }

  /** Strings in the table of rows handed over as objects. */
  get size(): number {
    return this.own.strings.length;
  }

  /** The writer may hold none of the strings sent: the next batch has base 0 and carries its whole table. */
  reset(): void {
    this.held = undefined;
    this.sent = 0;
  }

  /** Rows handed over as objects, into columns against a table of the encoder's own (started anew past its limits). */
  encode(rows: readonly RequestRow[]): RowBatch {
    if (this.own.full(this.limits)) this.own = new StringTable();
    const c = new RowColumns(Math.max(1, rows.length), this.own);
    for (const r of rows) c.appendRow(r);
    return this.encodeColumns(c);
  }

  /** The rows `c` holds, copied: `c` keeps them, for a write the writer does not confirm. */
  encodeColumns(c: RowColumns): RowBatch {
    const table = c.table;
    const same = this.held === table;
    const base = same ? this.sent : 0;
    const strings = table.strings.slice(base);
    this.held = table;
    this.sent = table.strings.length;
    const a = c.start;
    const b = c.end;
    return {
      rows: b - a,
      base,
      strings,
      ids: c.ids.slice(a * T, b * T),
      numbers: c.numbers.slice(a * N, b * N),
      lengths: c.lengths.slice(a * R, b * R),
      raw: c.rawBytes().slice(),
    };
  }
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
    const raw = rawText(b.raw);
    if (rawLength !== raw.length) throw outOfStep("the row batch's raw strings do not match their lengths");
    // The batch fits: its strings join the table (a new one at base 0), then its rows are read.
    if (b.base === 0) this.table = [];
    for (const s of b.strings) this.table.push(s);
    return rowsOfColumns(b.rows, b.ids, b.numbers, b.lengths, raw, this.table);
  }
}
