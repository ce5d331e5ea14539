import { freezerFile } from "./cgroups.js";
import { loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";

/** Freezes (pause) or thaws (resume) the container's cgroup. */
export async function setFrozen(ctx: RuntimeContext, id: string, frozen: boolean): Promise<void> {
  await ctx.store.withLock(id, async () => {
    const c = loadContainer(ctx, id);
    const verb = frozen ? "pause" : "resume";
    if (frozen && c.status !== "running")
      throw new RuntimeError(
        `cannot pause a container that is ${c.status === "stopped" ? "not running" : c.status}`,
      );
    if (!frozen && c.status !== "paused")
      throw new RuntimeError(`cannot resume a container that is ${c.status}: it is not paused`);
    const freezer = freezerFile(c.state.cgroups);
    if (freezer === undefined)
      throw new RuntimeError(
        `${verb}: the container has no freezer cgroup (this sandbox gives none)`,
      );
    ctx.sys.writeFile(
      freezer.file,
      freezer.version === 1 ? (frozen ? "FROZEN" : "THAWED") : frozen ? "1" : "0",
    );
  });
}

export const pause = (ctx: RuntimeContext, id: string): Promise<void> => setFrozen(ctx, id, true);
