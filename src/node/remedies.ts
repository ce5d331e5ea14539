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
    "this gVisor is older than 2024 and refuses MS_REC, so containerd cannot unpack images (docs/gvisor-blockers.md B5). " +
    "Use a gVisor release from 2024 or later; an unpacker for old gVisor is not in this version of sandkube.",
  "no-setns":
    "this kernel cannot join namespaces by path; use a gVisor release from 2024 or later.",
};

export function remedyFor(blockerId: string): string {
  return REMEDIES[blockerId] ?? "see `sandkube doctor` for the facts behind it.";
}
