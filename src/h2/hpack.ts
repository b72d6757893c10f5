// HPACK (RFC 7541), the header compression of keyward's HTTP/2 server (the gRPC
// ext_authz front). HpackDecoder keeps the peer's dynamic table in sync and turns
// header blocks into (name, value) calls; HpackEncoder writes response headers
// from the static table and plain literals only, so the table keyward's peer keeps
// for it stays empty and never needs a size update.
//
// Names and values are octets held as latin1 strings: one code unit per octet, so
// a string's length is the octet count the dynamic table's size rule counts.
//
// The decoder runs on every request, so it is written to allocate little: static
// entries are constant strings, plain literals are latin1 slices of the block,
// Huffman literals go through a state machine built once at module load that
// consumes a nibble per step (no per-bit loop) into a reused scratch buffer, and
// the dynamic table is a ring of parallel arrays.

/** A COMPRESSION_ERROR: the header block cannot be decoded; the connection must be closed. */
export class HpackError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HpackError";
  }
}

/** The largest integer a header block may carry (lengths, indexes, table sizes). */
const MAX_INTEGER = 0x7fffffff;
/** What a dynamic table entry costs beyond its octets (RFC 7541 section 4.1). */
const ENTRY_OVERHEAD = 32;
const DEFAULT_TABLE_SIZE = 4096;

// The static table (RFC 7541 Appendix A), by index 1-61.
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;
/** Static names and values by HPACK index (index 0 is not an entry). */
const STATIC_NAMES: readonly string[] = ["", ...STATIC_TABLE.map((e) => e[0])];
const STATIC_VALUES: readonly string[] = ["", ...STATIC_TABLE.map((e) => e[1])];
/** The first static index of each name (entries with one name are adjacent). */
const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_NAMES[i] ?? "", i);

// The Huffman code (RFC 7541 Appendix B) by symbol: code bits (right-aligned) and
// length in bits. Symbols 0-255 are octets, 256 is EOS.
const HUFFMAN_EOS = 256;
const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, // 0
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, // 8
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, // 16
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, // 24
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, // 32
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, // 40
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, // 48
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, // 56
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, // 64
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, // 72
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, // 80
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, // 88
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, // 96
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, // 104
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, // 112
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, // 120
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, // 128
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, // 136
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, // 144
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, // 152
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, // 160
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, // 168
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, // 176
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, // 184
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, // 192
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, // 200
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, // 208
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, // 216
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, // 224
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, // 232
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, // 240
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, // 248
  0x3fffffff, // 256
];
const HUFFMAN_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
  30, // 256 (EOS)
];

// The Huffman decoder is a state machine over the code tree. A state is an internal
// node of the tree (0 is the root, 256 states for 257 leaves) or DEAD, and each
// transition consumes 4 bits. As the shortest code is 5 bits long a nibble completes
// at most one symbol, which the transition carries. A transition is packed in one
// number:
//   bits 0-8    the next state
//   bits 16-23  the symbol completed by the nibble, if EMIT is set
//   EMIT        a symbol was completed
//   ACCEPT      the string may end in the next state: it is the root or a node at
//               most 7 bits deep on the all-ones path (EOS's prefix, the only
//               padding RFC 7541 section 5.2 allows)
// Completing EOS leads to DEAD, which never leaves itself and never accepts, so a
// string is checked once, at its end.
const HUFFMAN_STATES = 256;
const DEAD = HUFFMAN_STATES;
const STATE_MASK = 0x1ff;
const EMIT = 1 << 24;
const ACCEPT = 1 << 25;

/** Transitions by state * 16 + nibble. */
const HUFFMAN_MACHINE = buildHuffmanMachine();

