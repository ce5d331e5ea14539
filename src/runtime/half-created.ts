import {
  cgroupDirs,
  cgroupPids,
  parseCgroupMounts,
  parseProcCgroup,
  removeCgroups,
} from "./cgroups.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { releaseSharedMounts } from "./release-mounts.js";
import { processStartTime } from "./state-store.js";
import type { Syscalls } from "./syscalls.js";

/** The name create.ts gives the helper's instruction list inside the state dir. */
export const INSTRUCTION_FILE = "init.instructions";

/**
 * The helper and the init it forks, found by their command line: `sandkube-init <state
 * dir>/init.instructions <fd>` is inherited across fork and only replaced by the container's
 * execve, which happens after `start`, so it names every process a killed create left behind.
 */
export function helperProcesses(sys: Syscalls, instructionFile: string): number[] {
  const found: number[] = [];
  for (const entry of sys.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = sys.readFile(`/proc/${entry}/cmdline`).split("\0");
      if (argv[1] === instructionFile) found.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

/**
 * The cgroup dirs the helper was told to join: `cgroup_join\0<dir>/cgroup.procs\0`. Only dirs
 * under a cgroup mount count, since the container's own arguments could spell the same words.
 */
export function cgroupsInInstructions(text: string, mountPoints: readonly string[]): string[] {
  const parts = text.split("\0");
  const dirs: string[] = [];
  parts.forEach((p, i) => {
    const next = parts[i + 1];
    if (p !== "cgroup_join" || next === undefined || !next.endsWith("/cgroup.procs")) return;
    const dir = next.slice(0, -"/cgroup.procs".length);
    if (mountPoints.some((m) => dir.startsWith(`${m}/`))) dirs.push(dir);
  });
  return dirs;
}

/**
 * The cgroup dirs of a forked init: it joined the container's cgroups before forking into its own
 * pid namespace. The helper itself is skipped, since before its `cgroup_join` it is still in its
 * caller's cgroup (the shim's), whose processes must never be taken for the container's.
 */
function initCgroups(sys: Syscalls, pid: number): string[] {
  try {
    if (sys.readlink(`/proc/${pid}/ns/pid`) === sys.readlink("/proc/self/ns/pid")) return [];
    const hierarchies = parseCgroupMounts(sys.readFile("/proc/self/mountinfo"));
    const own = parseProcCgroup(sys.readFile("/proc/self/cgroup"));
    const ownDirs = new Set(
      [...own.values()].flatMap((p) =>
        cgroupDirs(hierarchies, { path: p, systemdForm: false }, own),
      ),
    );
    const theirs = parseProcCgroup(sys.readFile(`/proc/${pid}/cgroup`));
    return [...theirs.values()]
      .filter((p) => p !== "/" && p !== "")
      .flatMap((p) => cgroupDirs(hierarchies, { path: p, systemdForm: false }, own))
      .filter((d) => !ownDirs.has(d) && sys.kindOf(d) === "directory");
  } catch {
    return [];
  }
}

function gone(sys: Syscalls, pid: number): boolean {
  const proc = processStartTime(sys, pid);
  return proc === undefined || proc.state === "Z" || proc.state === "X";
}

/**
 * Deletes a container whose create was killed before state.json: the state dir exists, and any of
 * the recorded cgroups, the helper, or a parked init may too. Without state.json there is no init
 * pid to trust, so processes are found by command line and by cgroup.
 */
export async function deleteHalfCreated(ctx: RuntimeContext, id: string): Promise<void> {
  const { sys, store, log } = ctx;
  const creator = store.liveCreator(id);
  if (creator !== undefined)
    throw new RuntimeError(
      `container ${id} is still being created by process ${creator}; delete it once create has returned`,
    );
  const dir = store.dir(id);
  const instructionFile = `${dir}/${INSTRUCTION_FILE}`;
  let fromInstructions: string[] = [];
  try {
    const mountPoints = parseCgroupMounts(sys.readFile("/proc/self/mountinfo")).map(
      (h) => h.mountPoint,
    );
    fromInstructions = cgroupsInInstructions(sys.readFile(instructionFile), mountPoints);
  } catch {
    // Not written yet, or already removed once the helper reported.
  }
  const cgroups = new Set([...store.pendingCgroups(id), ...fromInstructions]);
  // Scan and kill until a scan finds nobody: a helper may fork between a scan and its SIGKILL, and
  // that child is only seen by the next scan (a fork with SIGKILL pending never completes).
  for (let waited = 0; ; waited += 5) {
    const helpers = helperProcesses(sys, instructionFile);
    helpers.flatMap((pid) => initCgroups(sys, pid)).forEach((d) => cgroups.add(d));
    const pids = new Set(helpers);
    for (const d of cgroups) (cgroupPids(sys, [d]) ?? []).forEach((pid) => pids.add(pid));
    const alive = [...pids].filter((pid) => !gone(sys, pid));
    if (alive.length === 0) break;
    if (waited >= 5000)
      throw new RuntimeError(
        `container ${id}: processes ${alive.join(", ")} did not die after SIGKILL`,
      );
    alive.forEach((pid) => sys.kill(pid, 9));
    await sys.sleep(5);
  }
  const left = await removeCgroups(sys, [...cgroups]);
  left.forEach((l) => log.warn(`cgroup not removed: ${l}`));
  const shared = store.pendingSharedMounts(id);
  if (shared !== undefined) await releaseSharedMounts(ctx, shared.rootfs, dir, shared.rootfsDepth);
  store.remove(id);
}
