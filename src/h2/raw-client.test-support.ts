// Test support for src/h2: a handler that answers by path, and RawClient, a client that
// writes hand-built frames on a plain socket and parses what the server sends back (for
// what a well-behaved client never does, and to see the frames themselves).
import { EventEmitter } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import type { H2Handler, H2Stream } from "./connection.ts";
import { DEFAULT_MAX_FRAME, Flag, FRAME_HEADER, FrameType, PREFACE, frame, headerFrames, settingsFrame } from "./frames.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";

/** RawClients connected so far; a test file destroys them after each test. */
export const raws: RawClient[] = [];


/** Polls cond until it holds; fails after timeoutMs. */
export async function until(cond: () => boolean, what: string, timeoutMs = 3000, everyMs = 2): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** n octets that are not periodic at any chunk size the tests use, so loss or reordering shows. */
export function patterned(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 11)) & 0xff;
  return b;
}

export const enc = new HpackEncoder();
export const head = (status: string, extra: [string, string][] = []): Buffer => enc.encode([[":status", status], ...extra]);
/** An 8 KB response header block: what /fill answers, to fill socket buffers without flow control. */
export const FILL = head("200", [["x-fill", "f".repeat(8000)]]);

/**
 * The server side of the tests. Answers once the request ended, by path:
 *   /echo     200, the request body, trailers x-body-length (413 when the body was too large)
 *   /big/N    200, N patterned octets written in 10,000-octet pieces, trailers x-done
 *   /lines/N  200, N writes of "line i\n", trailers x-done
 *   /fill     FILL, ending the stream
 *   /hold     nothing: the stream waits in `held` for the test to answer
 */
export class TestHandler implements H2Handler {
  readonly requests: H2Stream[] = [];
  readonly ends: H2Stream[] = [];
  readonly aborts: H2Stream[] = [];
  readonly held: H2Stream[] = [];

  onRequest(s: H2Stream): void {
    this.requests.push(s);
  }

  onEnd(s: H2Stream): void {
    this.ends.push(s);
    const [, route = "", arg = "0"] = s.path.split("/");
    const n = Number(arg);
    switch (route) {
      case "echo": {
        if (s.bodyTooLarge) {
          s.respond(head("413"), true);
          return;
        }
        const body = s.bodyBuffer();
        s.respond(head("200"));
        s.data(body);
        s.trailers(enc.encode([["x-body-length", String(body.length)]]));
        return;
      }
      case "big": {
        const body = patterned(n);
        s.respond(head("200"));
        for (let at = 0; at < n; at += 10_000) s.data(body.subarray(at, at + 10_000));
        s.trailers(enc.encode([["x-done", "1"]]));
        return;
      }
      case "lines":
        s.respond(head("200"));
        for (let i = 0; i < n; i++) s.data(Buffer.from(`line ${i}\n`));
        s.trailers(enc.encode([["x-done", "1"]]));
        return;
      case "fill":
        s.respond(FILL, true);
        return;
      case "hold":
        this.held.push(s);
        return;
      default:
        s.respond(head("404"), true);
    }
  }

  onAbort(s: H2Stream): void {
    this.aborts.push(s);
  }
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
  /** A HEADERS frame's decoded block (CONTINUATIONs joined in; they are not listed themselves). */
  fields: [string, string][];
}

export const field = (f: Frame, name: string): string | undefined => f.fields.find(([n]) => n === name)?.[1];
export const isEndHeaders = (f: Frame, sid: number): boolean => f.type === FrameType.HEADERS && f.streamId === sid && (f.flags & Flag.END_STREAM) !== 0;