function buildHuffmanMachine(): Uint32Array {
  // The code tree: node n's children are kids[2n] (bit 0) and kids[2n + 1] (bit 1);
  // a child >= 0 is a node, a child < 0 is the leaf of symbol ~child.
  const UNSET = 0x7fffffff;
  const kids: number[] = [UNSET, UNSET];
  const accepting: boolean[] = [true];
  for (let sym = 0; sym <= HUFFMAN_EOS; sym++) {
    const code = HUFFMAN_CODES[sym] ?? 0;
    const bits = HUFFMAN_BITS[sym] ?? 0;
    let node = 0;
    for (let i = bits - 1; i > 0; i--) {
      const bit = (code >>> i) & 1;
      let next = kids[2 * node + bit] ?? UNSET;
      if (next === UNSET) {
        next = kids.length / 2;
        kids[2 * node + bit] = next;
        kids.push(UNSET, UNSET);
        accepting.push((accepting[node] ?? false) && bit === 1 && bits - i <= 7);
      } else if (next < 0) {
        throw new Error(`HPACK Huffman table: code of symbol ${sym} extends the code of symbol ${~next}`);
      }
      node = next;
    }
    if (kids[2 * node + (code & 1)] !== UNSET) throw new Error(`HPACK Huffman table: code of symbol ${sym} is taken`);
    kids[2 * node + (code & 1)] = ~sym;
  }
  if (kids.length !== 2 * HUFFMAN_STATES || kids.includes(UNSET)) throw new Error("HPACK Huffman table: not a complete code");

  const machine = new Uint32Array((HUFFMAN_STATES + 1) * 16).fill(DEAD);
  for (let state = 0; state < HUFFMAN_STATES; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let emitted = -1;
      for (let i = 3; i >= 0 && node !== DEAD; i--) {
        const next = kids[2 * node + ((nibble >>> i) & 1)] ?? UNSET;
        if (next >= 0) {
          node = next;
        } else if (~next === HUFFMAN_EOS) {
          node = DEAD;
        } else {
          if (emitted >= 0) throw new Error("HPACK Huffman table: two symbols in a nibble");
          emitted = ~next;
          node = 0;
        }
      }
      machine[state * 16 + nibble] =
        node | (emitted >= 0 ? EMIT | (emitted << 16) : 0) | (node !== DEAD && accepting[node] === true ? ACCEPT : 0);
    }
  }
  return machine;
}

/**
 * Buffer's latin1 coders, called without toString's and write's argument checks and
 * encoding lookup (Node's own Buffer methods; @types/node leaves them out).
 */
type Latin1Buffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number): number;
};

function strings(n: number): string[] {
  return Array.from({ length: n }, () => "");
}

/**
 * Decodes the header blocks of one HTTP/2 connection (one decoder per connection, blocks in
 * the order they arrive: the dynamic table is shared by all of them).
 */
export class HpackDecoder {
  private readonly maxTableSize: number;
  /** The dynamic table's current maximum size (the last size update, maxTableSize before any). */
  private capacity: number;
  /** Sum of the entries' sizes. */
  private used = 0;
  // The dynamic table: a ring of `count` entries from `first` (the oldest) on; the
  // length of the arrays is a power of two, doubled when full.
  private names = strings(16);
  private values = strings(16);
  private sizes: number[] = new Array<number>(16).fill(0);
  private mask = 15;
  private first = 0;
  private count = 0;
  /** Where the last integer or string read ended. */
  private pos = 0;
  /** Huffman output, reused. */
  private scratch = Buffer.allocUnsafe(256) as Latin1Buffer;

