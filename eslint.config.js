// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import { dirname, relative, resolve, sep } from "node:path";

// The layer map of src/, top to bottom (docs/architecture.md#layers is rendered
// from it and a unit test keeps the two equal). A unit is a folder of src/ or a
// file directly in src/ (main, deps, log, errors). A unit may import the units
// of the layers below its own, and, within its layer, only those SIDEWAYS names.
export const LAYERS = [
  { layer: "entry", units: { main: "wires the roles and the commands into the `keyward` command" } },
  {
    layer: "roles and commands",
    units: {
      operator: "the control plane: issues, rotates, expires and disables keys, writes ApiKey and ApiKeyPolicy status",
      authz: "the data plane: the Checker, credentials, limits per key, the gRPC and HTTP fronts, worker processes",
      usage: "usage aggregation, the `status.usage` flusher, the decision log, the alert evaluator's campaign",
      cli: "`keyward scan`, the `kubectl keyward` plugin and output tables",
    },
  },
  {
    layer: "shared by the roles",
    units: {
      alerts: "usage alerts from the analytics store: the rules, the one elected evaluator, Events, Alertmanager",
      analytics: "the analytics store: per-request rows and daily rollups on SQLite or PostgreSQL, the batched writer, the queries",
      check: "the check vocabulary: CheckInput, Decision, reasons, the client address, path rules, and the usage event of a check",
      apikeys: "the ApiKey watch usage and the data plane share, its views, and the compact record its cache keeps of each ApiKey",
      accesslog: "the Envoy Access Log Service receiver that usage starts",
      console: "the web console: its pages, the server that serves them, and the local server of `keyward console`",
      deps: "what main.ts hands every role (RoleDeps)",
    },
  },
  {
    layer: "domain",
    units: {
      policy: "the ApiKeyPolicy route table, label selectors and host ownership (read by the data plane, reported by the operator)",
      index: "the key index `sha256 → entry` and CIDR matching",
      limits: "rate limits and quotas, compiled and spent in memory",
      keys: "key material: generation, hashing, key ids, the key pattern scanners look for",
    },
  },
  {
    layer: "infrastructure",
    units: {
      k8s: "kubeconfig, the REST client, informers, work queue, leader election, Events, clocks",
      cluster: "the worker process pool and its aggregated metrics",
      grpc: "the gRPC layer on keyward's HTTP/2 server",
      h2: "keyward's HTTP/2 server",
      tls: "the TLS files of the check ports, loaded and swapped",
      metrics: "the /metrics and health endpoint, tallied counters and histograms",
      config: "the one typed configuration module",
    },
  },
  {
    layer: "base",
    units: {
      api: "TypeScript shapes of the resources and pure rules on them (claims, usage-only changes)",
      lifecycle: "one process's life: parts started in order, readiness, ordered stop on SIGTERM/SIGINT",
      util: "small helpers: durations, host:port, JSON equality, the Envoy proto directories",
      log: "JSON logs",
      errors: "typed errors with codes and causes",
    },
  },
];

/** Imports allowed within one layer (each must point down this list's own order: no cycles). */
export const SIDEWAYS = {
  alerts: ["analytics"],
  analytics: ["check"],
  policy: ["limits"],
  index: ["limits"],
  grpc: ["h2"],
  h2: ["tls"],
  api: ["util"],
  util: ["errors"],
  lifecycle: ["log", "errors"],
};

const SRC = resolve(import.meta.dirname, "src");

/** The unit of a file under src/ (`authz` for src/authz/x.ts, `log` for src/log.test.ts); undefined outside src/ (or `src`). */
export function unitOf(file, src = SRC) {
  const rel = relative(src, file);
  if (rel.startsWith("..") || rel === "") return undefined;
  const parts = rel.split(sep);
  return parts.length === 1 ? parts[0].replace(/(\.test)?\.ts$/, "") : parts[0];
}

/** The units `unit` may import, from LAYERS and SIDEWAYS; undefined for a unit not on the map. */
export function allowedImports(unit) {
  const at = LAYERS.findIndex((l) => unit in l.units);
  if (at === -1) return undefined;
  const below = LAYERS.slice(at + 1).flatMap((l) => Object.keys(l.units));
  return new Set([...below, ...(SIDEWAYS[unit] ?? [])]);
}

/** keyward/layers: a relative import from one unit of src/ into another must follow the layer map. */
const layersRule = {
  meta: {
    type: "problem",
    docs: { description: "imports between folders of src/ follow the layer map (docs/architecture.md#layers)" },
    schema: [],
    messages: {
      upward: "src/{{from}} may not import src/{{to}}: the layer map (eslint.config.js LAYERS, docs/architecture.md#layers) puts it {{where}}",
      unmapped: "src/{{unit}} is not on the layer map: add it to LAYERS in eslint.config.js and to docs/architecture.md#layers",
    },
  },
  create(context) {
    const from = unitOf(context.filename);
    if (from === undefined) return {};
    const allowed = allowedImports(from);
    const check = (node, source) => {
      if (!source || source.type !== "Literal" || typeof source.value !== "string" || !source.value.startsWith(".")) return;
      const to = unitOf(resolve(dirname(context.filename), source.value));
      if (to === undefined || to === from) return;
      if (allowed === undefined) {
        context.report({ node, messageId: "unmapped", data: { unit: from } });
        return;
      }
      if (allowed.has(to)) return;
      const ownLayer = LAYERS.findIndex((l) => from in l.units);
      const toLayer = LAYERS.findIndex((l) => to in l.units);
      const where = toLayer === -1 ? "nowhere (it is not on the map)" : toLayer === ownLayer ? "in the same layer" : "in a higher layer";
      context.report({ node, messageId: "upward", data: { from, to, where } });
    };
    return {
      ImportDeclaration: (node) => check(node, node.source),
      ExportNamedDeclaration: (node) => check(node, node.source),
      ExportAllDeclaration: (node) => check(node, node.source),
      ImportExpression: (node) => check(node, node.source),
    };
  },
};

export const keywardPlugin = { rules: { layers: layersRule } };

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "coverage/", ".cache/"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-console": "off",
      // client-node's model types are classes, but they are plain JSON with no
      // methods: object literals and spreads of them are what the API expects.
      "@typescript-eslint/no-unsafe-class-instance-assignment": "off",
      "@typescript-eslint/no-misused-spread": "off",
    },
  },
  {
    files: ["src/**/*.ts"],
    plugins: { keyward: keywardPlugin },
    rules: { "keyward/layers": "error" },
  },
  {
    files: ["**/*.test.ts", "test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    // The console's browser modules: checked JavaScript (src/console/web/tsconfig.json has the
    // DOM), so tsc, not no-undef, knows the browser's globals.
    files: ["src/console/web/**/*.js"],
    rules: { "no-undef": "off" },
  },
  {
    files: ["eslint.config.js"],
    ...tseslint.configs.disableTypeChecked,
  },
);
