// gRPC over keyward's HTTP/2 connections (the PROTOCOL-HTTP2 wire format):
// unary and server-streaming methods whose handlers take and return encoded
// messages. Requests must be POST with content-type application/grpc; messages
// are identity-encoded (keyward advertises only `identity`, so clients do not
// compress). A unary answer goes out as HEADERS, DATA and trailers in one write.
import { HpackEncoder } from "../h2/hpack.ts";
import type { H2Handler, H2Stream } from "../h2/connection.ts";

/** gRPC status codes keyward answers with. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** Thrown by a handler to answer with a gRPC status other than OK. */
export class GrpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GrpcError";
    this.code = code;
  }
}

export interface UnaryMethod {
  readonly kind: "unary";
  /**
   * Answers one request message with one response message (both encoded), at once or
   * through a Promise. Throw (or reject with) GrpcError for a status.
   */
  handle(request: Buffer): Buffer | Promise<Buffer>;
}

export interface StreamCall {
  /** Sends one response message. */
  write(message: Buffer): void;
  /** Ends the call with a status (default OK). */
  end(code?: number, message?: string): void;
  /** The client went away (or the server closed the connection). */
  readonly cancelled: boolean;
  /** Called once when the call is cancelled. */
  onCancel: (() => void) | undefined;
}

export interface ServerStreamMethod {
  readonly kind: "server-stream";
  open(request: Buffer, call: StreamCall): void;
}

export type GrpcMethod = UnaryMethod | ServerStreamMethod;

export interface GrpcServerOptions {
  /** Methods by path: /package.Service/Method. */
  methods: ReadonlyMap<string, GrpcMethod>;
  /** Largest request message in octets (the default 4 MiB is grpc-js's and grpc-go's). */
  maxMessage?: number;
  /** A handler threw something other than a GrpcError; the call was answered INTERNAL. */
  onError?: (err: unknown) => void;
}

const hpack = new HpackEncoder();
const HEAD = hpack.encode([
  [":status", "200"],
  ["content-type", "application/grpc"],
  ["grpc-accept-encoding", "identity"],
]);
const TRAILERS_OK = hpack.encode([["grpc-status", "0"]]);
/** An answer for a request that is not a gRPC call, sent once its body arrived. */
interface NotGrpc {
  head: Buffer;
  body: Buffer;
}
const notGrpc = (status: string, text: string): NotGrpc => ({
  head: hpack.encode([
    [":status", status],
    ["content-type", "text/plain; charset=utf-8"],
  ]),
  body: Buffer.from(`${text}\n`),
});
const NOT_POST = notGrpc("405", "keyward serves gRPC here: POST with content-type application/grpc");
const NOT_GRPC = notGrpc("415", "keyward serves gRPC here: content-type must be application/grpc");
/** A call to a method keyward does not serve. */
const UNKNOWN_METHOD = Symbol("unknown method");

/** grpc-message's encoding: percent-encoded UTF-8 outside printable ASCII, and '%' itself. */
export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function statusFields(code: number, message: string | undefined): [string, string][] {
  const f: [string, string][] = [["grpc-status", String(code)]];
  if (message) f.push(["grpc-message", encodeGrpcMessage(message)]);
  return f;
}

/** A response that is only trailers (RFC: "Trailers-Only"), for calls that fail before any message. */
function trailersOnly(code: number, message: string | undefined): Buffer {
  return hpack.encode([[":status", "200"], ["content-type", "application/grpc"], ...statusFields(code, message)]);
}

function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || !ct.startsWith("application/grpc")) return false;
  const next = ct.charCodeAt(16);
  return ct.length === 16 || next === 0x2b /* + */ || next === 0x3b /* ; */;
}

class Call implements StreamCall {
  cancelled = false;
  onCancel: (() => void) | undefined = undefined;
  private readonly stream: H2Stream;
  constructor(stream: H2Stream) {
    this.stream = stream;
  }
  write(message: Buffer): void {
    const s = this.stream;
    if (s.closed || s.localEnded) return;
    if (!s.headersSent) s.respond(HEAD);
    s.data(messagePrefix(Buffer.allocUnsafe(5), message.length), message);
  }
  end(code: number = GrpcStatus.OK, message?: string): void {
    const s = this.stream;
    if (s.closed || s.localEnded) return;
    if (!s.headersSent) s.respond(trailersOnly(code, message), true);
    else s.trailers(code === GrpcStatus.OK ? TRAILERS_OK : hpack.encode(statusFields(code, message)));
  }
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.onCancel?.();
  }
}

