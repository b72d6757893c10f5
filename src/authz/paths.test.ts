// Paths are judged as the upstream will read them: a table of tricky paths, and
// random paths checked against independent models of how upstreams read a path.
import { isUtf8 } from "node:buffer";
import type { IncomingMessage } from "node:http";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../test/support/random.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { createLogger } from "../log.ts";
import { Checker } from "./check.ts";
import { decisionRecorder } from "./decisions.ts";
import { policy } from "../api/fixtures.test-support.ts";
import { checkResponder, toCheckInput } from "./check-messages.ts";
import { httpCheckInput } from "./http.ts";
import { createAuthzMetrics } from "./metrics.ts";
import { pathProblem, type PathProblem } from "../check/paths.ts";
import { PolicyIndex } from "../policy/policy.ts";

describe("pathProblem: tricky paths", () => {
  const cases: [string, PathProblem | undefined][] = [
    ["/", undefined],
    ["/v1/orders", undefined],
    ["/v1/orders/", undefined],
    ["/v1/orders?x=../../admin//;%2f", undefined],
    ["/v1/files/caf%C3%A9", undefined],
    ["/v1/files/a%20b", undefined],
    ["/v1/files/%E2%82%AC%F0%9F%98%80", undefined],
    ["/v1/a...b/...", undefined],
    ["/v1/~user/a-b_c.d:e@f!$&'()*+,=", undefined],
    ["/v1/orders/..", "dot_segment"],
    ["/v1/orders/../admin", "dot_segment"],
    ["/v1/./orders", "dot_segment"],
    ["/.", "dot_segment"],
    ["/..?x", "dot_segment"],
    ["/v1/..;/admin", "semicolon"],
    ["/v1/a;x/b", "semicolon"],
    ["/v1/orders;jsessionid=1", "semicolon"],
    ["/v1/%3B/b", "encoded_semicolon"],
    ["/v1/a%2fb", "encoded_slash"],
    ["/v1/a%2Fb", "encoded_slash"],
    ["/v1/a%5cb", "encoded_backslash"],
    ["/v1/a%5Cb", "encoded_backslash"],
    ["/v1/%2e%2e/admin", "encoded_dot"],
    ["/v1/%2E%2E/admin", "encoded_dot"],
    ["/v1/.%2e/admin", "encoded_dot"],
    ["/v1/a\\..\\admin", "backslash"],
    ["/v1\\admin", "backslash"],
    ["//admin", "empty_segment"],
    ["/v1//admin", "empty_segment"],
    ["/v1/%252e%252e/admin", "encoded_percent"],
    ["/v1/100%25", "encoded_percent"],
    ["/v1/a%00.json", "encoded_control"],
    ["/v1/a%0A", "encoded_control"],
    ["/v1/a%7F", "encoded_control"],
    ["/v1/a\u0000b", "control_char"],
    ["/v1/a b", "control_char"],
    ["/v1/a\tb", "control_char"],
    ["/v1/caf\u00e9", "non_ascii"],
    ["/v1/\uff0e\uff0e/admin", "non_ascii"],
    ["/v1/%6Frders", "encoded_unreserved"],
    ["/v1/%7E", "encoded_unreserved"],
    ["/v1/caf%c3%a9", "lowercase_escape"],
    ["/v1/caf%C3%a9", "lowercase_escape"],
    ["/v1/a%3a", "lowercase_escape"],
    ["/v1/a%", "bad_escape"],
    ["/v1/a%2", "bad_escape"],
    ["/v1/a%zz", "bad_escape"],
    ["/v1/%C0%AF", "invalid_utf8"],
    ["/v1/%C0%AE%C0%AE/admin", "invalid_utf8"],
    ["/v1/%E0%80%AF", "invalid_utf8"],
    ["/v1/%ED%A0%80", "invalid_utf8"],
    ["/v1/%F4%90%80%80", "invalid_utf8"],
    ["/v1/%C3", "invalid_utf8"],
    ["/v1/%A9", "invalid_utf8"],
    ["/v1/a%3Fb", "encoded_question_mark"],
    ["/v1/a%23b", "encoded_hash"],
    ["/v1/public#/../admin", "fragment"],
  ];

  it.each(cases)("%j -> %s", (path, want) => {
    expect(pathProblem(path)).toBe(want);
  });

  it("has at least 30 refused cases", () => {
    expect(cases.filter(([, p]) => p !== undefined).length).toBeGreaterThanOrEqual(30);
  });
});

// ---------------------------------------------------------------------------
// Models of how upstreams read a path, written independently of paths.ts. Each
// reads the path before the first "?" into a list of segments of bytes (as a
// latin1 string), or "ERROR" where that reader would refuse the request.

type Reading = readonly string[] | "ERROR";

const ERROR = "\u0000ERROR";

