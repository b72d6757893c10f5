// The flood limits of limits.ts, one attack each: every test sends what a hostile peer
// would, sees GOAWAY ENHANCE_YOUR_CALM, sees the connection close, and sees the
// violation reported by kind. Well-behaved uses close to each limit stay open.
import http2 from "node:http2";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { H2Connection } from "./connection.ts";
import { ErrorCode, Flag, FrameType, PREFACE, Setting, frame, rstStreamFrame, settingsFrame, windowUpdateFrame } from "./frames.ts";
import type { H2Limits, H2Violation } from "./limits.ts";
import { startH2Server, type H2Server } from "./server.ts";
import { FakeSocket, RawClient, TestHandler, dataFrame, enc, field, headersFrame, pingFrame, raws, requestBlock, until } from "./raw-client.test-support.ts";

const servers: H2Server[] = [];

afterEach(async () => {
  for (const r of raws.splice(0)) r.socket.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close(0)));
});

async function serve(limits?: Partial<H2Limits>): Promise<{ server: H2Server; handler: TestHandler; port: number; violations: H2Violation[] }> {
  const handler = new TestHandler();
  const violations: H2Violation[] = [];
  const server = await startH2Server({ address: "127.0.0.1:0", handler, limits, onViolation: (kind) => violations.push(kind) });
  servers.push(server);
  return { server, handler, port: server.port, violations };
}

/** A connected client past the preface. */
async function client(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.handshake();
  return c;
}

/** Expects GOAWAY ENHANCE_YOUR_CALM, the socket closed and one violation of `kind`. */
async function expectCalm(c: RawClient, violations: H2Violation[], kind: H2Violation): Promise<void> {
  expect((await c.goaway()).code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
  await c.closed();
  expect(violations).toEqual([kind]);
}

const times = (n: number, f: (i: number) => Buffer): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => f(i)));

describe("empty and zero-length frames", () => {
  it("closes a connection sending zero-length CONTINUATION frames after a HEADERS without END_HEADERS", async () => {
    const { port, violations, handler } = await serve();
    const c = await client(port);
    c.write(frame(FrameType.HEADERS, Flag.END_STREAM, 1, requestBlock("/echo").subarray(0, 3)), times(10_000, () => frame(FrameType.CONTINUATION, 0, 1)));
    await expectCalm(c, violations, "empty_frames");
    expect(handler.requests).toHaveLength(0);
  });

  it("closes a connection sending empty DATA frames that do not end the stream", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(headersFrame(1, requestBlock("/echo"), false), times(10_000, () => dataFrame(1, Buffer.alloc(0))));
    await expectCalm(c, violations, "empty_frames");
  });

  it("counts padding-only DATA frames as empty", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    const padded = frame(FrameType.DATA, Flag.PADDED, 1, Buffer.from([4, 0, 0, 0, 0]));
    c.write(headersFrame(1, requestBlock("/echo"), false), times(10, () => padded));
    await expectCalm(c, violations, "empty_frames");
  });

  it("takes one empty DATA frame, and an empty one that ends the stream", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(headersFrame(1, requestBlock("/echo"), false), dataFrame(1, Buffer.alloc(0)), dataFrame(1, Buffer.from("x")), dataFrame(1, Buffer.alloc(0)), dataFrame(1, Buffer.alloc(0), true));
    const answer = await c.next("the answer", (f) => f.type === FrameType.HEADERS && f.streamId === 1);
    expect(field(answer, ":status")).toBe("200");
    expect(violations).toEqual([]);
  });
});

describe("CONTINUATION", () => {
  it("closes a connection whose header block takes more than maxContinuationFrames CONTINUATION frames", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    const block = requestBlock("/echo", "GET");
    // One octet per frame: far below any size limit.
    c.write(
      frame(FrameType.HEADERS, Flag.END_STREAM, 1, block.subarray(0, 1)),
      times(block.length - 1, (i) => frame(FrameType.CONTINUATION, i === block.length - 2 ? Flag.END_HEADERS : 0, 1, block.subarray(i + 1, i + 2))),
    );
    await expectCalm(c, violations, "continuation");
  });

  it("takes a header block in exactly maxContinuationFrames CONTINUATION frames", async () => {
    const { port, violations } = await serve({ maxContinuationFrames: 3 });
    const c = await client(port);
    const block = requestBlock("/echo", "GET");
    const cut = [0, 5, 10, 15, block.length];
    c.write(
      frame(FrameType.HEADERS, Flag.END_STREAM, 1, block.subarray(0, 5)),
      ...[1, 2, 3].map((i) => frame(FrameType.CONTINUATION, i === 3 ? Flag.END_HEADERS : 0, 1, block.subarray(cut[i], cut[i + 1]))),
    );
    const answer = await c.next("the answer", (f) => f.type === FrameType.HEADERS && f.streamId === 1);
    expect(field(answer, ":status")).toBe("200");
    expect(violations).toEqual([]);
  });

  it("closes a connection whose header block grows past twice the header list limit", async () => {
    const { port, violations } = await serve({ maxHeaderListSize: 1024, maxContinuationFrames: 100 });
    const c = await client(port);
    const part = Buffer.alloc(1000, 0x41);
    c.write(frame(FrameType.HEADERS, 0, 1, part), times(4, () => frame(FrameType.CONTINUATION, 0, 1, part)));
    await expectCalm(c, violations, "header_block");
  });
});

