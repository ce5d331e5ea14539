import { freezerFile, removeCgroups } from "./cgroups.js";
import { containerPids, loadContainer, waitInitGone } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { deleteHalfCreated } from "./half-created.js";
import { releaseSharedMounts } from "./release-mounts.js";
import { processStartTime, type ContainerState } from "./state-store.js";

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
    await killHelpers(ctx, c.state);
    if (c.status === "stopped" && c.state.helpers !== undefined) {
      // gVisor before Aug 2023 does not empty a pid namespace when its init dies under a subreaper
      // (task_exit.go findReparentTargetLocked walks past the dead init to the shim), so exec'd
      // processes outlive the init there; they go now, as they would have with the init on Linux.
      for (const pid of containerPids(ctx, c.state)) ctx.sys.kill(pid, 9);
    }
    if (c.state.sharedMounts !== undefined)
      await releaseSharedMounts(ctx, c.state.rootfs, c.dir, c.state.sharedMounts.rootfsDepth);
    const left = await removeCgroups(
      ctx.sys,
      c.state.cgroups.map((g) => g.dir),
    );
    left.forEach((l) => ctx.log.warn(`cgroup not removed: ${l}`));
    ctx.store.remove(id);
  });
}

/** The keeper and exec agent (kernels without setns) outlive the init; they go with the container. */
async function killHelpers(ctx: RuntimeContext, state: ContainerState): Promise<void> {
  const mine = (state.helpers ?? []).filter(
    (h) => processStartTime(ctx.sys, h.pid)?.startTime === h.startTime,
  );
  mine.forEach((h) => ctx.sys.kill(h.pid, 9));
  for (let waited = 0; waited < 2000; waited += 5) {
    const alive = mine.filter((h) => {
      const proc = processStartTime(ctx.sys, h.pid);
      return proc?.startTime === h.startTime && proc.state !== "Z" && proc.state !== "X";
    });
    if (alive.length === 0) return;
    await ctx.sys.sleep(5);
  }
}
