// HTTP/2 floods against keyward's gRPC ext_authz server (keyward's own HTTP/2 server).
//
//   node bench/floods.ts [--label after] [--only ping,rapid-reset,...] [--max-mib 40] [--idle-connections 10000] [--json out.json]
//
// For each attack: a fresh server (bench/servers/server.ts --mode authz, as the check bench
// starts it, with the chart's V8 flags) in a child process; a well-behaved client on its own
// connection sends Checks in a loop, 2 s alone (the idle p99), then during the attack on a
// second connection. Reported: what the attacker sent before keyward closed the connection
// (GOAWAY code), the server's peak RSS growth, and the well-behaved p99 beside it. Every
// attack is bounded in octets (--max-mib) and in time (10 s); loopback only.
import { writeFileSync } from "node:fs";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { PackageDefinition, ServiceDefinition } from "@grpc/proto-loader";
import { AUTHZ_SERVICE, loadProtos } from "../src/authz/proto.ts";
import { ErrorCode, Flag, FRAME_HEADER, FrameType, PREFACE, Setting, frame, rstStreamFrame, settingsFrame, windowUpdateFrame } from "../src/h2/frames.ts";
import { HpackEncoder } from "../src/h2/hpack.ts";
import { chartNodeOptions } from "./check.ts";
import { checkRequestFor, keyFor, rng } from "./lib/fixture.ts";
import { startServer, type ServerProc } from "./lib/proc.ts";

export interface FloodRow {
  attack: string;
  /** MiB the attacker got to send. */
  sentMiB: number;
  /** What happened to the attacking connection(s). */
  outcome: string;
  seconds: number;
  /** Peak growth of the server's RSS during the attack, in MiB. */
  rssGrowthMiB: number;
  /** Per attacking connection (the idle-connections attack has many). */
  rssPerConnectionMiB: number;
  idleP99Ms: number;
  attackP99Ms: number;
  /** Checks the well-behaved client got answered during the attack. */
  checks: number;
}

const ATTACK_MS = 10_000;
const KEYS = 1000;
const CHECK_PATH = `/${AUTHZ_SERVICE}/Check`;
const MiB = 1024 * 1024;

// ---- the well-behaved client ----------------------------------------------------

function checkMessage(): Buffer {
  const pkg: PackageDefinition = loadProtos();
  const svc = pkg[AUTHZ_SERVICE] as ServiceDefinition;
  const m = svc.Check;
  if (!m) throw new Error("Check is not in the loaded protos");
  const body = m.requestSerialize(checkRequestFor("valid", keyFor(1), rng(7)));
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** Checks in a loop, four at a time, on one connection; latencies in ms. */
class GoodClient {
  private readonly session: http2.ClientHttp2Session;
  private readonly message = checkMessage();
  private latencies: number[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(port: number) {
    this.session = http2.connect(`http://127.0.0.1:${port}`);
    this.session.on("error", () => undefined);
  }

  private one(): Promise<void> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const req = this.session.request({ ":method": "POST", ":path": CHECK_PATH, "content-type": "application/grpc", te: "trailers" });
      req.on("data", () => undefined);
      req.on("error", () => undefined);
      req.on("close", () => {
        this.latencies.push(performance.now() - t0);
        resolve();
      });
      req.end(this.message);
    });
  }

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: 4 }, async () => {
      while (this.running) await this.one();
    });
  }

  /** Stops the loops; returns the latencies since start. */
  async stop(): Promise<number[]> {
    this.running = false;
    await Promise.all(this.loops);
    const l = this.latencies;
    this.latencies = [];
    return l;
  }

  close(): void {
    this.session.destroy();
  }
}

function p99(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? NaN;
}

// ---- the server's memory --------------------------------------------------------

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Samples the RSS every 20 ms until stopped; returns the peak. */
function rssPeak(pid: number): { stop: () => number } {
  let peak = rssBytes(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // exited
    }
  }, 20);
  return {
    stop: () => {
      clearInterval(t);
      return peak;
    },
  };
}

// ---- attackers ------------------------------------------------------------------

interface AttackResult {
  sent: number;
  outcome: string;
  connections: number;
}

