import { freezerFile, removeCgroups } from "./cgroups.js";
import { containerPids, loadContainer, waitInitGone } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { deleteHalfCreated } from "./half-created.js";

export async function deleteContainer(
  ctx: RuntimeContext,
  id: string,
  force: boolean,
): Promise<void> {
  if (ctx.sys.kindOf(ctx.store.dir(id)) === undefined) {
    if (force) return;
    throw new RuntimeError(`container ${id} does not exist`);
  }
  await ctx.store.withLock(id, async () => {
    // A create killed before state.json leaves a state dir only; delete is how that is undone.
    if (!ctx.store.hasState(id)) return deleteHalfCreated(ctx, id);
    const c = loadContainer(ctx, id);
    if (c.status === "running" || c.status === "paused") {
      if (!force)
        throw new RuntimeError(`cannot delete container ${id} that is not stopped: ${c.status}`);
    }
    if (c.status !== "stopped") {
      for (const pid of containerPids(ctx, c.state)) ctx.sys.kill(pid, 9);
      // A frozen process cannot die; thaw after the SIGKILL is queued.
      const freezer = freezerFile(c.state.cgroups);
      if (c.status === "paused" && freezer !== undefined)
        ctx.sys.writeFile(freezer.file, freezer.version === 1 ? "THAWED" : "0");
      if (!(await waitInitGone(ctx, c.state)))
        throw new RuntimeError(`container ${id}: init ${c.state.pid} did not die after SIGKILL`);
    }
    const left = await removeCgroups(
      ctx.sys,
      c.state.cgroups.map((g) => g.dir),
    );
    left.forEach((l) => ctx.log.warn(`cgroup not removed: ${l}`));
    ctx.store.remove(id);
  });
}
