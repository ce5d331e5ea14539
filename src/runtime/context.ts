import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
  const candidates = [join(dirname(process.execPath), "sandkube-init")];
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    candidates.push(
      join(here, "../../native/build/sandkube-init"),
      join(here, "../../../native/build/sandkube-init"),
    );
  } catch {
    // A compiled binary's module URL is not a file URL.
  }
  return candidates.find((c) => existsSync(c)) ?? (candidates[0] as string);
}
