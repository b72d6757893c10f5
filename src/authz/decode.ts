// A CheckRequest decoder for the Check hot path: it walks the protobuf wire
// format once and keeps only what toCheckInput reads (source address, method,
// host, path, headers or header_map), instead of protobufjs decoding every field
// into a message and proto-loader converting that into a plain object.
//
// The result has the shape proto-loader gives (keepCase, defaults: false), for
// those fields: a field is present exactly when it was on the wire, a singular
// message that occurs twice is replaced by the later one (as protobufjs does), map
// entries and repeated HeaderValues accumulate, an empty headers map or header_map
// list is left out. Field numbers (Envoy's wire contract):
//   CheckRequest.attributes = 1
//   AttributeContext.source = 1 (Peer), .request = 4 (Request)
//   Peer.address = 1 (config.core.v3.Address)
//   Address.socket_address = 1, SocketAddress.address = 2
//   Request.http = 2 (HttpRequest)
//   HttpRequest.method = 2, .headers = 3 (map<string,string>), .path = 4,
//     .host = 5, .header_map = 13 (config.core.v3.HeaderMap)
//   HeaderMap.headers = 1 (HeaderValue: key = 1, value = 2, raw_value = 3)
// Everything else, including fields this file has never heard of and groups, is
// skipped without being decoded. Malformed input throws (grpc-js answers a request
// it cannot deserialize with a gRPC error, as it does for protobufjs's
// exceptions). It is a little stricter than protobufjs where protobufjs is lenient:
// a string or bytes field that runs past the end of its message, a field of these
// messages' schema with a different wire type (protobufjs reads it as the schema's
// type anyway and loses its place), field number 0, a mismatched end group and
// over-long varints throw here. The other way round, malformed bytes inside a
// field this decoder skips (destination, metadata, ...) are not noticed: the
// fields keyward reads are still decoded correctly. Whenever both decoders accept
// an input, the fields returned here equal proto-loader's.
import type { CheckRequestMessage } from "./proto.ts";

type Attributes = NonNullable<CheckRequestMessage["attributes"]>;
type Source = NonNullable<Attributes["source"]>;
type Http = NonNullable<NonNullable<Attributes["request"]>["http"]>;
type HeaderValue = NonNullable<NonNullable<Http["header_map"]>["headers"]>[number];

/** Nesting limit for skipped groups; below protobufjs's (100, counted from the message depth). */
const MAX_GROUP_DEPTH = 64;

const LEN = 2;
const WT_VARINT = 0;
const WT_I64 = 1;
const WT_START_GROUP = 3;
const WT_END_GROUP = 4;
const WT_I32 = 5;

// The wire type of every field in the schema of the messages walked here, by field
// number (undefined: not in the schema, skipped whatever its wire type).
type Schema = readonly (number | undefined)[];
const L = LEN;
const V = WT_VARINT;
const _ = undefined;
const CHECK_REQUEST: Schema = [_, L];
// source, destination, request, context_extensions, metadata_context, tls_session, route_metadata_context
const ATTRIBUTE_CONTEXT: Schema = [_, L, L, _, L, _, _, _, _, _, L, L, L, L];
// address, service, labels, principal, certificate
const PEER: Schema = [_, L, L, L, L, L];
// socket_address, pipe, envoy_internal_address
const ADDRESS: Schema = [_, L, L, L];
// protocol, address, port_value, named_port, resolver_name, ipv4_compat
const SOCKET_ADDRESS: Schema = [_, V, L, V, L, L, V];
// time, http
const REQUEST: Schema = [_, L, L];
// id, method, headers, path, host, scheme, query, fragment, size, protocol, body, raw_body, header_map
const HTTP_REQUEST: Schema = [_, L, L, L, L, L, L, L, L, V, L, L, L, L];
const HEADER_MAP: Schema = [_, L];
// key, value, raw_value
const HEADER_VALUE: Schema = [_, L, L, L];
const MAP_ENTRY: Schema = [_, L, L];