/** Percent-decodes once. strict: a "%" not followed by two hex digits is ERROR; lenient: it stays. */
function decode(s: string, strict: boolean): string {
  // Nothing to decode: most segments (the random paths' check reads each many times over).
  if (!s.includes("%")) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        out += String.fromCharCode(parseInt(hex, 16));
        i += 2;
        continue;
      }
      if (strict) return ERROR;
    }
    out += c;
  }
  return out;
}

/** RFC 3986 section 5.2.4. */
function removeDotSegments(input: string): string {
  let inp = input;
  let out = "";
  while (inp.length > 0) {
    if (inp.startsWith("../")) inp = inp.slice(3);
    else if (inp.startsWith("./")) inp = inp.slice(2);
    else if (inp.startsWith("/./")) inp = inp.slice(2);
    else if (inp === "/.") inp = "/";
    else if (inp.startsWith("/../")) {
      inp = inp.slice(3);
      out = out.slice(0, Math.max(0, out.lastIndexOf("/")));
    } else if (inp === "/..") {
      inp = "/";
      out = out.slice(0, Math.max(0, out.lastIndexOf("/")));
    } else if (inp === "." || inp === "..") inp = "";
    else {
      const next = inp.indexOf("/", 1);
      const seg = next === -1 ? inp : inp.slice(0, next);
      out += seg;
      inp = inp.slice(seg.length);
    }
  }
  return out;
}

/** RFC 3986 section 6.2.2: uppercase escapes, decode unreserved, remove dot segments. */
function rfc3986Normalize(path: string): string {
  const escapes = path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
  return removeDotSegments(escapes);
}

const pathPart = (p: string): string => {
  const q = p.indexOf("?");
  return q === -1 ? p : p.slice(0, q);
};

const segmentsOf = (decoded: string): Reading => (decoded === ERROR ? "ERROR" : decoded.split("/").slice(1));

/** Split on "/", then decode each segment: what an RFC 3986 router does. */
function literal(p: string, strict: boolean): Reading {
  const segs: string[] = [];
  for (const raw of pathPart(p).split("/").slice(1)) {
    const d = decode(raw, strict);
    if (d === ERROR) return "ERROR";
    segs.push(d);
  }
  return segs;
}

function beyondLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return true;
  return false;
}

