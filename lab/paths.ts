import { join } from "node:path";

/** The lab caches everything outside the repository, so a fresh clone reuses earlier builds. */
export function labDir(env: NodeJS.ProcessEnv = process.env): string {
  return env["SANDKUBE_LAB_DIR"] ?? "/var/cache/sandkube-lab";
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
  return join(labDir(env), "manifest.json");
}