describe("HPACK amplification", () => {
  it("closes a connection whose small header block references a big table entry over and over", async () => {
    const { port, violations, handler } = await serve();
    const c = await client(port);
    // A 4,000-octet value enters the dynamic table (index 62) once; then 1,000 one-octet references.
    const literal = Buffer.concat([Buffer.from([0x40, 0x05]), Buffer.from("x-big"), hpackLength(4000), Buffer.alloc(4000, 0x61)]);
    const block = Buffer.concat([requestBlock("/echo"), literal, Buffer.alloc(1000, 0x80 | 62)]);
    expect(block.length).toBeLessThan(16_384);
    c.write(headersFrame(1, block, true));
    await expectCalm(c, violations, "header_list");
    expect(handler.requests).toHaveLength(0);
  });

  it("still answers 431 to a header list a little over the limit", async () => {
    const { port, violations } = await serve({ maxHeaderListSize: 1024 });
    const c = await client(port);
    c.write(headersFrame(1, requestBlock("/echo", "POST", [["x-big", "b".repeat(1500)]]), true));
    const answer = await c.next("the answer", (f) => f.type === FrameType.HEADERS && f.streamId === 1);
    expect(field(answer, ":status")).toBe("431");
    expect(violations).toEqual([]);
  });
});

/** An HPACK string length prefix (7-bit prefix, no Huffman). */
function hpackLength(n: number): Buffer {
  if (n < 127) return Buffer.from([n]);
  const out = [127];
  let rest = n - 127;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
}

describe("small DATA frames", () => {
  it("closes a connection sending a body one octet per DATA frame", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(headersFrame(1, requestBlock("/echo"), false), times(10_000, () => dataFrame(1, Buffer.from("x"))));
    await expectCalm(c, violations, "small_data");
  });

  it("takes a body in maxSmallDataFramesPerStream small frames, and any number of full ones", async () => {
    const { port, violations } = await serve({ maxSmallDataFramesPerStream: 4 });
    const c = await client(port);
    const full = Buffer.alloc(16_384, 0x62);
    c.write(
      headersFrame(1, requestBlock("/echo"), false),
      times(4, () => dataFrame(1, Buffer.from("a"))),
      times(3, () => dataFrame(1, full)),
      dataFrame(1, Buffer.from("z"), true),
    );
    const trailers = await c.next("the trailers", (f) => f.type === FrameType.HEADERS && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0);
    expect(field(trailers, "x-body-length")).toBe(String(4 + 3 * 16_384 + 1));
    expect(violations).toEqual([]);
  });
});

