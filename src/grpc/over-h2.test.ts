// GrpcServer behind startH2Server, driven by @grpc/grpc-js (an independent gRPC client
// on node:http2) for calls, and by node:http2 directly for requests grpc-js would not
// send: other methods and content types, compressed, doubled and cut-off messages.
import * as grpc from "@grpc/grpc-js";
import http2 from "node:http2";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startH2Server, type H2Server } from "../h2/server.ts";
import { GrpcError, GrpcServer, GrpcStatus, encodeGrpcMessage, type GrpcMethod, type StreamCall } from "./over-h2.ts";

/** Polls cond until it holds; fails after timeoutMs. */
async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const MAX_MESSAGE = 64 * 1024;
const SECRET = "the database password is hunter2";
/** A message with non-ASCII characters and '%', which grpc-message must carry percent-encoded. */
const TRICKY = "100% sûr: naïve café ✓ — 日本語 %41 %zz";

/** The methods under test, and what they saw. */
class Service {
  readonly errors: unknown[] = [];
  readonly held: StreamCall[] = [];
  cancels = 0;

  methods(): Map<string, GrpcMethod> {
    return new Map<string, GrpcMethod>([
      ["/test.Test/Echo", { kind: "unary", handle: (req) => req }],
      [
        "/test.Test/Fail",
        {
          kind: "unary",
          handle: (req) => {
            const { code, message } = JSON.parse(req.toString()) as { code: number; message: string };
            throw new GrpcError(code, message);
          },
        },
      ],
      [
        "/test.Test/Crash",
        {
          kind: "unary",
          handle: () => {
            throw new Error(SECRET);
          },
        },
      ],
      [
        "/test.Test/Count",
        {
          kind: "server-stream",
          open: (req, call) => {
            const n = Number(req.toString());
            for (let i = 0; i < n; i++) call.write(Buffer.from(`${i}:${"x".repeat(1000)}`));
            call.end();
          },
        },
      ],
      [
        "/test.Test/Hold",
        {
          kind: "server-stream",
          open: (_req, call) => {
            call.write(Buffer.from("first"));
            call.onCancel = () => {
              this.cancels++;
            };
            this.held.push(call);
          },
        },
      ],
      [
        "/test.Test/StreamCrash",
        {
          kind: "server-stream",
          open: (_req, call) => {
            call.write(Buffer.from("one"));
            call.write(Buffer.from("two"));
            throw new Error(SECRET);
          },
        },
      ],
      [
        "/test.Test/NotFound",
        {
          kind: "server-stream",
          open: (_req, call) => {
            call.end(GrpcStatus.NOT_FOUND, TRICKY);
          },
        },
      ],
    ]);
  }
}

let service: Service;
let server: H2Server;
let client: grpc.Client;
const sessions: http2.ClientHttp2Session[] = [];

beforeEach(async () => {
  service = new Service();
  const grpcServer = new GrpcServer({
    methods: service.methods(),
    maxMessage: MAX_MESSAGE,
    onError: (err) => {
      service.errors.push(err);
    },
  });
  server = await startH2Server({ address: "127.0.0.1:0", handler: grpcServer, limits: { maxBody: grpcServer.maxBody } });
  client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), { "grpc.enable_http_proxy": 0 });
});

afterEach(async () => {
  client.close();
  for (const s of sessions.splice(0)) s.destroy();
  await server.close(0);
});

const identity = (b: Buffer): Buffer => b;

interface UnaryResult {
  err: grpc.ServiceError | null;
  res: Buffer | undefined;
}

function unary(method: string, req: Buffer): Promise<UnaryResult> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(`/test.Test/${method}`, identity, identity, req, (err, res) => {
      resolve({ err, res });
    });
  });
}

interface StreamResult {
  messages: Buffer[];
  status: grpc.StatusObject;
}

function serverStream(method: string, req: Buffer): { call: grpc.ClientReadableStream<Buffer>; done: Promise<StreamResult> } {
  const call = client.makeServerStreamRequest(`/test.Test/${method}`, identity, identity, req);
  const messages: Buffer[] = [];
  call.on("data", (m: Buffer) => messages.push(m));
  call.on("error", () => {
    // The status event says it.
  });
  const done = new Promise<StreamResult>((resolve) => {
    call.on("status", (status: grpc.StatusObject) => {
      resolve({ messages, status });
    });
  });
  return { call, done };
}

/** A gRPC message: flags, length, payload. */
function grpcFrame(payload: Buffer, flags = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flags;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

interface RawReply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
}