class Reader {
  pos = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }

  /** A varint that must fit in 32 bits (tags and lengths). */
  uint32(limit: number): number {
    const buf = this.buf;
    let x = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= limit) throw new RangeError(`truncated varint at offset ${this.pos}`);
      const b = buf[this.pos++] ?? 0;
      if (shift === 28) {
        if (b > 0x0f) throw new RangeError(`varint out of range at offset ${this.pos - 1}`);
        return x + b * 0x10000000;
      }
      x |= (b & 0x7f) << shift;
      if (b < 0x80) return x >>> 0;
    }
    /* c8 ignore next */
    throw new RangeError("unreachable");
  }

  /** The next tag; throws on field number 0. */
  tag(limit: number): number {
    const t = this.uint32(limit);
    if (t < 8) throw new Error(`invalid field number 0 at offset ${this.pos}`);
    return t;
  }

  /** The next tag of a message with this schema; throws if a field of the schema has the wrong wire type. */
  field(limit: number, schema: Schema): number {
    const t = this.tag(limit);
    const f = t >>> 3;
    if (f < schema.length) {
      const want = schema[f];
      if (want !== undefined && want !== (t & 7)) throw new Error(`field ${f} has wire type ${t & 7} at offset ${this.pos}`);
    }
    return t;
  }

  /** Reads a length prefix and returns the end offset of the bytes it announces. */
  end(limit: number): number {
    const n = this.uint32(limit);
    const e = this.pos + n;
    if (e > limit) throw new RangeError(`length ${n} out of range at offset ${this.pos}`);
    return e;
  }

  str(limit: number): string {
    const e = this.end(limit);
    const s = this.buf.toString("utf8", this.pos, e);
    this.pos = e;
    return s;
  }

  bytes(limit: number): Buffer {
    const e = this.end(limit);
    const b = e === this.pos ? Buffer.alloc(0) : this.buf.subarray(this.pos, e);
    this.pos = e;
    return b;
  }

  /** Skips the value of the field whose tag was just read. */
  skip(tag: number, limit: number): void {
    const wt = tag & 7;
    if (wt === LEN) {
      this.pos = this.end(limit);
    } else if (wt === WT_VARINT) {
      for (let i = 0; ; i++) {
        if (i === 10) throw new RangeError(`varint too long at offset ${this.pos}`);
        if (this.pos >= limit) throw new RangeError(`truncated varint at offset ${this.pos}`);
        if ((this.buf[this.pos++] ?? 0) < 0x80) break;
      }
    } else if (wt === WT_I64 || wt === WT_I32) {
      const e = this.pos + (wt === WT_I64 ? 8 : 4);
      if (e > limit) throw new RangeError(`truncated fixed-width field at offset ${this.pos}`);
      this.pos = e;
    } else if (wt === WT_START_GROUP) {
      // Deprecated groups: skip up to the matching end-group tag.
      const open = [tag >>> 3];
      while (open.length > 0) {
        const t = this.tag(limit);
        if ((t & 7) === WT_END_GROUP) {
          if (t >>> 3 !== open.pop()) throw new Error(`mismatched end group at offset ${this.pos}`);
        } else if ((t & 7) === WT_START_GROUP) {
          if (open.length >= MAX_GROUP_DEPTH) throw new Error("maximum nesting depth exceeded");
          open.push(t >>> 3);
        } else {
          this.skip(t, limit);
        }
      }
    } else {
      throw new Error(`invalid wire type ${wt} at offset ${this.pos}`);
    }
  }
}

/** SocketAddress: address = 2. */
function socketAddress(r: Reader, end: number): { address?: string } {
  const out: { address?: string } = {};
  while (r.pos < end) {
    const t = r.field(end, SOCKET_ADDRESS);
    if (t >>> 3 === 2) {
      out.address = r.str(end);
    } else r.skip(t, end);
  }
  return out;
}

/** Address: socket_address = 1. */
function address(r: Reader, end: number): NonNullable<Source["address"]> {
  const out: NonNullable<Source["address"]> = {};
  while (r.pos < end) {
    const t = r.field(end, ADDRESS);
    if (t >>> 3 === 1) {
      out.socket_address = socketAddress(r, r.end(end));
    } else r.skip(t, end);
  }
  return out;
}

