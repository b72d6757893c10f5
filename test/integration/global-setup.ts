// Starts one real control plane for the whole integration run and applies
// keyward's CRDs. Test files reach it through inject("kubeconfig"). At the end it
// checks that the run left keyward's default analytics store in the repository's
// root alone: every keyward process a suite starts keeps no store or one of its own.
import { resolve } from "node:path";
import type { TestProject } from "vitest/node";
import { ControlPlane } from "../controlplane/controlplane.ts";
import { installCrds } from "../../src/k8s/apply.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { defaultAnalyticsFiles, watchUntouched } from "../support/untouched.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    controlPlaneDir: string;
  }
}

let cp: ControlPlane | undefined;
let touched: (() => string[]) | undefined;

export async function setup(project: TestProject): Promise<void> {
  touched = watchUntouched(defaultAnalyticsFiles(resolve(import.meta.dirname, "..", "..")));
  const started = Date.now();
  cp = await ControlPlane.start({
    log: (l) => process.stderr.write(`[controlplane] ${l}\n`),
    beforeControllerManager: async (kubeconfig) => {
      const rest = new KubeRest(loadKubeConfig(kubeconfig));
      await installCrds(rest);
      rest.close();
    },
  });
  process.stderr.write(`[controlplane] ready in ${Date.now() - started} ms at ${cp.server}\n`);
  project.provide("kubeconfig", cp.kubeconfig);
  project.provide("controlPlaneDir", cp.dir);
}

export async function teardown(): Promise<void> {
  await cp?.stop({ removeDir: true });
  const written = touched?.() ?? [];
  if (written.length > 0) {
    throw new Error(
      `the run wrote ${written.join(", ")}: a keyward process kept its analytics store at the default path, which every run shares; ` +
        "start it with --analytics-store=off (the integration project's environment) or --analytics-sqlite-path in a directory of its own",
    );
  }
}
