import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { send, type Reply } from "./http.test-support.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startLocalConsole, type LocalConsole, type UpstreamAnswer } from "./local.ts";
import { ConsoleFiles } from "./static.ts";

const SECRET = "s3cret-0123456789abcdefghijklmnopqrstuv";
let dir: string;
let local: LocalConsole;
let calls: string[] = [];
/** The If-None-Match each forwarded request carried. */
let tags: (string | undefined)[] = [];
let answer: () => Promise<UpstreamAnswer>;
let host: string;
let cookie: string;

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  return send(local.port, path, headers, method, host);
}

const authed = (extra: Record<string, string> = {}): Record<string, string> => ({ cookie, ...extra });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "keyward-local-"));
  writeFileSync(join(dir, "index.html"), "<html><head></head><body>console</body></html>");
  local = await startLocalConsole({
    port: 0,
    secret: SECRET,
    files: new ConsoleFiles({ webRoot: dir, uplotDir: dir }),
    upstream: {
      where: "https://apiserver.test/apis/usage.keyward.dev/v1alpha1/views/",
      get: (view, search, ifNoneMatch) => {
        calls.push(`${view}${search}`);
        tags.push(ifNoneMatch);
        return answer();
      },
    },
  });
  host = `127.0.0.1:${local.port}`;
  cookie = `keyward-console-${local.port}=${SECRET}`;
});

afterAll(async () => {
  await local.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  calls = [];
  tags = [];
  host = `127.0.0.1:${local.port}`;
  answer = () => Promise.resolve({ status: 200, body: '{"view":"inventory","items":[]}' });
});

