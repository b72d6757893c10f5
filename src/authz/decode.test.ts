// decode.ts against the decode path it replaces (proto-loader's requestDeserialize
// for Authorization/Check): generated Envoy-shaped CheckRequests, encoded with
// proto-loader, must decode to the same fields and the same CheckInput. Includes
// non-UTF-8 strings and raw values, huge and many headers, unknown fields of every
// wire type at every level, repeated singular messages, and malformed input.
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../test/support/random.ts";
import { decodeCheckRequest } from "./decode.ts";
import { toCheckInput } from "./check-messages.ts";
import { loadProtos, type CheckRequestMessage } from "./proto.ts";

const SEED = Number(process.env.KEYWARD_DECODE_SEED ?? 20261123);

const check = (loadProtos()["envoy.service.auth.v3.Authorization"] as unknown as {
  Check: { requestSerialize: (m: unknown) => Buffer; requestDeserialize: (b: Buffer) => unknown };
}).Check;
const encode = (m: unknown): Buffer => check.requestSerialize(m);
const current = (b: Buffer): unknown => check.requestDeserialize(b);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Buffer.isBuffer(v);

/** The fields of proto-loader's output that CheckRequestMessage declares, present exactly when present there. */
function project(m: unknown): CheckRequestMessage {
  const out: CheckRequestMessage = {};
  if (!isObj(m) || !isObj(m.attributes)) return out;
  const a = m.attributes;
  const attrs: NonNullable<CheckRequestMessage["attributes"]> = (out.attributes = {});
  if (isObj(a.source)) {
    const src: NonNullable<typeof attrs.source> = (attrs.source = {});
    const addr = a.source.address;
    if (isObj(addr)) {
      src.address = {};
      if (isObj(addr.socket_address)) {
        src.address.socket_address = {};
        if (typeof addr.socket_address.address === "string") src.address.socket_address.address = addr.socket_address.address;
      }
    }
  }
  if (isObj(a.request)) {
    attrs.request = {};
    const h = a.request.http;
    if (isObj(h)) {
      const http: NonNullable<NonNullable<typeof attrs.request>["http"]> = (attrs.request.http = {});
      for (const f of ["method", "host", "path"] as const) if (typeof h[f] === "string") http[f] = h[f];
      if (isObj(h.headers)) http.headers = h.headers as Record<string, string>;
      if (isObj(h.header_map)) {
        http.header_map = {};
        const list = h.header_map.headers;
        if (Array.isArray(list)) {
          http.header_map.headers = list.map((e: Obj) => {
            const v: { key?: string; value?: string; raw_value?: Uint8Array } = {};
            if (typeof e.key === "string") v.key = e.key;
            if (typeof e.value === "string") v.value = e.value;
            if (e.raw_value !== undefined) v.raw_value = e.raw_value as Uint8Array;
            return v;
          });
        }
      }
    }
  }
  return out;
}

/** Everything toCheckInput gives, with header() asked for every name either side saw plus a few absent ones. */
function inputOf(m: CheckRequestMessage, names: string[]): Obj {
  const i = toCheckInput(m);
  return {
    method: i.method,
    host: i.host,
    path: i.path,
    peerAddress: i.peerAddress,
    forwardedFor: i.forwardedFor,
    headers: names.map((n) => [n, i.header(n)]),
  };
}

function headerNames(m: CheckRequestMessage): string[] {
  const h = m.attributes?.request?.http;
  const names = new Set<string>(["x-api-key", "authorization", "absent", "__proto__", "constructor", "toString"]);
  for (const k of Object.keys(h?.headers ?? {})) names.add(k);
  for (const e of h?.header_map?.headers ?? []) if (e.key) names.add(e.key.toLowerCase());
  return [...names];
}

/**
 * The decoded message with its headers map copied into a plain object. keyward's decoder builds
 * that map without a prototype (so V8 keeps it a hash table whatever order the entries come in);
 * everything else must be exactly proto-loader's.
 */
function withPlainHeaders(m: CheckRequestMessage): CheckRequestMessage {
  const h = m.attributes?.request?.http?.headers;
  if (!h) return m;
  expect(Object.getPrototypeOf(h)).toBeNull();
  const http = { ...m.attributes!.request!.http!, headers: Object.fromEntries(Object.entries(h)) };
  return { ...m, attributes: { ...m.attributes, request: { ...m.attributes!.request, http } } };
}