const READERS: Record<string, (p: string) => Reading> = {
  "split, then decode (strict)": (p) => literal(p, true),
  "split, then decode (lenient)": (p) => literal(p, false),
  "RFC 3986 normal form": (p) => literal(rfc3986Normalize(pathPart(p)), false),
  "decode, then split and resolve dot segments": (p) => {
    const d = decode(pathPart(p), false);
    return segmentsOf(d === ERROR ? d : removeDotSegments(d));
  },
  "decode the whole target, then cut at ? and #": (p) => {
    const d = decode(pathPart(p), false);
    return segmentsOf(d === ERROR ? d : d.split(/[?#]/)[0]!);
  },
  "cut at #": (p) => literal(pathPart(p).split("#")[0]!, false),
  "merge slashes": (p) => literal(pathPart(p).replace(/\/+/g, "/"), false),
  "backslash is a separator": (p) => {
    const d = decode(pathPart(p).replaceAll("\\", "/"), false);
    return segmentsOf(d === ERROR ? d : removeDotSegments(d.replaceAll("\\", "/")));
  },
  "path parameters stripped (;...)": (p) => {
    const d = decode(pathPart(p).replace(/;[^/]*/g, ""), false);
    return segmentsOf(d === ERROR ? d : removeDotSegments(d.replace(/;[^/]*/g, "")));
  },
  "decoded twice": (p) => {
    const once = decode(pathPart(p), false);
    const twice = once === ERROR ? once : decode(once, true);
    return segmentsOf(twice === ERROR ? twice : removeDotSegments(twice));
  },
  "control characters dropped after decoding": (p) => {
    const r = literal(p, false);
    // eslint-disable-next-line no-control-regex
    return r === "ERROR" ? r : r.map((s) => s.replace(/[\u0000-\u001f\u007f]/g, ""));
  },
  "UTF-8 decoding (fatal)": (p) => {
    const r = literal(p, false);
    if (r === "ERROR") return r;
    for (const s of r) {
      // Raw non-ASCII (a code unit past 0xff) is not bytes; ASCII alone is valid UTF-8.
      if (beyondLatin1(s) || !/[\u0080-\u00ff]/.test(s)) continue;
      if (!isUtf8(Buffer.from(s, "latin1"))) return "ERROR";
    }
    return r;
  },
};

/** The readers that read `p` differently from splitting and decoding it, plus "RFC 3986" when it is not its own normal form. */
function disagreements(p: string): string[] {
  const base = JSON.stringify(literal(p, false));
  const out = Object.entries(READERS)
    .filter(([, read]) => JSON.stringify(read(p)) !== base)
    .map(([name]) => name);
  if (rfc3986Normalize(pathPart(p)) !== pathPart(p)) out.push("RFC 3986 (raw)");
  return out;
}

// Refused by choice although every modelled reader agrees: characters that cannot
// travel in an HTTP/1.1 request line as they are (RFC 9112), which proxies pass,
// reject or escape differently.
const REFUSED_BY_CHOICE: readonly PathProblem[] = ["control_char", "non_ascii"];

const TOKENS = [
  ..."//....;%25efc\\aabbAZ09~-_:@!=,".split(""),
  "..",
  "%2e",
  "%2E",
  "%2f",
  "%2F",
  "%5c",
  "%5C",
  "%25",
  "%252e",
  "%3B",
  "%3b",
  "%41",
  "%7E",
  "%20",
  "%00",
  "%0a",
  "%C3%A9",
  "%c3%a9",
  "%C0%AF",
  "%E2%82%AC",
  "%F0%9F%98%80",
  "%E2%82",
  "%3F",
  "%23",
  "#",
  "?",
  "\u00e9",
  " ",
  "\t",
  "seg",
  "v1",
];

describe("pathProblem: random paths", () => {
  // Twelve models of an upstream read each of 20,000 paths: about 0.6 s of CPU, so more than the
  // default 5 s on a loaded machine. The count is the point (a fresh seed each run).
  it("accepts exactly the paths every modelled upstream reads the same way", { timeout: 30_000 }, () => {
    const seed = Number(process.env.KEYWARD_PATHS_SEED ?? Date.now() % 2 ** 31);
    const rand = seededRandom(seed);
    let accepted = 0;
    // The paths that break a property, each with why; compared once at the end (an expect per path costs more than judging it).
    const broken: string[] = [];
    for (let n = 0; n < 20_000; n++) {
      let p = "/";
      const len = 1 + Math.floor(rand() * 10);
      for (let k = 0; k < len; k++) p += TOKENS[Math.floor(rand() * TOKENS.length)] ?? "";
      const problem = pathProblem(p);
      const differ = disagreements(p);
      const where = (): string => `seed ${seed} (KEYWARD_PATHS_SEED), path ${JSON.stringify(p)}, problem ${problem ?? "none"}, read differently by: ${differ.join("; ") || "none"}`;
      if (problem === undefined) {
        accepted++;
        // Every accepted path is read identically (and is its own RFC 3986 normal form).
        if (differ.length) broken.push(`accepted, yet read differently: ${where()}`);
      } else if (differ.length === 0 && !REFUSED_BY_CHOICE.includes(problem)) {
        // A refused path every reader agrees on is refused only by documented choice.
        broken.push(`refused, though every reader agrees, not by a documented choice: ${where()}`);
      }
    }
    expect(broken).toEqual([]);
    // The generator must produce enough accepted paths for the first property to mean something.
    expect(accepted, `seed ${seed}`).toBeGreaterThan(1000);
  });
});

describe("refused paths through the Checker, on both fronts", () => {
  const checker = (): Checker<Limiter> => {
    const policies = new PolicyIndex();
    policies.apply("add", policy("shop", "all", {}));
    return new Checker({ keys: new KeyIndex(), policies, limiter: new Limiter(), now: () => 0, xffTrustedHops: 0 });
  };
  const OPTS = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

  it("denies 403 path_not_normalized with the problem in Envoy's metadata and in the log line", () => {
    const c = checker();
    const respond = checkResponder(OPTS, (m) => Buffer.from(JSON.stringify(m)));
    const lines: string[] = [];
    const record = decisionRecorder({
      front: "grpc",
      metrics: createAuthzMetrics(new Registry(), { keys: () => 0, apiKeys: () => 0, policies: () => 0 }),
      log: createLogger({ level: "info", sink: (l) => lines.push(l) }),
    });
    const problems: [string, PathProblem][] = [
      ["/public/..;/admin", "semicolon"],
      ["/public/%2e%2e/admin", "encoded_dot"],
      ["/public/..;/admin", "semicolon"],
      ["/public//admin", "empty_segment"],
    ];
    for (const [path, problem] of problems) {
      const grpc = c.check(toCheckInput({ attributes: { request: { http: { method: "GET", host: "a.example", path, headers: { "x-api-key": "k" } } } } }));
      expect(grpc).toMatchObject({ reason: "path_not_normalized", status: 403, pathProblem: problem });
      // The cached answer of one problem is never served for another.
      const raw = respond(grpc);
      const answer = JSON.parse(Buffer.isBuffer(raw) ? raw.toString() : JSON.stringify(raw)) as { status: { code: number }; dynamic_metadata: { fields: Record<string, { stringValue: string }> } };
      expect(answer.status.code).toBe(7);
      expect(answer.dynamic_metadata.fields.path_problem).toEqual({ stringValue: problem });
      const http = c.check(httpCheckInput("envoy")({ headers: { host: "a.example" }, rawHeaders: ["Host", "a.example"], method: "GET", url: path } as unknown as IncomingMessage));
      expect(http).toEqual(grpc);
      record(grpc, 0, undefined, false);
    }
    expect(lines.map((l) => (JSON.parse(l) as { path_problem?: string }).path_problem)).toEqual(problems.map(([, p]) => p));
  });
});
