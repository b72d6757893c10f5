// hpack.ts against RFC 7541: the Appendix C examples byte for byte (with their
// dynamic table after each block), every malformed input the decoder must refuse,
// Huffman strings made by a bit-by-bit reference encoder written here from its own
// copy of the code table, the dynamic table's size rule checked against a plain
// model, and encoder output decoded back.
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../test/support/random.ts";
import { HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";

type Field = [string, string];

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const latin1 = (s: string): Buffer => Buffer.from(s, "latin1");

function decode(d: HpackDecoder, block: Uint8Array): Field[] {
  const out: Field[] = [];
  d.decode(block, 0, block.length, (name, value) => out.push([name, value]));
  return out;
}

/** An HPACK integer (RFC 7541 section 5.1) whose first octet carries `bits` and a prefix of `prefix` bits. */
function int(bits: number, prefix: number, value: number): number[] {
  const max = (1 << prefix) - 1;
  if (value < max) return [bits | value];
  const out = [bits | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

const str = (s: string): number[] => [...int(0, 7, s.length), ...latin1(s)];
const hstr = (s: string): number[] => {
  const h = huffman(latin1(s));
  return [...int(0x80, 7, h.length), ...h];
};
/** Literal with incremental indexing, new name. */
const incremental = (name: string, value: string): number[] => [0x40, ...str(name), ...str(value)];
/** Literal with incremental indexing, indexed name. */
const incrementalIndexed = (index: number, value: string): number[] => [...int(0x40, 6, index), ...str(value)];
const indexed = (index: number): number[] => int(0x80, 7, index);
const sizeUpdate = (size: number): number[] => int(0x20, 5, size);

/** The dynamic table, newest first, read through indexed fields (which leave it as it is). */
function table(d: HpackDecoder): Field[] {
  const out: Field[] = [];
  for (let index = 62; ; index++) {
    try {
      out.push(...decode(d, Buffer.from(indexed(index))));
    } catch (err) {
      expect(err).toBeInstanceOf(HpackError);
      return out;
    }
  }
}

const entrySize = ([n, v]: Field): number => n.length + v.length + 32;
const tableSize = (t: Field[]): number => t.reduce((s, e) => s + entrySize(e), 0);

// The Huffman code (RFC 7541 Appendix B), this file's own copy: code bits
// (right-aligned) and length by symbol, 256 = EOS.
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

/** Reference Huffman encoder: one bit at a time, padded with the most significant bits of EOS (ones). */
function huffman(octets: Uint8Array): Buffer {
  const bits: number[] = [];
  for (const o of octets) {
    const code = HUFFMAN_CODES[o]!;
    for (let i = HUFFMAN_BITS[o]! - 1; i >= 0; i--) bits.push((code >>> i) & 1);
  }
  while (bits.length % 8 !== 0) bits.push(1);
  const out = Buffer.alloc(bits.length / 8);
  bits.forEach((b, i) => {
    out[i >> 3]! |= b << (7 - (i & 7));
  });
  return out;
}

/** A Huffman string of raw bits (a string of 0s and 1s, a multiple of 8 long) as a literal value of "x". */
const rawHuffmanField = (bitString: string): number[] => {
  const octets = bitString.match(/.{8}/g)!.map((b) => parseInt(b, 2));
  return [0x00, ...str("x"), ...int(0x80, 7, octets.length), ...octets];
};
const codeBits = (sym: number): string => HUFFMAN_CODES[sym]!.toString(2).padStart(HUFFMAN_BITS[sym]!, "0");

interface Example {
  name: string;
  block: string;
  fields: Field[];
  /** The dynamic table after the block, newest first. */
  table: Field[];
  /** The table size the RFC gives. */
  size: number;
}

// RFC 7541 Appendix C.3 and C.4: one request sequence, without and with Huffman.
const REQUEST_FIELDS: Field[][] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]],
  [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]],
];
const REQUEST_TABLES: [Field[], number][] = [
  [[[":authority", "www.example.com"]], 57],
  [[["cache-control", "no-cache"], [":authority", "www.example.com"]], 110],
  [[["custom-key", "custom-value"], ["cache-control", "no-cache"], [":authority", "www.example.com"]], 164],
];
const requests = (name: string, blocks: string[]): Example[] =>
  blocks.map((block, i) => ({ name: `${name}.${i + 1}`, block, fields: REQUEST_FIELDS[i]!, table: REQUEST_TABLES[i]![0], size: REQUEST_TABLES[i]![1] }));

