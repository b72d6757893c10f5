// HTTP/2 (RFC 9113) wire constants and the frames keyward's server writes.
// Every writer returns a Buffer holding whole frames, ready for the socket.

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
export const FRAME_HEADER = 9;
/** The largest window a sender may have (2^31 - 1). */
export const MAX_WINDOW = 0x7fffffff;
/** SETTINGS_MAX_FRAME_SIZE's initial value and lower bound. */
export const DEFAULT_MAX_FRAME = 16_384;
export const MAX_MAX_FRAME = 16_777_215;
export const DEFAULT_WINDOW = 65_535;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Writes a frame header at `at` in `buf`. */
export function putFrameHeader(buf: Buffer, at: number, length: number, type: number, flags: number, streamId: number): void {
  buf[at] = length >>> 16;
  buf[at + 1] = (length >>> 8) & 0xff;
  buf[at + 2] = length & 0xff;
  buf[at + 3] = type;
  buf[at + 4] = flags;
  buf.writeUInt32BE(streamId, at + 5);
}

/** One frame whose payload is `payload` (copied). */
export function frame(type: number, flags: number, streamId: number, payload?: Uint8Array): Buffer {
  const n = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER + n);
  putFrameHeader(out, 0, n, type, flags, streamId);
  if (payload) out.set(payload, FRAME_HEADER);
  return out;
}

export function settingsFrame(values: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.allocUnsafe(values.length * 6);
  values.forEach(([id, v], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

export const SETTINGS_ACK = frame(FrameType.SETTINGS, Flag.ACK, 0);

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + 4);
  putFrameHeader(out, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  out.writeUInt32BE(increment, FRAME_HEADER);
  return out;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + 4);
  putFrameHeader(out, 0, 4, FrameType.RST_STREAM, 0, streamId);
  out.writeUInt32BE(code, FRAME_HEADER);
  return out;
}

export function goawayFrame(lastStreamId: number, code: number, debug = ""): Buffer {
  const text = Buffer.from(debug, "utf8");
  const out = Buffer.allocUnsafe(FRAME_HEADER + 8 + text.length);
  putFrameHeader(out, 0, 8 + text.length, FrameType.GOAWAY, 0, 0);
  out.writeUInt32BE(lastStreamId, FRAME_HEADER);
  out.writeUInt32BE(code, FRAME_HEADER + 4);
  out.set(text, FRAME_HEADER + 8);
  return out;
}

/**
 * A header block as HEADERS plus CONTINUATION frames of at most `maxFrame` octets each.
 * `flags` is END_STREAM or 0; END_HEADERS goes on the last frame.
 */
export function headerFrames(streamId: number, block: Buffer, flags: number, maxFrame: number): Buffer {
  if (block.length <= maxFrame) {
    const out = Buffer.allocUnsafe(FRAME_HEADER + block.length);
    putFrameHeader(out, 0, block.length, FrameType.HEADERS, flags | Flag.END_HEADERS, streamId);
    out.set(block, FRAME_HEADER);
    return out;
  }
  const count = Math.ceil(block.length / maxFrame);
  const out = Buffer.allocUnsafe(count * FRAME_HEADER + block.length);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const part = block.subarray(i * maxFrame, (i + 1) * maxFrame);
    const last = i === count - 1;
    const type = i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    putFrameHeader(out, at, part.length, type, (i === 0 ? flags : 0) | (last ? Flag.END_HEADERS : 0), streamId);
    out.set(part, at + FRAME_HEADER);
    at += FRAME_HEADER + part.length;
  }
  return out;
}