describe("local console session", () => {
  it("prints a loopback URL with the session's secret", () => {
    expect(local.url).toBe(`http://127.0.0.1:${local.port}/?token=${SECRET}`);
  });

  it("exchanges the secret in the URL for an HttpOnly SameSite=Strict cookie, and drops it from the URL", async () => {
    const r = await get(`/?view=alerts&token=${SECRET}`);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe("/?view=alerts");
    expect(r.headers["set-cookie"]).toEqual([`keyward-console-${local.port}=${SECRET}; HttpOnly; SameSite=Strict; Path=/`]);
    const page = await get("/?view=alerts", authed());
    expect(page.status).toBe(200);
    expect(page.body).toContain("console");
  });

  it("refuses pages and views without the secret, or with a wrong or repeated one, before forwarding anything", async () => {
    for (const [path, headers] of [
      ["/", {}],
      ["/api/v1/inventory", {}],
      [`/api/v1/inventory?token=${SECRET}x`, {}],
      ["/?token=wrong", {}],
      [`/?token=${SECRET}&token=${SECRET}`, {}],
      ["/api/v1/inventory", { cookie: `keyward-console-${local.port}=${SECRET.slice(0, -1)}` }],
      ["/api/v1/inventory", { cookie: `keyward-console-1=${SECRET}` }],
      ["/api/v1/inventory", { authorization: `Bearer ${SECRET}` }],
    ] as const) {
      const r = await get(path, headers);
      expect(r.status, path).toBe(401);
      expect(r.body).not.toContain(SECRET);
    }
    expect(calls).toEqual([]);
  });

  it("answers only at the loopback name and port it printed (DNS rebinding)", async () => {
    for (const h of ["evil.example", `evil.example:${local.port}`, `127.0.0.1:${local.port + 1}`, `127.0.0.1.nip.io:${local.port}`, `[::1]:${local.port}`, ""]) {
      host = h;
      const r = await get("/api/v1/inventory", authed());
      expect(r.status, h).toBe(421);
      const t = await get(`/?token=${SECRET}`);
      expect(t.status, h).toBe(421);
      expect(t.headers["set-cookie"]).toBeUndefined();
    }
    host = `localhost:${local.port}`;
    expect((await get("/", authed())).status).toBe(200);
    expect(calls).toEqual([]);
  });

  it("refuses requests from another origin or site, even with the cookie, and never sends CORS headers", async () => {
    const refused: Record<string, string>[] = [{ origin: "https://evil.example" }, { origin: "null" }, { origin: `http://127.0.0.1:${local.port + 1}` }, { "sec-fetch-site": "cross-site" }];
    for (const headers of refused) {
      const r = await get("/api/v1/inventory", authed(headers));
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    }
    expect(calls).toEqual([]);
    const same = await get("/api/v1/inventory", authed({ origin: `http://127.0.0.1:${local.port}`, "sec-fetch-site": "same-origin" }));
    expect(same.status).toBe(200);
    expect(same.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("answers GET only: other methods and preflights are refused and never forwarded", async () => {
    for (const method of ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"]) {
      const r = await get("/api/v1/inventory", authed({ "content-length": "0", "access-control-request-method": "GET" }), method);
      expect(r.status, method).toBe(405);
      expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    }
    expect((await get("/api/v1/inventory", authed(), "HEAD")).status).toBe(405);
    expect(calls).toEqual([]);
  });
});

describe("local console forwarding", () => {
  it("forwards GET of a known view with its query, without the session's secret", async () => {
    const r = await get(`/api/v1/inventory?namespace=team-a&sort=name&token=${SECRET}`, authed());
    expect(r.status).toBe(200);
    expect(r.body).toBe('{"view":"inventory","items":[]}');
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.headers["cache-control"]).toBe("no-store");
    expect(calls).toEqual(["inventory?namespace=team-a&sort=name"]);
  });

  it("forwards nothing but the views: other paths of the apiserver are unreachable", async () => {
    for (const path of [
      "/api/v1/secrets",
      "/api/v1/namespaces/kube-system/secrets",
      "/api/v1/keys/../../v1/secrets",
      "/api/v1/keys%2F..%2F..%2Fsecrets",
      "/api/v1/",
      "/api/v1/inventory/",
      "/apis/usage.keyward.dev/v1alpha1/views/inventory",
      "/apis/keyward.dev/v1alpha1/apikeys",
      "/api/v1/__proto__",
    ]) {
      const r = await get(path, authed());
      expect(r.status, path).toBe(404);
    }
    expect(calls).toEqual([]);
  });

  it("forwards the page's If-None-Match and relays the ETag and a 304 back; a malformed tag goes nowhere", async () => {
    const tag = '"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"';
    answer = () => Promise.resolve({ status: 200, body: '{"view":"inventory","items":[]}', etag: tag });
    const first = await get("/api/v1/inventory", authed());
    expect(first).toMatchObject({ status: 200, headers: { etag: tag, "cache-control": "no-store" } });
    answer = () => Promise.resolve({ status: 304, body: "", etag: tag });
    const again = await get("/api/v1/inventory", authed({ "if-none-match": tag }));
    expect(again).toMatchObject({ status: 304, body: "", headers: { etag: tag, "x-frame-options": "DENY" } });
    for (const bad of ["not-a-tag", '"a" junk', `"${"a".repeat(2000)}"`, '"quote"inside"']) await get("/api/v1/inventory", authed({ "if-none-match": bad }));
    answer = () => Promise.resolve({ status: 200, body: "{}", etag: "bad tag" });
    expect((await get("/api/v1/inventory", authed())).headers.etag).toBeUndefined();
    expect(tags).toEqual([undefined, tag, undefined, undefined, undefined, undefined, undefined]);
  });

  it("passes the usage API's refusals on as {error}, turns apiserver Status objects into {error}, and answers 502 otherwise", async () => {
    answer = () => Promise.resolve({ status: 403, body: '{"error":"forbidden: you may not get apikeys where this request reads"}' });
    expect(await get("/api/v1/inventory?namespace=team-b", authed())).toMatchObject({ status: 403, body: '{"error":"forbidden: you may not get apikeys where this request reads"}' });
    answer = () => Promise.resolve({ status: 503, body: '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"service unavailable","code":503}' });
    expect(await get("/api/v1/inventory", authed())).toMatchObject({ status: 503, body: '{"error":"service unavailable"}' });
    answer = () => Promise.resolve({ status: 200, body: "<html>proxy login</html>" });
    expect((await get("/api/v1/inventory", authed())).status).toBe(502);
    answer = () => Promise.reject(new Error("ECONNREFUSED"));
    const down = await get("/api/v1/inventory", authed());
    expect(down.status).toBe(502);
    expect(down.body).toContain("could not be reached");
  });
});