const enc = new HpackEncoder();
const REQUEST_BLOCK = enc.encode([
  [":method", "POST"],
  [":scheme", "http"],
  [":path", CHECK_PATH],
  [":authority", "keyward"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
]);

/** About a MiB of `one` over and over, built once: the attacker only writes during the attack. */
function repeat(one: Buffer): (i: number) => Buffer {
  const chunk = Buffer.concat(Array.from({ length: Math.max(1, Math.floor(MiB / one.length)) }, () => one));
  return () => chunk;
}
const headers = (sid: number, flags: number, block = REQUEST_BLOCK): Buffer => frame(FrameType.HEADERS, flags, sid, block);

/** The first GOAWAY's code in what the server sent, if any. */
class GoawayWatch {
  code: number | undefined = undefined;
  private buf: Buffer = Buffer.alloc(0);
  feed(chunk: Buffer): void {
    if (this.code !== undefined) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let off = 0;
    while (this.buf.length - off >= FRAME_HEADER) {
      const len = this.buf.readUIntBE(off, 3);
      if (this.buf.length - off - FRAME_HEADER < len) break;
      if (this.buf.readUInt8(off + 3) === FrameType.GOAWAY) {
        this.code = this.buf.readUInt32BE(off + FRAME_HEADER + 4);
        return;
      }
      off += FRAME_HEADER + len;
    }
    this.buf = Buffer.from(this.buf.subarray(off));
  }
}

const CODES = Object.fromEntries(Object.entries(ErrorCode).map(([k, v]) => [v, k])) as Record<number, string>;

/**
 * One connection: preface, `first`, then chunks from `next` (maxBytes of them) until ATTACK_MS, or the
 * server closed the connection. With read=false the attacker never reads.
 */
function flood(first: Buffer, next: (i: number) => Buffer, maxBytes: number, read = true): (port: number) => Promise<AttackResult> {
  // Everything is built before the server starts: the attack only writes.
  const chunks: Buffer[] = [];
  for (let n = 0, i = 0; n < maxBytes; i++) {
    const c = next(i);
    chunks.push(c);
    n += c.length;
  }
  return (port) => send(port, first, chunks, read);
}

async function send(port: number, first: Buffer, chunks: Buffer[], read: boolean): Promise<AttackResult> {
  const sock: Socket = connect(port, "127.0.0.1");
  sock.setNoDelay(true);
  const watch = new GoawayWatch();
  let closed = false;
  const closedP = new Promise<void>((resolve) =>
    sock.on("close", () => {
      closed = true;
      resolve();
    }),
  );
  const isClosed = (): boolean => closed;
  const feed = (c: Buffer): void => {
    watch.feed(c);
  };
  sock.on("error", () => undefined);
  if (read) sock.on("data", feed);
  else sock.pause();
  await new Promise<void>((resolve) => {
    sock.once("connect", () => {
      resolve();
    });
  });
  const t0 = performance.now();
  let sent = 0;
  const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const write = async (b: Buffer): Promise<void> => {
    sent += b.length;
    if (!sock.write(b)) await Promise.race([new Promise((r) => sock.once("drain", r)), closedP, pause(Math.max(0, ATTACK_MS - (performance.now() - t0)))]);
  };
  await write(Buffer.concat([PREFACE, settingsFrame([]), first]));
  for (const c of chunks) {
    if (isClosed() || performance.now() - t0 >= ATTACK_MS) break;
    await write(c);
  }
  // Give the server a moment to answer what it got.
  await Promise.race([closedP, pause(500)]);
  if (!read && !isClosed()) {
    // Read now, to see whether keyward said anything before it closed.
    sock.on("data", feed);
    sock.resume();
    await Promise.race([closedP, pause(500)]);
  }
  const code = watch.code;
  const outcome = code !== undefined ? `GOAWAY ${CODES[code] ?? String(code)}` : isClosed() ? "closed (no GOAWAY read)" : "still open";
  sock.destroy();
  return { sent, outcome, connections: 1 };
}

/** Stream ids 1, 3, 5, … across chunks of about a MiB. */
function perStream(make: (sid: number) => Buffer): (i: number) => Buffer {
  let sid = 1;
  return () => {
    const parts: Buffer[] = [];
    let n = 0;
    while (n < MiB && sid < 0x7fffff00) {
      const b = make(sid);
      sid += 2;
      parts.push(b);
      n += b.length;
    }
    return Buffer.concat(parts);
  };
}

/** An HPACK string length with a 7-bit prefix (no Huffman). */
function hpackLength(n: number): Buffer {
  const out = [n < 127 ? n : 127];
  for (let rest = n - 127; n >= 127 && rest >= 0; rest = -1) {
    let r = rest;
    while (r >= 128) {
      out.push((r & 0x7f) | 0x80);
      r >>>= 7;
    }
    out.push(r);
  }
  return Buffer.from(out);
}

async function idleConnections(port: number, count: number): Promise<AttackResult> {
  const socks: Socket[] = [];
  let failed = 0;
  const hello = Buffer.concat([PREFACE, settingsFrame([])]);
  for (let i = 0; i < count; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, count - i) }, () => {
        const s = connect(port, "127.0.0.1");
        s.on("error", () => undefined);
        s.on("data", () => undefined);
        socks.push(s);
        return new Promise<void>((resolve) => {
          s.once("connect", () => {
            s.write(hello);
            resolve();
          });
          s.once("close", () => {
            failed++;
            resolve();
          });
        });
      }),
    );
  }
  // Held for 3 s, idle.
  await new Promise((r) => setTimeout(r, 3000));
  const open = socks.filter((s) => !s.destroyed && s.readyState === "open").length;
  for (const s of socks) s.destroy();
  return { sent: count * hello.length, outcome: `${open.toLocaleString("en-US")} of ${count.toLocaleString("en-US")} open after 3 s${failed ? `, ${failed} refused` : ""}`, connections: count };
}