/**
 * expect(got).toStrictEqual(want), asked of the matcher only when node's strict deep equality
 * (as strict: same prototypes, undefined properties and sparseness) finds a difference, so that
 * the thousands of equal pairs the loops compare cost a comparison each, and a difference still
 * fails with the matcher's diff.
 */
function expectStrictEqual(got: unknown, want: unknown, what?: string): void {
  if (!isDeepStrictEqual(got, want)) expect(got, what).toStrictEqual(want);
}

/** Decodes b both ways and expects the same fields and CheckInput. */
function expectSame(b: Buffer): CheckRequestMessage {
  const want = project(current(b));
  const got = decodeCheckRequest(b);
  expectStrictEqual(withPlainHeaders(got), want);
  const names = headerNames(want);
  expectStrictEqual(inputOf(got, names), inputOf(want, names));
  return got;
}

// --- a small protobuf writer for what proto-loader cannot express (unknown fields, groups, repeats)

function varint(n: number | bigint): Buffer {
  let x = BigInt(n);
  if (x < 0n) x += 1n << 64n;
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return Buffer.from(out);
}
const tag = (field: number, wt: number): Buffer => varint(field * 8 + wt);
const len = (field: number, payload: Buffer): Buffer => Buffer.concat([tag(field, 2), varint(payload.length), payload]);

/** The payload of a message that holds a single length-delimited field. */
function unwrap(b: Buffer): Buffer {
  let p = 0;
  while (b[p]! & 0x80) p++;
  p++;
  let n = 0;
  let shift = 0;
  for (;;) {
    const x = b[p++]!;
    n += (x & 0x7f) * 2 ** shift;
    if (x < 0x80) break;
    shift += 7;
  }
  expect(p + n).toBe(b.length);
  return b.subarray(p, p + n);
}

/** A random unknown field (numbers above anything in these messages), of any wire type. */
function unknownField(r: () => number): Buffer {
  const field = 1000 + Math.floor(r() * 100_000);
  switch (Math.floor(r() * 6)) {
    case 0:
      return Buffer.concat([tag(field, 0), varint(r() < 0.5 ? Math.floor(r() * 300) : -1 - Math.floor(r() * 1000))]); // 10-byte negatives too
    case 1:
      return Buffer.concat([tag(field, 1), Buffer.alloc(8, 0xab)]);
    case 2:
      return len(field, Buffer.from(Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256))));
    case 3:
      return Buffer.concat([tag(field, 5), Buffer.alloc(4, 0xcd)]);
    case 4: // a group holding a varint, a nested group and a string
      return Buffer.concat([tag(field, 3), tag(1, 0), varint(7), tag(2, 3), tag(3, 5), Buffer.alloc(4), tag(2, 4), len(4, Buffer.from("g")), tag(field, 4)]);
    default:
      return len(field, encode({ attributes: { request: { http: { method: "NOT-ME", path: "/nested" } } } }));
  }
}

/** Unknown field 2 as `depth` nested groups. */
const groups = (depth: number): Buffer => Buffer.concat([Buffer.alloc(depth, 0x13), Buffer.alloc(depth, 0x14)]);

// --- generated Envoy-shaped requests

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

function randomString(r: () => number, max: number): string {
  const alphabet = ["a", "Z", "0", "-", "_", "/", "?", "=", "&", " ", ",", "é", "日", "😀", "\u0000", "\u007f", "%2F", "__proto__"];
  const n = Math.floor(r() * max);
  let s = "";
  for (let i = 0; i < n; i++) s += pick(r, alphabet);
  return s;
}

const HEADER_NAMES = [":authority", ":method", ":path", "user-agent", "x-request-id", "x-forwarded-for", "x-api-key", "authorization", "x-other-key", "accept", "__proto__", "constructor", "X-Mixed-Case"];

