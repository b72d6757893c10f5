// scripts/build.ts: the image's JavaScript, types stripped in place and relative `.ts` paths
// made `.js`.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { build, BuildFailed, emitModule } from "../../scripts/build.ts";

const all = (): boolean => true;

describe("emitModule", () => {
  it("strips types in place: every line and column of the code is the source's", () => {
    const source = ["import type { A } from \"./a.ts\";", "export function f(x: number, a: A): string {", "  return `${x}` + String(a);", "}", "throw new Error(\"at 5:7\");"].join("\n");
    const { code } = emitModule(source, "m.ts", all);
    const lines = code.split("\n");
    expect(lines).toHaveLength(5);
    expect(lines[0]!.trim()).toBe("");
    expect(lines[1]!.indexOf("(x")).toBe(source.split("\n")[1]!.indexOf("(x"));
    expect(lines[1]).not.toContain("number");
    expect(lines[4]).toBe(source.split("\n")[4]);
  });

  it("makes every relative .ts literal .js: imports, re-exports, dynamic imports, module URLs", () => {
    const source = [
      'import { a } from "./a.ts";',
      "import { b } from '../up/b.ts';",
      'export * from "./c.ts";',
      'import "./side.ts";',
      'const d = await import("./d.ts");',
      'const w = new URL("./worker.ts", import.meta.url);',
      "const t = `./tmpl.ts`;",
    ].join("\n");
    const seen: string[] = [];
    const { code, rewritten } = emitModule(source, "dir/m.ts", (p) => (seen.push(p), true));
    expect(rewritten).toBe(7);
    expect(code).not.toMatch(/\.ts["'`]/);
    expect(code).toContain('"./a.js"');
    expect(code).toContain("'../up/b.js'");
    expect(code).toContain('new URL("./worker.js", import.meta.url)');
    expect(code).toContain("`./tmpl.js`");
    expect(seen).toEqual(["dir/a.ts", "up/b.ts", "dir/c.ts", "dir/side.ts", "dir/d.ts", "dir/worker.ts", "dir/tmpl.ts"]);
    // Same length: columns after the literal are unchanged too.
    expect(code.split("\n").map((l) => l.length)).toEqual(source.split("\n").map((l) => l.length));
  });

  it("leaves packages, built-ins and paths that are not .ts modules alone", () => {
    const source = ['import { x } from "pkg/sub.ts.js";', 'import { y } from "node:fs";', 'const p = "src/main.ts";', 'const q = "./data.json";', 'const r = "./notes.tsx";'].join("\n");
    const { code, rewritten } = emitModule(source, "m.ts", all);
    expect(rewritten).toBe(0);
    expect(code).toBe(source);
  });

  it("fails on a relative .ts path that names no module of the build", () => {
    expect(() => emitModule('import { a } from "./gone.ts";', "dir/m.ts", (p) => p !== "dir/gone.ts")).toThrow(BuildFailed);
    expect(() => emitModule('import { a } from "./gone.ts";', "dir/m.ts", (p) => p !== "dir/gone.ts")).toThrow(/dir\/m\.ts: \.\/gone\.ts names no module/);
  });

  it("fails on a relative .ts path made at run time, naming its line", () => {
    expect(() => emitModule("const a = 1;\nconst u = new URL(`./${name}.ts`, import.meta.url);", "m.ts", all)).toThrow(/m\.ts:2: a relative \.ts path made at run time/);
    expect(() => emitModule('const u = new URL("./" + name + ".ts", import.meta.url);', "m.ts", all)).toThrow(BuildFailed);
  });
});

describe("build", () => {
  let dir = "";
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = "";
  });
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  const listed = (d: string): string[] => readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(d.length + 1)).sort();

  it("emits the modules as .js and copies other files, leaving out tests, their support, declarations and the pages' tsconfig", () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-build-test-"));
    const src = join(dir, "src");
    write(join(src, "main.ts"), 'import { f } from "./lib/f.ts";\nconst n: number = f();\nconsole.log(n);\n');
    write(join(src, "lib", "f.ts"), "export const f = (): number => 1;\n");
    write(join(src, "lib", "f.test.ts"), "test\n");
    write(join(src, "lib", "fixtures.test-support.ts"), "support\n");
    write(join(src, "console", "web", "index.html"), "<html></html>\n");
    write(join(src, "console", "web", "tsconfig.json"), "{}\n");
    write(join(src, "console", "web", "js", "app.js"), "export {};\n");
    write(join(src, "console", "web", "assets", "lib.d.ts"), "export declare const x: number;\n");
    const out = join(dir, "out", "dist");
    const r = build(out, src);
    expect(listed(out)).toEqual(["console/web/index.html", "console/web/js/app.js", "lib/f.js", "main.js"]);
    expect(r).toMatchObject({ modules: 2, copied: 2, rewritten: 1 });
    expect(readFileSync(join(out, "main.js"), "utf8")).toBe('import { f } from "./lib/f.js";\nconst n         = f();\nconsole.log(n);\n');
  });

  it("empties the output first, so a module removed from the sources is gone from the build", () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-build-test-"));
    const src = join(dir, "src");
    write(join(src, "a.ts"), "export {};\n");
    write(join(src, "b.ts"), "export {};\n");
    const out = join(dir, "dist");
    build(out, src);
    rmSync(join(src, "b.ts"));
    build(out, src);
    expect(listed(out)).toEqual(["a.js"]);
  });

  it("refuses an output that contains the sources or lies inside them", () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-build-test-"));
    const src = join(dir, "src");
    write(join(src, "a.ts"), "export {};\n");
    expect(() => build(dir, src)).toThrow(BuildFailed);
    expect(() => build(join(src, "dist"), src)).toThrow(BuildFailed);
    expect(readFileSync(join(src, "a.ts"), "utf8")).toBe("export {};\n");
  });
});