/** Builds what it sends, then returns what sends it. */
type Attack = (maxBytes: number, idleCount: number) => (port: number) => Promise<AttackResult>;

const ATTACKS: Record<string, { title: string; run: Attack }> = {
  "continuation-empty": {
    title: "zero-length CONTINUATION after HEADERS without END_HEADERS",
    run: (max) => flood(headers(1, Flag.END_STREAM, REQUEST_BLOCK.subarray(0, 3)), repeat(frame(FrameType.CONTINUATION, 0, 1)), max),
  },
  "continuation-small": {
    title: "one-octet CONTINUATION frames",
    run: (max) => flood(headers(1, Flag.END_STREAM, REQUEST_BLOCK.subarray(0, 3)), repeat(frame(FrameType.CONTINUATION, 0, 1, Buffer.from([0x80 | 2]))), max),
  },
  "data-empty": {
    title: "empty DATA frames",
    run: (max) => flood(headers(1, Flag.END_HEADERS), repeat(frame(FrameType.DATA, 0, 1)), max),
  },
  "data-small": {
    title: "one-octet DATA frames",
    run: (max) => flood(headers(1, Flag.END_HEADERS), repeat(frame(FrameType.DATA, 0, 1, Buffer.from([0]))), max),
  },
  settings: {
    title: "SETTINGS frames",
    run: (max) => flood(Buffer.alloc(0), repeat(settingsFrame([[Setting.ENABLE_PUSH, 0]])), max),
  },
  ping: {
    title: "PING frames",
    run: (max) => flood(Buffer.alloc(0), repeat(frame(FrameType.PING, 0, 0, Buffer.alloc(8))), max),
  },
  "ping-unread": {
    title: "PING frames, acknowledgements never read",
    run: (max) => flood(Buffer.alloc(0), repeat(frame(FrameType.PING, 0, 0, Buffer.alloc(8))), max, false),
  },
  "rapid-reset": {
    title: "HEADERS then RST_STREAM, stream after stream (Rapid Reset)",
    run: (max) => flood(Buffer.alloc(0), perStream((sid) => Buffer.concat([headers(sid, Flag.END_HEADERS), rstStreamFrame(sid, ErrorCode.CANCEL)])), max),
  },
  priority: {
    title: "PRIORITY frames",
    run: (max) => flood(Buffer.alloc(0), perStream((sid) => frame(FrameType.PRIORITY, 0, sid, Buffer.from([0, 0, 0, 0, 16]))), max),
  },
  "window-update": {
    title: "WINDOW_UPDATE frames",
    run: (max) => flood(Buffer.alloc(0), repeat(windowUpdateFrame(0, 1)), max),
  },
  "hpack-amplification": {
    title: "HPACK: 3,000 references to a 4,000-octet table entry per header block",
    run: (max) => {
      const insert = Buffer.concat([Buffer.from([0x40, 5]), Buffer.from("x-big"), hpackLength(4000), Buffer.alloc(4000, 0x61)]);
      const refs = Buffer.alloc(3000, 0x80 | 62);
      return flood(
        Buffer.alloc(0),
        perStream((sid) => headers(sid, Flag.END_HEADERS | Flag.END_STREAM, Buffer.concat(sid === 1 ? [REQUEST_BLOCK, insert, refs] : [REQUEST_BLOCK, refs]))),
        max,
      );
    },
  },
  "idle-connections": {
    title: "idle connections",
    run: (_max, count) => (port) => idleConnections(port, count),
  },
};

