// How the `kubectl keyward` plugin is shipped: an executable named kubectl-keyward
// in package.json's bin, the same one the krew-style manifest names, whose
// launcher starts the plugin's entry on the package's Node 24.
import { accessSync, constants, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = resolve(import.meta.dirname, "..", "..");

describe("the kubectl-keyward package", () => {
  it("names one executable in package.json bin and in plugins/keyward.yaml", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: Record<string, string> };
    expect(pkg.bin["kubectl-keyward"]).toBe("bin/kubectl-keyward");
    accessSync(join(root, "bin", "kubectl-keyward"), constants.X_OK);
    const manifest = parse(readFileSync(join(root, "plugins", "keyward.yaml"), "utf8")) as {
      kind: string;
      metadata: { name: string };
      spec: { platforms: { bin: string; uri: string }[] };
    };
    expect(manifest.kind).toBe("Plugin");
    expect(manifest.metadata.name).toBe("keyward");
    for (const p of manifest.spec.platforms) {
      expect(p.bin).toBe(pkg.bin["kubectl-keyward"]);
      // No archive is published: the address must not look like one.
      expect(new URL(p.uri).hostname).toBe("example.invalid");
    }
  });

  it("starts the plugin's entry, preferring the package's own Node", () => {
    const launcher = readFileSync(join(root, "bin", "kubectl-keyward"), "utf8");
    expect(launcher).toContain('"$pkg/src/cli/kubectl/entry.ts"');
    expect(launcher).toContain("node_modules/.bin/node");
    readFileSync(join(root, "src", "cli", "kubectl", "entry.ts"));
  });
});