function randomRequest(r: () => number): Obj {
  const http: Obj = {};
  const maybe = (p: number): boolean => r() < p;
  if (maybe(0.9)) http.method = pick(r, ["GET", "POST", "DELETE", "", "get", randomString(r, 8)]);
  if (maybe(0.9)) http.host = pick(r, ["api.example.com", "API.Example.COM:8443", "", "[::1]:80", randomString(r, 20)]);
  if (maybe(0.9)) http.path = pick(r, ["/", "/items/1?api_key=kwt_x#frag", "", "relative", "/" + randomString(r, 60)]);
  if (maybe(0.7)) {
    const headers: Record<string, string> = {};
    const n = Math.floor(r() * 14);
    for (let i = 0; i < n; i++) headers[maybe(0.8) ? pick(r, HEADER_NAMES) : randomString(r, 12)] = randomString(r, 40);
    http.headers = headers;
  }
  if (maybe(0.4)) {
    const list: Obj[] = [];
    const n = Math.floor(r() * 12);
    for (let i = 0; i < n; i++) {
      const e: Obj = {};
      if (maybe(0.95)) e.key = maybe(0.8) ? pick(r, HEADER_NAMES) : randomString(r, 12);
      if (maybe(0.7)) e.raw_value = Buffer.from(Array.from({ length: Math.floor(r() * 30) }, () => Math.floor(r() * 256)));
      if (maybe(0.3)) e.value = randomString(r, 20);
      list.push(e);
    }
    http.header_map = maybe(0.9) ? { headers: list } : {};
  }
  // Fields keyward does not read, as Envoy sends them.
  if (maybe(0.5)) Object.assign(http, { id: "1234567890", scheme: "https", query: "a=b", fragment: "f", size: pick(r, ["0", "-1", "9007199254740993"]), protocol: "HTTP/1.1" });
  if (maybe(0.2)) Object.assign(http, { body: randomString(r, 50), raw_body: Buffer.from([0, 1, 0xff]) });
  const attributes: Obj = {};
  if (maybe(0.9)) {
    const socket: Obj = { protocol: pick(r, [0, 1]), port_value: Math.floor(r() * 65536) };
    if (maybe(0.9)) socket.address = pick(r, ["10.0.0.1", "2001:db8::1", "", randomString(r, 16)]);
    attributes.source = maybe(0.95)
      ? { address: maybe(0.9) ? { socket_address: socket } : { pipe: { path: "/tmp/s", mode: 0o600 } }, principal: "spiffe://x", labels: { a: "b" } }
      : {};
  }
  if (maybe(0.8)) attributes.destination = { address: { socket_address: { address: "10.0.0.2", port_value: 8080 } }, service: "svc" };
  if (maybe(0.95)) attributes.request = maybe(0.95) ? { time: { seconds: "1700000000", nanos: 5 }, http } : { time: { seconds: "1" } };
  if (maybe(0.5)) attributes.context_extensions = { tenant: "t1", [randomString(r, 5)]: randomString(r, 5) };
  if (maybe(0.3)) attributes.metadata_context = { filter_metadata: { "envoy.filters.http.jwt": { fields: { sub: { stringValue: "me" }, n: { numberValue: 1.5 } } } } };
  if (maybe(0.2)) attributes.tls_session = { sni: "api.example.com" };
  return maybe(0.97) ? { attributes } : {};
}

