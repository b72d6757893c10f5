// JSON schemas for kubeconform, generated from a real apiserver's OpenAPI v2
// document (built-in kinds and every CRD it serves), so that manifests are validated
// offline against the Kubernetes version the suite runs, without kubeconform's
// default schema download.
//
// Layout: <dir>/_definitions.json holds every definition; <dir>/<group>/<kind>_<version>.json
// (the core group as "v1") refers to its own, matching kubeconform's
// -schema-location '<dir>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'.
// The schemas are strict: an object with declared properties admits no others
// (unless it preserves unknown fields), as the apiserver's strict field validation does.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeRest } from "../../src/k8s/rest.ts";
import { eventually } from "./k8s.ts";

/** kubeconform's -schema-location for a directory written by writeSchemas. */
export const schemaLocation = (dir: string): string => join(dir, "{{ .Group }}", "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json");

type Schema = Record<string, unknown>;
interface OpenApiV2 {
  definitions: Record<string, Schema & { "x-kubernetes-group-version-kind"?: { group: string; version: string; kind: string }[] }>;
}

const isObject = (v: unknown): v is Schema => typeof v === "object" && v !== null && !Array.isArray(v);

/** A definition made strict and JSON-schema friendly, recursively. */
function strict(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(strict);
  if (!isObject(s)) return s;
  // int-or-string fields (ports, maxSkew's siblings, PDB counts): OpenAPI v2 says string with a format.
  if (s.format === "int-or-string" || s["x-kubernetes-int-or-string"] === true) {
    const { type: _t, format: _f, ...rest } = s;
    return { ...rest, oneOf: [{ type: "string" }, { type: "integer" }] };
  }
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) out[k] = k === "properties" && isObject(v) ? Object.fromEntries(Object.entries(v).map(([p, ps]) => [p, strict(ps)])) : strict(v);
  if (isObject(s.properties) && s.additionalProperties === undefined && s["x-kubernetes-preserve-unknown-fields"] !== true) out.additionalProperties = false;
  return out;
}

const gvkOf = (g: { group: string; version: string; kind: string }): string => `${g.group === "" ? "" : `${g.group}/`}${g.version}/${g.kind}`;

/**
 * Writes the schemas of every kind the apiserver serves into `dir` and returns how many.
 * `kinds` ("group/version/Kind", "v1/Service" for the core group) must be among them: the
 * apiserver publishes a new CRD's schema a moment after the CRD is established, so the
 * document is read again until they are.
 */
export async function writeSchemas(rest: KubeRest, dir: string, kinds: readonly string[] = []): Promise<number> {
  const doc = await eventually(
    async () => {
      const d = await rest.request<OpenApiV2>("GET", "/openapi/v2", { accept: "application/json" });
      const served = new Set(Object.values(d.definitions).flatMap((def) => (def["x-kubernetes-group-version-kind"] ?? []).map(gvkOf)));
      return kinds.every((k) => served.has(k)) ? d : undefined;
    },
    30_000,
    `the apiserver's OpenAPI document to include ${kinds.join(", ")}`,
  );
  const definitions: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(doc.definitions)) definitions[name] = strict(def);
  // Quantities are strings or numbers in manifests ("500m", 1).
  definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = { oneOf: [{ type: "string" }, { type: "number" }] };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "_definitions.json"), JSON.stringify({ definitions }));
  let written = 0;
  for (const [name, def] of Object.entries(doc.definitions)) {
    for (const gvk of def["x-kubernetes-group-version-kind"] ?? []) {
      const group = gvk.group === "" ? gvk.version : gvk.group;
      mkdirSync(join(dir, group), { recursive: true });
      writeFileSync(join(dir, group, `${gvk.kind.toLowerCase()}_${gvk.version}.json`), JSON.stringify({ $ref: `../_definitions.json#/definitions/${name}` }));
      written++;
    }
  }
  return written;
}
