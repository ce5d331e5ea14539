import { failureText } from "../probe/check.js";
import type { Facts } from "../probe/facts.js";
import { overlayUsable, refusesRecursiveMounts } from "./adaptations.js";
import type { NamespaceType } from "../probe/namespaces.js";

/** Something no adaptation can get around. */
export interface Blocker {
  readonly id: string;
  readonly because: string;
  readonly facts: readonly string[];
}

export interface Verdict {
  readonly canRun: boolean;
  readonly summary: string;
  readonly blockers: readonly Blocker[];
}

// Every container needs its own mount and pid namespace; sandkube-runtime has no way around them.
const REQUIRED_NAMESPACES: readonly NamespaceType[] = ["mnt", "pid"];

/** Pure: can Kubernetes run here once sandkube's adaptations are on? */
export function judge(facts: Facts): Verdict {
  const blockers: Blocker[] = [];
  if (!facts.identity.isRoot) {
    blockers.push({
      id: "not-root",
      because: `doctor runs as uid ${facts.identity.uid ?? "unknown"}; the node needs root (mounts, namespaces, cgroups)`,
      facts: ["identity.isRoot"],
    });
  }
  for (const type of REQUIRED_NAMESPACES) {
    const ns = facts.namespaces.find((n) => n.type === type);
    if (ns?.create.result === "no") {
      blockers.push({
        id: `no-${type}-namespace`,
        because: `cannot create a ${type} namespace (${ns.create.code}): every container needs one`,
        facts: [`namespaces[${type}].create`],
      });
    }
  }
  // Where MS_REC is refused, sandkube unpacks images itself into the overlayfs snapshotter
  // (adaptation no-recursive-bind). Without overlayfs nothing helps: the native snapshotter hands
  // every container root out as an `rbind` mount, which the shim mounts (docs/gvisor-blockers.md B5).
  if (refusesRecursiveMounts(facts) && !overlayUsable(facts)) {
    blockers.push({
      id: "no-recursive-bind",
      because: `making / recursively private fails with EINVAL (${failureText(facts.mountPropagation.makePrivateInNewNamespace)}): this kernel refuses MS_REC, and overlayfs is not usable on the data dir, so every container root would be a recursive bind`,
      facts: ["mountPropagation.makePrivateInNewNamespace", "overlay.onDataDir"],
    });
  }
  const { cgroups } = facts;
  if (cgroups.mode === "none" && cgroups.scratchV1MountCheck.result !== "yes") {
    const why =
      cgroups.scratchV1MountCheck.result === "no"
        ? `mounting the controllers kubelet requires fails (${cgroups.scratchV1MountCheck.code}: ${cgroups.scratchV1MountCheck.detail})`
        : cgroups.scratchV1MountCheck.detail;
    blockers.push({
      id: "no-cgroups",
      because: `no cgroup filesystem is mounted and ${why}`,
      facts: ["cgroups.mode", "cgroups.scratchV1MountCheck"],
    });
  }
  const canRun = blockers.length === 0;
  return {
    canRun,
    summary: canRun
      ? "Kubernetes can run here with the adaptations below."
      : `Kubernetes cannot run here: ${blockers.map((b) => b.id).join(", ")}.`,
    blockers,
  };
}
