// Loads a kubeconfig: an explicit path, else $KUBECONFIG / ~/.kube/config, else
// the in-cluster service account.
import { KubeConfig } from "@kubernetes/client-node";

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