  /**
   * maxTableSize: the SETTINGS_HEADER_TABLE_SIZE keyward advertises (default 4096); a dynamic
   * table size update above it is an HpackError. It is also the table's size until the peer
   * sends an update.
   */
  constructor(maxTableSize = DEFAULT_TABLE_SIZE) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INTEGER) {
      throw new RangeError(`invalid HPACK table size ${maxTableSize}`);
    }
    this.maxTableSize = maxTableSize;
    this.capacity = maxTableSize;
  }

  /**
   * Decodes one complete header block (all HEADERS+CONTINUATION fragments joined), calling
   * emit(name, value) for every field in order, keeping the dynamic table in sync. Throws HpackError
   * on malformed input: bad integer (overflow beyond 2^31 or truncated), string past the end,
   * invalid Huffman (EOS symbol in the data, padding longer than 7 bits or not all ones), index 0 or
   * out of range, a table size update that is not at the start of the block or is above maxTableSize.
   * `start`/`end` select a range of `block` (avoid copying).
   *
   * A field is added to the dynamic table before emit sees it; if emit throws, decoding stops
   * there and the table is out of step with the peer's, so the connection must be closed too.
   */
  decode(block: Uint8Array, start: number, end: number, emit: (name: string, value: string) => void): void {
    if (!(start >= 0 && start <= end && end <= block.length)) {
      throw new RangeError(`range ${start}-${end} outside a block of ${block.length} octets`);
    }
    const buf = (Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength)) as Latin1Buffer;
    let pos = start;
    let atStart = true;
    while (pos < end) {
      const b = buf[pos] ?? 0;
      if (b >= 0x80) {
        // Indexed field (section 6.1).
        const index = this.integer(buf, pos, end, 0x7f);
        if (index <= STATIC_COUNT) {
          if (index === 0) throw new HpackError(`index 0 at offset ${pos}`);
          emit(STATIC_NAMES[index] ?? "", STATIC_VALUES[index] ?? "");
        } else {
          const slot = this.slot(index, pos);
          emit(this.names[slot] ?? "", this.values[slot] ?? "");
        }
        pos = this.pos;
      } else if (b >= 0x40) {
        // Literal with incremental indexing (section 6.2.1).
        const index = this.integer(buf, pos, end, 0x3f);
        const name = index === 0 ? this.string(buf, this.pos, end) : this.name(index, pos);
        const value = this.string(buf, this.pos, end);
        pos = this.pos;
        this.insert(name, value);
        emit(name, value);
      } else if (b >= 0x20) {
        // Dynamic table size update (section 6.3).
        if (!atStart) throw new HpackError(`table size update after a field at offset ${pos}`);
        const size = this.integer(buf, pos, end, 0x1f);
        if (size > this.maxTableSize) {
          throw new HpackError(`table size update to ${size} above the advertised ${this.maxTableSize} at offset ${pos}`);
        }
        this.capacity = size;
        while (this.used > size) this.evict();
        pos = this.pos;
        continue;
      } else {
        // Literal without indexing or never indexed (sections 6.2.2, 6.2.3).
        const index = this.integer(buf, pos, end, 0x0f);
        const name = index === 0 ? this.string(buf, this.pos, end) : this.name(index, pos);
        const value = this.string(buf, this.pos, end);
        pos = this.pos;
        emit(name, value);
      }
      atStart = false;
    }
  }

  /** The integer (section 5.1) whose first octet, at pos < end, holds its prefix under mask; sets this.pos past it. */
  private integer(buf: Buffer, pos: number, end: number, mask: number): number {
    let value = (buf[pos++] ?? 0) & mask;
    if (value === mask) {
      let scale = 1;
      for (;;) {
        if (pos >= end) throw new HpackError(`truncated integer at offset ${pos}`);
        const b = buf[pos++] ?? 0;
        value += (b & 0x7f) * scale;
        if (value > MAX_INTEGER) throw new HpackError(`integer above 2^31 - 1 at offset ${pos - 1}`);
        if (b < 0x80) break;
        scale *= 128;
        // A sixth continuation octet can only add zeros.
        if (scale > 2 ** 28) throw new HpackError(`integer too long at offset ${pos}`);
      }
    }
    this.pos = pos;
    return value;
  }

  /** The string literal (section 5.2) at pos; sets this.pos past it. */
  private string(buf: Latin1Buffer, pos: number, end: number): string {
    if (pos >= end) throw new HpackError(`missing string at offset ${pos}`);
    const huffman = (buf[pos] ?? 0) >= 0x80;
    const length = this.integer(buf, pos, end, 0x7f);
    const from = this.pos;
    const to = from + length;
    if (to > end) throw new HpackError(`string of ${length} octets past the end of the block at offset ${from}`);
    this.pos = to;
    if (length === 0) return "";
    return huffman ? this.huffman(buf, from, to) : buf.latin1Slice(from, to);
  }

  private huffman(buf: Buffer, from: number, to: number): string {
    // At most one octet per 5 bits; the room for one more lets the loop store before it counts.
    const room = Math.floor(((to - from) * 8) / 5) + 1;
    let out = this.scratch;
    if (out.length < room) out = this.scratch = Buffer.allocUnsafe(Math.max(room, 2 * out.length)) as Latin1Buffer;
    const machine = HUFFMAN_MACHINE;
    let n = 0;
    let state = 0;
    let t = ACCEPT;
    for (let i = from; i < to; i++) {
      const b = buf[i] ?? 0;
      t = machine[(state << 4) | (b >>> 4)] ?? DEAD;
      out[n] = t >>> 16; // the symbol (the store keeps the low 8 bits)
      n += (t >>> 24) & 1;
      state = t & STATE_MASK;
      t = machine[(state << 4) | (b & 0x0f)] ?? DEAD;
      out[n] = t >>> 16;
      n += (t >>> 24) & 1;
      state = t & STATE_MASK;
    }
    if ((t & ACCEPT) === 0) {
      throw new HpackError(
        state === DEAD
          ? `EOS in a Huffman string at offset ${from}`
          : `invalid padding (longer than 7 bits or not EOS's prefix) of a Huffman string at offset ${from}`,
      );
    }
    return out.latin1Slice(0, n);
  }

  /** The name of the entry at index (not 0); at: the field's offset, for the error. */
  private name(index: number, at: number): string {
    if (index <= STATIC_COUNT) return STATIC_NAMES[index] ?? "";
    return this.names[this.slot(index, at)] ?? "";
  }

  /** The ring slot of dynamic table index (> 61); at: the field's offset, for the error. */
  private slot(index: number, at: number): number {
    const age = index - STATIC_COUNT - 1;
    if (age >= this.count) {
      throw new HpackError(`index ${index} beyond the ${this.count} entries of the dynamic table at offset ${at}`);
    }
    return (this.first + this.count - 1 - age) & this.mask;
  }

  /** Adds an entry (section 4.4): evicts the oldest until it fits; one larger than the table empties it. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.capacity) {
      while (this.count > 0) this.evict();
      return;
    }
    while (this.used + size > this.capacity) this.evict();
    if (this.count === this.names.length) this.grow();
    const slot = (this.first + this.count) & this.mask;
    this.names[slot] = name;
    this.values[slot] = value;
    this.sizes[slot] = size;
    this.count++;
    this.used += size;
  }

  private evict(): void {
    const slot = this.first;
    this.used -= this.sizes[slot] ?? 0;
    this.names[slot] = "";
    this.values[slot] = "";
    this.first = (slot + 1) & this.mask;
    this.count--;
  }

  private grow(): void {
    const length = 2 * this.names.length;
    const names = strings(length);
    const values = strings(length);
    const sizes = new Array<number>(length).fill(0);
    for (let i = 0; i < this.count; i++) {
      const slot = (this.first + i) & this.mask;
      names[i] = this.names[slot] ?? "";
      values[i] = this.values[slot] ?? "";
      sizes[i] = this.sizes[slot] ?? 0;
    }
    this.names = names;
    this.values = values;
    this.sizes = sizes;
    this.mask = length - 1;
    this.first = 0;
  }
}

/** A code unit a latin1 string cannot hold as one octet. */
const NOT_AN_OCTET = /[\u0100-\uffff]/;

