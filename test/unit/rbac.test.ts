// The shipped RBAC manifests: the namespaced install (config/rbac/namespaced/,
// applied in each watched namespace) grants exactly the rules of the cluster-wide
// ClusterRoles, binds the same ServiceAccounts, and names no namespace of its own.
// The tenant roles (config/rbac/tenant/): the viewer reads keys but never a Secret.
// test/integration/chart.test.ts checks the chart against these files.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseManifests } from "../../src/k8s/apply.ts";

const dir = join(resolve(import.meta.dirname, "..", ".."), "config", "rbac");

interface RbacObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: unknown[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}

const load = (file: string): RbacObject[] => parseManifests(readFileSync(join(dir, file), "utf8"), file) as unknown as RbacObject[];
const only = (objects: RbacObject[], kind: string): RbacObject => {
  const found = objects.filter((o) => o.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as RbacObject;
};

describe.each(["operator", "authz"])("RBAC of keyward-%s", (component) => {
  it("grants the same rules in a namespace as cluster-wide", () => {
    const clusterRole = only(load(`${component}-role.yaml`), "ClusterRole");
    const role = only(load(`namespaced/${component}-role.yaml`), "Role");
    expect(role.metadata.name).toBe(clusterRole.metadata.name);
    expect(role.rules).toEqual(clusterRole.rules);
    expect(role.metadata.namespace).toBeUndefined();
  });

  it("binds the same ServiceAccount in both installs", () => {
    const sa = only(load(`${component}-account.yaml`), "ServiceAccount");
    const subject = [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }];
    const cluster = only(load(`${component}-binding.yaml`), "ClusterRoleBinding");
    const namespaced = only(load(`namespaced/${component}-binding.yaml`), "RoleBinding");
    expect(cluster.subjects).toEqual(subject);
    expect(namespaced.subjects).toEqual(subject);
    expect(cluster.roleRef).toMatchObject({ kind: "ClusterRole", name: `keyward-${component}` });
    expect(namespaced.roleRef).toMatchObject({ kind: "Role", name: `keyward-${component}` });
    expect(namespaced.metadata.namespace).toBeUndefined();
  });
});

describe("the tenant roles of config/rbac/tenant/", () => {
  interface Rule {
    apiGroups: string[];
    resources: string[];
    verbs: string[];
  }
  const rulesOf = (file: string, name: string): Rule[] => {
    const role = only(load(file), "Role");
    expect(role.metadata).toMatchObject({ name });
    expect(role.metadata.namespace).toBeUndefined();
    return role.rules as Rule[];
  };
  const grants = (rules: Rule[], group: string, resource: string, verb: string): boolean =>
    rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));

  it("keyward-viewer reads ApiKeys, their status and Events, and nothing else: no Secret, no write", () => {
    const viewer = rulesOf("tenant/viewer-role.yaml", "keyward-viewer");
    for (const verb of ["get", "list", "watch"]) {
      expect(grants(viewer, "keyward.dev", "apikeys", verb), verb).toBe(true);
      expect(grants(viewer, "", "events", verb), verb).toBe(true);
    }
    // The usage API and the console answer for the namespaces where the caller may get apikeys.
    expect(grants(viewer, "keyward.dev", "apikeys/status", "get")).toBe(true);
    for (const r of viewer) {
      expect(r.verbs.filter((v) => !["get", "list", "watch"].includes(v)), JSON.stringify(r)).toEqual([]);
      expect(r.resources.filter((x) => x === "*" || x === "secrets" || x.startsWith("secrets/")), JSON.stringify(r)).toEqual([]);
      expect(r.apiGroups).not.toContain("*");
    }
  });

  it("keyward-viewer grants nothing the tenant Role does not, and leaves out its Secrets", () => {
    const tenant = rulesOf("tenant/role.yaml", "keyward-tenant");
    const viewer = rulesOf("tenant/viewer-role.yaml", "keyward-viewer");
    for (const r of viewer) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) expect(grants(tenant, g, res, v), `${g}/${res} ${v}`).toBe(true);
    expect(grants(tenant, "", "secrets", "get")).toBe(true);
    expect(grants(viewer, "", "secrets", "get")).toBe(false);
  });
});
