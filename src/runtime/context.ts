import { existsSync } from "node:fs";
import type { GlobalOptions } from "./args.js";
import type { Logger } from "./log.js";
import { StateStore } from "./state-store.js";
import type { Syscalls } from "./syscalls.js";

/** What every command gets: the machine, the log, the global flags and the state store. */
export interface RuntimeContext {
  readonly sys: Syscalls;
  readonly log: Logger;
  readonly global: GlobalOptions;
  readonly store: StateStore;
  readonly helperPath: string;
  /** Where command output goes (stdout); a parameter so tests can capture it. */
  readonly print: (text: string) => void;
}

export function makeContext(
  sys: Syscalls,
  log: Logger,
  global: GlobalOptions,
  helperPath: string,
  print: (text: string) => void,
): RuntimeContext {
  return { sys, log, global, store: new StateStore(sys, global.root), helperPath, print };
}

/**
 * Finds native/sandkube-init: $SANDKUBE_INIT, next to a compiled runtime binary, or in the source
 * tree's native/build when run as `bun src/runtime/main.ts`.
 */
export function findHelper(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env["SANDKUBE_INIT"];
  if (fromEnv) return fromEnv;
  const candidates = [`${dirOf(process.execPath)}/sandkube-init`];
  // A compiled binary's module URL is not a file URL; then only the binary's folder counts.
  const url = new URL(import.meta.url);
  if (url.protocol === "file:") {
    const here = dirOf(decodeURIComponent(url.pathname));
    candidates.push(
      `${here}/../../native/build/sandkube-init`,
      `${here}/../../../native/build/sandkube-init`,
    );
  }
  return candidates.find((c) => existsSync(c)) ?? (candidates[0] as string);
}

// node:path and node:url cost the runtime's every start more than these two lines (docs/runtime-engine.md).
function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}
