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