/** One request through node:http2, headers as given (defaults: a gRPC call to Echo). */
function raw(headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<RawReply> {
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => {
    // Seen through the request.
  });
  sessions.push(session);
  return new Promise((resolve, reject) => {
    const req = session.request(
      { ":method": "POST", ":path": "/test.Test/Echo", "content-type": "application/grpc", te: "trailers", ...headers },
      { endStream: body === undefined },
    );
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      head = h;
    });
    req.on("trailers", (t: http2.IncomingHttpHeaders) => {
      trailers = t;
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("close", () => {
      resolve({ status: Number(head[":status"]), headers: head, trailers, body: Buffer.concat(chunks) });
    });
    if (body !== undefined) req.end(body);
  });
}

/** grpc-status and grpc-message of a raw reply, from its trailers or (Trailers-Only) its headers. */
function grpcStatus(r: RawReply): { code: number; message: string | undefined } {
  const from = r.trailers ?? r.headers;
  const message = from["grpc-message"];
  return { code: Number(from["grpc-status"]), message: typeof message === "string" ? message : undefined };
}

// ---- unary ---------------------------------------------------------------------

describe("unary calls", () => {
  it("echoes the request message's bytes", async () => {
    for (const req of [Buffer.alloc(0), Buffer.from([0, 1, 2, 0xff, 0, 0x80]), Buffer.alloc(MAX_MESSAGE, 0xa5)]) {
      const { err, res } = await unary("Echo", req);
      expect(err).toBeNull();
      expect(res?.equals(req)).toBe(true);
    }
  });

  it("answers a GrpcError with its code and message, percent-encoded on the wire", async () => {
    const { err } = await unary("Fail", Buffer.from(JSON.stringify({ code: GrpcStatus.NOT_FOUND, message: TRICKY })));
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.details).toBe(TRICKY);

    const r = await raw({ ":path": "/test.Test/Fail" }, grpcFrame(Buffer.from(JSON.stringify({ code: 3, message: TRICKY }))));
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/grpc");
    const { code, message } = grpcStatus(r);
    expect(code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(message).toBe(encodeGrpcMessage(TRICKY));
    expect(/^[\x20-\x7e]*$/.test(message ?? "")).toBe(true);
    expect(decodeURIComponent(message ?? "")).toBe(TRICKY);
    expect(service.errors).toEqual([]);
  });

  it("answers any other error with INTERNAL and a generic message, and reports it to onError", async () => {
    const { err } = await unary("Crash", Buffer.from("x"));
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toBe("internal error");
    expect(service.errors).toHaveLength(1);
    expect((service.errors[0] as Error).message).toBe(SECRET);

    const r = await raw({ ":path": "/test.Test/Crash" }, grpcFrame(Buffer.from("x")));
    expect(grpcStatus(r)).toEqual({ code: GrpcStatus.INTERNAL, message: "internal error" });
    expect(JSON.stringify([r.headers, r.trailers, r.body.toString()])).not.toContain("hunter2");
    expect(service.errors).toHaveLength(2);
  });

  it("answers an unknown method with UNIMPLEMENTED", async () => {
    const { err } = await unary("Nope", Buffer.from("x"));
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err?.details).toContain("/test.Test/Nope");
  });

  it("answers a message over maxMessage with RESOURCE_EXHAUSTED, and the connection goes on", async () => {
    const { err } = await unary("Echo", Buffer.alloc(MAX_MESSAGE + 1));
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const ok = await unary("Echo", Buffer.from("still here"));
    expect(ok.res?.toString()).toBe("still here");
    expect(server.connections()).toBe(1);
  });
});

// ---- what is not a gRPC call, or not a valid one ----------------------------------