describe("decodeCheckRequest", () => {
  it("decodes generated Envoy-shaped requests exactly as proto-loader does", () => {
    const r = seededRandom(SEED);
    let withHeaders = 0;
    let withMap = 0;
    for (let i = 0; i < 3000; i++) {
      const got = expectSame(encode(randomRequest(r)));
      if (got.attributes?.request?.http?.headers) withHeaders++;
      if (got.attributes?.request?.http?.header_map?.headers) withMap++;
    }
    expect(withHeaders).toBeGreaterThan(1000);
    expect(withMap).toBeGreaterThan(500);
  });

  it("decodes an empty message and empty sub-messages", () => {
    for (const m of [{}, { attributes: {} }, { attributes: { source: {} } }, { attributes: { source: { address: {} } } }, { attributes: { request: {} } }, { attributes: { request: { http: {} } } }, { attributes: { request: { http: { header_map: {} } } } }]) {
      expect(decodeCheckRequest(encode(m))).toStrictEqual(m);
      expectSame(encode(m));
    }
    expect(decodeCheckRequest(Buffer.alloc(0))).toStrictEqual({});
  });

  it("keeps non-UTF-8 bytes as proto-loader does (replacement characters in strings, raw bytes in raw_value)", () => {
    const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c]);
    const marker = "QQQQQQQQQQQQ";
    for (const where of ["method", "host", "path", "key", "value", "address", "map-key", "map-value"] as const) {
      const m = {
        attributes: {
          source: { address: { socket_address: { address: where === "address" ? marker : "10.1.1.1" } } },
          request: {
            http: {
              method: where === "method" ? marker : "GET",
              host: where === "host" ? marker : "h",
              path: where === "path" ? `/${marker}` : "/",
              headers: { [where === "key" ? marker : "x-api-key"]: where === "value" ? marker : "kwt_x" },
              header_map: { headers: [{ key: where === "map-key" ? marker : "x-api-key", value: where === "map-value" ? marker : "v" }] },
            },
          },
        },
      };
      const buf = encode(m);
      const at = buf.indexOf(Buffer.from(marker));
      expect(at).toBeGreaterThan(0);
      bad.copy(buf, at);
      const got = expectSame(buf);
      expect(JSON.stringify(got)).toContain("\ufffd");
    }
    const raw = encode({ attributes: { request: { http: { header_map: { headers: [{ key: "x-api-key", raw_value: bad }] } } } } });
    const got = expectSame(raw);
    expect(Buffer.from(got.attributes!.request!.http!.header_map!.headers![0]!.raw_value!)).toStrictEqual(bad);
  });

  it("decodes huge headers and thousands of headers", () => {
    const huge = "k".repeat(3 * 1024 * 1024);
    const got = expectSame(encode({ attributes: { request: { http: { method: "GET", host: "h", path: "/" + "a/".repeat(100_000), headers: { "x-api-key": huge, authorization: `Bearer ${huge.slice(1000)}` } } } } }));
    expect(got.attributes?.request?.http?.headers?.["x-api-key"]).toBe(huge);
    expectSame(encode({ attributes: { request: { http: { header_map: { headers: [{ key: "x-api-key", raw_value: Buffer.alloc(3 * 1024 * 1024, 0x6b) }] } } } } }));
    const many: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) many[`x-h-${i}`] = `v${i}`;
    expect(Object.keys(expectSame(encode({ attributes: { request: { http: { headers: many } } } })).attributes!.request!.http!.headers!)).toHaveLength(5000);
    const list = Array.from({ length: 5000 }, (_, i) => ({ key: i % 2 ? "X-Dup" : `x-h-${i}`, raw_value: Buffer.from(`v${i}`) }));
    expectSame(encode({ attributes: { request: { http: { header_map: { headers: list } } } } }));
  });

  it("keeps each request's headers while later requests are decoded, refused ones included", () => {
    const r = seededRandom(SEED + 7);
    const held: { bytes: Buffer; lazy: CheckRequestMessage }[] = [];
    for (let i = 0; i < 300; i++) {
      const bytes = encode(randomRequest(r));
      held.push({ bytes, lazy: decodeCheckRequest(bytes, true) });
      // A request cut short fails part-way through its headers.
      if (bytes.length > 4) expect(() => decodeCheckRequest(bytes.subarray(0, bytes.length - 2), true)).toThrow();
    }
    for (const { bytes, lazy } of held) {
      const eager = decodeCheckRequest(bytes);
      const names = headerNames(eager);
      expect(inputOf(lazy, names)).toEqual(inputOf(eager, names));
    }
  });

  it("skips unknown fields of every wire type at every level", () => {
    const r = seededRandom(SEED + 1);
    for (let i = 0; i < 500; i++) {
      const m = randomRequest(r);
      const junk = (): Buffer => Buffer.concat(Array.from({ length: Math.floor(r() * 3) }, () => unknownField(r)));
      const around = (b: Buffer): Buffer => Buffer.concat([junk(), b, junk()]);
      const attrs = (m.attributes ?? {}) as Obj;
      const req = (attrs.request ?? {}) as Obj;
      const http = encode({ attributes: { request: { http: req.http ?? {} } } });
      const httpBytes = around(unwrap(unwrap(unwrap(http))));
      const source = encode({ attributes: { source: attrs.source ?? {} } });
      const sourceBytes = around(unwrap(unwrap(source)));
      const requestBytes = around(len(2, httpBytes));
      const attrBytes = around(Buffer.concat([len(1, sourceBytes), len(4, requestBytes)]));
      expectSame(around(len(1, attrBytes)));
    }
  });

  it("lets a repeated singular message replace the earlier one, and accumulates map entries and header_map entries", () => {
    const a = encode({ attributes: { source: { address: { socket_address: { address: "1.1.1.1" } } }, request: { http: { method: "GET", host: "a", headers: { x: "1" } } } } });
    const b = encode({ attributes: { request: { http: { path: "/b" } } } });
    expect(expectSame(Buffer.concat([a, b]))).toStrictEqual({ attributes: { request: { http: { path: "/b" } } } });
    // Inside one HttpRequest: map entries and header_map entries accumulate, scalars and header_map take the last.
    const h1 = unwrap(unwrap(unwrap(encode({ attributes: { request: { http: { method: "GET", headers: { x: "1", y: "2" }, header_map: { headers: [{ key: "a", value: "1" }] } } } } }))));
    const h2 = unwrap(unwrap(unwrap(encode({ attributes: { request: { http: { method: "POST", headers: { x: "3" }, header_map: { headers: [{ key: "b", value: "2" }] } } } } }))));
    const got = expectSame(len(1, len(4, len(2, Buffer.concat([h1, h2])))));
    expect(withPlainHeaders(got).attributes?.request?.http).toStrictEqual({ method: "POST", headers: { x: "3", y: "2" }, header_map: { headers: [{ key: "b", value: "2" }] } });
    const hm = Buffer.concat([len(1, len(1, Buffer.from("a"))), len(1, len(1, Buffer.from("b")))]);
    expect(expectSame(len(1, len(4, len(2, len(13, hm))))).attributes?.request?.http?.header_map?.headers).toStrictEqual([{ key: "a" }, { key: "b" }]);
  });

  it("treats a __proto__ header like any other key, as proto-loader does", () => {
    const entry = len(3, Buffer.concat([len(1, Buffer.from("__proto__")), len(2, Buffer.from("evil"))]));
    const got = expectSame(len(1, len(4, len(2, entry))));
    const h = got.attributes!.request!.http!.headers!;
    expect(Object.getPrototypeOf(h)).toBeNull();
    expect(Object.keys(h)).toStrictEqual(["__proto__"]);
    expect(toCheckInput(got).header("__proto__")).toBe("evil");
  });

  it("skips nested groups up to a depth proto-loader accepts too", () => {
    for (const depth of [1, 2, 10, 64]) expectSame(Buffer.concat([groups(depth), encode({ attributes: { request: { http: { method: "GET" } } } })]));
  });

  it("throws on malformed input and never returns different fields from proto-loader", () => {
    const r = seededRandom(SEED + 2);
    const valid = (): Buffer => encode(randomRequest(r));
    // What decodeCheckRequest threw that is not an Error, checked once at the end.
    const thrown: unknown[] = [];
    const fails = (b: Buffer): boolean => {
      try {
        decodeCheckRequest(b);
        return false;
      } catch (err) {
        if (!(err instanceof Error)) thrown.push(err);
        return true;
      }
    };
    // Truncated messages: every cut inside a length-delimited field is an error.
    const whole = encode({ attributes: { source: { address: { socket_address: { address: "10.0.0.1" } } }, request: { http: { method: "GET", host: "h", path: "/", headers: { "x-api-key": "kwt_abc" } } } } });
    const accepted = Array.from({ length: whole.length - 1 }, (_, i) => i + 1).filter((cut) => !fails(whole.subarray(0, cut)));
    expect(accepted).toEqual([]);
    // Hand-made malformations.
    const bad = [
      Buffer.from([0x0a]), // tag without a length
      Buffer.from([0x0a, 0x05, 0x00]), // length past the end
      Buffer.from([0x00]), // field 0
      Buffer.from([0x0e]), // wire type 6
      Buffer.from([0x14]), // end group without a start
      Buffer.from([0x13, 0x1c]), // group ended by another field's end tag
      Buffer.from([0x13]), // unterminated group
      Buffer.from([0x0b, 0x0c]), // attributes (a message) as a group
      Buffer.from([0x08]), // truncated varint
      Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // 11-byte varint
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x1f]), // length over 32 bits
      Buffer.from([0x09, 1, 2, 3]), // truncated fixed64
      Buffer.from([0x08, 0x01]), // attributes (a message) as a varint
      len(1, Buffer.from([0x22, 0x02, 0x12, 0x05])), // http's length past request's end
      len(1, len(4, len(2, Buffer.from([0x12, 0x03, 0x41])))), // method past http's end
      len(1, len(4, len(2, Buffer.from([0x10, 0x01])))), // method as a varint
      len(1, len(4, len(2, Buffer.from([0x6d, 1, 2, 3, 4])))), // header_map as fixed32
      groups(65), // groups nested too deep
    ];
    for (const b of bad) expect(fails(b), b.toString("hex")).toBe(true);

    // Random garbage and random byte surgery on valid requests: whenever both decoders accept, they agree.
    let both = 0;
    for (let i = 0; i < 5000; i++) {
      let b: Buffer;
      if (i % 3 === 0) b = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 300) }, () => Math.floor(r() * 256)));
      else {
        b = Buffer.from(valid());
        if (b.length === 0) continue;
        for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
          const at = Math.floor(r() * b.length);
          if (i % 3 === 1) b[at] = Math.floor(r() * 256);
          else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
        }
      }
      let want: CheckRequestMessage;
      try {
        want = project(current(b));
      } catch {
        fails(b);
        continue;
      }
      if (fails(b)) continue;
      both++;
      expectStrictEqual(withPlainHeaders(decodeCheckRequest(b)), want, b.toString("hex"));
    }
    expect(both).toBeGreaterThan(100);
    expect(thrown).toEqual([]);
  });
});

