// The Envoy and Istio configurations the docs show are the files under deploy/envoy/ and
// deploy/istio/, which the integration suite runs with a real Envoy:
// - a fenced block right after `<!-- file: PATH -->` is that whole file, byte for byte;
// - a fenced block right after `<!-- excerpt: PATH -->` is a run of consecutive lines of it,
//   shifted left as a whole (the same relative indentation);
// - any other fenced block in the docs that holds Envoy or Istio configuration fails here, so
//   a snippet cannot be added without a file that runs;
// - every file under deploy/envoy/ is started by an integration test.
// The Istio-shaped Envoy files are checked against the extension providers users apply: the
// ext_authz filter in each is what istiod renders from the provider.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { fillTemplate } from "../e2e/envoy.ts";

const root = join(import.meta.dirname, "..", "..");
const read = (p: string): string => readFileSync(join(root, p), "utf8");

/** The docs users copy from: every Markdown file under docs/ (decision records aside) and the README. */
const DOCS = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** What marks a block as Envoy or Istio configuration. */
const ENVOY_OR_ISTIO = /type\.googleapis\.com\/envoy|envoy\.(filters|access_loggers|transport_sockets)\.|security\.istio\.io|extensionProviders|envoyExtAuthz/;

interface Block {
  doc: string;
  line: number;
  text: string;
  marker?: { kind: "file" | "excerpt"; path: string };
}

/** The fenced code blocks of a Markdown file, with the marker comment on the line before each. */
function blocks(doc: string): Block[] {
  const lines = read(doc).split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```\S*$/.exec(lines[i] ?? "");
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && lines[end] !== "```") end++;
    const m = /^<!-- (file|excerpt): (\S+) -->$/.exec(lines[i - 1] ?? "");
    out.push({ doc, line: i + 1, text: lines.slice(i + 1, end).join("\n") + "\n", marker: m ? { kind: m[1] as "file" | "excerpt", path: m[2] ?? "" } : undefined });
    i = end;
  }
  return out;
}

const indent = (l: string): number => l.length - l.trimStart().length;

/** True when `excerpt`'s lines are consecutive lines of `file`, all shifted by one indentation. */
function isExcerpt(excerpt: string, file: string): boolean {
  const want = excerpt.replace(/\n$/, "").split("\n");
  const have = file.split("\n");
  const first = want[0] ?? "";
  for (let i = 0; i + want.length <= have.length; i++) {
    const shift = indent(have[i] ?? "") - indent(first);
    if (shift < 0) continue;
    const pad = " ".repeat(shift);
    if (want.every((l, j) => (l.trim() === "" ? (have[i + j] ?? "").trim() === "" : have[i + j] === pad + l))) return true;
  }
  return false;
}

const all = DOCS.flatMap(blocks);

