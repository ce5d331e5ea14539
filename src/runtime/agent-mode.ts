/**
 * Containers on kernels without setns(2).
 *
 * gVisor before Aug 2023 implements no setns (pkg/sentry/syscalls/linux/linux64.go: setns ->
 * EOPNOTSUPP, gvisor.dev/issue/140) and shows only net, pid and user under /proc/<pid>/ns. An app
 * container cannot join its pod's IPC namespace there, and `exec` cannot enter a container. On such
 * a kernel every container gets an exec agent, a process that stays in its namespaces and forks
 * each exec'd process, and a container that makes pod-level namespaces (ipc, uts, net) gets a
 * keeper that forks the helper of each container joining them. See native/sandkube-init.c,
 * "kernels without setns(2)", for the processes themselves.
 */
import { RuntimeError } from "./errors.js";
import { CLONE_FLAGS, ins, type Instruction } from "./instructions.js";
import type { NamespaceType, OciNamespace } from "./spec.js";
import type { Syscalls } from "./syscalls.js";

export const KEEPER_SOCKET = "keeper.sock";
export const AGENT_SOCKET = "agent.sock";

/** Namespaces a keeper holds for the containers that join them. */
const POD_LEVEL: readonly NamespaceType[] = ["ipc", "uts", "network"];

/**
 * Whether this kernel can join namespaces by path. Where /proc/self/ns/mnt is missing it cannot:
 * both facts come together in gVisor before Aug 2023, and no namespace can be named to join then.
 */
export function kernelJoinsNamespaces(sys: Syscalls): boolean {
  return sys.kindOf("/proc/self/ns/mnt") !== undefined;
}

/** A container the joined namespaces belong to, by its init's pid. */
export interface JoinTarget {
  readonly id: string;
  readonly dir: string;
  readonly hasKeeper: boolean;
}

export interface AgentNamespacePlan {
  /** Hands the rest of the create to the keeper of the container whose namespaces are joined. */
  readonly handover: readonly Instruction[];
  /** Pod-level namespaces made new, then the keeper that holds them. */
  readonly podLevel: readonly Instruction[];
  /** The container's own namespaces (mount, pid, ...), made after the keeper is forked. */
  readonly own: readonly Instruction[];
  readonly unshareCgroup: readonly Instruction[];
}

const PROC_NS_PATH = /^\/proc\/(\d+)\/ns\/(ipc|uts|net)$/;

/**
 * The namespace part of create where setns does not exist. A namespace to join must be a pod-level
 * namespace of another container of this runtime, named as /proc/<its init>/ns/<type>, which is how
 * containerd's CRI names the sandbox's.
 */
export function planAgentNamespaces(
  namespaces: readonly OciNamespace[],
  stateDir: string,
  preserveFds: number,
  findByInitPid: (pid: number) => JoinTarget | undefined,
): AgentNamespacePlan {
  const joined = namespaces.filter((n) => n.path !== undefined);
  let target: JoinTarget | undefined;
  for (const ns of joined) {
    const path = ns.path as string;
    const match = PROC_NS_PATH.exec(path);
    if (match === null || !POD_LEVEL.includes(ns.type))
      throw new RuntimeError(
        `cannot join the ${ns.type} namespace at ${path}: this kernel has no setns(2) (gVisor before Aug 2023), so only the ipc, uts and network namespaces of another sandkube-runtime container, named /proc/<its init pid>/ns/<type>, can be shared; run the pod without it (e.g. no shareProcessNamespace) or on a newer gVisor`,
      );
    const owner = findByInitPid(Number(match[1]));
    if (owner === undefined || !owner.hasKeeper)
      throw new RuntimeError(
        `cannot join ${path}: no sandkube-runtime container with init ${match[1]} keeps namespaces to share (this kernel has no setns(2))`,
      );
    if (target !== undefined && target.id !== owner.id)
      throw new RuntimeError(
        `cannot join namespaces of two containers (${target.id} and ${owner.id}) on a kernel without setns(2)`,
      );
    target = owner;
  }
  let podFlags = 0;
  let ownFlags = 0;
  for (const ns of namespaces) {
    if (ns.path !== undefined || ns.type === "cgroup") continue;
    if (ns.type === "user")
      throw new RuntimeError(
        "user namespaces are not supported on a kernel without setns(2) (gVisor before Aug 2023)",
      );
    if (POD_LEVEL.includes(ns.type)) podFlags |= CLONE_FLAGS[ns.type];
    else ownFlags |= CLONE_FLAGS[ns.type];
  }
  const cgroup = namespaces.find((n) => n.type === "cgroup");
  return {
    handover:
      target === undefined ? [] : [ins.handover(`${target.dir}/${KEEPER_SOCKET}`, preserveFds)],
    podLevel: podFlags === 0 ? [] : [ins.unshare(podFlags), ins.keeper(stateDir, KEEPER_SOCKET)],
    own: [ins.unshare(ownFlags)],
    unshareCgroup:
      cgroup !== undefined && cgroup.path === undefined
        ? [ins.unshare(CLONE_FLAGS.cgroup, true)]
        : [],
  };
}