/** A client writing hand-built frames on a plain socket, keeping the frames the server sends. */
export class RawClient {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  /** Keep the frames in `frames` (the backpressure test only counts them). */
  retain = true;
  onFrame: ((f: Frame) => void) | undefined = undefined;
  isClosed = false;
  private buf = Buffer.alloc(0);
  private readonly decoder = new HpackDecoder();
  private cont: { first: Frame; parts: Buffer[] } | undefined = undefined;
  private readonly waiters = new Set<() => boolean>();
  private readonly closedPromise: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.onData(chunk);
    });
    socket.on("error", () => {
      // close follows
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on("close", () => {
        this.isClosed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static async connect(port: number, allowHalfOpen = false): Promise<RawClient> {
    const socket = netConnect({ port, host: "127.0.0.1", allowHalfOpen });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const c = new RawClient(socket);
    raws.push(c);
    return c;
  }

  write(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  /** The client connection preface: the magic string and a SETTINGS frame. */
  handshake(settings: [number, number][] = []): void {
    this.write(PREFACE, settingsFrame(settings));
  }

  /** The first frame kept so far or still to come that matches. */
  next(what: string, match: (f: Frame) => boolean, timeoutMs = 3000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const check = (): boolean => {
        const f = this.frames.find(match);
        if (f === undefined && !this.isClosed) return false;
        clearTimeout(timer);
        this.waiters.delete(check);
        if (f) resolve(f);
        else reject(new Error(`the connection closed before ${what}`));
        return true;
      };
      if (!check()) this.waiters.add(check);
    });
  }

  /** GOAWAY's last stream id and error code. */
  async goaway(): Promise<{ lastStreamId: number; code: number }> {
    const f = await this.next("GOAWAY", (x) => x.type === FrameType.GOAWAY);
    return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
  }

  /** The code of the RST_STREAM the server sent on sid. */
  async rst(sid: number): Promise<number> {
    const f = await this.next(`RST_STREAM on ${sid}`, (x) => x.type === FrameType.RST_STREAM && x.streamId === sid);
    return f.payload.readUInt32BE(0);
  }

  /** A barrier: once the PING's ACK is back, the server has handled everything sent before it. */
  async ping(): Promise<void> {
    const data = Buffer.from(String(Math.random()).slice(2, 10).padEnd(8, "0"));
    this.write(frame(FrameType.PING, 0, 0, data));
    await this.next("PING ACK", (f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(data));
  }

  closed(): Promise<void> {
    return this.closedPromise;
  }

  /** The DATA the server sent on sid, joined. */
  body(sid: number): Buffer {
    return Buffer.concat(this.frames.filter((f) => f.type === FrameType.DATA && f.streamId === sid).map((f) => f.payload));
  }

  private onData(chunk: Buffer): void {
    const buf = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= FRAME_HEADER) {
      const length = buf.readUIntBE(off, 3);
      if (buf.length - off - FRAME_HEADER < length) break;
      const f: Frame = {
        type: buf.readUInt8(off + 3),
        flags: buf.readUInt8(off + 4),
        streamId: buf.readUInt32BE(off + 5) & 0x7fffffff,
        payload: Buffer.from(buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + length)),
        fields: [],
      };
      off += FRAME_HEADER + length;
      this.take(f);
    }
    this.buf = off < buf.length ? Buffer.from(buf.subarray(off)) : Buffer.alloc(0);
    this.notify();
  }

  private take(f: Frame): void {
    if (f.type === FrameType.HEADERS || f.type === FrameType.CONTINUATION) {
      if (f.type === FrameType.HEADERS) this.cont = { first: f, parts: [] };
      const c = this.cont;
      if (c === undefined) return;
      c.parts.push(f.payload);
      if ((f.flags & Flag.END_HEADERS) === 0) return;
      this.cont = undefined;
      const block = Buffer.concat(c.parts);
      this.decoder.decode(block, 0, block.length, (name, value) => c.first.fields.push([name, value]));
      f = c.first;
    }
    if (this.retain) this.frames.push(f);
    this.onFrame?.(f);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

export const requestBlock = (path: string, method = "POST", extra: [string, string][] = []): Buffer =>
  enc.encode([[":method", method], [":scheme", "http"], [":path", path], [":authority", "test"], ...extra]);
export const headersFrame = (sid: number, block: Buffer, endStream: boolean): Buffer => headerFrames(sid, block, endStream ? Flag.END_STREAM : 0, DEFAULT_MAX_FRAME);
export const dataFrame = (sid: number, payload: Buffer, endStream = false): Buffer => frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, sid, payload);
export const pingFrame = frame(FrameType.PING, 0, 0, Buffer.alloc(8));

/** What H2Connection uses of a net.Socket. Writes are counted, not kept; some report a full buffer. */
export class FakeSocket extends EventEmitter {
  writableEnded = false;
  destroyed = false;
  written = 0;
  full = false;
  paused = false;
  setNoDelay(): this {
    return this;
  }
  write(buf: Buffer): boolean {
    this.written += buf.length;
    return !this.full;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  end(): this {
    this.writableEnded = true;
    return this;
  }
  destroySoon(): void {
    this.writableEnded = true;
    this.destroyed = true;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
}

