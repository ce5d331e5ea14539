import { RuntimeError } from "./errors.js";
import { CLONE_FLAGS, ins, type Instruction } from "./instructions.js";
import type { NamespaceType, OciNamespace } from "./spec.js";

/** The name of each namespace under /proc/<pid>/ns. */
export const PROC_NS_NAME: Readonly<Record<NamespaceType, string>> = {
  pid: "pid",
  network: "net",
  mount: "mnt",
  ipc: "ipc",
  uts: "uts",
  user: "user",
  cgroup: "cgroup",
  time: "time",
};

/** setns order: the mount namespace last, because joining it changes how later paths resolve. */
const JOIN_ORDER: readonly NamespaceType[] = [
  "ipc",
  "uts",
  "network",
  "pid",
  "cgroup",
  "time",
  "mount",
];

export interface NamespacePlan {
  readonly join: readonly Instruction[];
  readonly unshare: readonly Instruction[];
  /** Unshared after the cgroup join, so the namespace's root is the container's cgroup. */
  readonly unshareCgroup: readonly Instruction[];
  readonly warnings: readonly string[];
}

export function planNamespaces(namespaces: readonly OciNamespace[]): NamespacePlan {
  const byType = new Map(namespaces.map((n) => [n.type, n]));
  if (byType.has("user"))
    throw new RuntimeError(
      "user namespaces are not supported by sandkube-runtime (its `features` does not advertise them); remove the user namespace from the spec",
    );
  if (!byType.has("mount") || byType.get("mount")?.path !== undefined)
    throw new RuntimeError(
      "the spec must ask for a new mount namespace: sandkube-runtime will not set up a root filesystem in the host's",
    );
  const join: Instruction[] = [];
  for (const type of JOIN_ORDER) {
    const ns = byType.get(type);
    if (ns?.path !== undefined) join.push(ins.setns(ns.path, CLONE_FLAGS[type]));
  }
  let flags = 0;
  for (const ns of namespaces)
    if (ns.path === undefined && ns.type !== "cgroup") flags |= CLONE_FLAGS[ns.type];
  const cgroup = byType.get("cgroup");
  return {
    join,
    unshare: [ins.unshare(flags)],
    unshareCgroup:
      cgroup !== undefined && cgroup.path === undefined
        ? [ins.unshare(CLONE_FLAGS.cgroup, true)]
        : [],
    warnings: [],
  };
}

/** Instructions that move an exec'd process into every namespace of the container's init. */
export function planJoinContainer(
  initPid: number,
  namespaces: readonly OciNamespace[],
): Instruction[] {
  const present = new Set(namespaces.map((n) => n.type));
  return JOIN_ORDER.filter((t) => present.has(t) && t !== "time").map((t) =>
    ins.setns(`/proc/${initPid}/ns/${PROC_NS_NAME[t]}`, CLONE_FLAGS[t]),
  );
}
