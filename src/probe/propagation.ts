import type { Check } from "./check.js";
import { fromCommand, notRun } from "./check.js";
import type { ProbeIO } from "./io.js";
import type { MountEntry } from "./mountinfo.js";

export type Propagation = "shared" | "slave" | "private" | "unbindable" | "unknown";

/** How mounts made under / spread, which decides whether bind mounts reach pods (blocker 3). */
export interface MountPropagationFacts {
  readonly root: Propagation;
  /** The optional fields of /'s mountinfo line, e.g. ["shared:1"]. */
  readonly rootOptionalFields: readonly string[];
  /** Making / recursively private in a new mount namespace, as runc does for each container. */
  readonly makePrivateInNewNamespace: Check;
  /** Making / recursively shared in a new mount namespace, as sandkube does for the node. */
  readonly makeSharedInNewNamespace: Check;
}

/** Pure: proc(5) optional fields -> propagation type. */
export function propagationOf(optionalFields: readonly string[]): Propagation {
  if (optionalFields.some((f) => f.startsWith("shared:"))) return "shared";
  if (optionalFields.some((f) => f.startsWith("master:"))) return "slave";
  if (optionalFields.includes("unbindable")) return "unbindable";
  return "private";
}

export async function probeMountPropagation(
  io: ProbeIO,
  mounts: readonly MountEntry[] | null,
  options: { readonly isRoot: boolean },
): Promise<MountPropagationFacts> {
  // The last mount at / is the one processes see.
  const root = mounts?.filter((m) => m.mountPoint === "/").at(-1);
  const inNewNamespace = async (propagation: "private" | "shared"): Promise<Check> =>
    options.isRoot
      ? fromCommand(await io.run(["unshare", "--mount", "--propagation", propagation, "true"]))
      : notRun("not root: creating a mount namespace needs CAP_SYS_ADMIN");
  const makePrivateInNewNamespace = await inNewNamespace("private");
  const makeSharedInNewNamespace = await inNewNamespace("shared");
  return {
    root: root === undefined ? "unknown" : propagationOf(root.optionalFields),
    rootOptionalFields: root?.optionalFields ?? [],
    makePrivateInNewNamespace,
    makeSharedInNewNamespace,
  };
}
