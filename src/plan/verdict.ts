import type { Facts } from "../probe/facts.js";
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

// CRI starts a pod's app containers in the pause container's net, ipc and uts namespaces, joined
// by path (/proc/<sandboxPid>/ns/*), and exec joins all of a container's namespaces the same way.
// Nothing in sandkube replaces setns today, so a sandbox without it cannot run pods.
const JOINED_NAMESPACES: readonly NamespaceType[] = ["mnt", "pid", "net", "uts", "ipc"];

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
  const unjoinable = JOINED_NAMESPACES.flatMap((type) => {
    const ns = facts.namespaces.find((n) => n.type === type);
    return ns?.create.result === "yes" && ns.joinByPath.result === "no"
      ? [{ type, code: ns.joinByPath.code }]
      : [];
  });
  if (unjoinable.length > 0) {
    blockers.push({
      id: "no-setns",
      because: `${unjoinable.map((n) => `setns(${n.type}) by path fails: ${n.code}`).join("; ")}; pod containers and exec join namespaces by path`,
      facts: unjoinable.map((n) => `namespaces[${n.type}].joinByPath`),
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
