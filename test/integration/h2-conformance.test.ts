// keyward's own HTTP/2 server against h2spec (github.com/summerwind/h2spec), the
// HTTP/2 and HPACK conformance suite: every case, strict ones included, on the
// gRPC port as `keyward authz` serves it. Requests go to the Check path, so the
// cases exercise the gRPC front end's own answers too.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Checker } from "../../src/authz/check.ts";
import { startGrpcFront, type GrpcFront } from "../../src/authz/ext-authz-grpc.ts";
import { PolicyIndex } from "../../src/policy/policy.ts";
import { AUTHZ_SERVICE } from "../../src/authz/proto.ts";
import { KeyIndex } from "../../src/index/keys.ts";
import { Limiter } from "../../src/limits/limiter.ts";
import { buildTools, run } from "../conformance/tools.ts";

interface CaseResult {
  name: string;
  failure?: string;
  skipped: boolean;
}

/** The cases of h2spec's JUnit report (one <testcase> each, a <failure> or <skipped> inside when not passed). */
function parseJunit(xml: string): CaseResult[] {
  const out: CaseResult[] = [];
  for (const m of xml.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const attrs = m[1] ?? "";
    const body = m[2] ?? "";
    const name = /\bpackage="([^"]*)"/.exec(attrs)?.[1] ?? "";
    const title = /\bname="([^"]*)"/.exec(attrs)?.[1] ?? "";
    const failure = /<failure\b[^>]*>([\s\S]*?)<\/failure>|<failure\b([^>]*)\/>/.exec(body);
    out.push({ name: `${name} ${title}`.trim(), skipped: /<skipped\b/.test(body), ...(failure ? { failure: (failure[1] ?? failure[2] ?? "").trim() } : {}) });
  }
  return out;
}

describe("keyward's HTTP/2 server under h2spec", () => {
  let bin: string;
  let front: GrpcFront;
  let dir: string;

  beforeAll(async () => {
    bin = await buildTools();
    dir = mkdtempSync(join(tmpdir(), "keyward-h2spec-"));
    const checker = new Checker({ keys: new KeyIndex(), policies: new PolicyIndex(), limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 });
    front = await startGrpcFront({
      address: "127.0.0.1:0",
      transport: "keyward",
      checker,
      response: { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" },
      ready: () => true,
      onDecision: () => undefined,
      onError: (err) => {
        throw err;
      },
    });
  });

  afterAll(async () => {
    await front.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const strict of [false, true]) {
    it(`passes every ${strict ? "strict " : ""}case`, async () => {
      const report = join(dir, `h2spec${strict ? "-strict" : ""}.xml`);
      const args = ["-port", String(front.port), "-path", `/${AUTHZ_SERVICE}/Check`, "-junit", report, ...(strict ? ["-strict"] : [])];
      // A failing case makes h2spec exit 1; the report says which, so read it either way.
      const exit = await run(join(bin, "keyward-h2spec"), args, "").then(
        () => 0,
        (err: unknown) => err,
      );
      const cases = parseJunit(readFileSync(report, "utf8"));
      expect(cases.length).toBeGreaterThan(140);
      expect(cases.filter((c) => c.failure !== undefined).map((c) => `${c.name}: ${c.failure ?? ""}`)).toEqual([]);
      expect(cases.filter((c) => c.skipped).map((c) => c.name)).toEqual([]);
      expect(exit).toBe(0);
    });
  }
});
