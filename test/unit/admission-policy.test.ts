// The ValidatingAdmissionPolicy that lets the data plane change only status.usage
// must name every other status field of the ApiKey CRD: a field added to the CRD
// and not to the policy would be writable by the data plane. These checks keep the
// policy, its chart copy and the CRD in step; test/integration/authz-status-policy.test.ts
// proves the policy against the apiserver.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { crdFiles, parseManifests } from "../../src/k8s/apply.ts";

const root = resolve(import.meta.dirname, "..", "..");
const POLICY_FILE = join(root, "config", "admission", "authz-status-policy.yaml");
const CHART_FILE = join(root, "charts", "keyward", "templates", "admission.yaml");

interface Policy {
  kind: string;
  metadata: { name: string };
  spec: {
    failurePolicy?: string;
    policyName?: string;
    validationActions?: string[];
    matchConstraints?: { resourceRules: { apiGroups: string[]; operations: string[]; resources: string[] }[] };
    matchConditions?: { name: string; expression: string }[];
    validations?: { expression: string; message: string }[];
  };
}

interface StatusSchema {
  properties?: Record<string, unknown>;
}
interface Crd {
  spec: { names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: { properties: { status: StatusSchema } } } }[] };
}

const docs = parseManifests(readFileSync(POLICY_FILE, "utf8")) as unknown as Policy[];
const policy = docs.find((d) => d.kind === "ValidatingAdmissionPolicy");
const binding = docs.find((d) => d.kind === "ValidatingAdmissionPolicyBinding");
const apiKeyCrd = crdFiles()
  .map((f) => parse(readFileSync(f, "utf8")) as Crd)
  .find((c) => c.spec.names.kind === "ApiKey");

const RULE = /^object\.\?status\.\?([A-Za-z]+) == oldObject\.\?status\.\?([A-Za-z]+)$/;

/** The status fields the policy keeps unchanged, one validation per field. */
function guardedFields(p: Policy | undefined): string[] {
  return (p?.spec.validations ?? []).map((v) => {
    const m = RULE.exec(v.expression);
    expect(m, `a validation of an unexpected form: ${v.expression}`).not.toBeNull();
    expect(m?.[1]).toBe(m?.[2]);
    expect(v.message).toContain(`status.${m?.[1] ?? ""}`);
    return m?.[1] ?? "";
  });
}

describe("the data plane's status admission policy", () => {
  it("keeps every ApiKey status field but usage unchanged, in every CRD version", () => {
    expect(apiKeyCrd).toBeDefined();
    const guarded = guardedFields(policy).sort();
    for (const v of apiKeyCrd?.spec.versions ?? []) {
      const fields = Object.keys(v.schema.openAPIV3Schema.properties.status.properties ?? {});
      expect(fields, `status fields of ApiKey ${v.name}`).toContain("usage");
      expect(guarded, `the policy must name every status field of ApiKey ${v.name} except usage`).toEqual(fields.filter((f) => f !== "usage").sort());
    }
    expect(guarded).not.toContain("usage");
  });

  it("applies to the data plane's updates of apikeys/status only, and denies", () => {
    expect(policy?.spec.failurePolicy).toBe("Fail");
    expect(policy?.spec.matchConstraints?.resourceRules).toEqual([
      { apiGroups: ["keyward.dev"], apiVersions: ["*"], operations: ["UPDATE"], resources: ["apikeys/status"] },
    ]);
    // The data plane's ServiceAccount in the shipped RBAC.
    const rbac = parseManifests(readFileSync(join(root, "config", "rbac", "authz-account.yaml"), "utf8")) as unknown as {
      kind: string;
      metadata: { name: string; namespace?: string };
    }[];
    const sa = rbac.find((o) => o.kind === "ServiceAccount");
    expect(policy?.spec.matchConditions).toEqual([
      { name: "data-plane-service-account", expression: `request.userInfo.username == 'system:serviceaccount:${sa?.metadata.namespace ?? ""}:${sa?.metadata.name ?? ""}'` },
    ]);
    expect(binding?.spec.policyName).toBe(policy?.metadata.name);
    expect(binding?.spec.validationActions).toEqual(["Deny"]);
  });

  it("is the same policy in the Helm chart", () => {
    // The chart template cannot be parsed as YAML before helm renders it; its validations
    // block is plain YAML and must be the same text (test/integration/chart.test.ts renders it).
    const block = (text: string): string => {
      const start = text.indexOf("  validations:\n");
      return text.slice(start, text.indexOf("---", start));
    };
    const chart = readFileSync(CHART_FILE, "utf8");
    expect(block(chart).length).toBeGreaterThan(100);
    expect(block(chart)).toBe(block(readFileSync(POLICY_FILE, "utf8")));
  });
});
