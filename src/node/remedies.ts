/**
 * What a user can do about each blocker doctor names. Kept beside the verdict's ids so `up`
 * refuses with doctor's words plus a way forward.
 */
const REMEDIES: Readonly<Record<string, string>> = {
  "not-root": "run sandkube as root inside the sandbox.",
  "no-mnt-namespace":
    "the sandbox must allow mount namespaces (unshare -m); ask for a sandbox with CAP_SYS_ADMIN.",
  "no-pid-namespace":
    "the sandbox must allow pid namespaces (unshare -p); ask for a sandbox with CAP_SYS_ADMIN.",
  "no-cgroups":
    "the sandbox must offer cgroups (a mounted hierarchy, or cgroup v1 mounts as root); gVisor has them from 2021 on.",
  "no-recursive-bind":
    "this kernel refuses MS_REC and overlayfs does not work on the data dir, so no container root can be mounted " +
    "(docs/gvisor-blockers.md B5). Put --data-dir on a filesystem that takes overlay mounts (a tmpfs does), " +
    "or use a gVisor release from 2024 or later.",
  "cni-host-network":
    "pods with a network namespace of their own need veth pairs, which this gVisor (before 2024) cannot make " +
    "(docs/gvisor-blockers.md B9, B10); run the workload as hostNetwork pods, or use a gVisor release from 2024 or later.",
  "no-setns":
    "this kernel cannot join namespaces by path; use a gVisor release from 2024 or later.",
};

export function remedyFor(blockerId: string): string {
  return REMEDIES[blockerId] ?? "see `sandkube doctor` for the facts behind it.";
}