export function floodTable(rows: FloodRow[]): string[] {
  return [
    "| attack | sent (MiB) | outcome | seconds | RSS growth (MiB) | per connection (MiB) | well-behaved p99 idle / under attack (ms) | checks under attack |",
    "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |",
    ...rows.map(
      (r) =>
        `| ${r.attack} | ${r.sentMiB.toFixed(1)} | ${r.outcome} | ${r.seconds.toFixed(1)} | ${r.rssGrowthMiB.toFixed(1)} | ${r.rssPerConnectionMiB < 0.1 ? r.rssPerConnectionMiB.toFixed(3) : r.rssPerConnectionMiB.toFixed(1)} | ${r.idleP99Ms.toFixed(2)} / ${r.attackP99Ms.toFixed(2)} | ${r.checks.toLocaleString("en-US")} |`,
    ),
  ];
}

async function runAttack(name: string, maxBytes: number, idleCount: number, log: (s: string) => void): Promise<FloodRow> {
  const a = ATTACKS[name];
  if (!a) throw new Error(`unknown attack ${name}; known: ${Object.keys(ATTACKS).join(", ")}`);
  const attack = a.run(maxBytes, idleCount);
  const srv: ServerProc = await startServer(["--mode", "authz", "--keys", String(KEYS)], { nodeFlags: chartNodeOptions(), timeoutMs: 120_000 });
  try {
    const good = new GoodClient(srv.port);
    good.start();
    await new Promise((r) => setTimeout(r, 2000));
    const idle = await good.stop();
    const before = rssBytes(srv.pid);
    const peak = rssPeak(srv.pid);
    good.start();
    const t0 = performance.now();
    const res = await attack(srv.port);
    const seconds = (performance.now() - t0) / 1000;
    // The well-behaved client is measured for at least 3 s from the attack's start.
    await new Promise((r) => setTimeout(r, Math.max(0, 3000 - seconds * 1000)));
    const during = await good.stop();
    const growth = (peak.stop() - before) / MiB;
    good.close();
    const row: FloodRow = {
      attack: a.title,
      sentMiB: res.sent / MiB,
      outcome: res.outcome,
      seconds,
      rssGrowthMiB: growth,
      rssPerConnectionMiB: growth / res.connections,
      idleP99Ms: p99(idle),
      attackP99Ms: p99(during),
      checks: during.length,
    };
    log(`${name}: ${row.outcome} after ${row.sentMiB.toFixed(1)} MiB in ${seconds.toFixed(1)} s; RSS +${growth.toFixed(1)} MiB; p99 ${row.idleP99Ms.toFixed(2)} -> ${row.attackP99Ms.toFixed(2)} ms`);
    return row;
  } finally {
    await srv.stop();
  }
}

export async function runFloods(o: { only?: string[]; maxMiB?: number; idleConnections?: number; log?: (s: string) => void }): Promise<FloodRow[]> {
  const log = o.log ?? ((s: string) => process.stderr.write(`[floods] ${s}\n`));
  const rows: FloodRow[] = [];
  for (const name of o.only ?? Object.keys(ATTACKS)) rows.push(await runAttack(name, (o.maxMiB ?? 40) * MiB, o.idleConnections ?? 10_000, log));
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      label: { type: "string", default: "" },
      only: { type: "string" },
      "max-mib": { type: "string", default: "40" },
      "idle-connections": { type: "string", default: "10000" },
      json: { type: "string" },
    },
  });
  const rows = await runFloods({ ...(values.only ? { only: values.only.split(",") } : {}), maxMiB: Number(values["max-mib"]), idleConnections: Number(values["idle-connections"]) });
  if (values.json) writeFileSync(values.json, JSON.stringify({ label: values.label, at: new Date().toISOString(), rows }, null, 2) + "\n");
  process.stdout.write(`${values.label ? `### ${values.label}\n\n` : ""}${floodTable(rows).join("\n")}\n`);
}
