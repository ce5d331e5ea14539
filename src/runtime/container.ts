import { cgroupPids, freezerFile } from "./cgroups.js";
import type { RuntimeContext } from "./context.js";
import {
  containerStatus,
  processStartTime,
  type ContainerState,
  type Status,
} from "./state-store.js";

export interface LoadedContainer {
  readonly state: ContainerState;
  readonly dir: string;
  readonly status: Status;
}

export function isFrozen(ctx: RuntimeContext, state: ContainerState): boolean {
  const freezer = freezerFile(state.cgroups);
  if (freezer === undefined) return false;
  try {
    const text = ctx.sys.readFile(freezer.file).trim();
    return freezer.version === 1 ? text === "FROZEN" || text === "FREEZING" : text === "1";
  } catch {
    return false;
  }
}

export function loadContainer(ctx: RuntimeContext, id: string): LoadedContainer {
  const state = ctx.store.load(id);
  const dir = ctx.store.dir(id);
  return { state, dir, status: containerStatus(ctx.sys, state, dir, () => isFrozen(ctx, state)) };
}

/** True while the container's init (this exact process, by start time) has not exited. */
export function initAlive(ctx: RuntimeContext, state: ContainerState): boolean {
  const proc = processStartTime(ctx.sys, state.pid);
  return (
    proc !== undefined &&
    proc.startTime === state.startTime &&
    proc.state !== "Z" &&
    proc.state !== "X"
  );
}

/** Waits for init to exit. It is not our child, so we poll; its real parent (the shim) reaps it. */
export async function waitInitGone(
  ctx: RuntimeContext,
  state: ContainerState,
  timeoutMs = 5000,
): Promise<boolean> {
  for (let waited = 0; waited < timeoutMs; waited += 5) {
    if (!initAlive(ctx, state)) return true;
    await ctx.sys.sleep(5);
  }
  return !initAlive(ctx, state);
}

/**
 * Every process of the container: its cgroup's, or where the sandbox gives no cgroup (gVisor's
 * `runsc do` mounts none), those in the init's pid namespace, when that is not our own.
 */
export function containerPids(ctx: RuntimeContext, state: ContainerState): number[] {
  const fromCgroup = cgroupPids(
    ctx.sys,
    state.cgroups.map((g) => g.dir),
  );
  if (fromCgroup !== undefined)
    return fromCgroup.includes(state.pid) ? fromCgroup : [state.pid, ...fromCgroup];
  let initNs: string;
  try {
    initNs = ctx.sys.readlink(`/proc/${state.pid}/ns/pid`);
    if (initNs === ctx.sys.readlink("/proc/self/ns/pid")) return [state.pid];
  } catch {
    return [state.pid];
  }
  const pids: number[] = [];
  for (const entry of ctx.sys.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (ctx.sys.readlink(`/proc/${entry}/ns/pid`) === initNs) pids.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return pids.includes(state.pid) ? pids : [state.pid, ...pids];
}