describe("decodeCheckRequest with lazy headers (keyward's HTTP/2 front)", () => {
  const PROBES = ["x-api-key", "authorization", "x-forwarded-for", "__proto__", "constructor", "toString", "", "X-Api-Key", "ü", "\uFFFD", "x-h-1"];

  /** Both decodings of b accept or refuse it alike, and give the same CheckInput for every header asked. */
  function agree(b: Buffer): boolean {
    let eager: CheckRequestMessage;
    try {
      eager = decodeCheckRequest(b);
    } catch {
      expect(() => decodeCheckRequest(b, true), b.toString("hex")).toThrow();
      return false;
    }
    const lazy = decodeCheckRequest(b, true);
    expect(lazy.attributes?.request?.http?.headers).toBeUndefined();
    const a = toCheckInput(eager);
    const z = toCheckInput(lazy);
    const { header: _ha, ...restA } = a;
    const { header: _hz, ...restZ } = z;
    expectStrictEqual(restZ, restA, b.toString("hex"));
    const names = [...PROBES, ...Object.keys(eager.attributes?.request?.http?.headers ?? {})];
    // One expect per message, not per header: the matcher costs more than the lookups.
    const differ = names.filter((n) => !Object.is(z.header(n), a.header(n)));
    if (differ.length) expect(differ.map((n) => [n, z.header(n)]), b.toString("hex")).toStrictEqual(differ.map((n) => [n, a.header(n)]));
    return true;
  }

  it("gives the headers the decoded map gives, for generated and mutated requests", () => {
    const r = seededRandom(SEED + 3);
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      let b = encode(randomRequest(r));
      if (i % 2 === 1 && b.length > 0) {
        b = Buffer.from(b);
        for (let k = 0; k < 1 + Math.floor(r() * 3); k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      }
      if (agree(b)) accepted++;
    }
    expect(accepted).toBeGreaterThan(1500);
  });

  it("lets the last entry of a key win, matches keys byte for byte, and decodes non-UTF-8 values as the map does", () => {
    const entry = (k: Buffer | string, v: Buffer | string): Buffer => len(3, Buffer.concat([len(1, Buffer.from(k)), len(2, Buffer.from(v))]));
    const http = (...entries: Buffer[]): Buffer => len(1, len(4, len(2, Buffer.concat([len(2, Buffer.from("GET")), ...entries]))));
    const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28]);
    const cases = [
      http(entry("x-api-key", "first"), entry("x-api-key", "second")),
      http(entry("x-api-key", bad), entry(bad, "v"), entry("ü", "umlaut")),
      http(entry("", "empty name"), entry("x-api-keyx", "longer"), entry("x-api-ke", "shorter")),
      // An entry without a value, one without a key, and a key sent twice inside one entry.
      http(len(3, len(1, Buffer.from("x-api-key"))), len(3, len(2, Buffer.from("no key"))), len(3, Buffer.concat([len(1, Buffer.from("a")), len(1, Buffer.from("authorization")), len(2, Buffer.from("Bearer x"))]))),
    ];
    for (const b of cases) expect(agree(b)).toBe(true);
    const z = toCheckInput(decodeCheckRequest(cases[0]!, true));
    expect(z.header("x-api-key")).toBe("second");
    expect(toCheckInput(decodeCheckRequest(cases[1]!, true)).header("ü")).toBe("umlaut");
  });
});