/** Peer: address = 1. */
function peer(r: Reader, end: number): Source {
  const out: Source = {};
  while (r.pos < end) {
    const t = r.field(end, PEER);
    if (t >>> 3 === 1) {
      out.address = address(r, r.end(end));
    } else r.skip(t, end);
  }
  return out;
}

/**
 * The object the headers map is decoded into: one without a prototype, which V8 keeps as a
 * hash table from the start. A plain `{}` gets a hidden class per order of insertion, and
 * protobuf map entries come in no fixed order (Go's encoder, for one, randomizes it): a
 * server would build one hidden-class chain per order it sees, and pay in lookups and garbage.
 */
function headersObject(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/**
 * The headers map left in the request's bytes: each entry's key and value as byte ranges, a
 * value decoded only when asked for. Decoding a dozen header names and values into strings per
 * request was most of what the decoder allocated, and the check reads two or three of them.
 * Lookups give what the decoded map would: the last entry of a key wins, as in protobuf map
 * decoding, and bytes that are not UTF-8 decode to U+FFFD as they would there.
 */
export class LazyHeaders {
  private readonly buf: Buffer;
  /** keyStart, keyEnd, valueStart, valueEnd per entry, in arrival order. */
  private readonly ranges: readonly number[];

  /** @internal ranges: as the decoder found them (see RangeScratch). */
  constructor(buf: Buffer, ranges: readonly number[]) {
    this.buf = buf;
    this.ranges = ranges;
  }

  get(name: string): string | undefined {
    const rs = this.ranges;
    const ascii = isAscii(name);
    for (let i = rs.length - 4; i >= 0; i -= 4) {
      const ks = rs[i] ?? 0;
      const ke = rs[i + 1] ?? 0;
      // An ASCII name matches exactly the key whose bytes are its characters; any other name is
      // compared with the key decoded as the decoded map would have it.
      if (ascii ? ke - ks === name.length && sameAscii(this.buf, ks, name) : this.buf.toString("utf8", ks, ke) === name) {
        return this.buf.toString("utf8", rs[i + 2] ?? 0, rs[i + 3] ?? 0);
      }
    }
    return undefined;
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function sameAscii(buf: Buffer, at: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) if (buf[at + i] !== name.charCodeAt(i)) return false;
  return true;
}

/**
 * Where the decoder gathers a request's header ranges before LazyHeaders gets them in an array
 * of their exact length: growing a fresh array entry by entry allocated about twice that.
 * Decoding is synchronous, so one per process serves every request; after an unusually long
 * header list it is let go rather than kept at that size.
 */
class RangeScratch {
  ranges: number[] = [];
  n = 0;

  add(keyStart: number, keyEnd: number, valueStart: number, valueEnd: number): void {
    const rs = this.ranges;
    const n = this.n;
    rs[n] = keyStart;
    rs[n + 1] = keyEnd;
    rs[n + 2] = valueStart;
    rs[n + 3] = valueEnd;
    this.n = n + 4;
  }

  /** The ranges gathered since the last take, as LazyHeaders over buf; undefined if none. */
  take(buf: Buffer): LazyHeaders | undefined {
    if (this.n === 0) return undefined;
    const h = new LazyHeaders(buf, this.ranges.slice(0, this.n));
    this.n = 0;
    if (this.ranges.length > 4 * 256) this.ranges = [];
    return h;
  }
}

const scratch = new RangeScratch();

/** A map<string, string> entry as byte ranges: key = 1, value = 2, checked as mapEntry checks it. */
function mapEntryRanges(r: Reader, end: number, into: RangeScratch): void {
  let ks = 0;
  let ke = 0;
  let vs = 0;
  let ve = 0;
  while (r.pos < end) {
    const t = r.field(end, MAP_ENTRY);
    const f = t >>> 3;
    if (f === 1 || f === 2) {
      const e = r.end(end);
      if (f === 1) {
        ks = r.pos;
        ke = e;
      } else {
        vs = r.pos;
        ve = e;
      }
      r.pos = e;
    } else r.skip(t, end);
  }
  into.add(ks, ke, vs, ve);
}

/** A map<string, string> entry: key = 1, value = 2. */
function mapEntry(r: Reader, end: number, into: Record<string, string>): void {
  let k = "";
  let v = "";
  while (r.pos < end) {
    const t = r.field(end, MAP_ENTRY);
    const f = t >>> 3;
    if (f === 1 || f === 2) {
      if (f === 1) k = r.str(end);
      else v = r.str(end);
    } else r.skip(t, end);
  }
  // `into` has no prototype, so "__proto__" is an own property, as proto-loader makes it.
  into[k] = v;
}

/** HeaderValue: key = 1, value = 2, raw_value = 3. */
function headerValue(r: Reader, end: number): HeaderValue {
  const out: HeaderValue = {};
  while (r.pos < end) {
    const t = r.field(end, HEADER_VALUE);
    const f = t >>> 3;
    if (f >= 1 && f <= 3) {
      if (f === 1) out.key = r.str(end);
      else if (f === 2) out.value = r.str(end);
      else out.raw_value = r.bytes(end);
    } else r.skip(t, end);
  }
  return out;
}

/** HeaderMap: headers = 1. */
function headerMap(r: Reader, end: number): NonNullable<Http["header_map"]> {
  let list: HeaderValue[] | undefined;
  while (r.pos < end) {
    const t = r.field(end, HEADER_MAP);
    if (t >>> 3 === 1) {
      (list ??= []).push(headerValue(r, r.end(end)));
    } else r.skip(t, end);
  }
  return list ? { headers: list } : {};
}

/** HttpRequest: method = 2, headers = 3, path = 4, host = 5, header_map = 13. */
function httpRequest(r: Reader, end: number, lazy: boolean): Http {
  const out: Http = {};
  let headers: Record<string, string> | undefined;
  // A throw below leaves ranges in the scratch: start from none.
  if (lazy) scratch.n = 0;
  while (r.pos < end) {
    const t = r.field(end, HTTP_REQUEST);
    switch (t >>> 3) {
      case 2:
        out.method = r.str(end);
        break;
      case 3:
        if (lazy) mapEntryRanges(r, r.end(end), scratch);
        else mapEntry(r, r.end(end), (headers ??= headersObject()));
        break;
      case 4:
        out.path = r.str(end);
        break;
      case 5:
        out.host = r.str(end);
        break;
      case 13:
        out.header_map = headerMap(r, r.end(end));
        break;
      default:
        r.skip(t, end);
    }
  }
  if (headers) out.headers = headers;
  const lazyHeaders = lazy ? scratch.take(r.buf) : undefined;
  if (lazyHeaders) out.lazy_headers = lazyHeaders;
  return out;
}

/** Request: http = 2. */
function request(r: Reader, end: number, lazy: boolean): NonNullable<Attributes["request"]> {
  const out: NonNullable<Attributes["request"]> = {};
  while (r.pos < end) {
    const t = r.field(end, REQUEST);
    if (t >>> 3 === 2) {
      out.http = httpRequest(r, r.end(end), lazy);
    } else r.skip(t, end);
  }
  return out;
}

/** AttributeContext: source = 1, request = 4. */
function attributes(r: Reader, end: number, lazy: boolean): Attributes {
  const out: Attributes = {};
  while (r.pos < end) {
    const t = r.field(end, ATTRIBUTE_CONTEXT);
    const f = t >>> 3;
    if (f === 1 || f === 4) {
      if (f === 1) out.source = peer(r, r.end(end));
      else out.request = request(r, r.end(end), lazy);
    } else r.skip(t, end);
  }
  return out;
}

/**
 * Decodes the parts of an envoy.service.auth.v3.CheckRequest that keyward reads; throws on
 * malformed input. With lazyHeaders, the headers map comes as `lazy_headers` (LazyHeaders, over
 * `buf`, which must then stay unchanged) instead of `headers`; the same input is accepted and
 * refused either way.
 */
export function decodeCheckRequest(buf: Buffer, lazyHeaders = false): CheckRequestMessage {
  const r = new Reader(buf);
  const end = buf.length;
  const out: CheckRequestMessage = {};
  while (r.pos < end) {
    const t = r.field(end, CHECK_REQUEST);
    if (t >>> 3 === 1) {
      out.attributes = attributes(r, r.end(end), lazyHeaders);
    } else r.skip(t, end);
  }
  return out;
}
