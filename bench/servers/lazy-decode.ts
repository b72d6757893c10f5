// A prototype CheckRequest decoder for the proposal in docs/benchmarks.md: it
// walks the protobuf wire format once and keeps only what keyward reads (source
// address, method, host, path, headers or header_map), instead of protobufjs
// decoding every field into a message and proto-loader converting that into a
// plain object. Same output shape as proto-loader's (CheckRequestMessage), so
// toCheckInput works unchanged. Throws on malformed input, as protobufjs does.
import type { CheckRequestMessage } from "../../src/authz/proto.ts";

type Http = NonNullable<NonNullable<NonNullable<CheckRequestMessage["attributes"]>["request"]>["http"]>;

class Wire {
  pos: number;
  readonly buf: Buffer;
  constructor(buf: Buffer, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }
  varint(): number {
    let x = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      if (shift < 28) x |= (b & 0x7f) << shift;
      else x += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return x;
      shift += 7;
      if (shift > 63) throw new Error("varint too long");
    }
  }
  /** End offset of a length-delimited field whose length comes next. */
  len(limit: number): number {
    const n = this.varint();
    const end = this.pos + n;
    if (end > limit) throw new Error("length out of range");
    return end;
  }
  skip(wt: number, limit: number): void {
    if (wt === 0) this.varint();
    else if (wt === 1) this.pos += 8;
    else if (wt === 2) this.pos = this.len(limit);
    else if (wt === 5) this.pos += 4;
    else throw new Error(`wire type ${wt} not supported`);
    if (this.pos > limit) throw new Error("field out of range");
  }
  str(limit: number): string {
    const end = this.len(limit);
    const s = this.buf.toString("utf8", this.pos, end);
    this.pos = end;
    return s;
  }
}

function socketAddress(w: Wire, end: number): string | undefined {
  let addr: string | undefined;
  while (w.pos < end) {
    const tag = w.varint();
    if (tag === ((2 << 3) | 2)) addr = w.str(end);
    else w.skip(tag & 7, end);
  }
  return addr;
}

/** Peer.address (1) -> Address.socket_address (1) -> SocketAddress.address (2). */
function peer(w: Wire, end: number): string | undefined {
  let addr: string | undefined;
  while (w.pos < end) {
    const tag = w.varint();
    if (tag === ((1 << 3) | 2)) {
      const aEnd = w.len(end);
      while (w.pos < aEnd) {
        const t2 = w.varint();
        if (t2 === ((1 << 3) | 2)) addr = socketAddress(w, w.len(aEnd));
        else w.skip(t2 & 7, aEnd);
      }
    } else w.skip(tag & 7, end);
  }
  return addr;
}

function mapEntry(w: Wire, end: number): [string, string] {
  let k = "";
  let v = "";
  while (w.pos < end) {
    const tag = w.varint();
    if (tag === ((1 << 3) | 2)) k = w.str(end);
    else if (tag === ((2 << 3) | 2)) v = w.str(end);
    else w.skip(tag & 7, end);
  }
  return [k, v];
}

function headerValue(w: Wire, end: number): { key?: string; value?: string; raw_value?: Uint8Array } {
  const out: { key?: string; value?: string; raw_value?: Uint8Array } = {};
  while (w.pos < end) {
    const tag = w.varint();
    if (tag === ((1 << 3) | 2)) out.key = w.str(end);
    else if (tag === ((2 << 3) | 2)) out.value = w.str(end);
    else if (tag === ((3 << 3) | 2)) {
      const e = w.len(end);
      out.raw_value = w.buf.subarray(w.pos, e);
      w.pos = e;
    } else w.skip(tag & 7, end);
  }
  return out;
}

function http(w: Wire, end: number): Http {
  const h: Http = {};
  while (w.pos < end) {
    const tag = w.varint();
    switch (tag) {
      case (2 << 3) | 2:
        h.method = w.str(end);
        break;
      case (3 << 3) | 2: {
        const [k, v] = mapEntry(w, w.len(end));
        (h.headers ??= Object.create(null) as Record<string, string>)[k] = v;
        break;
      }
      case (4 << 3) | 2:
        h.path = w.str(end);
        break;
      case (5 << 3) | 2:
        h.host = w.str(end);
        break;
      case (13 << 3) | 2: {
        const mEnd = w.len(end);
        const list: NonNullable<NonNullable<Http["header_map"]>["headers"]> = [];
        while (w.pos < mEnd) {
          const t2 = w.varint();
          if (t2 === ((1 << 3) | 2)) list.push(headerValue(w, w.len(mEnd)));
          else w.skip(t2 & 7, mEnd);
        }
        h.header_map = { headers: list };
        break;
      }
      default:
        w.skip(tag & 7, end);
    }
  }
  return h;
}

export function decodeCheckRequest(buf: Buffer): CheckRequestMessage {
  const w = new Wire(buf, 0);
  const out: CheckRequestMessage = {};
  const end = buf.length;
  while (w.pos < end) {
    const tag = w.varint();
    if (tag !== ((1 << 3) | 2)) {
      w.skip(tag & 7, end);
      continue;
    }
    const aEnd = w.len(end);
    const attrs: NonNullable<CheckRequestMessage["attributes"]> = (out.attributes ??= {});
    while (w.pos < aEnd) {
      const t = w.varint();
      if (t === ((1 << 3) | 2)) {
        const address = peer(w, w.len(aEnd));
        attrs.source = address === undefined ? {} : { address: { socket_address: { address } } };
      } else if (t === ((4 << 3) | 2)) {
        const rEnd = w.len(aEnd);
        while (w.pos < rEnd) {
          const t2 = w.varint();
          if (t2 === ((2 << 3) | 2)) attrs.request = { http: http(w, w.len(rEnd)) };
          else w.skip(t2 & 7, rEnd);
        }
      } else w.skip(t & 7, aEnd);
    }
  }
  return out;
}
