import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { imageEntrypoint, imageEnv } from "../../bench/lib/image-env.ts";

describe("the image's environment, as the start-up bench runs keyward with it", () => {
  it("reads the ENV lines of the Dockerfile's last stage only", () => {
    const dockerfile = ["FROM a AS deps", "ENV BUILD_ONLY=1", "FROM b", "ENV NODE_ENV=production", "# ENV COMMENTED=1", "ENV A=1 B=two", "RUN x"].join("\n");
    expect(imageEnv(dockerfile)).toEqual({ NODE_ENV: "production", A: "1", B: "two" });
  });

  it("includes the allocator settings keyward's pods run with: jemalloc preloaded, glibc's arenas for a pod that empties LD_PRELOAD", () => {
    const env = imageEnv(readFileSync(new URL("../../Dockerfile", import.meta.url), "utf8"));
    expect(env).toMatchObject({ LD_PRELOAD: "/usr/local/lib/libjemalloc.so.2", MALLOC_ARENA_MAX: "2" });
    expect(env.MALLOC_CONF?.split(",")).toEqual(expect.arrayContaining(["background_thread:true", "dirty_decay_ms:1000"]));
  });

  it("reads the ENTRYPOINT of the last stage", () => {
    expect(imageEntrypoint(["FROM a AS b", 'ENTRYPOINT ["x"]', "FROM c", 'ENTRYPOINT ["node", "dist/main.js"]'].join("\n"))).toEqual(["node", "dist/main.js"]);
    expect(() => imageEntrypoint("FROM c\nENTRYPOINT node dist/main.js")).toThrow(/exec form/);
  });
});

describe("the image runs keyward built, not its TypeScript sources (ADR 58)", () => {
  const dockerfile = readFileSync(new URL("../../Dockerfile", import.meta.url), "utf8");
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const last = stages.at(-1)!;

  it("starts dist/main.js, built by scripts/build.ts in a stage of its own", () => {
    expect(imageEntrypoint(dockerfile)).toEqual(["node", "dist/main.js"]);
    const build = stages.find((s) => /^\S+ AS build$/m.test(s));
    expect(build).toMatch(/^RUN node scripts\/build\.ts dist$/m);
    expect(last).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
  });

  it("ships no TypeScript: the last stage copies neither src/ nor scripts/", () => {
    expect(last).not.toMatch(/^COPY\s+(\S+\s+)*(\.\/)?(src|scripts)\b/m);
  });
});