/** Encodes header lists without touching any dynamic table (so no size updates are ever needed). */
export class HpackEncoder {
  /** Where the encoding is built; the result is a copy of its first octets. */
  private scratch = Buffer.allocUnsafe(1024) as Latin1Buffer;

  /**
   * Returns the header block of fields, in order: a field the static table holds is indexed,
   * any other is a literal without indexing (its name indexed when the static table has
   * it). No Huffman coding. Names must be lowercase; names and values are octets (latin1
   * strings): a code unit above 0xff is a TypeError.
   */
  encode(fields: readonly (readonly [string, string])[]): Buffer {
    let out = this.scratch;
    let pos = 0;
    for (const [name, value] of fields) {
      // Prefix and length integers take at most 5 + 5 + 5 octets.
      const room = pos + name.length + value.length + 15;
      if (room > out.length) {
        const bigger = Buffer.allocUnsafe(Math.max(room, 2 * out.length)) as Latin1Buffer;
        out.copy(bigger, 0, 0, pos);
        out = this.scratch = bigger;
      }
      const first = STATIC_NAME_INDEX.get(name);
      if (first === undefined) {
        out[pos++] = 0x00;
        pos = writeString(out, pos, name);
      } else {
        let index = first;
        while (index <= STATIC_COUNT && STATIC_NAMES[index] === name && STATIC_VALUES[index] !== value) index++;
        if (index <= STATIC_COUNT && STATIC_NAMES[index] === name) {
          pos = writeInteger(out, pos, 0x80, 0x7f, index);
          continue;
        }
        pos = writeInteger(out, pos, 0x00, 0x0f, first);
      }
      pos = writeString(out, pos, value);
    }
    const block = Buffer.allocUnsafe(pos);
    out.copy(block, 0, 0, pos);
    return block;
  }
}

/** Writes value as an integer with the given first-octet bits and prefix mask (section 5.1); returns the end. */
function writeInteger(out: Buffer, pos: number, bits: number, mask: number, value: number): number {
  if (value < mask) {
    out[pos++] = bits | value;
    return pos;
  }
  out[pos++] = bits | mask;
  let rest = value - mask;
  while (rest >= 0x80) {
    out[pos++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[pos++] = rest;
  return pos;
}

/** Writes s as a string literal without Huffman coding (section 5.2); returns the end. */
function writeString(out: Latin1Buffer, pos: number, s: string): number {
  if (NOT_AN_OCTET.test(s)) throw new TypeError("HPACK: a header string holds a character above 0xff");
  pos = writeInteger(out, pos, 0x00, 0x7f, s.length);
  return pos + out.latin1Write(s, pos);
}
