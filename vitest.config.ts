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
          // Nor do they shed rows while their thread waits for a CPU (ADR 76): on these two cores
          // the control plane and the tests make such waits, and suites count every row; the
          // suite that tests shedding asks for it (--analytics-shed-run-delay beats this). This
          // reaches the processes suites start; a suite that runs usage in its own process sets
          // analyticsShedRunDelay: 0 in its config (defaultConfig does not read the environment).
          env: { KEYWARD_ANALYTICS_STORE: "off", KEYWARD_ANALYTICS_SHED_RUN_DELAY: "0" },
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
