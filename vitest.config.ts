import { defineConfig } from "vitest/config";

// Two projects: `unit` (fast, no processes, beside the code in src/) and
// `integration` (a real etcd + kube-apiserver + kube-controller-manager, started
// once per run by test/integration/global-setup.ts).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["src/**/*.test.ts", "test/unit/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/integration/global-setup.ts"],
          // keyward processes the suites start keep no analytics store unless a suite asks for
          // one (--analytics-store beats the environment): the default SQLite file would land in
          // the working directory, shared by every suite.
          env: { KEYWARD_ANALYTICS_STORE: "off" },
          testTimeout: 120_000,
          hookTimeout: 300_000,
          // One control plane is shared; files run one at a time so timing-sensitive
          // suites (revocation, failover) do not compete for the two cores.
          fileParallelism: false,
        },
      },
    ],
  },
});