describe("Envoy and Istio snippets in the docs", () => {
  it("every one is a file under deploy/ or an excerpt of one", () => {
    const unmarked = all.filter((b) => !b.marker && ENVOY_OR_ISTIO.test(b.text)).map((b) => `${b.doc}:${String(b.line)}`);
    expect(unmarked).toEqual([]);
  });

  const marked = all.filter((b) => b.marker);
  it("the docs mark the recipes", () => {
    expect(marked.length).toBeGreaterThanOrEqual(6);
  });

  for (const b of marked) {
    const m = b.marker;
    if (!m) continue;
    it(`${b.doc}:${String(b.line)} is ${m.kind === "file" ? "the whole of" : "an excerpt of"} ${m.path}`, () => {
      expect(m.path).toMatch(/^deploy\//);
      const file = read(m.path);
      if (m.kind === "file") expect(b.text).toBe(file);
      else expect(isExcerpt(b.text, file), `${b.doc}:${String(b.line)} is not a run of lines of ${m.path}`).toBe(true);
    });
  }

  it("excerpts are found with their indentation, not otherwise", () => {
    const file = "a:\n  b:\n    c: 1\n    d: 2\n  e: 3\n";
    expect(isExcerpt("b:\n  c: 1\n  d: 2\n", file)).toBe(true);
    expect(isExcerpt("c: 1\nd: 2\n", file)).toBe(true);
    expect(isExcerpt("b:\nc: 1\n", file)).toBe(false);
    expect(isExcerpt("c: 1\ne: 3\n", file)).toBe(false);
  });
});

describe("deploy/envoy/", () => {
  const files = readdirSync(join(root, "deploy", "envoy")).filter((f) => f.endsWith(".yaml"));
  const tests = readdirSync(join(root, "test", "integration")).map((f) => read(`test/integration/${f}`)).join("\n");
  for (const f of files) {
    it(`${f} runs in an integration test with a real Envoy`, () => {
      expect(tests.includes(`startEnvoy("${f}"`), `no test calls startEnvoy("${f}", ...)`).toBe(true);
    });
  }
});

interface Provider {
  name: string;
  envoyExtAuthzGrpc?: { service: string; port: number; timeout: string; failOpen: boolean };
  envoyExtAuthzHttp?: {
    service: string;
    port: number;
    timeout: string;
    failOpen: boolean;
    pathPrefix: string;
    includeRequestHeadersInCheck: string[];
    headersToUpstreamOnAllow: string[];
    headersToDownstreamOnAllow: string[];
    headersToDownstreamOnDeny: string[];
  };
}

/** Header names as istiod lists them in an Envoy ListStringMatcher. */
const patterns = (names: readonly string[]) => ({ patterns: names.map((exact) => ({ exact, ignore_case: true })) });

/** istiod's outbound cluster name for a Service port. */
const cluster = (service: string, port: number): string => `outbound|${String(port)}||${service}`;

/** The ext_authz filter config istiod renders for a CUSTOM policy naming this provider (the fields keyward relies on). */
function rendered(p: Provider): Record<string, unknown> {
  const common = {
    failure_mode_allow: false,
    status_on_error: { code: "Forbidden" },
    filter_enabled_metadata: { filter: "envoy.filters.http.rbac", path: [{ key: "istio_ext_authz_shadow_effective_policy_id" }], value: { string_match: { prefix: "istio-ext-authz" } } },
  };
  if (p.envoyExtAuthzGrpc) {
    const g = p.envoyExtAuthzGrpc;
    const name = cluster(g.service, g.port);
    return { ...common, failure_mode_allow: g.failOpen, grpc_service: { envoy_grpc: { cluster_name: name, authority: name.replaceAll("|", "_.") }, timeout: g.timeout } };
  }
  const h = p.envoyExtAuthzHttp;
  if (!h) throw new Error(`provider ${p.name} is neither gRPC nor HTTP`);
  return {
    ...common,
    failure_mode_allow: h.failOpen,
    allowed_headers: patterns(h.includeRequestHeadersInCheck),
    http_service: {
      path_prefix: h.pathPrefix,
      server_uri: { uri: `http://${h.service}`, cluster: cluster(h.service, h.port), timeout: h.timeout },
      authorization_response: {
        allowed_upstream_headers: patterns(h.headersToUpstreamOnAllow),
        allowed_client_headers_on_success: patterns(h.headersToDownstreamOnAllow),
        allowed_client_headers: patterns(h.headersToDownstreamOnDeny),
      },
    },
  };
}

/** The ext_authz filter's typed_config in an Envoy file from deploy/envoy/ (placeholders filled with numbers). */
function extAuthzOf(file: string): Record<string, unknown> {
  const text = fillTemplate(read(`deploy/envoy/${file}`), new Proxy({}, { get: () => 1 }));
  interface Filter { name: string; typed_config: Record<string, unknown> }
  const cfg = parse(text) as { static_resources: { listeners: { filter_chains: { filters: { typed_config: { http_filters: Filter[] } }[] }[] }[] } };
  const filters = cfg.static_resources.listeners[0]?.filter_chains[0]?.filters[0]?.typed_config.http_filters ?? [];
  expect(filters.map((f) => f.name)).toEqual(["envoy.filters.http.rbac", "envoy.filters.http.ext_authz", "envoy.filters.http.router"]);
  return filters[1]?.typed_config ?? {};
}

describe("the Istio recipe (deploy/istio/)", () => {
  const providers = (parse(read("deploy/istio/extension-providers.yaml")) as { meshConfig: { extensionProviders: Provider[] } }).meshConfig.extensionProviders;
  const policy = parse(read("deploy/istio/authorization-policy.yaml")) as { spec: { action: string; provider: { name: string }; rules: unknown[] } };

  it("has a gRPC and an HTTP provider for keyward, and a CUSTOM policy naming one, with a rule for every request", () => {
    expect(providers.map((p) => p.name)).toEqual(["keyward-grpc", "keyward-http"]);
    expect(policy.spec.action).toBe("CUSTOM");
    expect(providers.map((p) => p.name)).toContain(policy.spec.provider.name);
    expect(policy.spec.rules).toEqual([{}]);
  });

  for (const [name, file] of [["keyward-grpc", "istio-grpc.yaml"], ["keyward-http", "istio-http.yaml"]] as const) {
    it(`deploy/envoy/${file} holds the ext_authz filter istiod renders from ${name}`, () => {
      const p = providers.find((x) => x.name === name);
      expect(p).toBeDefined();
      if (p) expect(extAuthzOf(file)).toMatchObject(rendered(p));
    });
  }

  it("keyward's HTTP front is told the path prefix the HTTP provider sends", () => {
    const docs = read("docs/istio.md");
    expect(docs).toContain(`--http-auth-path-prefix=${providers[1]?.envoyExtAuthzHttp?.pathPrefix ?? "?"}`);
  });
});
