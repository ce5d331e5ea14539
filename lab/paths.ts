import { realpathSync } from "node:fs";
import { join } from "node:path";
import { installCacheDir, manifestPath } from "../src/install/cache.js";

/**
 * The lab caches everything outside the repository, so a fresh clone reuses earlier builds. It is
 * sandkube's own install cache (src/install/cache.ts): the node's binaries are built once, for both.
 * Resolved through symlinks because the gVisor runner finds the mounts it must undo by path prefix
 * in /proc/self/mountinfo, which names resolved paths: through a symlinked cache (the old
 * /var/cache/sandkube-lab adopted with `ln -s`, docs/install.md) it left its rootfs mounted.
 */
export function labDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = installCacheDir(env);
  try {
    return realpathSync(dir);
  } catch {
    // Not created yet: the first build makes it, and a new folder is no symlink.
    return dir;
  }
}

/** Every lab binary lands flat in one folder, so a sandbox can put it on PATH. */
export function labBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(env), "bin");
}

export function labBinary(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(labBinDir(env), name);
}

/** CNI plugins go where containerd looks for them by default layout: one folder of plugins. */
export function labCniDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(env), "cni");
}

export function labManifestPath(env: NodeJS.ProcessEnv = process.env): string {
  return manifestPath(labDir(env));
}
