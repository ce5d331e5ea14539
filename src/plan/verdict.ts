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
  // containerd unpacks an image by mounting its first layer as a recursive bind (both the
  // overlayfs and native snapshotters hand it out as `rbind`: docs/gvisor-blockers.md B5). A kernel
  // that refuses MS_REC refuses `unshare --propagation private` (MS_PRIVATE|MS_REC) the same way,
  // and sandkube has no image unpacker of its own (yet).
  const { makePrivateInNewNamespace } = facts.mountPropagation;
  if (makePrivateInNewNamespace.result === "no" && makePrivateInNewNamespace.code === "EINVAL") {
    blockers.push({
      id: "no-recursive-bind",
      because: `making / recursively private fails with EINVAL (${makePrivateInNewNamespace.detail}): this kernel refuses MS_REC, and containerd mounts every image's first layer as a recursive bind to unpack it`,
      facts: ["mountPropagation.makePrivateInNewNamespace"],
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
