// One HTTP/2 server connection (RFC 9113, cleartext with prior knowledge): frame
// parsing, HPACK, stream states, flow control in both directions, and the
// errors the RFC asks for. Requests are handed to an H2Handler whole: headers
// first, then the body once END_STREAM arrives (or once it passes the size
// limit). Everything a request allocates is plain JavaScript that dies young;
// see docs/adr/0023-own-http2-transport.md for why keyward does not use node:http2.
import type { Socket } from "node:net";
import { HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { Bucket, DEFAULT_LIMITS, SMALL_DATA, type H2Limits, type H2Violation } from "./limits.ts";
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  FRAME_HEADER,
  FrameType,
  MAX_MAX_FRAME,
  MAX_WINDOW,
  PREFACE,
  SETTINGS_ACK,
  Setting,
  frame,
  goawayFrame,
  headerFrames,
  putFrameHeader,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.ts";

export { DEFAULT_LIMITS, type H2Limits, type H2Violation } from "./limits.ts";

/** What serves the requests of a connection. Called synchronously from the frame loop. */
export interface H2Handler {
  /** A request's headers arrived (stream.remoteEnded tells whether a body follows). */
  onRequest(stream: H2Stream): void;
  /** The request body is complete, or stream.bodyTooLarge is set. Not called once the response ended. */
  onEnd(stream: H2Stream): void;
  /** The stream closed before its response ended: reset by the peer, a stream error, or the connection went away. */
  onAbort(stream: H2Stream): void;
}

const CONNECTION_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
const BAD_VALUE = /[\0\r\n]/;

/** A field name RFC 9113 §8.2.1 allows: no uppercase, no controls, no space, no non-ASCII. */
function validName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || (c >= 0x41 && c <= 0x5a) || c >= 0x7f) return false;
  }
  return true;
}

export class H2Stream {
  readonly id: number;
  readonly connection: H2Connection;
  method = "";
  scheme = "";
  path = "";
  authority = "";
  /** Regular header fields in arrival order, flat: name, value, name, value, … */
  readonly fields: string[] = [];
  /** Set by the application: whatever it keeps per stream. */
  context: unknown = undefined;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  /** The body passed H2Limits.maxBody; what arrived of it was dropped. */
  bodyTooLarge = false;
  /** The response headers went out. */
  headersSent = false;
  /** @internal */ malformed: string | undefined = undefined;
  /** @internal */ sawRegular = false;
  /** @internal */ listSize = 0;
  /** @internal */ contentLength = -1;
  /** @internal */ bodyLength = 0;
  /**
   * @internal The body: a view of the read when it came whole in one DATA frame that ended the
   * stream, otherwise a copy grown as frames arrive (its first bodyLength octets).
   */
  body: Buffer | undefined = undefined;
  /** @internal DATA frames under SMALL_DATA octets that did not end the stream. */
  smallFrames = 0;
  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal Flow-controlled octets received, given back to the connection window on close. */
  recvBytes = 0;
  /** @internal DATA waiting for window. */
  queue: Buffer[] | undefined = undefined;
  /** @internal The queue waits for this stream's own window; the stream is not in the blocked list until it grows. */
  parked = false;
  /** @internal Trailers (a header block) to send once the queue drained. */
  pendingTrailers: Buffer | undefined = undefined;
  /** @internal End the stream (an empty DATA with END_STREAM) once the queue drained. */
  pendingEnd = false;

  constructor(id: number, connection: H2Connection, sendWindow: number, recvWindow: number) {
    this.id = id;
    this.connection = connection;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The first value of a regular header field (lowercase name). */
  header(name: string): string | undefined {
    const f = this.fields;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
    return undefined;
  }

  /** The request body received (empty when there was none). */
  bodyBuffer(): Buffer {
    const b = this.body;
    if (b === undefined) return EMPTY;
    return b.length === this.bodyLength ? b : b.subarray(0, this.bodyLength);
  }

  /** Sends a response header block (HPACK-encoded); with endStream, the response ends with it. */
  respond(block: Buffer, endStream = false): void {
    this.connection.sendHeaders(this, block, endStream);
  }

  /** Sends body octets: a then b (either may be empty), as DATA within the flow-control windows; with end, the response ends with them. */
  data(a: Uint8Array, b?: Uint8Array, end = false): void {
    this.connection.sendData(this, a, b, end);
  }

  /** Ends the response with trailers (a header block), after any DATA still waiting for window. */
  trailers(block: Buffer): void {
    this.connection.sendTrailers(this, block);
  }

  /** A whole response: headers, one body of a then b, trailers; one socket write when the windows allow. */
  respondWhole(head: Buffer, a: Uint8Array, b: Uint8Array, trailers: Buffer): void {
    this.connection.sendWhole(this, head, a, b, trailers);
  }
}

const EMPTY = Buffer.alloc(0);
/** How many streams keyward reset it remembers per connection, to ignore their late frames. */
const RESET_MEMORY = 256;

/** Entries one SETTINGS frame may carry. */
const MAX_SETTINGS_ENTRIES = 32;
/** WINDOW_UPDATE frames any connection may send besides those its streams and keyward's DATA earn. */
const WINDOW_UPDATE_BASE = 100;
/** A connection error: GOAWAY with this code, then close; `violation` when a limit was overstepped. */
class ConnectionError extends Error {
  readonly code: number;
  readonly violation: H2Violation | undefined;
  constructor(code: number, message: string, violation?: H2Violation) {
    super(message);
    this.code = code;
    this.violation = violation;
  }
}

/** A flood: GOAWAY ENHANCE_YOUR_CALM. */
const calm = (violation: H2Violation, message: string): ConnectionError => new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, message, violation);