function messagePrefix(out: Buffer, length: number): Buffer {
  out[0] = 0;
  out.writeUInt32BE(length, 1);
  return out;
}

/** What is wrong with a unary request body (one length-prefixed message), as a status and message. */
function messageProblem(body: Buffer, s: H2Stream): [number, string] | undefined {
  if (body.length < 5) return [GrpcStatus.INTERNAL, "no request message"];
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) return [GrpcStatus.INTERNAL, "incomplete request message"];
  if (body.length > 5 + length) return [GrpcStatus.UNIMPLEMENTED, "more than one request message for a method that takes one"];
  const flag = body.readUInt8(0);
  if (flag === 1) {
    const encoding = s.header("grpc-encoding");
    if (encoding === undefined || encoding === "identity") return [GrpcStatus.INTERNAL, "compressed message without grpc-encoding"];
    return [GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported; send identity`];
  }
  if (flag !== 0) return [GrpcStatus.INTERNAL, "invalid message flags"];
  return undefined;
}

export class GrpcServer implements H2Handler {
  private readonly methods: ReadonlyMap<string, GrpcMethod>;
  private readonly maxMessage: number;
  private readonly onError: (err: unknown) => void;
  /** The 5-octet message prefix of unary answers; respondWhole copies it before returning. */
  private readonly prefix = Buffer.alloc(5);

  constructor(options: GrpcServerOptions) {
    this.methods = options.methods;
    this.maxMessage = options.maxMessage ?? 4 * 1024 * 1024;
    this.onError =
      options.onError ??
      (() => {
        // Answered INTERNAL; nothing else to do without a listener.
      });
  }

  /** The request body limit the HTTP/2 layer should enforce: one message and its prefix. */
  get maxBody(): number {
    return this.maxMessage + 5;
  }

  onRequest(s: H2Stream): void {
    // Whatever is wrong is answered once the request ended, as HTTP/2 expects of a server that
    // reads the whole request (content-length and flow control still apply to it).
    if (s.method !== "POST") s.context = NOT_POST;
    else if (!isGrpcContentType(s.header("content-type"))) s.context = NOT_GRPC;
    else s.context = this.methods.get(s.path) ?? UNKNOWN_METHOD;
  }

  onEnd(s: H2Stream): void {
    const m = s.context as GrpcMethod | NotGrpc | typeof UNKNOWN_METHOD;
    if (m === UNKNOWN_METHOD) {
      s.respond(trailersOnly(GrpcStatus.UNIMPLEMENTED, `unknown method ${s.path}`), true);
      return;
    }
    if (!("kind" in m)) {
      s.respond(m.head);
      s.data(m.body, undefined, true);
      return;
    }
    if (s.bodyTooLarge) {
      s.respond(trailersOnly(GrpcStatus.RESOURCE_EXHAUSTED, `request message larger than ${this.maxMessage} octets`), true);
      return;
    }
    const request = this.message(s);
    if (!request) return;
    if (m.kind === "server-stream") {
      const call = new Call(s);
      s.context = call;
      try {
        m.open(request, call);
      } catch (err) {
        this.failed(s, err);
      }
      return;
    }
    let response: Buffer | Promise<Buffer>;
    try {
      response = m.handle(request);
    } catch (err) {
      this.failed(s, err);
      return;
    }
    if (response instanceof Promise) {
      // The stream may close while the answer is computed; respondWhole then sends nothing.
      response.then(
        (r) => {
          s.respondWhole(HEAD, messagePrefix(this.prefix, r.length), r, TRAILERS_OK);
        },
        (err: unknown) => {
          if (!s.closed) this.failed(s, err);
        },
      );
      return;
    }
    s.respondWhole(HEAD, messagePrefix(this.prefix, response.length), response, TRAILERS_OK);
  }

  onAbort(s: H2Stream): void {
    if (s.context instanceof Call) s.context.cancel();
  }

  /** The one request message of a call, or undefined after answering the call with an error. */
  private message(s: H2Stream): Buffer | undefined {
    const body = s.bodyBuffer();
    const problem = messageProblem(body, s);
    if (problem === undefined) return body.subarray(5);
    s.respond(trailersOnly(problem[0], problem[1]), true);
    return undefined;
  }

  private failed(s: H2Stream, err: unknown): void {
    const grpc = err instanceof GrpcError;
    if (!grpc) this.onError(err);
    const code = grpc ? err.code : GrpcStatus.INTERNAL;
    const message = grpc ? err.message : "internal error";
    if (s.context instanceof Call) s.context.end(code, message);
    else s.respond(trailersOnly(code, message), true);
  }
}
