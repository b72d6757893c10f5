// The CRDs against a real kube-apiserver: every sample is accepted, and every
// invalid object in the table is rejected with a message a user understands.
// The last test ties the table to the CRDs: each CEL rule's message must be
// expected by some case, so removing a rule makes its case fail.
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import { parseCidrs } from "../../src/index/cidr.ts";
import { applyManifestFiles, crdFiles } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";

const root = resolve(import.meta.dirname, "..", "..");
const samplesDir = join(root, "config", "samples");

let kc: KubeConfig;
let rest: KubeRest;
let ns: string;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc);
  ns = await createTestNamespace(kc, "crds");
});
afterAll(async () => {
  await deleteNamespace(kc, ns);
  rest.close();
});

const apiKey = (spec: Record<string, unknown>): KubernetesObject =>
  ({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKey", metadata: { name: "invalid" }, spec }) as KubernetesObject;
const policy = (spec: Record<string, unknown>): KubernetesObject =>
  ({ apiVersion: "keyward.dev/v1alpha1", kind: "ApiKeyPolicy", metadata: { name: "invalid" }, spec }) as KubernetesObject;
const rules = [{ paths: ["/v1/**"] }];

interface Case {
  name: string;
  object: KubernetesObject;
  /** A part of the apiserver's message that tells the user what is wrong. */
  message: string;
}

const hash = `sha256:${"a".repeat(64)}`;

const invalid: Case[] = [
  { name: "ApiKey without owner", object: apiKey({ scopes: ["a"] }), message: "spec.owner: Required value" },
  {
    name: "both existingSecret and keyHash",
    object: apiKey({ owner: "a", existingSecret: { name: "s" }, keyHash: hash }),
    message: "set at most one of existingSecret and keyHash",
  },
  {
    name: "secretName with keyHash",
    object: apiKey({ owner: "a", keyHash: hash, secretName: "x" }),
    message: "secretName is only for keys keyward issues",
  },
  {
    name: "prefix with existingSecret",
    object: apiKey({ owner: "a", existingSecret: { name: "s" }, prefix: "shop" }),
    message: "prefix is only for keys keyward issues",
  },
  {
    name: "rotation with keyHash",
    object: apiKey({ owner: "a", keyHash: hash, rotation: { every: "24h" } }),
    message: "rotation is only for keys keyward issues",
  },
  {
    name: "grace period as long as the rotation period",
    object: apiKey({ owner: "a", rotation: { every: "24h", gracePeriod: "24h" } }),
    message: "rotation.gracePeriod must be shorter than rotation.every",
  },
  {
    name: "rotation more often than once a minute",
    object: apiKey({ owner: "a", rotation: { every: "30s" } }),
    message: "rotation.every must be at least 1m",
  },
  {
    name: "rotation period that is not a duration",
    object: apiKey({ owner: "a", rotation: { every: "30d" } }),
    message: "spec.rotation.every: Invalid value",
  },
  {
    name: "burst below the rate",
    object: apiKey({ owner: "a", limits: { rate: { requests: 10, per: "1s", burst: 5 } } }),
    message: "rate.burst must be at least rate.requests",
  },
  {
    name: "rate period over a day",
    object: apiKey({ owner: "a", limits: { rate: { requests: 10, per: "48h" } } }),
    message: "rate.per must be between 1s and 24h",
  },
  {
    name: "quota per week",
    object: apiKey({ owner: "a", limits: { quota: { requests: 10, per: "week" } } }),
    message: 'spec.limits.quota.per: Unsupported value: "week"',
  },
  {
    name: "allowedSources entry that is not a CIDR",
    object: apiKey({ owner: "a", allowedSources: ["10.0.0.300/8"] }),
    message: "allowedSources entries must be CIDRs",
  },
  {
    name: "allowedSources entry with a leading zero",
    object: apiKey({ owner: "a", allowedSources: ["010.0.0.1"] }),
    message: "allowedSources entries must be CIDRs such as 203.0.113.0/24 or 2001:db8::/32, or single addresses",
  },
  {
    name: "keyHash that is not sha256",
    object: apiKey({ owner: "a", keyHash: "md5:0cc175b9c0f1b6a831c399e269772661" }),
    message: "spec.keyHash: Invalid value",
  },
  {
    name: "uppercase prefix",
    object: apiKey({ owner: "a", prefix: "Shop" }),
    message: "spec.prefix: Invalid value",
  },
  {
    name: "scope with a space",
    object: apiKey({ owner: "a", scopes: ["orders read"] }),
    message: "spec.scopes[0]: Invalid value",
  },
  {
    name: "expiresAt that is not a time",
    object: apiKey({ owner: "a", expiresAt: "next tuesday" }),
    message: "spec.expiresAt: Invalid value",
  },
  { name: "ApiKeyPolicy without rules", object: policy({ hosts: ["a.example.com"] }), message: "spec.rules: Required value" },
  {
    name: "ApiKeyPolicy without hosts",
    object: policy({ hosts: [], rules }),
    message: "spec.hosts: Invalid value",
  },
  {
    name: "host with a wildcard in the middle",
    object: policy({ hosts: ["api.*.example.com"], rules }),
    message: "hosts must be lowercase DNS names",
  },
  {
    name: "credentials that name no place",
    object: policy({ hosts: ["*"], rules, credentials: { bearer: false } }),
    message: "credentials must name at least one place to read the key from",
  },
  {
    name: "authorization listed as a plain header",
    object: policy({ hosts: ["*"], rules, credentials: { headers: ["authorization"] } }),
    message: "use bearer: true for the Authorization header",
  },
  {
    name: "relative rule path",
    object: policy({ hosts: ["*"], rules: [{ paths: ["v1/orders"] }] }),
    message: "rule paths must start with /",
  },
  {
    name: "** in the middle of a path",
    object: policy({ hosts: ["*"], rules: [{ paths: ["/v1/**/items"] }] }),
    message: "** may only appear once, as the last path segment",
  },
  {
    name: "query string in a rule path",
    object: policy({ hosts: ["*"], rules: [{ paths: ["/v1/orders?x=1"] }] }),
    message: "rule paths match the path only",
  },
  {
    name: "In without values",
    object: policy({ hosts: ["*"], rules, keys: { selector: { matchExpressions: [{ key: "tier", operator: "In" }] } } }),
    message: "In and NotIn need values",
  },
  {
    name: "duplicate rule names",
    object: policy({ hosts: ["*"], rules: [{ name: "a", paths: ["/a"] }, { name: "a", paths: ["/b"] }] }),
    message: "rule names must be unique within a policy",
  },
  {
    name: "unknown HTTP method",
    object: policy({ hosts: ["*"], rules: [{ paths: ["/a"], methods: ["FETCH"] }] }),
    message: 'Unsupported value: "FETCH"',
  },
  {
    name: "policy default burst below the rate",
    object: policy({ hosts: ["*"], rules, defaults: { rate: { requests: 10, per: "1s", burst: 1 } } }),
    message: "rate.burst must be at least rate.requests",
  },
  {
    name: "policy maximum rate period over 24h",
    object: policy({ hosts: ["*"], rules, maximums: { rate: { requests: 10, per: "48h" } } }),
    message: "rate.per must be between 1s and 24h",
  },
  {
    name: "policy maximum quota per week",
    object: policy({ hosts: ["*"], rules, maximums: { quota: { requests: 10, per: "week" } } }),
    message: 'spec.maximums.quota.per: Unsupported value: "week"',
  },
];

describe("CRDs on a real kube-apiserver", () => {
  it.each(readdirSync(samplesDir).filter((f) => f.endsWith(".yaml")))("accepts sample %s", async (file) => {
    const applied = await applyManifestFiles(rest, [join(samplesDir, file)], { namespace: ns });
    expect(applied.length).toBeGreaterThan(0);
    for (const obj of applied) expect(obj.metadata?.uid).toBeTruthy();
  });

  it.each(invalid.map((c) => [c.name, c] as const))("rejects %s", async (_name, c) => {
    const obj = { ...c.object, metadata: { ...c.object.metadata, namespace: ns } };
    const rejected = await rest.create(obj, { dryRun: true }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(rejected, `${c.name} was accepted`).toBeInstanceOf(KubeApiError);
    const apiErr = rejected as KubeApiError;
    expect(apiErr.status).toBe(422);
    expect(apiErr.message).toContain(c.message);
  });

  it("accepts exactly the allowedSources entries the data plane parses", async () => {
    const entries = [
      ...["10.0.0.0/8", "10.1.2.3", "10.1.2.3/32", "0.0.0.0/0", "10.0.0.1/8", "2001:db8::/32", "2001:db8::7", "2001:0db8::/32", "::/0", "::1", "64:ff9b::192.0.2.0/120"],
      ...["010.0.0.0/8", "10.0.0.01", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/33", " 10.0.0.0/8", "10.0.0.0/8 ", "fe80::1%eth0", "fe80::%eth0/64"],
      ...["::ffff:10.0.0.0/104", "::ffff:10.0.0.1", "[2001:db8::]/32", "2001:db8::/129", "10.1", "0x0a.0.0.0/8", "not-a-cidr"],
    ];
    const verdicts = await Promise.all(
      entries.map(async (entry) => {
        const obj = { ...apiKey({ owner: "a", keyHash: hash, allowedSources: [entry] }), metadata: { name: "sources", namespace: ns } };
        const apiserver = await rest.create(obj, { dryRun: true }).then(
          () => true,
          (err: unknown) => {
            if (err instanceof KubeApiError && err.status === 422) return false;
            throw err;
          },
        );
        let keyward = true;
        try {
          parseCidrs([entry]);
        } catch {
          keyward = false;
        }
        return { entry, apiserver, keyward };
      }),
    );
    expect(verdicts.filter((v) => v.apiserver !== v.keyward)).toEqual([]);
    expect(verdicts.filter((v) => v.keyward).length).toBe(11);
  });

  it("has a rejected case for every CEL rule in the CRDs", () => {
    const messages: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (typeof node === "object" && node !== null) {
        for (const [k, v] of Object.entries(node)) {
          if (k === "x-kubernetes-validations" && Array.isArray(v)) {
            for (const rule of v as { message: string }[]) messages.push(rule.message);
          } else walk(v);
        }
      }
    };
    for (const f of crdFiles()) walk(parse(readFileSync(f, "utf8")));
    expect(messages.length).toBeGreaterThanOrEqual(15);
    const uncovered = [...new Set(messages)].filter((m) => !invalid.some((c) => m.includes(c.message)));
    expect(uncovered).toEqual([]);
    expect(invalid.length).toBeGreaterThanOrEqual(15);
  });
});
