import type { Adaptation } from "../plan/adaptations.js";
import type { Blocker } from "../plan/verdict.js";
import type { CheckResult, OptionalCheckId } from "./cluster.js";

/**
 * What `verify` reports where no node can run: the probe's verdict, check by check. Where `up`
 * would stop at a blocker (say `no-recursive-bind`: no MS_REC and no overlayfs on the data dir),
 * no workload check can run; each one says so, with the blocker's own words and its remedy, and
 * the pod-network checks also name a missing veth (no pod gets a network namespace of its own).
 */
export function blockedResults(
  checks: readonly OptionalCheckId[],
  blockers: readonly Blocker[],
  adaptations: readonly Adaptation[],
  remedyFor: (blockerId: string) => string,
): CheckResult[] {
  const first = blockers[0];
  if (first === undefined) return [];
  const blocker = `${first.id}: ${first.because}`;
  const hostOnly = adaptations.find((a) => a.id === "cni-host-network");
  const podNetwork = new Set<OptionalCheckId>([
    "podToPod",
    "service",
    "dns",
    "nodePort",
    "udpService",
    "egress",
    "endpointChange",
  ]);
  return checks.map((id) => ({
    id,
    ok: false,
    status: "failed",
    detail:
      `not run: sandkube up cannot start a node here (${blockers.map((b) => b.id).join(", ")})` +
      (hostOnly !== undefined && podNetwork.has(id)
        ? `; even with a node, pods could not have their own network namespace (${hostOnly.because})`
        : ""),
    blocker,
    remedy: remedyFor(first.id),
    durationMs: 0,
  }));
}
