// The shipped proxy recipes (deploy/nginx, deploy/traefik) are what docs/authz.md
// shows, and each gives keyward only headers the proxy sets itself and strips the
// key before the upstream. The nginx recipe also runs against a real nginx in
// test/integration/authz-nginx.test.ts.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DEFAULT_CREDENTIALS } from "../../src/policy/policy.ts";

const root = join(import.meta.dirname, "..", "..");
const read = (p: string): string => readFileSync(join(root, p), "utf8");
const docs = read("docs/authz.md");

/** The directives of one nginx block (`location = /_keyward {` ... `}`), one per line, without comments. */
function block(conf: string, opening: string): string[] {
  const start = conf.indexOf(opening);
  expect(start, opening).toBeGreaterThanOrEqual(0);
  const lines: string[] = [];
  for (const line of conf.slice(start + opening.length).split("\n")) {
    const t = line.trim();
    if (t === "}") break;
    if (t !== "" && !t.startsWith("#")) lines.push(t);
  }
  return lines;
}

/** The fenced code blocks of docs/authz.md in a language. */
function fenced(lang: string): string[] {
  return [...docs.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1] ?? "");
}

describe("the nginx recipe (deploy/nginx/keyward.conf)", () => {
  const conf = read("deploy/nginx/keyward.conf");

  it("is the one docs/authz.md shows", () => {
    expect(fenced("nginx")).toContain(conf);
  });

  it("tells keyward the original method, URI and host itself, and drops the client's forwarding headers", () => {
    const auth = block(conf, "location = /_keyward {");
    for (const d of [
      "proxy_set_header Host $host;",
      "proxy_set_header X-Original-Method $request_method;",
      "proxy_set_header X-Original-URI $request_uri;",
      'proxy_set_header X-Forwarded-Method "";',
      'proxy_set_header X-Forwarded-Uri "";',
      'proxy_set_header X-Forwarded-Host "";',
    ]) {
      expect(auth).toContain(d);
    }
  });

  it("strips every header the default credentials read, and sends upstream the URI keyward judged", () => {
    const app = block(conf, "location / {");
    const names = [...DEFAULT_CREDENTIALS.headers, ...(DEFAULT_CREDENTIALS.bearer ? ["authorization"] : [])];
    for (const n of names) expect(app.map((d) => d.toLowerCase())).toContain(`proxy_set_header ${n} "";`);
    // The URI keyward judged, without the query parameters the key was in.
    expect(app).toContain("auth_request_set $kw_upstream_uri $upstream_http_x_keyward_upstream_uri;");
    expect(app).toContain("proxy_pass http://app$kw_upstream_uri;");
  });
});

describe("the Traefik recipe (deploy/traefik/keyward.yaml)", () => {
  const text = read("deploy/traefik/keyward.yaml");
  interface Recipe {
    http: {
      middlewares: Record<string, { forwardAuth?: { address: string; trustForwardHeader?: boolean; authResponseHeaders?: string[] }; headers?: { customRequestHeaders?: Record<string, string> } }>;
      routers: Record<string, { middlewares: string[] }>;
    };
  }
  const recipe = parse(text) as Recipe;

  it("is the one docs/authz.md shows", () => {
    expect(fenced("yaml")).toContain(text);
  });

  it("does not trust the client's X-Forwarded-* and passes the key id and owner on", () => {
    const fa = recipe.http.middlewares.keyward?.forwardAuth;
    expect(fa?.trustForwardHeader).toBe(false);
    expect(fa?.authResponseHeaders).toEqual(["X-Keyward-Key-Id", "X-Keyward-Owner"]);
  });

  it("removes every header the default credentials read, after keyward has seen the key", () => {
    const strip = recipe.http.middlewares["keyward-strip-key"]?.headers?.customRequestHeaders ?? {};
    const removed = Object.entries(strip)
      .filter(([, v]) => v === "")
      .map(([k]) => k.toLowerCase());
    expect(removed).toEqual(expect.arrayContaining([...DEFAULT_CREDENTIALS.headers, "authorization"]));
    for (const r of Object.values(recipe.http.routers)) expect(r.middlewares).toEqual(["keyward", "keyward-strip-key"]);
  });
});