interface Continuation {
  streamId: number;
  flags: number;
  parts: Buffer[];
  size: number;
  /** CONTINUATION frames so far. */
  frames: number;
  selfDependent: boolean;
}

export class H2Connection {
  private readonly socket: Socket;
  private readonly handler: H2Handler;
  private readonly limits: H2Limits;
  private readonly decoder = new HpackDecoder();
  private readonly streams = new Map<number, H2Stream>();
  /**
   * The unread tail of earlier reads: its first pendingFill octets. Once the tail holds a frame
   * header, `pending` has room for that whole frame, so reads that do not complete it are copied
   * in and not parsed again: a peer sending an octet at a time costs an octet's copy each.
   */
  private pending: Buffer | undefined = undefined;
  private pendingFill = 0;
  private prefaceSeen = false;
  private settingsSeen = false;
  private lastPeerStream = 0;
  private cont: Continuation | undefined = undefined;
  /** Connection-level windows. */
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private unacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  /** The SETTINGS_INITIAL_WINDOW_SIZE keyward advertises: each stream's receive window. */
  private readonly streamWindow: number;
  /**
   * Whether the peer acknowledged keyward's SETTINGS. Until it has, it may still use the default
   * 65,535-octet stream window (RFC 9113 §6.5.3, §6.9.2), so streams opened before then get at
   * least that much and are adjusted to streamWindow when the ACK arrives.
   */
  private settingsAcked = false;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private readonly blocked: H2Stream[] = [];
  /** The stream the HPACK emitter is filling, and whether the block is a trailer block. */
  private target: H2Stream | undefined = undefined;
  private trailerBlock = false;
  private readonly onField: (name: string, value: string) => void;
  private draining = false;
  private dead = false;
  private paused = false;
  /** Frames written while a read is handled, sent together when it is done (flushOut). */
  private out: Buffer[] | undefined = undefined;
  private readonly closedWaiters: (() => void)[] = [];
  private readonly onInternalError: (err: unknown) => void;
  private prefaceTimer: NodeJS.Timeout | undefined;
  /**
   * Streams keyward reset (or answered and then reset) while the client was still sending,
   * newest last: the client's frames already in flight for them are ignored (RFC 9113 §5.1),
   * not answered with one RST_STREAM each or, for trailers, a connection error.
   */
  private readonly resetByUs = new Set<number>();
  // ---- flood accounting (limits.ts); each frame costs a few integer operations ----
  private readonly onViolation: (kind: H2Violation) => void;
  /** Empty DATA, HEADERS and CONTINUATION frames in a row. */
  private emptyFrames = 0;
  private readonly settingsBudget: Bucket;
  private readonly pingBudget: Bucket;
  private readonly resetBudget: Bucket;
  private readonly strayBudget: Bucket;
  private streamsOpened = 0;
  private priorityFrames = 0;
  private windowUpdates = 0;
  private dataFramesSent = 0;
  /** Frames, and control frames among them, gathered for one read or written while the peer does not read. */
  private queuedFrames = 0;
  private queuedControl = 0;
  /** For the idle timeout: a stream opened, or the socket drained, since the timer last fired. */
  private streamSinceTick = false;
  private drainedSinceTick = true;
  private idleTimer: NodeJS.Timeout | undefined;
  private failTimer: NodeJS.Timeout | undefined;

