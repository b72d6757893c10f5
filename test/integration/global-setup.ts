// Starts one real control plane for the whole integration run and applies
// keyward's CRDs. Test files reach it through inject("kubeconfig").
import type { TestProject } from "vitest/node";
import { ControlPlane } from "../controlplane/controlplane.ts";
import { installCrds } from "../../src/k8s/apply.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    controlPlaneDir: string;
  }
}

let cp: ControlPlane | undefined;

export async function setup(project: TestProject): Promise<void> {
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
}
