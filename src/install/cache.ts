import { join } from "node:path";

/**
 * sandkube's binary cache: bin/, cni/, manifest.json, and the Go module and build caches that
 * produced them. The lab builds into the same folder (lab/paths.ts), so a binary is built once
 * and a gVisor lab sandbox, whose PATH holds bin/, runs what `sandkube install` put there.
 * SANDKUBE_LAB_DIR, the lab's older name for the folder, is honoured when SANDKUBE_CACHE_DIR is unset.
 */
export function installCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env["SANDKUBE_CACHE_DIR"] ?? env["SANDKUBE_LAB_DIR"] ?? DEFAULT_CACHE_DIR;
}

export const DEFAULT_CACHE_DIR = "/var/cache/sandkube";

/** Where the lab cached everything before it shared sandkube's cache; docs/install.md says how to adopt it. */
export const LEGACY_LAB_DIR = "/var/cache/sandkube-lab";

export function manifestPath(cacheDir: string): string {
  return join(cacheDir, "manifest.json");
}
