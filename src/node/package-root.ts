import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The installed package's root: this file is dist/src/node/package-root.js inside it. */
export function packageRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
}

/** Binaries sandkube builds itself (Bun-compiled runtime and CNI plugin, C helpers). */
export function packageBinary(name: string): string {
  return join(packageRoot(), "dist", "bin", name);
}

export function supervisorEntry(): string {
  return join(packageRoot(), "dist", "src", "node", "supervisor-main.js");
}

export function sandkubeProxyEntry(): string {
  return join(packageRoot(), "dist", "src", "proxy", "main.js");
}

export function importWithoutMountsEntry(): string {
  return join(packageRoot(), "dist", "src", "images", "import-main.js");
}
