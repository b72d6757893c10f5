// Static checks of the CRD manifests: documented fields, shared limit schemas,
// the columns and names users rely on. The apiserver checks live in
// test/integration/crds.test.ts.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { crdFiles } from "../../src/k8s/apply.ts";

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
}
interface Crd {
  metadata: { name: string };
  spec: {
    names: { kind: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      subresources?: { status?: object };
      additionalPrinterColumns?: { name: string; jsonPath: string }[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

const crds = new Map<string, Crd>(crdFiles().map((f) => {
  const crd = parse(readFileSync(f, "utf8")) as Crd;
  return [crd.spec.names.kind, crd];
}));
const schemaOf = (kind: string): Schema => crds.get(kind)!.spec.versions[0]!.schema.openAPIV3Schema;

/** Paths of every field without a description (metadata is Kubernetes' own). */
function undocumented(s: Schema, path: string): string[] {
  const out: string[] = [];
  if (!s.description && path !== "metadata" && !path.endsWith(".metadata")) out.push(path || "<root>");
  for (const [k, v] of Object.entries(s.properties ?? {})) out.push(...undocumented(v, path ? `${path}.${k}` : k));
  if (s.items) out.push(...undocumented(s.items, `${path}[]`));
  if (typeof s.additionalProperties === "object") out.push(...undocumented(s.additionalProperties, `${path}{}`));
  return out;
}

describe("CRD manifests", () => {
  it("defines ApiKey and ApiKeyPolicy in keyward.dev/v1alpha1", () => {
    expect([...crds.keys()].sort()).toEqual(["ApiKey", "ApiKeyPolicy"]);
    for (const crd of crds.values()) {
      expect(crd.metadata.name.endsWith(".keyward.dev")).toBe(true);
      expect(crd.spec.versions.map((v) => v.name)).toEqual(["v1alpha1"]);
      expect(crd.spec.versions[0]!.subresources?.status).toBeDefined();
      expect(crd.spec.names.shortNames?.length).toBeGreaterThan(0);
      expect(crd.spec.names.categories).toContain("keyward");
    }
  });

  it.each(["ApiKey", "ApiKeyPolicy"])("documents every field of %s", (kind) => {
    expect(undocumented(schemaOf(kind), "")).toEqual([]);
  });

  it("shows owner, scopes, state, expiry, last use and age for ApiKeys", () => {
    const cols = crds.get("ApiKey")!.spec.versions[0]!.additionalPrinterColumns!.map((c) => c.name);
    expect(cols).toEqual(expect.arrayContaining(["Owner", "Scopes", "State", "Expires", "Last Used", "Age"]));
  });

  it("uses one schema for key limits, policy defaults and policy maximums", () => {
    const keyLimits = schemaOf("ApiKey").properties!.spec!.properties!.limits!.properties;
    const policy = schemaOf("ApiKeyPolicy").properties!.spec!.properties!;
    expect(policy.defaults!.properties).toEqual(keyLimits);
    expect(policy.maximums!.properties).toEqual(keyLimits);
  });

  it("shows hosts, rules, whether the policy is accepted, and age for ApiKeyPolicies", () => {
    const cols = crds.get("ApiKeyPolicy")!.spec.versions[0]!.additionalPrinterColumns!;
    expect(cols.map((c) => c.name)).toEqual(expect.arrayContaining(["Hosts", "Rules", "Accepted", "Age"]));
    // Every column reads a field the status schema has (a column on a field nobody writes stays empty).
    const status = schemaOf("ApiKeyPolicy").properties!.status!.properties!;
    for (const c of cols) {
      const field = /^\.status\.([a-zA-Z]+)/.exec(c.jsonPath)?.[1];
      if (field) expect(Object.keys(status), c.name).toContain(field);
    }
    expect(cols.find((c) => c.jsonPath.includes("Accepted"))).toBeDefined();
  });
});
