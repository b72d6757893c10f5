// keyward's JavaScript, as the image runs it (ADR 58): every module of src/ (tests and their
// support files left out) with its types stripped by Node's own stripper,
// `module.stripTypeScriptTypes`, the one Node runs on the sources in development. Stripping
// replaces each type with blanks, so every line and column of the output is the source's and
// a stack trace from the image points at the same place in src/. Then every string literal
// that names a relative `.ts` file (static and dynamic imports, worker URLs) names the `.js`
// file instead, the same length again, and the browser files of the console are copied as
// they are. Only Node's built-ins are imported here, so the image's build stage needs no
// node_modules.
//
//   node scripts/build.ts [OUT]     (default: dist)
//
// The output lies next to src/ (dist/main.js), so what the modules find from their own
// URL (../package.json, ../../protos, ../../crds, console/web) lies where it does for the
// sources. The build fails when a relative `.ts` path it cannot rewrite remains (a template
// literal with a substitution), or when a rewritten one names no module of src/.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";

export const REPO_ROOT = resolve(import.meta.dirname, "..");

/** Files of src/ that are not part of keyward: tests and their support modules, and what only type-checks the console's pages (declarations, their tsconfig). */
const LEFT_OUT = /(\.test\.[a-z]+|\.test-support\.ts|\.d\.ts|(^|\/)web\/tsconfig\.json)$/;

/** A string literal whose whole text is a relative path to a `.ts` file: `"./x.ts"`, `'../a/b.ts'`, `` `./x.ts` ``. */
const RELATIVE_TS = /(["'`])(\.\.?\/[^"'`\n\\$]*)\.ts\1/g;

/** What RELATIVE_TS cannot rewrite: a relative path to a `.ts` file made at run time (`` `./${name}.ts` ``, `"./" + name + ".ts"`). */
const UNREWRITABLE = /(`[^`\n]*\$\{[^`\n]*\.ts`)|(["']\.ts["'])|(["'`]\.\.?\/[^"'`\n]*\.ts["'`])/;

export class BuildFailed extends Error {
  override name = "BuildFailed";
}

export interface BuildResult {
  /** Modules stripped and written as `.js`. */
  modules: number;
  /** Other files copied (the console's pages). */
  copied: number;
  /** Relative `.ts` literals rewritten to `.js`. */
  rewritten: number;
  ms: number;
}

/** Every file under `dir`, as paths relative to it with `/` separators, sorted. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as { name: string; parentPath: string; isFile(): boolean }[])
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join("/"))
    .sort();
}

/** The module's JavaScript: types stripped, every relative `.ts` literal made `.js`; `exists` says whether a rewritten path names a module of the build. */
export function emitModule(source: string, file: string, exists: (relPath: string) => boolean): { code: string; rewritten: number } {
  const stripped = stripTypeScriptTypes(source, { mode: "strip" });
  let rewritten = 0;
  const code = stripped.replace(RELATIVE_TS, (_m, quote: string, stem: string) => {
    const target = join(dirname(file), `${stem}.ts`).split(sep).join("/");
    if (!exists(target)) throw new BuildFailed(`${file}: ${stem}.ts names no module of src/ that the build emits`);
    rewritten++;
    return `${quote}${stem}.js${quote}`;
  });
  const left = UNREWRITABLE.exec(code);
  if (left) {
    const line = code.slice(0, left.index).split("\n").length;
    throw new BuildFailed(`${file}:${line}: a relative .ts path made at run time (${left[0]}) cannot be rewritten; name the module in one literal`);
  }
  return { code, rewritten };
}

/** Builds `srcDir`'s modules into `outDir` (emptied first). */
export function build(outDir: string, srcDir = join(REPO_ROOT, "src")): BuildResult {
  const t0 = performance.now();
  const out = resolve(outDir);
  const src = resolve(srcDir);
  if (src === out || src.startsWith(out + sep) || out.startsWith(src + sep)) throw new BuildFailed(`the output ${out} and the sources ${src} must not contain each other`);
  const files = filesUnder(src).filter((f) => !LEFT_OUT.test(f));
  const modules = new Set(files.filter((f) => f.endsWith(".ts")));
  rmSync(out, { recursive: true, force: true });
  let rewritten = 0;
  let copied = 0;
  for (const f of files) {
    const to = join(out, f.endsWith(".ts") ? `${f.slice(0, -3)}.js` : f);
    mkdirSync(dirname(to), { recursive: true });
    if (!modules.has(f)) {
      cpSync(join(src, f), to);
      copied++;
      continue;
    }
    const r = emitModule(readFileSync(join(src, f), "utf8"), f, (p) => modules.has(p));
    rewritten += r.rewritten;
    writeFileSync(to, r.code);
  }
  return { modules: modules.size, copied, rewritten, ms: Math.round(performance.now() - t0) };
}

if (import.meta.main) {
  const outDir = process.argv[2] ?? join(REPO_ROOT, "dist");
  const r = build(outDir);
  process.stdout.write(`built ${r.modules} modules (${r.rewritten} relative imports and module URLs rewritten) and copied ${r.copied} files into ${outDir} in ${r.ms} ms\n`);
}
