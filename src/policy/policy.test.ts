import { describe, expect, it } from "vitest";
import { parseHostAssignments } from "./hosts.ts";
import { PolicyIndex } from "./policy.ts";
import { policy } from "../api/fixtures.test-support.ts";

describe("policy route table", () => {
  // An administrator let namespace `other` claim `*` (host-owners: *=other).
  const idx = new PolicyIndex(parseHostAssignments(["*=other"]));
  idx.apply(
    "add",
    policy("shop", "orders", {
      hosts: ["orders.example.com", "*.orders.example.com"],
      rules: [
        { name: "everything", paths: ["/**"], scopes: ["admin"] },
        { name: "v1-prefix", paths: ["/v1/**"], scopes: ["v1"] },
        { name: "one-order", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "order-items", paths: ["/v1/orders/*/items"], scopes: ["items"] },
        { name: "list", paths: ["/v1/orders"], methods: ["GET", "HEAD"], scopes: ["orders:read"] },
        { name: "create", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
        { name: "list-any", paths: ["/v1/orders"], scopes: ["orders:any"] },
        { name: "special", paths: ["/v1/orders/special"], scopes: ["special"] },
      ],
    }),
  );
  idx.apply("add", policy("other", "catch-all", { hosts: ["*"], rules: [{ name: "any-host", paths: ["/public/**"] }] }));
  const m = (host: string, path: string, method = "GET"): string | undefined => idx.table.match(host, path, method)?.name;

  it("prefers exact paths, then fewer wildcards, then longer prefixes", () => {
    expect(m("orders.example.com", "/v1/orders")).toBe("list");
    expect(m("orders.example.com", "/v1/orders/special")).toBe("special");
    expect(m("orders.example.com", "/v1/orders/42")).toBe("one-order");
    expect(m("orders.example.com", "/v1/orders/42/items")).toBe("order-items");
    expect(m("orders.example.com", "/v1/customers")).toBe("v1-prefix");
    expect(m("orders.example.com", "/v1")).toBe("v1-prefix");
    expect(m("orders.example.com", "/v2/x")).toBe("everything");
    expect(m("orders.example.com", "/")).toBe("everything");
  });

  it("gives each rule its path pattern once, when compiled: what routes and responses say", () => {
    const rule = (host: string, path: string, method = "GET") => idx.table.match(host, path, method);
    const patterns = [rule("orders.example.com", "/v2/x"), rule("orders.example.com", "/v1/x"), rule("orders.example.com", "/v1/orders/42"), rule("orders.example.com", "/v1/orders/42/items"), rule("orders.example.com", "/v1/orders"), rule("a.example", "/public/x")].map((r) => r?.pattern);
    expect(patterns).toEqual(["/**", "/v1/**", "/v1/orders/*", "/v1/orders/*/items", "/v1/orders", "/public/**"]);
  });

  it("prefers a rule that names the method over one that names none", () => {
    expect(m("orders.example.com", "/v1/orders", "POST")).toBe("create");
    expect(m("orders.example.com", "/v1/orders", "DELETE")).toBe("list-any");
    expect(m("orders.example.com", "/v1/orders/42", "DELETE")).toBe("v1-prefix");
  });

  it("matches `*` to exactly one non-empty segment", () => {
    expect(m("orders.example.com", "/v1/orders//items")).toBe("v1-prefix");
  });

  it("matches one wildcard host label, and falls back to `*` hosts", () => {
    expect(m("eu.orders.example.com", "/v1/orders")).toBe("list");
    expect(m("a.eu.orders.example.com", "/v1/orders")).toBeUndefined();
    expect(m("a.eu.orders.example.com", "/public/x")).toBe("any-host");
    expect(m("orders.example.com.evil", "/v1/orders")).toBeUndefined();
    expect(m("other.example.com", "/v1/orders")).toBeUndefined();
  });

  it("forgets a deleted policy at once", () => {
    const p = new PolicyIndex();
    const pol = policy("a", "p", { hosts: ["x.test"] });
    p.apply("add", pol);
    expect(p.table.match("x.test", "/", "GET")).toBeDefined();
    p.apply("delete", pol);
    expect(p.table.match("x.test", "/", "GET")).toBeUndefined();
  });
});
