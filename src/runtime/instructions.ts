/**
 * The flat instruction list that native/sandkube-init executes. Each instruction is an op name and
 * a fixed number of arguments; the encoding is NUL-terminated strings, arrays as a count and then
 * their items. Adding an op means adding it to the C switch too.
 */
export type Arg = string | number | bigint | readonly string[];
export type Instruction = readonly [op: string, ...args: Arg[]];

export const CLONE_FLAGS = {
  mount: 0x00020000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  network: 0x40000000,
  cgroup: 0x02000000,
  time: 0x00000080,
} as const;

export const ins = {
  cgroupJoin: (procsFile: string): Instruction => ["cgroup_join", procsFile],
  consoleConnect: (socket: string): Instruction => ["console_connect", socket],
  /**
   * Opens every path first, then joins in runc's order: what the host's root may join, the user
   * namespace (becoming its root), then what only that root may join. Pairs are [flag, path].
   */
  joinNamespaces: (
    entries: readonly (readonly [cloneFlag: number, path: string])[],
  ): Instruction => ["join_namespaces", entries.flatMap(([flag, path]) => [String(flag), path])],
  /**
   * unshare(CLONE_NEWUSER) with these maps (kernel uid_map text), written by a child left in the
   * parent namespace, since the process inside lacks CAP_SETUID there; then becomes root inside.
   */
  newUserNamespace: (uidMap: string, gidMap: string): Instruction => ["userns_new", uidMap, gidMap],
  /**
   * A detached clone of a bind source (open_tree), idmapped when maps or a namespace path are
   * given: made before any namespace changes, because once inside a user namespace the host path
   * may be out of reach and MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over the source's filesystem.
   */
  mountPrepare: (
    slot: number,
    source: string,
    recursive: boolean,
    /** MS_PRIVATE/MS_SLAVE/MS_SHARED for the whole clone, as a bind made inside would inherit. */
    propagation: number,
    idmap:
      | { readonly recursive: boolean; readonly uidMap: string; readonly gidMap: string }
      | { readonly recursive: boolean; readonly usernsPath: string }
      | undefined,
  ): Instruction => [
    "mount_prepare",
    slot,
    source,
    recursive ? 1 : 0,
    propagation,
    idmap?.recursive === true ? 1 : 0,
    idmap !== undefined && "uidMap" in idmap ? idmap.uidMap : "",
    idmap !== undefined && "gidMap" in idmap ? idmap.gidMap : "",
    idmap !== undefined && "usernsPath" in idmap ? idmap.usernsPath : "",
  ],
  /** move_mount of a prepared clone onto its target in the container's mount namespace. */
  mountAttach: (slot: number, target: string): Instruction => ["mount_attach", slot, target],
  /**
   * Attaches the prepared rootfs clone on the current directory (the helper chdir'ed to the rootfs
   * while it could reach it) and enters it: in a user namespace the init names rootfs paths
   * relative to it, since the rootfs's parent directories may be closed to the mapped root.
   */
  rootAttach: (slot: number): Instruction => ["root_attach", slot],
  /** An optional unshare that fails becomes a warning (e.g. a cgroup namespace in gVisor). */
  unshare: (flags: number, optional = false): Instruction => ["unshare", flags, optional ? 1 : 0],
  /** The helper forks; the parent reports the child's pid, then exits or (waitChild) waits for it. */
  fork: (waitChild: boolean): Instruction => ["fork", waitChild ? 1 : 0],
  mount: (
    source: string,
    target: string,
    fstype: string,
    flags: number,
    data: string,
    optional: boolean,
  ): Instruction => ["mount", source, target, fstype, flags, data, optional ? 1 : 0],
  /** Where the kernel cannot remount, read-only is kept through an overlay view (directories). */
  remount: (target: string, flags: number): Instruction => ["remount", target, flags],
  /**
   * A bind's flags. Where the kernel cannot remount, a read-only file is bound again from a
   * read-only overlay view of its source's directory, mounted at `scratch` (outside the new root).
   */
  remountBind: (source: string, target: string, flags: number, scratch: string): Instruction => [
    "remount_bind",
    source,
    target,
    flags,
    scratch,
  ],
  /** MS_PRIVATE on the mount holding `path` (walking up to a mount point), as runc does. */
  parentMountPrivate: (path: string): Instruction => ["parent_mount_private", path],
  /** Makes the bound root a read-only overlay view now if the kernel cannot remount it later. */
  readonlyRootEarly: (rootfs: string): Instruction => ["readonly_root_early", rootfs],
  propagation: (target: string, flags: number): Instruction => ["propagation", target, flags],
  /** Propagation of "/" in the new mount namespace; falls back to rprivate where slave is refused. */
  rootPropagation: (flags: number): Instruction => ["root_propagation", flags],
  mkdir: (path: string, mode = 0o755): Instruction => ["mkdir", path, mode],
  touch: (path: string): Instruction => ["touch", path],
  symlink: (target: string, path: string): Instruction => ["symlink", target, path],
  device: (
    path: string,
    type: string,
    major: number,
    minor: number,
    mode: number,
    uid: number,
    gid: number,
    hostPath: string,
  ): Instruction => ["device", path, type, major, minor, mode, uid, gid, hostPath],
  pivotRoot: (rootfs: string): Instruction => ["pivot_root", rootfs],
  moveRoot: (rootfs: string): Instruction => ["move_root", rootfs],
  mask: (path: string): Instruction => ["mask", path],
  readonly: (path: string): Instruction => ["readonly", path],
  remountRootReadonly: (): Instruction => ["remount_root_ro"],
  sysctl: (procPath: string, value: string): Instruction => ["sysctl", procPath, value],
  hostname: (name: string): Instruction => ["hostname", name],
  domainname: (name: string): Instruction => ["domainname", name],
  write: (path: string, value: string): Instruction => ["write", path, value],
  /** Lowering needs CAP_SYS_RESOURCE; where the sandbox withholds it the helper warns instead. */
  oomScoreAdj: (value: number): Instruction => ["oom_score_adj", String(value)],
  rlimit: (resource: number, soft: bigint, hard: bigint): Instruction => [
    "rlimit",
    resource,
    soft,
    hard,
  ],
  pty: (uid: number, gid: number): Instruction => ["pty", uid, gid],
  chownStdio: (uid: number, gid: number): Instruction => ["chown_stdio", uid, gid],
  setsid: (): Instruction => ["setsid"],
  bounding: (keep: bigint): Instruction => ["bounding", keep],
  user: (uid: number, gid: number, additionalGids: readonly number[]): Instruction => [
    "user",
    uid,
    gid,
    additionalGids.map(String),
  ],
  caps: (
    effective: bigint,
    permitted: bigint,
    inheritable: bigint,
    ambient: bigint,
  ): Instruction => ["caps", effective, permitted, inheritable, ambient],
  noNewPrivs: (): Instruction => ["no_new_privs"],
  /** Starts building a seccomp filter (libseccomp names for arches; flags "log", "spec_allow"). */
  seccompInit: (
    defaultAction: number,
    arches: readonly string[],
    flags: readonly string[],
  ): Instruction => ["seccomp_init", defaultAction, arches, flags],
  /** Conditions are "index op value valueTwo"; a name the helper's libseccomp lacks is skipped. */
  seccompRule: (name: string, action: number, conditions: readonly string[]): Instruction => [
    "seccomp_rule",
    name,
    action,
    conditions,
  ],
  /** Loads the built filter; a kernel without seccomp (EINVAL/ENOSYS) gets a warning. */
  seccompLoad: (): Instruction => ["seccomp_load"],
  /** mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY): read-only submounts too; fails without it. */
  recursiveReadonly: (target: string): Instruction => ["recursive_readonly", target],
  chdir: (dir: string): Instruction => ["chdir", dir],
  resolveExec: (name: string, pathVar: string): Instruction => ["resolve_exec", name, pathVar],
  listen: (dir: string, name: string): Instruction => ["listen", dir, name],
  /**
   * Kernels without setns (src/runtime/agent-mode.ts): sends the report fd, stdio, preserved fds
   * and console to the keeper or exec agent listening at `socket`, with the rest of the list.
   */
  handover: (socket: string, preserveFds: number): Instruction => ["handover", socket, preserveFds],
  /** Forks the keeper of the pod-level namespaces made so far, listening at dir/name. */
  keeper: (dir: string, name: string): Instruction => ["keeper", dir, name],
  /** Binds the exec agent's socket at dir/name, before the pid namespace's first fork. */
  agentListen: (dir: string, name: string): Instruction => ["agent_listen", dir, name],
  /** Forks the init (the parent reports its pid) and then the exec agent, and exits. */
  forkWithAgent: (): Instruction => ["fork_with_agent"],
  /** In the init, once its root is set up: gives the exec agent that root. */
  agentRoot: (): Instruction => ["agent_root"],
  /** umount2(MNT_DETACH); a path that is not (or no longer) a mount point is not an error. */
  umount: (target: string): Instruction => ["umount", target],
  /** Ends a list that execs nothing (e.g. unmounting at delete). */
  exit: (): Instruction => ["exit"],
  ready: (): Instruction => ["ready"],
  park: (): Instruction => ["park"],
  /** Execs the resolved program; fds from `firstClosedFd` up are closed on exec. */
  exec: (firstClosedFd: number, args: readonly string[], env: readonly string[]): Instruction => [
    "exec",
    firstClosedFd,
    args,
    env,
  ],
};

export function encodeInstructions(list: readonly Instruction[]): string {
  let out = "";
  for (const [op, ...args] of list) {
    out += `${op}\0`;
    for (const a of args) {
      if (typeof a === "string") {
        if (a.includes("\0")) throw new Error(`instruction ${op}: argument contains a NUL byte`);
        out += `${a}\0`;
      } else if (typeof a === "number" || typeof a === "bigint") out += `${a}\0`;
      else {
        out += `${a.length}\0`;
        for (const item of a) {
          if (item.includes("\0"))
            throw new Error(`instruction ${op}: argument contains a NUL byte`);
          out += `${item}\0`;
        }
      }
    }
  }
  return out;
}
