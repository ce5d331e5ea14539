import { constants } from "node:os";
import { cgroupPids } from "./cgroups.js";
import { containerPids, loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";

/** "9", "KILL", "SIGKILL" -> 9. */
export function parseSignal(text: string | undefined): number {
  if (text === undefined) return 15;
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n < 1 || n > 64) throw new RuntimeError(`signal ${text} is out of range`);
    return n;
  }
  const name = text.toUpperCase().startsWith("SIG")
    ? text.toUpperCase()
    : `SIG${text.toUpperCase()}`;
  const n = (constants.signals as Readonly<Record<string, number>>)[name];
  if (n === undefined) throw new RuntimeError(`unknown signal "${text}"`);
  return n;
}

export async function kill(
  ctx: RuntimeContext,
  id: string,
  signalText: string | undefined,
  all: boolean,
): Promise<void> {
  const signal = parseSignal(signalText);
  await ctx.store.withLock(id, async () => {
    const c = loadContainer(ctx, id);
    if (c.status === "stopped") {
      // The shim sends `kill --all 9` after init exits; that must succeed (runtime-contract.md).
      if (!all) throw new RuntimeError("container not running");
      // In a pod-shared pid namespace init's children outlive it, still in its cgroup and still
      // holding the shim's stdio, so containerd waits on them forever; runc signals them too
      // (libcontainer Signal with all=true). Only the cgroup: init's own pid may be reused.
      const left =
        cgroupPids(
          ctx.sys,
          c.state.cgroups.map((g) => g.dir),
        ) ?? [];
      for (const pid of left) ctx.sys.kill(pid, signal);
      return;
    }
    if (!all) {
      if (!ctx.sys.kill(c.state.pid, signal)) throw new RuntimeError("container not running");
      return;
    }
    const pids = containerPids(ctx, c.state);
    for (const pid of pids) ctx.sys.kill(pid, signal);
  });
}