  /**
   * onInternalError: something other than a protocol error was thrown (a bug); the connection was closed.
   * onViolation: the peer overstepped a limit; the connection is being closed with ENHANCE_YOUR_CALM.
   */
  constructor(
    socket: Socket,
    handler: H2Handler,
    limits: H2Limits = DEFAULT_LIMITS,
    onInternalError: (err: unknown) => void = () => undefined,
    onViolation: (kind: H2Violation) => void = () => undefined,
  ) {
    this.socket = socket;
    this.handler = handler;
    this.limits = limits;
    this.onInternalError = onInternalError;
    this.onViolation = onViolation;
    this.settingsBudget = new Bucket(limits.settingsRate);
    this.pingBudget = new Bucket(limits.pingRate);
    this.resetBudget = new Bucket(limits.resetRate);
    this.strayBudget = new Bucket(limits.strayFrameRate);
    this.recvWindow = limits.connectionWindow;
    this.streamWindow = Math.min(MAX_WINDOW, limits.maxBody + 5);
    this.onField = (name, value) => {
      this.field(name, value);
    };
    socket.setNoDelay(true);
    this.prefaceTimer = setTimeout(() => {
      this.prefaceTimer = undefined;
      this.fail(ErrorCode.PROTOCOL_ERROR, "no connection preface in time");
    }, limits.prefaceTimeoutMs);
    this.prefaceTimer.unref();
    if (limits.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(() => {
        this.idleTick();
      }, limits.idleTimeoutMs);
      this.idleTimer.unref();
    }
    socket.on("data", (chunk: Buffer) => {
      this.onData(chunk);
    });
    socket.on("drain", () => {
      this.drainedSinceTick = true;
      this.queuedFrames = 0;
      this.queuedControl = 0;
      if (this.paused) {
        this.paused = false;
        socket.resume();
      }
    });
    socket.on("error", () => {
      // Reset by the peer, mostly; close follows.
    });
    socket.on("close", () => {
      clearTimeout(this.failTimer);
      this.onClose();
    });
    this.write(
      settingsFrame([
        [Setting.ENABLE_PUSH, 0],
        [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
        [Setting.INITIAL_WINDOW_SIZE, this.streamWindow],
        [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListSize],
      ]),
    );
    if (limits.connectionWindow > DEFAULT_WINDOW) this.write(windowUpdateFrame(0, limits.connectionWindow - DEFAULT_WINDOW));
    else this.recvWindow = DEFAULT_WINDOW;
  }

  private isOpen(): boolean {
    return !this.dead;
  }

  /**
   * Every idleTimeoutMs: a connection that had no open stream and opened none since the last
   * tick is drained; one whose peer has not read anything keyward wrote since then is closed.
   */
  private idleTick(): void {
    if (this.dead) return;
    if (this.paused && !this.drainedSinceTick) {
      this.destroy();
      return;
    }
    if (this.settingsSeen && this.streams.size === 0 && !this.streamSinceTick) {
      this.drain();
      return;
    }
    this.streamSinceTick = false;
    this.drainedSinceTick = !this.paused;
  }

  /** Stops taking new streams (GOAWAY NO_ERROR); the socket closes once the open ones ended. */
  drain(): void {
    if (this.dead || this.draining) return;
    this.draining = true;
    this.write(goawayFrame(this.lastPeerStream, ErrorCode.NO_ERROR));
    if (this.streams.size === 0) this.end();
  }

  /** Closes the socket now; open streams are aborted. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves once the socket closed. */
  closed(): Promise<void> {
    if (this.dead) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }

  // ---- reading -------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    let buf = chunk;
    const p = this.pending;
    if (p !== undefined) {
      const fill = this.pendingFill + chunk.length;
      if (fill < p.length) {
        chunk.copy(p, this.pendingFill);
        this.pendingFill = fill;
        return;
      }
      buf = Buffer.concat([p.subarray(0, this.pendingFill), chunk], fill);
      this.pending = undefined;
    }
    this.out = [];
    try {
      const used = this.frames(buf);
      if (used < buf.length && this.isOpen()) this.keepTail(buf, used);
    } catch (err) {
      if (err instanceof ConnectionError) {
        if (err.violation !== undefined) this.onViolation(err.violation);
        this.fail(err.code, err.message);
      } else {
        // A bug in this file or the handler: this connection goes, the process stays.
        this.fail(ErrorCode.INTERNAL_ERROR, "internal error");
        this.onInternalError(err);
      }
    } finally {
      this.flushOut();
    }
  }

  /**
   * Keeps what frames() left of buf as a copy (a view would pin the whole read), in a buffer with
   * room for the frame it starts when its header is there (frames() checked its length).
   */
  private keepTail(buf: Buffer, used: number): void {
    const tail = buf.length - used;
    const need = this.prefaceSeen && tail >= FRAME_HEADER ? FRAME_HEADER + buf.readUIntBE(used, 3) : tail;
    const p = Buffer.allocUnsafe(Math.max(need, tail));
    buf.copy(p, 0, used);
    this.pending = p;
    this.pendingFill = tail;
  }

  /** Handles the whole frames in buf; returns how many octets it used. */
  private frames(buf: Buffer): number {
    let off = 0;
    if (!this.prefaceSeen) {
      const n = Math.min(buf.length, PREFACE.length);
      if (buf.compare(PREFACE, 0, n, 0, n) !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
      if (buf.length < PREFACE.length) return 0;
      this.prefaceSeen = true;
      off = PREFACE.length;
    }
    while (buf.length - off >= FRAME_HEADER && !this.dead) {
      // The client preface ends with a SETTINGS frame (RFC 9113 §3.4); anything else there is an
      // invalid preface, a PROTOCOL_ERROR, even when its length field reads as too large a frame.
      if (!this.settingsSeen && (buf.readUInt8(off + 3) !== FrameType.SETTINGS || (buf.readUInt8(off + 4) & Flag.ACK) !== 0)) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS");
      }
      const length = buf.readUIntBE(off, 3);
      if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE");
      if (buf.length - off - FRAME_HEADER < length) break;
      const type = buf.readUInt8(off + 3);
      const flags = buf.readUInt8(off + 4);
      const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
      const start = off + FRAME_HEADER;
      off = start + length;
      this.frame(type, flags, streamId, buf, start, off);
    }
    return off;
  }