describe("requests that are not valid gRPC calls", () => {
  it("answers GET with HTTP 405", async () => {
    const r = await raw({ ":method": "GET" });
    expect(r.status).toBe(405);
    expect(r.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(r.body.toString()).toContain("POST");
  });

  it.each(["text/plain", "application/grpcx", "application/json", ""])("answers POST with content-type %j with HTTP 415", async (type) => {
    const r = await raw({ "content-type": type }, Buffer.from("hello"));
    expect(r.status).toBe(415);
    expect(r.body.toString()).toContain("application/grpc");
  });

  it.each(["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8"])("takes content-type %j", async (type) => {
    const r = await raw({ "content-type": type }, grpcFrame(Buffer.from("ok")));
    expect(r.status).toBe(200);
    expect(grpcStatus(r).code).toBe(GrpcStatus.OK);
    expect(r.body.equals(grpcFrame(Buffer.from("ok")))).toBe(true);
  });

  it.each([
    ["a compressed message with grpc-encoding gzip", { "grpc-encoding": "gzip" }, grpcFrame(Buffer.from("zz"), 1), GrpcStatus.UNIMPLEMENTED],
    ["a compressed message without grpc-encoding", {}, grpcFrame(Buffer.from("zz"), 1), GrpcStatus.INTERNAL],
    ["a compressed message with grpc-encoding identity", { "grpc-encoding": "identity" }, grpcFrame(Buffer.from("zz"), 1), GrpcStatus.INTERNAL],
    ["invalid message flags", {}, grpcFrame(Buffer.from("zz"), 2), GrpcStatus.INTERNAL],
    ["two messages in a unary call", {}, Buffer.concat([grpcFrame(Buffer.from("a")), grpcFrame(Buffer.from("b"))]), GrpcStatus.UNIMPLEMENTED],
    ["an incomplete message", {}, grpcFrame(Buffer.alloc(100)).subarray(0, 50), GrpcStatus.INTERNAL],
    ["an incomplete message prefix", {}, Buffer.from([0, 0, 0]), GrpcStatus.INTERNAL],
    ["no message at all", {}, Buffer.alloc(0), GrpcStatus.INTERNAL],
  ] as const)("answers %s with its status", async (_, headers, body, expected) => {
    const r = await raw(headers, body);
    expect(r.status).toBe(200);
    expect(grpcStatus(r).code).toBe(expected);
    expect(grpcStatus(r).message).toBeTruthy();
    expect(r.body.length).toBe(0);
  });
});

// ---- server streaming -------------------------------------------------------------

describe("server streaming", () => {
  it("delivers every message in order, past the flow-control windows, and ends OK", async () => {
    const n = 400; // 400 KB: several times grpc-js's windows
    const { done } = serverStream("Count", Buffer.from(String(n)));
    const { messages, status } = await done;
    expect(status.code).toBe(grpc.status.OK);
    expect(messages.map((m) => m.toString())).toEqual(Array.from({ length: n }, (_, i) => `${i}:${"x".repeat(1000)}`));
  });

  it("ends a stream without messages with a Trailers-Only status", async () => {
    const { done } = serverStream("NotFound", Buffer.from(""));
    const { messages, status } = await done;
    expect(messages).toEqual([]);
    expect(status.code).toBe(grpc.status.NOT_FOUND);
    expect(status.details).toBe(TRICKY);
  });

  it("ends a stream whose handler throws with INTERNAL after what it wrote", async () => {
    const { done } = serverStream("StreamCrash", Buffer.from(""));
    const { messages, status } = await done;
    expect(messages.map((m) => m.toString())).toEqual(["one", "two"]);
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toBe("internal error");
    expect(service.errors).toHaveLength(1);
  });

  it("calls onCancel once when the client cancels, and ignores writes after it", async () => {
    const { call, done } = serverStream("Hold", Buffer.from(""));
    const first = new Promise((resolve) => call.once("data", resolve));
    await first;
    const held = service.held[0]!;
    expect(held.cancelled).toBe(false);
    call.cancel();
    expect((await done).status.code).toBe(grpc.status.CANCELLED);
    await until(() => service.cancels > 0, "onCancel");
    expect(held.cancelled).toBe(true);
    held.write(Buffer.from("too late"));
    held.end(GrpcStatus.OK);
    held.end(GrpcStatus.INTERNAL, "later still");
    // The connection is still fine, and nothing more was cancelled.
    expect((await unary("Echo", Buffer.from("after"))).res?.toString()).toBe("after");
    expect(service.cancels).toBe(1);
    expect(server.connections()).toBe(1);
  });

  it("cancels open streams when the server closes the connection", async () => {
    const { call, done } = serverStream("Hold", Buffer.from(""));
    await new Promise((resolve) => call.once("data", resolve));
    await server.close(0);
    expect(service.cancels).toBe(1);
    expect(service.held[0]!.cancelled).toBe(true);
    expect((await done).status.code).not.toBe(grpc.status.OK);
  });
});

// ---- grpc-message ---------------------------------------------------------------

describe("encodeGrpcMessage", () => {
  it.each([
    ["", ""],
    ["plain ASCII, with spaces ~!", "plain ASCII, with spaces ~!"],
    ["100%", "100%25"],
    ["%25", "%2525"],
    ["tab\there", "tab%09here"],
    ["line\r\nbreak", "line%0D%0Abreak"],
    ["del\x7f", "del%7F"],
    ["é", "%C3%A9"],
    ["✓", "%E2%9C%93"],
    ["😀", "%F0%9F%98%80"],
  ])("encodes %j as %j", (text, wire) => {
    expect(encodeGrpcMessage(text)).toBe(wire);
    expect(decodeURIComponent(wire)).toBe(text);
  });
});
