// A frame-level fuzzer for H2Connection: 100,000 random sequences of valid and
// invalid frames, each on a fresh connection over an in-process fake socket, cut
// into random reads. Every sequence must end without an internal error (a bug), within
// a deadline, and with nothing left in the connection once it closed; the heap must
// stay bounded over the whole run. The PRNG is seeded: a failure names its seed and
// sequence, and KEYWARD_FUZZ_SEED=<seed> replays the run.
import type { Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { H2Connection, type H2Handler, type H2Stream } from "./connection.ts";
import { ErrorCode, Flag, FrameType, PREFACE, Setting, frame, goawayFrame, rstStreamFrame, settingsFrame, windowUpdateFrame } from "./frames.ts";
import { HpackEncoder } from "./hpack.ts";
import { DEFAULT_LIMITS, type H2Limits } from "./limits.ts";
import { seededRandom } from "../../test/support/random.ts";
import { FakeSocket } from "./raw-client.test-support.ts";

const SEQUENCES = 100_000;
/** Milliseconds one sequence may take, frames and close included. */
const DEADLINE_MS = 1000;

const enc = new HpackEncoder();
const BLOCKS = [
  enc.encode([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/echo"],
    [":authority", "fuzz"],
    ["content-type", "application/grpc"],
  ]),
  enc.encode([
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/big"],
  ]),
  enc.encode([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/hold"],
  ]),
  enc.encode([["grpc-status", "0"]]),
  enc.encode([
    [":method", "POST"],
    [":path", "/echo"],
  ]),
  enc.encode([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/echo"],
    ["content-length", "3"],
  ]),
  enc.encode([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/echo"],
    ["Upper", "x"],
  ]),
];
const HEAD = enc.encode([[":status", "200"]]);
const TRAILERS = enc.encode([["grpc-status", "0"]]);
const BIG = Buffer.alloc(100_000, 0x62);

/** Answers by path: /echo whole, /big in pieces past the windows, /hold never. */
class FuzzHandler implements H2Handler {
  onRequest(): void {
    // Answered in onEnd.
  }
  onEnd(s: H2Stream): void {
    if (s.bodyTooLarge) {
      s.respond(HEAD, true);
      return;
    }
    if (s.path === "/echo") s.respondWhole(HEAD, s.bodyBuffer(), Buffer.alloc(0), TRAILERS);
    else if (s.path === "/big") {
      s.respond(HEAD);
      for (let at = 0; at < BIG.length; at += 30_000) s.data(BIG.subarray(at, at + 30_000));
      s.trailers(TRAILERS);
    }
  }
  onAbort(): void {
    // Nothing kept per stream.
  }
}

/** One random frame (or, now and then, random octets). */
function randomFrame(r: () => number, streams: number[]): Buffer {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const sid = r() < 0.1 ? pick([0, 2, 0x7fffffff, 1 + 2 * Math.floor(r() * 50)]) : pick(streams);
  const payload = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
    return b;
  };
  const flags = r() < 0.2 ? Math.floor(r() * 256) : 0;
  switch (Math.floor(r() * 14)) {
    case 0:
    case 1: {
      const block = pick(BLOCKS);
      const end = r() < 0.6 ? Flag.END_STREAM : 0;
      if (r() < 0.15) {
        // Split over CONTINUATION frames.
        const cut = 1 + Math.floor(r() * (block.length - 1));
        return Buffer.concat([frame(FrameType.HEADERS, end | flags, sid, block.subarray(0, cut)), frame(FrameType.CONTINUATION, Flag.END_HEADERS, sid, block.subarray(cut))]);
      }
      return frame(FrameType.HEADERS, end | Flag.END_HEADERS | (flags & ~(Flag.PADDED | Flag.PRIORITY)), sid, block);
    }
    case 2:
    case 3:
      return frame(FrameType.DATA, (r() < 0.5 ? Flag.END_STREAM : 0) | (flags & ~Flag.PADDED), sid, payload(pick([0, 1, 3, 100, 5000, 16_384])));
    case 4:
      return frame(FrameType.DATA, Flag.PADDED, sid, Buffer.concat([Buffer.from([Math.floor(r() * 8)]), payload(Math.floor(r() * 8))]));
    case 5:
      return settingsFrame(
        Array.from({ length: Math.floor(r() * 4) }, () => [pick([Setting.INITIAL_WINDOW_SIZE, Setting.MAX_FRAME_SIZE, Setting.ENABLE_PUSH, Setting.HEADER_TABLE_SIZE, 0x99]), pick([0, 1, 100, 16_384, 65_535, 2 ** 31 - 1, 2 ** 31])] as const),
      );
    case 6:
      return frame(FrameType.SETTINGS, Flag.ACK, 0, r() < 0.9 ? undefined : payload(6));
    case 7:
      return windowUpdateFrame(sid, pick([0, 1, 1000, 65_535, 2 ** 31 - 1]));
    case 8:
      return rstStreamFrame(sid, pick([ErrorCode.CANCEL, ErrorCode.NO_ERROR, 99]));
    case 9:
      return frame(FrameType.PRIORITY, 0, sid, payload(r() < 0.9 ? 5 : 4));
    case 10:
      return frame(FrameType.PING, r() < 0.2 ? Flag.ACK : 0, r() < 0.95 ? 0 : sid, payload(r() < 0.95 ? 8 : 7));
    case 11:
      return r() < 0.5 ? goawayFrame(0, ErrorCode.NO_ERROR) : frame(FrameType.CONTINUATION, flags, sid, payload(Math.floor(r() * 10)));
    case 12:
      return frame(pick([FrameType.PUSH_PROMISE, 0x0a, 0xff]), flags, sid, payload(Math.floor(r() * 20)));
    default:
      // Octets that are not a frame, or a frame header whose length is not what follows.
      return payload(1 + Math.floor(r() * 30));
  }
}