  private frame(type: number, flags: number, sid: number, buf: Buffer, start: number, end: number): void {
    // frames() checked that the first frame is a SETTINGS frame.
    if (!this.settingsSeen) {
      this.settingsSeen = true;
      clearTimeout(this.prefaceTimer);
      this.prefaceTimer = undefined;
    }
    if (this.cont && (type !== FrameType.CONTINUATION || sid !== this.cont.streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a header block was interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        this.onDataFrame(flags, sid, buf, start, end);
        return;
      case FrameType.HEADERS:
        this.onHeadersFrame(flags, sid, buf, start, end);
        return;
      case FrameType.CONTINUATION:
        this.onContinuation(flags, sid, buf, start, end);
        return;
      case FrameType.PRIORITY:
        this.onPriority(sid, buf, start, end);
        return;
      case FrameType.RST_STREAM:
        this.onRstStream(sid, start, end);
        return;
      case FrameType.SETTINGS:
        this.onSettings(flags, sid, buf, start, end);
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case FrameType.PING:
        if (sid !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (end - start !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING payload is not 8 octets");
        // keyward sends no PING of its own: an acknowledgement counts like a PING.
        if (!this.pingBudget.take()) throw calm("ping", "too many PING frames");
        if ((flags & Flag.ACK) === 0) this.write(frame(FrameType.PING, Flag.ACK, 0, buf.subarray(start, end)), true);
        return;
      case FrameType.GOAWAY:
        if (sid !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (end - start < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 octets");
        if (this.draining) this.stray("GOAWAY");
        this.draining = true;
        if (this.streams.size === 0) this.end();
        return;
      case FrameType.WINDOW_UPDATE:
        this.onWindowUpdate(sid, buf, start, end);
        return;
      default:
        // Unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private idle(sid: number): boolean {
    return sid > this.lastPeerStream;
  }

  /** A frame for a stream that is gone; they may come only so fast. */
  private stray(what: string): void {
    if (!this.strayBudget.take()) throw calm("stray_frames", `too many frames for closed streams (${what})`);
  }

  /** An empty DATA, HEADERS or CONTINUATION frame (payload, not padding) that did not end the stream. */
  private empty(): void {
    if (++this.emptyFrames > this.limits.maxConsecutiveEmptyFrames) throw calm("empty_frames", "too many empty frames in a row");
  }

  private onDataFrame(flags: number, sid: number, buf: Buffer, start: number, end: number): void {
    if (sid === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const length = end - start;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    if ((flags & Flag.PADDED) !== 0) {
      if (length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded DATA without a pad length");
      const pad = buf.readUInt8(start);
      start++;
      if (pad > end - start) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the DATA payload");
      end -= pad;
    }
    if (end > start) this.emptyFrames = 0;
    else if (!endStream) this.empty();
    const s = this.streams.get(sid);
    if (!s) {
      this.release(length);
      if (this.idle(sid)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      if (length < SMALL_DATA) this.stray("DATA");
      if (!this.resetByUs.has(sid)) this.write(rstStreamFrame(sid, ErrorCode.STREAM_CLOSED), true);
      return;
    }
    // A DATA frame costs like a frame, whatever it carries: small ones may come only so often.
    if (length < SMALL_DATA && !endStream && ++s.smallFrames > this.limits.maxSmallDataFramesPerStream) {
      throw calm("small_data", "too many small DATA frames on a stream");
    }
    if (s.remoteEnded) {
      this.release(length);
      this.streamError(s, ErrorCode.STREAM_CLOSED);
      return;
    }
    s.recvWindow -= length;
    s.recvBytes += length;
    if (s.recvWindow < 0) {
      this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    if (end > start && !s.bodyTooLarge) {
      const n = end - start;
      if (s.bodyLength + n > this.limits.maxBody) {
        s.bodyTooLarge = true;
        s.body = undefined;
        if (!s.localEnded) this.handler.onEnd(s);
        return;
      }
      if (s.bodyLength === 0 && endStream) s.body = buf.subarray(start, end);
      else this.appendBody(s, buf, start, end);
      s.bodyLength += n;
    }
    if (endStream) this.remoteEnd(s);
  }

  /**
   * Copies body octets into the stream's own buffer, doubling it as needed: memory follows the
   * octets received, not the frames, and no view pins the read they came in.
   */
  private appendBody(s: H2Stream, buf: Buffer, start: number, end: number): void {
    const need = s.bodyLength + end - start;
    let body = s.body;
    if (body === undefined || body.length < need) {
      const grown = Buffer.allocUnsafe(Math.min(this.limits.maxBody, Math.max(need, 2 * s.bodyLength, 1024)));
      if (body !== undefined) body.copy(grown, 0, 0, s.bodyLength);
      s.body = body = grown;
    }
    buf.copy(body, s.bodyLength, start, end);
  }

  private onHeadersFrame(flags: number, sid: number, buf: Buffer, start: number, end: number): void {
    if (sid === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    if ((flags & Flag.PADDED) !== 0) {
      if (end - start < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded HEADERS without a pad length");
      const pad = buf.readUInt8(start);
      start++;
      if (pad > end - start) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the HEADERS payload");
      end -= pad;
    }
    let selfDependent = false;
    if ((flags & Flag.PRIORITY) !== 0) {
      if (end - start < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
      selfDependent = (buf.readUInt32BE(start) & 0x7fffffff) === sid;
      start += 5;
    }
    if (end > start) this.emptyFrames = 0;
    else if ((flags & Flag.END_STREAM) === 0) this.empty();
    if ((flags & Flag.END_HEADERS) === 0) {
      const part = Buffer.from(buf.subarray(start, end));
      this.cont = { streamId: sid, flags, parts: [part], size: part.length, frames: 0, selfDependent };
      this.checkBlockSize(part.length);
      return;
    }
    this.headerBlock(sid, flags, buf, start, end, selfDependent);
  }

  private checkBlockSize(size: number): void {
    // A header block decodes to at least as many octets as it has, less the 32 per field HPACK
    // adds; twice the list limit bounds what is buffered while CONTINUATIONs keep coming.
    if (size > 2 * this.limits.maxHeaderListSize + 1024) throw calm("header_block", "header block too large");
  }

  private onContinuation(flags: number, sid: number, buf: Buffer, start: number, end: number): void {
    const c = this.cont;
    if (!c || c.streamId !== sid) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    if (++c.frames > this.limits.maxContinuationFrames) throw calm("continuation", "too many CONTINUATION frames");
    if (end > start) this.emptyFrames = 0;
    else this.empty();
    c.parts.push(Buffer.from(buf.subarray(start, end)));
    c.size += end - start;
    this.checkBlockSize(c.size);
    if ((flags & Flag.END_HEADERS) === 0) return;
    this.cont = undefined;
    const block = Buffer.concat(c.parts, c.size);
    this.headerBlock(sid, c.flags, block, 0, block.length, c.selfDependent);
  }

  private decodeInto(s: H2Stream, trailers: boolean, buf: Buffer, start: number, end: number): void {
    this.target = s;
    this.trailerBlock = trailers;
    try {
      this.decoder.decode(buf, start, end, this.onField);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    } finally {
      this.target = undefined;
    }
  }

  private field(name: string, value: string): void {
    const s = this.target;
    if (s === undefined) return;
    s.listSize += name.length + value.length + 32;
    // A small block that decodes to far more than the limit references big table entries over and over.
    if (s.listSize > 4 * this.limits.maxHeaderListSize) throw calm("header_list", "header list far over SETTINGS_MAX_HEADER_LIST_SIZE");
    if (s.malformed !== undefined) return;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (this.trailerBlock || s.sawRegular) {
        s.malformed = "pseudo-header field out of place";
        return;
      }
      switch (name) {
        case ":method":
          if (s.method !== "") s.malformed = "duplicate :method";
          s.method = value;
          return;
        case ":scheme":
          if (s.scheme !== "") s.malformed = "duplicate :scheme";
          s.scheme = value;
          return;
        case ":path":
          if (s.path !== "") s.malformed = "duplicate :path";
          s.path = value;
          if (value === "") s.malformed = "empty :path";
          return;
        case ":authority":
          if (s.authority !== "") s.malformed = "duplicate :authority";
          s.authority = value;
          return;
        default:
          s.malformed = `pseudo-header field ${name} in a request`;
          return;
      }
    }
    s.sawRegular = true;
    // Past the limit the request is answered 431 (trailers ignored): no field is looked at again.
    if (s.listSize > this.limits.maxHeaderListSize) return;
    if (!validName(name) || (value.length > 0 && BAD_VALUE.test(value))) {
      s.malformed = "invalid header field";
      return;
    }
    if (CONNECTION_HEADERS.has(name) || (name === "te" && value !== "trailers")) {
      s.malformed = `connection-specific header field ${name}`;
      return;
    }
    if (name === "content-length") {
      if (!/^[0-9]{1,15}$/.test(value) || (s.contentLength >= 0 && Number(value) !== s.contentLength)) {
        s.malformed = "invalid content-length";
        return;
      }
      s.contentLength = Number(value);
    }
    if (!this.trailerBlock) s.fields.push(name, value);
  }

  private headerBlock(sid: number, flags: number, buf: Buffer, start: number, end: number, selfDependent: boolean): void {
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(sid);
    if (existing) {
      // Trailers: decode them (the HPACK state must follow) and end the request.
      const probe = new H2Stream(sid, this, 0, 0);
      this.decodeInto(probe, true, buf, start, end);
      if (existing.remoteEnded) {
        this.streamError(existing, ErrorCode.STREAM_CLOSED);
        return;
      }
      if (!endStream || probe.malformed !== undefined || selfDependent) {
        this.streamError(existing, ErrorCode.PROTOCOL_ERROR);
        return;
      }
      this.remoteEnd(existing);
      return;
    }
    if (!this.idle(sid)) {
      if (!this.resetByUs.has(sid)) throw new ConnectionError(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream");
      // Trailers already in flight when keyward reset the stream: decoded for HPACK's sake, ignored.
      this.stray("HEADERS");
      this.decodeInto(new H2Stream(sid, this, 0, 0), true, buf, start, end);
      return;
    }
    if (sid % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a client stream with an even id");
    this.lastPeerStream = sid;
    this.streamsOpened++;
    this.streamSinceTick = true;
    const s = new H2Stream(sid, this, this.peerInitialWindow, this.settingsAcked ? this.streamWindow : Math.max(this.streamWindow, DEFAULT_WINDOW));
    this.decodeInto(s, false, buf, start, end);
    if (selfDependent) {
      this.refuse(sid, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (this.draining || this.streams.size >= this.limits.maxConcurrentStreams) {
      this.refuse(sid, ErrorCode.REFUSED_STREAM);
      return;
    }
    if (s.malformed === undefined && s.method !== "CONNECT" && (s.method === "" || s.scheme === "" || s.path === "")) s.malformed = "missing pseudo-header field";
    if (s.malformed !== undefined) {
      this.refuse(sid, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    this.streams.set(sid, s);
    if (endStream) s.remoteEnded = true;
    if (s.listSize > this.limits.maxHeaderListSize) {
      this.sendHeaders(s, HEADER_LIST_TOO_LARGE, true);
      return;
    }
    this.handler.onRequest(s);
    if (endStream && !s.closed) this.remoteEnd(s, true);
  }

  /**
   * A stream keyward resets without serving it. Like a stream the peer resets before its
   * answer, it costs keyward work and the peer nothing, so it counts against resetRate.
   */
  private refuse(sid: number, code: number): void {
    this.resetBudgetTake();
    this.rst(sid, code);
  }

  private resetBudgetTake(): void {
    if (!this.resetBudget.take()) throw calm("rst_stream", "too many streams reset before their answer");
  }

  private remoteEnd(s: H2Stream, already = false): void {
    if (!already) s.remoteEnded = true;
    if (s.contentLength >= 0 && !s.bodyTooLarge && s.contentLength !== s.bodyLength) {
      this.streamError(s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (!s.localEnded && !s.bodyTooLarge) this.handler.onEnd(s);
    if (s.localEnded) this.closeStream(s);
  }

  private onPriority(sid: number, buf: Buffer, start: number, end: number): void {
    if (sid === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    if (++this.priorityFrames > this.limits.maxPriorityPerStream * (1 + this.streamsOpened)) throw calm("priority", "too many PRIORITY frames");
    // A wrong length or a dependency on itself is a stream error (RFC 9113 §6.3, §5.3.1); any
    // other priority is ignored: keyward answers in arrival order.
    const code = end - start !== 5 ? ErrorCode.FRAME_SIZE_ERROR : (buf.readUInt32BE(start) & 0x7fffffff) === sid ? ErrorCode.PROTOCOL_ERROR : undefined;
    if (code === undefined) return;
    const s = this.streams.get(sid);
    if (s) this.streamError(s, code);
    else this.rst(sid, code);
  }

  private onRstStream(sid: number, start: number, end: number): void {
    if (sid === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 octets");
    if (this.idle(sid)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    const s = this.streams.get(sid);
    if (s === undefined) {
      this.stray("RST_STREAM");
      return;
    }
    // An open stream is one keyward has not answered in full: the Rapid Reset pattern.
    this.resetBudgetTake();
    this.closeStream(s);
  }

  private onSettings(flags: number, sid: number, buf: Buffer, start: number, end: number): void {
    if (sid !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (!this.settingsBudget.take()) throw calm("settings", "too many SETTINGS frames");
    if ((flags & Flag.ACK) !== 0) {
      if (end !== start) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      if (!this.settingsAcked) {
        // The peer now uses streamWindow; streams it opened before may have had the default.
        this.settingsAcked = true;
        const delta = this.streamWindow - Math.max(this.streamWindow, DEFAULT_WINDOW);
        if (delta !== 0) for (const s of this.streams.values()) s.recvWindow += delta;
      }
      return;
    }
    if ((end - start) % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 octets");
    if (end - start > 6 * MAX_SETTINGS_ENTRIES) throw calm("settings", "too many entries in a SETTINGS frame");
    for (let at = start; at < end; at += 6) {
      const id = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH is not 0 or 1");
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "a stream window above 2^31-1");
            this.unpark(s);
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME || value > MAX_MAX_FRAME) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range");
          this.peerMaxFrame = value;
          break;
        default:
          // HEADER_TABLE_SIZE: keyward's encoder never uses the dynamic table. The rest are advisory or unknown.
          break;
      }
    }
    this.write(SETTINGS_ACK, true);
    this.flush();
  }

  private onWindowUpdate(sid: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 octets");
    const l = this.limits;
    if (++this.windowUpdates > WINDOW_UPDATE_BASE + 2 * this.streamsOpened + l.maxWindowUpdatesPerDataFrame * this.dataFramesSent) {
      throw calm("window_update", "too many WINDOW_UPDATE frames");
    }
    const inc = buf.readUInt32BE(start) & 0x7fffffff;
    if (sid === 0) {
      if (inc === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      this.flush();
      return;
    }
    const s = this.streams.get(sid);
    if (!s) {
      if (this.idle(sid)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      return;
    }
    if (inc === 0) {
      this.streamError(s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR);
      return;
    }
    this.unpark(s);
    this.flush();
  }

  // ---- writing -------------------------------------------------------------

  /** control: an acknowledgement or RST_STREAM, frames the peer makes keyward write at no cost to itself. */
  private write(buf: Buffer, control = false): void {
    // Nothing can be sent after end() (drain with no streams left, or the peer's FIN). A write
    // would fail with ERR_STREAM_WRITE_AFTER_END, and that error destroys the socket, dropping
    // what it had not flushed yet (the last answers, the GOAWAY): a PING or a stream to refuse
    // arriving then must not cost the peer those.
    if (this.dead || this.socket.writableEnded) return;
    if (this.out !== undefined || this.paused) {
      // Gathered for one read, or waiting on a peer that does not read: bounded in frames.
      if (control && ++this.queuedControl > this.limits.maxOutboundControlFrames) {
        this.violate("outbound_control", "too many control frames waiting for the peer to read");
        return;
      }
      if (++this.queuedFrames > this.limits.maxOutboundFrames) {
        this.violate("outbound_frames", "too many frames waiting for the peer to read");
        return;
      }
    }
    if (this.out) this.out.push(buf);
    else this.send(buf);
  }

  /**
   * Sends what the frames of one read produced as one socket write. Node's cork() would give
   * one writev, but allocates a record per buffered write and a list per flush, per request.
   */
  private flushOut(): void {
    const out = this.out;
    this.out = undefined;
    if (out === undefined || out.length === 0 || this.socket.writableEnded) return;
    this.send(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
    if (!this.paused) {
      this.queuedFrames = 0;
      this.queuedControl = 0;
    }
  }

  /** Ends the socket after what is gathered for it. */
  private end(): void {
    this.flushOut();
    this.socket.end();
  }

  private send(buf: Buffer): void {
    if (!this.socket.write(buf) && !this.paused) {
      // The peer reads slower than it asks: stop reading until the socket drained.
      this.paused = true;
      this.socket.pause();
    }
  }

  /** @internal */
  sendHeaders(s: H2Stream, block: Buffer, endStream: boolean): void {
    if (s.closed || s.localEnded) return;
    s.headersSent = true;
    // A peer that gets answers may ping as it likes (gRPC clients ping to size their windows).
    this.pingBudget.refill();
    this.write(headerFrames(s.id, block, endStream ? Flag.END_STREAM : 0, this.peerMaxFrame));
    if (endStream) this.localEnd(s);
  }

  /** @internal */
  sendData(s: H2Stream, a: Uint8Array, b: Uint8Array | undefined, end: boolean): void {
    if (s.closed || s.localEnded || s.pendingEnd || s.pendingTrailers) return;
    const n = a.length + (b?.length ?? 0);
    if (s.queue === undefined && n <= this.sendWindow && n <= s.sendWindow && n <= this.peerMaxFrame) {
      if (n === 0 && !end) return;
      const out = Buffer.allocUnsafe(FRAME_HEADER + n);
      putFrameHeader(out, 0, n, FrameType.DATA, end ? Flag.END_STREAM : 0, s.id);
      out.set(a, FRAME_HEADER);
      if (b) out.set(b, FRAME_HEADER + a.length);
      this.sendWindow -= n;
      s.sendWindow -= n;
      this.dataFramesSent++;
      this.write(out);
      if (end) this.localEnd(s);
      return;
    }
    if (end) s.pendingEnd = true;
    this.enqueue(s, b ? Buffer.concat([a, b]) : Buffer.from(a));
  }

  /** @internal */
  sendTrailers(s: H2Stream, block: Buffer): void {
    if (s.closed || s.localEnded || s.pendingEnd) return;
    if (s.queue !== undefined) {
      s.pendingTrailers = block;
      return;
    }
    this.write(headerFrames(s.id, block, Flag.END_STREAM, this.peerMaxFrame));
    this.localEnd(s);
  }

  /** @internal */
  sendWhole(s: H2Stream, head: Buffer, a: Uint8Array, b: Uint8Array, trailers: Buffer): void {
    if (s.closed || s.localEnded) return;
    const n = a.length + b.length;
    const max = this.peerMaxFrame;
    if (s.queue !== undefined || n > this.sendWindow || n > s.sendWindow || n > max || head.length > max || trailers.length > max) {
      this.sendHeaders(s, head, false);
      this.sendData(s, a, b, false);
      this.sendTrailers(s, trailers);
      return;
    }
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER + head.length + n + trailers.length);
    putFrameHeader(out, 0, head.length, FrameType.HEADERS, Flag.END_HEADERS, s.id);
    out.set(head, FRAME_HEADER);
    let at = FRAME_HEADER + head.length;
    putFrameHeader(out, at, n, FrameType.DATA, 0, s.id);
    out.set(a, at + FRAME_HEADER);
    out.set(b, at + FRAME_HEADER + a.length);
    at += FRAME_HEADER + n;
    putFrameHeader(out, at, trailers.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, s.id);
    out.set(trailers, at + FRAME_HEADER);
    this.sendWindow -= n;
    s.sendWindow -= n;
    s.headersSent = true;
    this.dataFramesSent++;
    this.pingBudget.refill();
    this.write(out);
    this.localEnd(s);
  }

  /** A parked stream that has window again rejoins the blocked list. */
  private unpark(s: H2Stream): void {
    if (s.parked && s.sendWindow > 0) {
      s.parked = false;
      this.blocked.push(s);
    }
  }

  private enqueue(s: H2Stream, data: Buffer): void {
    if (s.queue === undefined) {
      s.queue = [data];
      this.blocked.push(s);
    } else s.queue.push(data);
    this.flush();
  }

  /**
   * Sends queued DATA (then trailers) in the order the streams blocked, as far as the windows
   * allow. The list holds only streams that have window of their own (the others are parked), and
   * the pass stops when the connection window is spent: a flush costs the streams it serves.
   */
  private flush(): void {
    const list = this.blocked;
    if (list.length === 0) return;
    let keep = 0;
    let i = 0;
    for (; i < list.length && this.sendWindow > 0 && !this.dead; i++) {
      const s = list[i] as H2Stream;
      const queue = s.queue;
      if (s.closed || queue === undefined) continue;
      for (let head = queue[0]; head !== undefined && this.sendWindow > 0 && s.sendWindow > 0; head = queue[0]) {
        const n = Math.min(head.length, this.sendWindow, s.sendWindow, this.peerMaxFrame);
        const out = Buffer.allocUnsafe(FRAME_HEADER + n);
        putFrameHeader(out, 0, n, FrameType.DATA, 0, s.id);
        out.set(head.subarray(0, n), FRAME_HEADER);
        this.sendWindow -= n;
        s.sendWindow -= n;
        this.dataFramesSent++;
        this.write(out);
        if (n === head.length) queue.shift();
        else queue[0] = head.subarray(n);
      }
      if (queue.length > 0) {
        // Out of its own window: parked until a WINDOW_UPDATE or SETTINGS gives it more.
        if (s.sendWindow <= 0) s.parked = true;
        else list[keep++] = s;
        continue;
      }
      s.queue = undefined;
      const trailers = s.pendingTrailers;
      if (trailers) {
        s.pendingTrailers = undefined;
        this.write(headerFrames(s.id, trailers, Flag.END_STREAM, this.peerMaxFrame));
        this.localEnd(s);
      } else if (s.pendingEnd) {
        s.pendingEnd = false;
        this.dataFramesSent++;
        this.write(frame(FrameType.DATA, Flag.END_STREAM, s.id));
        this.localEnd(s);
      }
    }
    // The rest (the connection window ran out) keep their order; streams that blocked during the pass are among them.
    for (; i < list.length; i++) list[keep++] = list[i] as H2Stream;
    list.length = keep;
  }

  // ---- stream and connection ends -----------------------------------------

  private localEnd(s: H2Stream): void {
    s.localEnded = true;
    if (!s.remoteEnded) {
      // Answered before the request ended: tell the client to stop sending (RFC 9113 §8.1).
      this.rst(s.id, ErrorCode.NO_ERROR);
    }
    this.closeStream(s);
  }

  private streamError(s: H2Stream, code: number): void {
    this.rst(s.id, code);
    this.closeStream(s);
  }

  /** RST_STREAM from keyward; the stream's frames still on their way are then ignored. */
  private rst(sid: number, code: number): void {
    this.write(rstStreamFrame(sid, code), true);
    this.resetByUs.add(sid);
    if (this.resetByUs.size > RESET_MEMORY) {
      for (const oldest of this.resetByUs) {
        this.resetByUs.delete(oldest);
        break;
      }
    }
  }

  private closeStream(s: H2Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    s.queue = undefined;
    s.pendingTrailers = undefined;
    s.body = undefined;
    this.release(s.recvBytes);
    if (!s.localEnded) this.handler.onAbort(s);
    if (this.draining && this.streams.size === 0) this.end();
  }

  /** Gives consumed octets back to the connection window, in updates of at least half of it. */
  private release(n: number): void {
    this.unacked += n;
    if (this.unacked >= this.limits.connectionWindow / 2) {
      this.write(windowUpdateFrame(0, this.unacked), true);
      this.recvWindow += this.unacked;
      this.unacked = 0;
    }
  }

  /** The peer overstepped a limit: GOAWAY ENHANCE_YOUR_CALM, and the connection closes. */
  private violate(kind: H2Violation, message: string): void {
    if (this.dead) return;
    this.onViolation(kind);
    this.fail(ErrorCode.ENHANCE_YOUR_CALM, message);
  }

  private fail(code: number, message: string): void {
    if (this.dead) return;
    // The GOAWAY goes out past the outbound limits: they may be what failed.
    const goaway = goawayFrame(this.lastPeerStream, code, message);
    if (this.out) this.out.push(goaway);
    else if (!this.socket.writableEnded) this.send(goaway);
    this.end();
    this.socket.destroySoon();
    // A peer that does not read would keep the socket, and what is buffered for it, open.
    this.failTimer = setTimeout(() => {
      this.socket.destroy();
    }, this.limits.failCloseMs);
    this.failTimer.unref();
    this.onClose();
  }

  private onClose(): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.prefaceTimer);
    clearInterval(this.idleTimer);
    const open = [...this.streams.values()];
    this.streams.clear();
    // Nothing of a closed connection outlives it, whoever still holds it.
    this.blocked.length = 0;
    this.resetByUs.clear();
    this.cont = undefined;
    this.pending = undefined;
    for (const s of open) {
      s.closed = true;
      s.queue = undefined;
      s.body = undefined;
      if (!s.localEnded) this.handler.onAbort(s);
    }
    for (const w of this.closedWaiters.splice(0)) w();
  }

  /** @internal For tests: what the connection still holds (all zero once it closed). */
  held(): { streams: number; blocked: number; resetByUs: number; pending: number; headerBlock: number } {
    return { streams: this.streams.size, blocked: this.blocked.length, resetByUs: this.resetByUs.size, pending: this.pending?.length ?? 0, headerBlock: this.cont?.size ?? 0 };
  }
}

/** `:status 431`, for requests whose header list is over SETTINGS_MAX_HEADER_LIST_SIZE. */
const HEADER_LIST_TOO_LARGE = new HpackEncoder().encode([[":status", "431"]]);
