import { RuntimeError } from "./errors.js";
import { CLONE_FLAGS, ins, type Instruction } from "./instructions.js";
import type { NamespaceType, OciNamespace } from "./spec.js";
import { mapText, type UserNamespacePlan } from "./userns.js";

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

/**
 * setns order within each pass of join_namespaces (user first where allowed, see the helper); the
 * mount namespace last, because joining it changes how later paths resolve.
 */
const JOIN_ORDER: readonly NamespaceType[] = [
  "user",
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
  /** A new user namespace, made and mapped before the other namespaces are unshared. */
  readonly newUser: readonly Instruction[];
  readonly unshare: readonly Instruction[];
  /** Unshared after the cgroup join, so the namespace's root is the container's cgroup. */
  readonly unshareCgroup: readonly Instruction[];
  readonly warnings: readonly string[];
}

export function planNamespaces(
  namespaces: readonly OciNamespace[],
  userns?: UserNamespacePlan,
): NamespacePlan {
  const byType = new Map(namespaces.map((n) => [n.type, n]));
  if (byType.has("user") && userns === undefined)
    throw new Error("planNamespaces: a user namespace needs its plan (planUserNamespace)");
  if (!byType.has("mount"))
    throw new RuntimeError(
      "the spec has no mount namespace: sandkube-runtime sets up a root filesystem only in a mount namespace of the container's own (new, or joined by path), never in the host's",
    );
  const joined: [number, string][] = [];
  for (const type of JOIN_ORDER) {
    const ns = byType.get(type);
    if (ns?.path !== undefined) joined.push([CLONE_FLAGS[type], ns.path]);
  }
  let flags = 0;
  for (const ns of namespaces)
    if (ns.path === undefined && ns.type !== "cgroup" && ns.type !== "user")
      flags |= CLONE_FLAGS[ns.type];
  const cgroup = byType.get("cgroup");
  return {
    join: joined.length > 0 ? [ins.joinNamespaces(joined)] : [],
    newUser:
      userns?.kind === "new"
        ? [ins.newUserNamespace(mapText(userns.uidMappings), mapText(userns.gidMappings))]
        : [],
    unshare: [ins.unshare(flags)],
    unshareCgroup:
      cgroup !== undefined && cgroup.path === undefined
        ? [ins.unshare(CLONE_FLAGS.cgroup, true)]
        : [],
    warnings: [],
  };
}

/**
 * Instructions that move an exec'd process into every namespace of the container's init, its user
 * namespace included, so the process's uid and gid are the ones seen inside.
 */
export function planJoinContainer(
  initPid: number,
  namespaces: readonly OciNamespace[],
): Instruction[] {
  const present = new Set(namespaces.map((n) => n.type));
  const joined = JOIN_ORDER.filter((t) => present.has(t) && t !== "time").map(
    (t): [number, string] => [CLONE_FLAGS[t], `/proc/${initPid}/ns/${PROC_NS_NAME[t]}`],
  );
  return joined.length > 0 ? [ins.joinNamespaces(joined)] : [];
}
