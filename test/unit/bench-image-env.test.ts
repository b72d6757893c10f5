import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { imageEnv } from "../../bench/lib/image-env.ts";

describe("the image's environment, as the start-up bench runs keyward with it", () => {
  it("reads the ENV lines of the Dockerfile's last stage only", () => {
    const dockerfile = ["FROM a AS deps", "ENV BUILD_ONLY=1", "FROM b", "ENV NODE_ENV=production", "# ENV COMMENTED=1", "ENV A=1 B=two", "RUN x"].join("\n");
    expect(imageEnv(dockerfile)).toEqual({ NODE_ENV: "production", A: "1", B: "two" });
  });

  it("includes the allocator setting keyward's pods run with", () => {
    expect(imageEnv(readFileSync(new URL("../../Dockerfile", import.meta.url), "utf8"))).toMatchObject({ MALLOC_ARENA_MAX: "2" });
  });
});
