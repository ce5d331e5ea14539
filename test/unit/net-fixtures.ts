import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Transcript } from "../../src/probe/io.js";

/**
 * What the network, binaries and registry probes were given when their fixtures were recorded
 * (test/host/record-net-fixtures.ts). A replay must ask the same questions, so it uses these too.
 */
export const RECORDED_SEARCH_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];
export const RECORDED_LAB_DIRS = {
  labBinDir: "/var/cache/sandkube-lab/bin",
  labCniDir: "/var/cache/sandkube-lab/cni",
} as const;
/** Nothing listens on loopback port 9 (discard), so this proxy refuses every connection. */
export const RECORDED_PROXY_ENV: NodeJS.ProcessEnv = {
  HTTPS_PROXY: "http://127.0.0.1:9",
  NO_PROXY: "quay.io,.internal",
  SANDKUBE_REGISTRY_MIRRORS: "127.0.0.1:9",
};
export const RECORDED_DIRECT_ENV: NodeJS.ProcessEnv = {};

/** test/fixtures/<name>.transcript.json, read from the source tree (dist/ holds no fixtures). */
export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../../../test/fixtures/${name}.transcript.json`, import.meta.url));
}

export async function loadTranscript(name: string): Promise<Transcript> {
  const parsed = JSON.parse(await readFile(fixturePath(name), "utf8")) as Transcript;
  if (parsed.schema !== "sandkube.transcript/v1") {
    throw new Error(`${fixturePath(name)}: schema ${String(parsed.schema)}, expected v1`);
  }
  return parsed;
}
