/**
 * Kernels without mount namespaces. gVisor before Aug 2023 ignores CLONE_NEWNS (task_clone.go:
 * "TODO(b/63601033): Implement CLONE_NEWNS"), so every mount a container's init makes lands in the
 * sandbox's one mount table and outlives the container. delete takes them down again.
 */
import { ins, type Instruction } from "../instructions.js";
import type { Syscalls } from "../syscalls.js";

/** Mount points in /proc/self/mountinfo order (field 5, octal escapes decoded). */
export function mountPoints(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const field = line.split(" ")[4];
    if (field === undefined || field === "") continue;
    out.push(
      field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))),
    );
  }
  return out;
}

function under(path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/**
 * The unmounts that leave the mount table as it was before create: everything below the rootfs
 * and the state dir (deepest first), then the mounts stacked on the rootfs itself beyond the
 * `rootfsDepth` that were there before (the shim's own rootfs mount among them).
 */
export function planReleaseSharedMounts(
  mountinfo: string,
  rootfs: string,
  stateDir: string,
  rootfsDepth: number,
): Instruction[] {
  const points = mountPoints(mountinfo);
  const below = points
    .map((p, order) => ({ p, order }))
    .filter(({ p }) => under(p, rootfs) || under(p, stateDir) || p === stateDir)
    .sort((a, b) => b.p.split("/").length - a.p.split("/").length || b.order - a.order)
    .map(({ p }) => ins.umount(p));
  const stacked = points.filter((p) => p === rootfs).length - rootfsDepth;
  const atRoot = Array.from({ length: Math.max(0, stacked) }, () => ins.umount(rootfs));
  return [...below, ...atRoot, ins.exit()];
}

/** How many mounts sit on `path` now. */
export function mountDepth(mountinfo: string, path: string): number {
  return mountPoints(mountinfo).filter((p) => p === path).length;
}

/** Whether each container can have mounts of its own (a kernel with mount namespaces shows them). */
export function kernelIsolatesMounts(sys: Syscalls): boolean {
  return sys.kindOf("/proc/self/ns/mnt") !== undefined;
}
