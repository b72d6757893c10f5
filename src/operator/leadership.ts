// Leader election for the operator: only the replica holding the Lease works
// the queue; the others keep their caches warm and take over when it lapses.
import type { Config } from "../config/config.ts";
import { LeaderElector } from "../k8s/leader.ts";
import type { KubeRest } from "../k8s/rest.ts";
import type { Logger } from "../log.ts";

export interface Leadership {
  isLeader(): boolean;
  /** Stops campaigning; releases the Lease unless `release` is false (which is what a crash looks like). */
  stop(opts?: { release?: boolean }): Promise<void>;
}

export function startLeadership(opts: {
  config: Config;
  rest: KubeRest;
  log: Logger;
  identity: string;
  onStart: () => void;
  onStop: () => Promise<void>;
}): Leadership {
  const { config, rest, log, identity } = opts;
  const elector = new LeaderElector({
    rest,
    name: config.leaseName,
    namespace: config.leaseNamespace,
    identity,
    leaseDurationMs: config.leaseDuration,
    renewDeadlineMs: config.leaseRenewDeadline,
    retryPeriodMs: config.leaseRetryPeriod,
    log,
    onStartedLeading: () => {
      opts.onStart();
    },
    // The elector waits for this before it releases the Lease or leads again.
    onStoppedLeading: () => opts.onStop(),
    onNewLeader: (id: string) => {
      if (id !== identity) log.info("another replica leads", { leader: id });
    },
  });
  const running = elector.run().catch((err: unknown) => {
    log.error("leader election stopped", { err });
  });
  return {
    isLeader: () => elector.isLeader(),
    stop: async (stopOpts = {}) => {
      await elector.stop({ release: stopOpts.release ?? true });
      await running;
    },
  };
}