describe("control frames", () => {
  it("closes a connection sending SETTINGS frames faster than settingsRate", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(times(200, () => settingsFrame([[Setting.ENABLE_PUSH, 0]])));
    await expectCalm(c, violations, "settings");
  });

  it("closes a connection sending a SETTINGS frame of more than 32 entries", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(settingsFrame(Array.from({ length: 33 }, () => [Setting.ENABLE_PUSH, 0] as const)));
    await expectCalm(c, violations, "settings");
  });

  it("closes a connection sending PING frames faster than pingRate while it asks for nothing", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(times(1000, () => pingFrame));
    await expectCalm(c, violations, "ping");
  });

  it("lets a client that gets answers ping as often as it asks", async () => {
    const { port, violations } = await serve({ pingRate: { burst: 2, perSecond: 0 } });
    const c = await client(port);
    for (let i = 0; i < 20; i++) {
      const sid = 2 * i + 1;
      c.write(headersFrame(sid, requestBlock("/echo"), false), dataFrame(sid, Buffer.from("x"), true), pingFrame, pingFrame);
      await c.next(`the answer on ${sid}`, (f) => f.type === FrameType.HEADERS && f.streamId === sid);
    }
    expect(c.frames.filter((f) => f.type === FrameType.PING)).toHaveLength(40);
    expect(violations).toEqual([]);
  });

  it("closes a connection that opens and resets streams faster than resetRate (Rapid Reset)", async () => {
    const { port, violations, handler } = await serve();
    const c = await client(port);
    const block = requestBlock("/hold");
    c.write(times(1500, (i) => Buffer.concat([headersFrame(2 * i + 1, block, false), rstStreamFrame(2 * i + 1, ErrorCode.CANCEL)])));
    await expectCalm(c, violations, "rst_stream");
    // The burst of 1,000, and what the rate refilled while the frames were read.
    expect(handler.requests.length).toBeLessThan(1050);
  });

  it("closes a connection that keeps opening streams past maxConcurrentStreams to have them refused", async () => {
    const { port, violations } = await serve({ maxConcurrentStreams: 1, resetRate: { burst: 50, perSecond: 0 } });
    const c = await client(port);
    const block = requestBlock("/hold");
    c.write(times(100, (i) => headersFrame(2 * i + 1, block, false)));
    await expectCalm(c, violations, "rst_stream");
  });

  it("closes a connection sending frames for a closed stream faster than strayFrameRate", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(headersFrame(1, requestBlock("/echo"), false), dataFrame(1, Buffer.from("x"), true));
    await c.next("the answer", (f) => f.type === FrameType.HEADERS && f.streamId === 1 && (f.flags & Flag.END_STREAM) !== 0);
    c.write(times(2000, () => rstStreamFrame(1, ErrorCode.CANCEL)));
    await expectCalm(c, violations, "stray_frames");
  });

  it("closes a connection sending PRIORITY frames past maxPriorityPerStream", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    const priority = (sid: number): Buffer => frame(FrameType.PRIORITY, 0, sid, Buffer.from([0, 0, 0, 0, 16]));
    c.write(times(500, (i) => priority(2 * i + 1)));
    await expectCalm(c, violations, "priority");
  });

  it("closes a connection sending WINDOW_UPDATE frames when keyward sends no DATA", async () => {
    const { port, violations } = await serve();
    const c = await client(port);
    c.write(times(500, () => windowUpdateFrame(0, 1)));
    await expectCalm(c, violations, "window_update");
  });
});

describe("outbound queue", () => {
  it("closes a connection that makes keyward gather more than maxOutboundControlFrames for one read", async () => {
    const { port, violations, server } = await serve({ pingRate: { burst: 1e9, perSecond: 0 } });
    const c = await client(port);
    // Not read by the client: the acknowledgements pile up on keyward's side.
    c.socket.pause();
    c.write(times(5000, () => pingFrame));
    await until(() => violations.length > 0, "a violation");
    expect(violations).toEqual(["outbound_control"]);
    await until(() => server.connections() === 0, "the connection to close");
  });

  it("closes a connection whose peer does not read while answers pile up, within the close grace", async () => {
    // A short grace (2 s by default): the socket, never drained, is destroyed when it ends.
    const { port, violations, handler, server } = await serve({ maxOutboundFrames: 100, failCloseMs: 50 });
    const c = await client(port);
    c.socket.pause();
    c.write(times(1000, (i) => headersFrame(2 * i + 1, requestBlock("/hold"), true)));
    await until(() => handler.held.length === 1000, "1,000 held streams");
    // 8 KB answers: the socket's buffers fill, keyward stops reading, and frames queue in keyward.
    for (const s of handler.held) s.respond(enc.encode([[":status", "200"], ["x-fill", "f".repeat(8000)]]), true);
    expect(violations).toEqual(["outbound_frames"]);
    await until(() => server.connections() === 0, "the connection to close", 1500);
  });
});