const limits: H2Limits = { ...DEFAULT_LIMITS, maxBody: 64 * 1024, connectionWindow: 256 * 1024, idleTimeoutMs: 0 };

/** One sequence on a fresh connection; returns what the connection holds once closed. */
function runSequence(r: () => number, internal: unknown[]): ReturnType<H2Connection["held"]> {
  const socket = new FakeSocket();
  const conn = new H2Connection(socket as unknown as Socket, new FuzzHandler(), limits, (err) => internal.push(err));
  const streams = [1, 3, 5, 7];
  const parts: Buffer[] = [r() < 0.97 ? PREFACE : Buffer.from("PRI * HTTP/1.1\r\n")];
  if (r() < 0.97) parts.push(settingsFrame(r() < 0.3 ? [[Setting.INITIAL_WINDOW_SIZE, Math.floor(r() * 100)]] : []));
  const n = 1 + Math.floor(r() * 40);
  for (let i = 0; i < n; i++) parts.push(randomFrame(r, streams));
  const wire = Buffer.concat(parts);
  // Cut into random reads; the socket's buffer is now and then full, then drains.
  for (let at = 0; at < wire.length && !socket.destroyed; ) {
    const len = r() < 0.5 ? wire.length - at : 1 + Math.floor(r() * 64);
    socket.full = r() < 0.1;
    socket.emit("data", wire.subarray(at, at + len));
    at += len;
    if (socket.full && r() < 0.7) {
      socket.full = false;
      socket.emit("drain");
    }
  }
  socket.emit("close");
  return conn.held();
}

function heapUsed(): number {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe("H2Connection under random frames", () => {
  it(`survives ${SEQUENCES.toLocaleString("en")} random sequences: no internal error, no hang, nothing left, heap bounded`, () => {
    const seed = Number(process.env["KEYWARD_FUZZ_SEED"] ?? Math.floor(Math.random() * 2 ** 32));
    console.log(`h2 fuzz seed ${seed} (replay: KEYWARD_FUZZ_SEED=${seed})`);
    const r = seededRandom(seed);
    const internal: unknown[] = [];
    const before = heapUsed();
    for (let i = 0; i < SEQUENCES; i++) {
      const t0 = performance.now();
      const held = runSequence(r, internal);
      const ms = performance.now() - t0;
      const where = `seed ${seed}, sequence ${i}`;
      if (internal.length > 0) throw new Error(`internal error at ${where}`, { cause: internal[0] });
      if (ms > DEADLINE_MS) throw new Error(`sequence took ${Math.round(ms)} ms at ${where}`);
      if (held.streams + held.blocked + held.resetByUs + held.pending + held.headerBlock !== 0) throw new Error(`left ${JSON.stringify(held)} at ${where}`);
    }
    const growth = heapUsed() - before;
    expect(growth).toBeLessThan(16 * 1024 * 1024);
  }, 120_000);
});