// Appendix C.5 and C.6: one response sequence with a 256-octet table, without and with Huffman.
const DATE_1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const LOCATION = "https://www.example.com";
const RESPONSE_FIELDS: Field[][] = [
  [[":status", "302"], ["cache-control", "private"], ["date", DATE_1], ["location", LOCATION]],
  [[":status", "307"], ["cache-control", "private"], ["date", DATE_1], ["location", LOCATION]],
  [[":status", "200"], ["cache-control", "private"], ["date", DATE_2], ["location", LOCATION], ["content-encoding", "gzip"], ["set-cookie", COOKIE]],
];
const RESPONSE_TABLES: [Field[], number][] = [
  [[["location", LOCATION], ["date", DATE_1], ["cache-control", "private"], [":status", "302"]], 222],
  [[[":status", "307"], ["location", LOCATION], ["date", DATE_1], ["cache-control", "private"]], 222],
  [[["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE_2]], 215],
];
const responses = (name: string, blocks: string[]): Example[] =>
  blocks.map((block, i) => ({ name: `${name}.${i + 1}`, block, fields: RESPONSE_FIELDS[i]!, table: RESPONSE_TABLES[i]![0], size: RESPONSE_TABLES[i]![1] }));

const SEQUENCES: { name: string; tableSize: number; examples: Example[] }[] = [
  {
    name: "C.3 requests without Huffman",
    tableSize: 4096,
    examples: requests("C.3", [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]),
  },
  {
    name: "C.4 requests with Huffman",
    tableSize: 4096,
    examples: requests("C.4", [
      "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]),
  },
  {
    name: "C.5 responses without Huffman",
    tableSize: 256,
    examples: responses("C.5", [
      "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "4803 3330 37c1 c0bf",
      "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ]),
  },
  {
    name: "C.6 responses with Huffman",
    tableSize: 256,
    examples: responses("C.6", [
      "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      "4883 640e ffc1 c0bf",
      "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]),
  },
];

// RFC 7541 Appendix A, indexes 1-61: names, and the values of those that have one.
const STATIC_NAMES = [
  ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme", ":status", ":status", ":status",
  ":status", ":status", ":status", ":status", "accept-charset", "accept-encoding", "accept-language",
  "accept-ranges", "accept", "access-control-allow-origin", "age", "allow", "authorization", "cache-control",
  "content-disposition", "content-encoding", "content-language", "content-length", "content-location",
  "content-range", "content-type", "cookie", "date", "etag", "expect", "expires", "from", "host", "if-match",
  "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "link", "location",
  "max-forwards", "proxy-authenticate", "proxy-authorization", "range", "referer", "refresh", "retry-after",
  "server", "set-cookie", "strict-transport-security", "transfer-encoding", "user-agent", "vary", "via",
  "www-authenticate",
];
const STATIC_VALUES: Record<number, string> = {
  2: "GET", 3: "POST", 4: "/", 5: "/index.html", 6: "http", 7: "https", 8: "200", 9: "204", 10: "206", 11: "304",
  12: "400", 13: "404", 14: "500", 16: "gzip, deflate",
};
const STATIC: Field[] = STATIC_NAMES.map((name, i) => [name, STATIC_VALUES[i + 1] ?? ""]);

describe("the static table (RFC 7541 Appendix A)", () => {
  it("decodes each of the 61 indexes to its entry", () => {
    const d = new HpackDecoder();
    expect(STATIC).toHaveLength(61);
    expect(decode(d, Buffer.from(STATIC.map((_, i) => 0x80 | (i + 1))))).toEqual(STATIC);
    expect(table(d)).toEqual([]);
  });

  it("encodes each entry as its index, and each name with another value as an indexed name", () => {
    const enc = new HpackEncoder();
    STATIC.forEach((field, i) => {
      expect(enc.encode([field]), field[0]).toEqual(Buffer.from([0x80 | (i + 1)]));
    });
    const firstIndex = (name: string): number => STATIC_NAMES.indexOf(name) + 1;
    for (const name of new Set(STATIC_NAMES)) {
      expect(enc.encode([[name, "other"]]), name).toEqual(Buffer.from([...int(0x00, 4, firstIndex(name)), ...str("other")]));
    }
  });
});

describe("HpackDecoder: RFC 7541 Appendix C", () => {
  it("C.1 integers: 10 and 1337 with a 5-bit prefix, 42 at an octet boundary", () => {
    // The 5-bit prefix of a table size update carries C.1.1 and C.1.2; 42 is a string length.
    expect(int(0x20, 5, 10)).toEqual([0x2a]);
    expect(int(0x20, 5, 1337)).toEqual([0x3f, 0x9a, 0x0a]);
    const d = new HpackDecoder(1337);
    expect(decode(d, Buffer.from([0x3f, 0x9a, 0x0a, 0x00, ...str("n"), 0x2a, ...latin1("v".repeat(42))]))).toEqual([["n", "v".repeat(42)]]);
    expect(() => decode(new HpackDecoder(1336), Buffer.from([0x3f, 0x9a, 0x0a]))).toThrow(HpackError);
    decode(d, Buffer.from([0x2a]));
    decode(d, Buffer.from(incremental("n", ""))); // 33 octets: larger than a 10-octet table
    expect(table(d)).toEqual([]);
  });

  it("C.2.1 literal with indexing", () => {
    const d = new HpackDecoder();
    expect(decode(d, hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"))).toEqual([["custom-key", "custom-header"]]);
    expect(table(d)).toEqual([["custom-key", "custom-header"]]);
    expect(tableSize(table(d))).toBe(55);
  });

  it("C.2.2 literal without indexing", () => {
    const d = new HpackDecoder();
    expect(decode(d, hex("040c 2f73 616d 706c 652f 7061 7468"))).toEqual([[":path", "/sample/path"]]);
    expect(table(d)).toEqual([]);
  });

  it("C.2.3 literal never indexed", () => {
    const d = new HpackDecoder();
    expect(decode(d, hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))).toEqual([["password", "secret"]]);
    expect(table(d)).toEqual([]);
  });

  it("C.2.4 indexed field", () => {
    const d = new HpackDecoder();
    expect(decode(d, hex("82"))).toEqual([[":method", "GET"]]);
    expect(table(d)).toEqual([]);
  });

  for (const seq of SEQUENCES) {
    it(`${seq.name}: fields and dynamic table after each block`, () => {
      const d = new HpackDecoder(seq.tableSize);
      for (const ex of seq.examples) {
        expect(decode(d, hex(ex.block)), ex.name).toEqual(ex.fields);
        expect(table(d), ex.name).toEqual(ex.table);
        expect(tableSize(ex.table), ex.name).toBe(ex.size);
      }
    });
  }

  it("the reference Huffman encoder reproduces the strings of C.4 and C.6", () => {
    expect(huffman(latin1("www.example.com"))).toEqual(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
    expect(huffman(latin1("no-cache"))).toEqual(hex("a8eb 1064 9cbf"));
    expect(huffman(latin1("custom-key"))).toEqual(hex("25a8 49e9 5ba9 7d7f"));
    expect(huffman(latin1("custom-value"))).toEqual(hex("25a8 49e9 5bb8 e8b4 bf"));
    expect(huffman(latin1("302"))).toEqual(hex("6402"));
    expect(huffman(latin1("private"))).toEqual(hex("aec3 771a 4b"));
    expect(huffman(latin1(DATE_1))).toEqual(hex("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"));
    expect(huffman(latin1(LOCATION))).toEqual(hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"));
    expect(huffman(latin1(COOKIE))).toEqual(hex("94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"));
  });
});

describe("HpackDecoder: Huffman strings", () => {
  const roundTrip = (values: string[]): void => {
    const d = new HpackDecoder();
    const block: number[] = [];
    for (const v of values) block.push(0x00, ...hstr(`n-${v.length}`), ...hstr(v));
    expect(decode(d, Buffer.from(block))).toEqual(values.map((v) => [`n-${v.length}`, v]));
  };

  it("decodes every symbol 0-255, alone and in one string", () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    roundTrip([...all]); // alone: every code length, every padding length
    roundTrip([all, [...all].reverse().join("")]);
  });

  it("decodes every padding length, from none to 7 bits", () => {
    // 'a' is 5 bits: 1 to 8 of them leave 3, 6, 1, 4, 7, 2, 5 and 0 bits of padding.
    roundTrip(Array.from({ length: 8 }, (_, i) => "a".repeat(i + 1)));
  });

  it("decodes seeded random strings of random octets and of header-like text", () => {
    const rnd = seededRandom(7541);
    const text = "abcdefghijklmnopqrstuvwxyz0123456789-_./:;=, ABCDEFXYZ";
    const values: string[] = [];
    for (let i = 0; i < 300; i++) {
      const n = Math.floor(rnd() * 80);
      let s = "";
      for (let j = 0; j < n; j++) s += i % 2 === 0 ? String.fromCharCode(Math.floor(rnd() * 256)) : text[Math.floor(rnd() * text.length)]!;
      values.push(s);
    }
    roundTrip(values);
  });

  it("decodes a long string (the scratch buffer grows) and an empty one", () => {
    const long = "x-request-id: 4f1c".repeat(600) + "\u00ff\u0000";
    roundTrip([long, "", "short after long"]);
    const d = new HpackDecoder();
    expect(decode(d, Buffer.from([0x00, ...str("e"), 0x80]))).toEqual([["e", ""]]);
  });

  it("decodes Huffman names and plain values alike", () => {
    const d = new HpackDecoder();
    expect(decode(d, Buffer.from([0x40, ...hstr("x-key"), ...str("v1"), 0x10, ...str("x-key"), ...hstr("v2"), 0xbe]))).toEqual([
      ["x-key", "v1"],
      ["x-key", "v2"],
      ["x-key", "v1"],
    ]);
  });
});

describe("HpackDecoder: malformed blocks throw HpackError", () => {
  const refuse = (bytes: number[] | Buffer, message: RegExp, d = new HpackDecoder()): void => {
    const block = Buffer.from(bytes);
    expect(() => decode(d, block)).toThrow(HpackError);
    expect(() => decode(new HpackDecoder(), block)).toThrow(message);
  };

  it("is an Error named HpackError and keeps its cause", () => {
    const cause = new Error("inner");
    const err = new HpackError("bad block", { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("HpackError");
    expect(err.message).toBe("bad block");
    expect(err.cause).toBe(cause);
  });

  it("truncated integers", () => {
    refuse([0xff], /truncated integer/); // index 127 + continuation, nothing follows
    refuse([0xff, 0x80], /truncated integer/);
    refuse([0x7f, 0xff, 0xff], /truncated integer/);
    refuse([0x00, 0x7f], /truncated integer/); // name length
    refuse([0x3f], /truncated integer/); // size update
  });

  it("integers above 2^31 - 1, and over-long ones", () => {
    refuse(int(0x80, 7, 2 ** 31), /integer above/);
    refuse(int(0x00, 4, 2 ** 32), /integer above/);
    refuse([0x00, ...int(0x00, 7, 2 ** 31 + 5)], /integer above/);
    refuse([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], /integer above/);
    refuse([0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /integer too long/); // zeros in a sixth continuation octet
    // 2^31 - 1 itself is an integer; here an index out of range and a string past the end.
    refuse(int(0x80, 7, 2 ** 31 - 1), /index 2147483647 beyond/);
    refuse([0x00, ...int(0x00, 7, 2 ** 31 - 1)], /past the end/);
  });

  it("strings past the end of the block, or missing", () => {
    refuse([0x40, 0x05, ...latin1("abcd")], /past the end/);
    refuse([0x00, ...str("name"), 0x03, ...latin1("ab")], /past the end/);
    refuse([0x00, ...str("name"), 0x83, 0xff], /past the end/);
    refuse([0x00, ...str("name")], /missing string/);
    refuse([0x00], /missing string/);
    refuse([0x44], /missing string/); // indexed name (:path), no value
  });

  it("a string past the end of the range even when the block goes on", () => {
    const block = Buffer.from([0x00, ...str("name"), ...str("value")]);
    const d = new HpackDecoder();
    expect(() => {
      d.decode(block, 0, block.length - 1, () => undefined);
    }).toThrow(HpackError);
  });

  it("Huffman strings holding EOS", () => {
    const eos = codeBits(256);
    refuse(rawHuffmanField(eos + "11"), /EOS/);
    refuse(rawHuffmanField(codeBits(97) + eos + "11111"), /EOS/); // 'a' then EOS
    refuse(rawHuffmanField(eos + codeBits(48) + "1"), /EOS/); // EOS then '0'
  });

  it("Huffman padding longer than 7 bits", () => {
    refuse(rawHuffmanField("11111111"), /padding/);
    refuse(rawHuffmanField(codeBits(97) + "11111111111"), /padding/); // 'a' + 11 ones
    refuse(rawHuffmanField(codeBits(97).repeat(3) + "1".repeat(9) + "111111"), /padding/); // 15 ones
  });

  it("Huffman padding that is not all ones", () => {
    refuse(rawHuffmanField(codeBits(97) + "000"), /padding/);
    refuse(rawHuffmanField(codeBits(97) + "110"), /padding/);
    refuse(rawHuffmanField(codeBits(97) + "011"), /padding/);
    // The string ends 11 bits into the 13-bit code of octet 0 (11111111110...).
    refuse(rawHuffmanField(codeBits(97) + codeBits(0).slice(0, 11)), /padding/);
  });

  it("index 0", () => {
    refuse([0x80], /index 0/);
    refuse([0x82, 0x86, 0x80], /index 0/);
  });

  it("indexes beyond the dynamic table, for indexed fields and for names", () => {
    refuse(indexed(62), /index 62 beyond the 0 entries/);
    refuse([...int(0x40, 6, 62), ...str("v")], /index 62 beyond/);
    refuse([...int(0x00, 4, 70), ...str("v")], /index 70 beyond/);
    refuse([...int(0x10, 4, 100), ...str("v")], /index 100 beyond/);
    const d = new HpackDecoder();
    decode(d, Buffer.from(incremental("a", "1")));
    expect(decode(d, Buffer.from(indexed(62)))).toEqual([["a", "1"]]);
    expect(() => decode(d, Buffer.from(indexed(63)))).toThrow(/index 63 beyond the 1 entries/);
    expect(decode(d, Buffer.from(indexed(61)))).toEqual([["www-authenticate", ""]]);
  });

  it("a table size update after a field", () => {
    refuse([0x82, ...sizeUpdate(100)], /size update after a field/);
    refuse([...sizeUpdate(0), 0x82, ...sizeUpdate(0)], /size update after a field/);
    refuse([...incremental("a", "b"), ...sizeUpdate(4096)], /size update after a field/);
  });

  it("a table size update above the advertised size", () => {
    refuse(sizeUpdate(4097), /above the advertised 4096/);
    const d = new HpackDecoder(100);
    expect(() => decode(d, Buffer.from(sizeUpdate(101)))).toThrow(HpackError);
    expect(decode(new HpackDecoder(100), Buffer.from(sizeUpdate(100)))).toEqual([]);
    expect(() => decode(new HpackDecoder(0), Buffer.from(sizeUpdate(1)))).toThrow(HpackError);
  });
});

describe("HpackDecoder: the dynamic table", () => {
  // 40-octet entries: a 2-octet name, a 6-octet value.
  const e = (i: number): Field => [`k${i}`, `value${i}`];
  const add = (d: HpackDecoder, ...fields: Field[]): Field[] => decode(d, Buffer.from(fields.flatMap(([n, v]) => incremental(n, v))));

  it("evicts the oldest entries first", () => {
    const d = new HpackDecoder(120);
    add(d, e(1), e(2), e(3));
    expect(table(d)).toEqual([e(3), e(2), e(1)]);
    add(d, e(4));
    expect(table(d)).toEqual([e(4), e(3), e(2)]);
    const big: Field = ["big", "x".repeat(45)]; // 80 octets
    expect(add(d, big)).toEqual([big]);
    expect(table(d)).toEqual([big, e(4)]);
    add(d, e(5), e(6));
    expect(table(d)).toEqual([e(6), e(5)]);
  });

  it("an entry larger than the table empties it (and is still emitted)", () => {
    const d = new HpackDecoder(120);
    add(d, e(1), e(2));
    const huge: Field = ["huge", "y".repeat(85)]; // 121 octets
    expect(add(d, huge)).toEqual([huge]);
    expect(table(d)).toEqual([]);
    const exact: Field = ["fits", "y".repeat(84)]; // 120 octets: fits exactly, alone
    add(d, e(1), exact);
    expect(table(d)).toEqual([exact]);
  });

  it("a new entry may take its name from the entry it evicts", () => {
    const d = new HpackDecoder(40);
    add(d, e(1));
    expect(decode(d, Buffer.from(incrementalIndexed(62, "other1")))).toEqual([["k1", "other1"]]);
    expect(table(d)).toEqual([["k1", "other1"]]);
    // Larger than the table: the table empties, the field still has its name.
    expect(decode(d, Buffer.from(incrementalIndexed(62, "much longer")))).toEqual([["k1", "much longer"]]);
    expect(table(d)).toEqual([]);
  });

  it("counts octets: a latin1 value above 0x7f is one octet", () => {
    const d = new HpackDecoder(40);
    const f: Field = ["k\u00e9", "\u00ff\u00fe\u00fd\u00fc\u00fb\u00fa"]; // 2 + 6 + 32 = 40
    add(d, e(1), f);
    expect(table(d)).toEqual([f]);
  });

  it("a size update shrinks the table from its oldest end, to 0 and back", () => {
    const d = new HpackDecoder();
    add(d, e(1), e(2), e(3));
    decode(d, Buffer.from(sizeUpdate(80)));
    expect(table(d)).toEqual([e(3), e(2)]);
    decode(d, Buffer.from(sizeUpdate(0)));
    expect(table(d)).toEqual([]);
    add(d, e(4)); // larger than a 0-octet table
    expect(table(d)).toEqual([]);
    decode(d, Buffer.from(sizeUpdate(4096)));
    add(d, e(5), e(6));
    expect(table(d)).toEqual([e(6), e(5)]);
    // Two updates at the start of one block: to 0 (emptying it) then back up.
    expect(decode(d, Buffer.from([...sizeUpdate(0), ...sizeUpdate(4096), ...incremental(...e(7)), ...indexed(62)]))).toEqual([e(7), e(7)]);
    expect(table(d)).toEqual([e(7)]);
  });

  it("keeps order over many insertions (ring wrap-around and growth) against a plain model", () => {
    const rnd = seededRandom(4096);
    const max = 2048;
    const d = new HpackDecoder(max);
    let model: Field[] = [];
    let capacity = max;
    const fit = (): void => {
      while (tableSize(model) > capacity) model.pop();
    };
    for (let round = 0; round < 300; round++) {
      const block: number[] = [];
      const expected: Field[] = [];
      if (rnd() < 0.1) {
        capacity = Math.floor(rnd() * (max + 1));
        block.push(...sizeUpdate(capacity));
        fit();
      }
      for (let k = Math.floor(rnd() * 6); k > 0; k--) {
        const r = rnd();
        if (r < 0.6) {
          const f: Field = [`n${round}-${k}`, "v".repeat(Math.floor(rnd() * (rnd() < 0.05 ? 2100 : 60)))];
          block.push(...incremental(...f));
          expected.push(f);
          if (entrySize(f) > capacity) model = [];
          else {
            model.unshift(f);
            fit();
          }
        } else if (r < 0.8 && model.length > 0) {
          const i = Math.floor(rnd() * model.length);
          block.push(...indexed(62 + i));
          expected.push(model[i]!);
        } else if (model.length > 0) {
          const i = Math.floor(rnd() * model.length);
          block.push(...int(0x00, 4, 62 + i), ...str("plain"));
          expected.push([model[i]![0], "plain"]);
        }
      }
      expect(decode(d, Buffer.from(block)), `round ${round}`).toEqual(expected);
      expect(table(d), `round ${round}`).toEqual(model);
    }
    // 2048 / 33: the ring held up to 62 entries at once.
    const small = new HpackDecoder(max);
    for (let i = 0; i < 100; i++) add(small, [`${i % 10}`, ""]);
    expect(table(small)).toHaveLength(62);
    expect(table(small)[0]).toEqual(["9", ""]);
  });
});

describe("HpackDecoder: input ranges", () => {
  it("decodes a range of a larger Buffer, and a plain Uint8Array", () => {
    const inner = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
    const block = Buffer.concat([Buffer.from([0xff, 0x00, 0x3f]), inner, Buffer.from([0x80, 0xff])]);
    const out: Field[] = [];
    new HpackDecoder().decode(block, 3, 3 + inner.length, (n, v) => out.push([n, v]));
    expect(out).toEqual(REQUEST_FIELDS[0]);
    const plain = new Uint8Array(block.buffer.slice(block.byteOffset, block.byteOffset + block.length)).subarray(1);
    const out2: Field[] = [];
    new HpackDecoder().decode(plain, 2, 2 + inner.length, (n, v) => out2.push([n, v]));
    expect(out2).toEqual(REQUEST_FIELDS[0]);
  });

  it("an empty range emits nothing; a range outside the block is a RangeError", () => {
    const d = new HpackDecoder();
    expect(decode(d, Buffer.alloc(0))).toEqual([]);
    d.decode(Buffer.from([0x80]), 1, 1, () => expect.unreachable());
    expect(() => {
      d.decode(Buffer.from([0x82]), 0, 2, () => undefined);
    }).toThrow(RangeError);
    expect(() => {
      d.decode(Buffer.from([0x82]), 1, 0, () => undefined);
    }).toThrow(RangeError);
    expect(() => {
      d.decode(Buffer.from([0x82]), -1, 1, () => undefined);
    }).toThrow(RangeError);
  });

  it("refuses an invalid maximum table size", () => {
    expect(() => new HpackDecoder(-1)).toThrow(RangeError);
    expect(() => new HpackDecoder(1.5)).toThrow(RangeError);
    expect(() => new HpackDecoder(2 ** 31)).toThrow(RangeError);
  });
});

describe("HpackEncoder", () => {
  const enc = new HpackEncoder();

  it("indexes static entries and indexes the names of the static table", () => {
    expect(enc.encode([[":status", "200"]])).toEqual(hex("88"));
    expect(enc.encode([[":status", "500"], [":method", "POST"], ["accept-encoding", "gzip, deflate"], ["www-authenticate", ""]])).toEqual(hex("8e 83 90 bd"));
    expect(enc.encode([[":status", "418"]])).toEqual(Buffer.from([0x08, ...str("418")])); // name of index 8, the first :status
    expect(enc.encode([["content-type", "application/grpc"]])).toEqual(Buffer.from([0x0f, 0x10, ...str("application/grpc")]));
    expect(enc.encode([["grpc-status", "0"]])).toEqual(Buffer.from([0x00, ...str("grpc-status"), ...str("0")]));
    expect(enc.encode([])).toEqual(Buffer.alloc(0));
  });

  it("round-trips through the decoder and leaves the dynamic table empty", () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const fields: Field[] = [
      [":status", "200"],
      [":status", "203"],
      ["content-type", "application/grpc"],
      ["grpc-status", "0"],
      ["grpc-message", ""],
      ["accept", ""],
      ["location", ""],
      ["x-long", "L".repeat(127)],
      ["x-longer", "M".repeat(128)],
      ["x-longest", "N".repeat(70_000)],
      ["x-".padEnd(300, "n"), "name longer than 127 octets"],
      ["x-all-octets", all],
      ["set-cookie", all],
      ["", ""],
    ];
    const d = new HpackDecoder();
    const block = enc.encode(fields);
    expect(decode(d, block)).toEqual(fields);
    expect(table(d)).toEqual([]);
    // The encoder's scratch is reused: a second encoding is independent of the first.
    const again = enc.encode([["a", "b"]]);
    expect(decode(d, block)).toEqual(fields);
    expect(decode(d, again)).toEqual([["a", "b"]]);
  });

  it("refuses characters that are not octets", () => {
    expect(() => enc.encode([["x-name", "caf\u0100"]])).toThrow(TypeError);
    expect(() => enc.encode([["x-\u2603", "v"]])).toThrow(TypeError);
    expect(() => enc.encode([[":path", "/\ud83d\ude00"]])).toThrow(TypeError);
  });
});