describe("connections", () => {
  it("closes sockets past maxConnections at once", async () => {
    const { port, violations, server } = await serve({ maxConnections: 2 });
    const a = await client(port);
    const b = await client(port);
    await a.ping();
    await b.ping();
    const third = await RawClient.connect(port);
    await third.closed();
    expect(violations).toEqual(["connections"]);
    expect(server.connections()).toBe(2);
    await a.ping();
  });

  it("drains a connection without streams after the idle timeout, and keeps one with an open stream", async () => {
    const { port, server } = await serve({ idleTimeoutMs: 50 });
    const idle = await client(port);
    const busy = await client(port);
    busy.write(headersFrame(1, requestBlock("/hold"), true));
    await busy.ping();
    expect(await idle.goaway()).toEqual({ lastStreamId: 0, code: ErrorCode.NO_ERROR });
    await idle.closed();
    // Asserting that nothing happens needs a window: three idle periods.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(busy.isClosed).toBe(false);
    expect(server.connections()).toBe(1);
  });

  it("closes a connection whose peer does not read for an idle timeout", async () => {
    const { port, server } = await serve({ idleTimeoutMs: 100 });
    const c = await client(port);
    c.socket.pause();
    c.write(times(2000, (i) => headersFrame(2 * i + 1, requestBlock("/fill", "GET"), true)));
    await until(() => server.connections() === 0, "the connection to close", 3000);
  });
});

describe("the send path with 1,024 blocked streams", () => {
  it("stays linear: 2,000 one-octet WINDOW_UPDATEs for the last of 1,024 streams out of their own window take well under a second", async () => {
    const { port, violations, handler } = await serve();
    const c = await RawClient.connect(port);
    c.retain = false;
    let lastOctets = 0;
    c.onFrame = (f) => {
      if (f.type === FrameType.DATA && f.streamId === 2047) lastOctets += f.payload.length;
    };
    c.handshake([[Setting.INITIAL_WINDOW_SIZE, 0]]);
    // 1,024 answers that wait for their own stream window; only the last stream ever gets any.
    c.write(times(1023, (i) => Buffer.concat([headersFrame(2 * i + 1, requestBlock("/echo"), false), dataFrame(2 * i + 1, Buffer.from("x"), true)])));
    c.write(headersFrame(2047, requestBlock("/big/100000", "GET"), true));
    await until(() => handler.ends.length === 1024, "1,024 answers queued");
    const t0 = performance.now();
    c.write(times(2000, () => windowUpdateFrame(2047, 1)));
    await until(() => lastOctets === 2000, "2,000 octets on the last stream", 30_000);
    const ms = performance.now() - t0;
    expect(violations).toEqual([]);
    // Quadratic, it took seconds: each update walked the waiting streams once per waiting stream.
    expect(ms).toBeLessThan(1000);
  });
});

describe("a peer that sends an octet at a time", () => {
  it("costs a copy per read, not a copy of everything kept so far: a 16 KiB frame in 16,393 reads joins buffers a handful of times", () => {
    const socket = new FakeSocket();
    const handler = new TestHandler();
    const conn = new H2Connection(socket as unknown as Socket, handler);
    socket.emit("data", Buffer.concat([PREFACE, settingsFrame([]), headersFrame(1, requestBlock("/echo"), false)]));
    const concat = vi.spyOn(Buffer, "concat");
    try {
      const wire = dataFrame(1, Buffer.alloc(16_384, 0x61), true);
      for (let i = 0; i < wire.length; i++) socket.emit("data", wire.subarray(i, i + 1));
      // Before, every read joined the kept tail and the new octet: 16,393 joins of up to 16 KiB.
      expect(concat.mock.calls.length).toBeLessThan(20);
    } finally {
      concat.mockRestore();
    }
    expect(handler.ends.map((s) => s.bodyLength)).toEqual([16_384]);
    socket.emit("close");
    expect(conn.held().pending).toBe(0);
  });
});

describe("a heavy well-behaved client", () => {
  it("runs 3,000 requests, 1,000 at a time, with bodies up to 1 MiB, pings and settings, without a violation", async () => {
    const { port, violations } = await serve();
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    try {
      const one = (i: number): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = session.request({ ":method": "POST", ":path": "/echo" });
          let n = 0;
          req.on("data", (c: Buffer) => (n += c.length));
          req.on("error", reject);
          req.on("close", () => {
            resolve(n);
          });
          req.end(Buffer.alloc(i % 100 === 0 ? 1024 * 1024 : 200 + (i % 700), 0x78));
        });
      for (let round = 0; round < 3; round++) {
        session.ping(() => undefined);
        session.settings({ initialWindowSize: 1024 * 1024 + round });
        const sizes = await Promise.all(Array.from({ length: 1000 }, (_, i) => one(i)));
        expect(sizes.filter((n, i) => n !== (i % 100 === 0 ? 1024 * 1024 : 200 + (i % 700)))).toEqual([]);
      }
      expect(violations).toEqual([]);
    } finally {
      session.destroy();
    }
  }, 30_000);
});
