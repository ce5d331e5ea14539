import { RuntimeError } from "../errors.js";
import type { Syscalls } from "../syscalls.js";

const MAX_SYMLINKS = 40;

/**
 * Resolves a container path to a host path under `rootfs`, following symlinks as the container
 * would see them (an absolute link target starts at the rootfs). A path that would leave the rootfs
 * through `..` or a symlink is an error: a mount there would land on the host.
 */
export function resolveInRootfs(
  sys: Syscalls,
  rootfs: string,
  containerPath: string,
  what: string,
): string {
  const resolved: string[] = [];
  const pending = containerPath.split("/").filter((c) => c !== "" && c !== ".");
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === "..") {
      if (resolved.length === 0)
        throw new RuntimeError(
          `${what} "${containerPath}" escapes the container's root filesystem through ".."`,
        );
      resolved.pop();
      continue;
    }
    const hostPath = `${rootfs}/${[...resolved, part].join("/")}`;
    if (sys.kindOf(hostPath) === "symlink") {
      if (++links > MAX_SYMLINKS)
        throw new RuntimeError(`${what} "${containerPath}": too many levels of symbolic links`);
      const target = sys.readlink(hostPath);
      const targetParts = target.split("/").filter((c) => c !== "" && c !== ".");
      if (target.startsWith("/")) resolved.length = 0;
      else {
        // A relative link may climb only as far as the rootfs.
        let depth = resolved.length;
        for (const t of targetParts) {
          depth += t === ".." ? -1 : 1;
          if (depth < 0)
            throw new RuntimeError(
              `${what} "${containerPath}" escapes the container's root filesystem through the symlink /${[...resolved, part].join("/")} -> ${target}`,
            );
        }
      }
      pending.unshift(...targetParts);
      continue;
    }
    resolved.push(part);
  }
  return resolved.length === 0 ? rootfs : `${rootfs}/${resolved.join("/")}`;
}
