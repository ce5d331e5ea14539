import type { Check } from "./check.js";
import { fromCommand, fromIo, no, notRun, YES } from "./check.js";
import type { ProbeIO } from "./io.js";
import type { MountEntry } from "./mountinfo.js";
import { withScratchDir } from "./scratch.js";

/** Where a container manager would create its cgroups, and whether it can. */
export interface CgroupHierarchyFacts {
  readonly mountPoint: string;
  readonly version: 1 | 2;
  /** v1: the controllers bound to this hierarchy (and `name=...`); v2: cgroup.controllers. */
  readonly controllers: readonly string[];
  readonly createChild: Check;
  /** Moving a short-lived shell into the child through cgroup.procs. */
  readonly moveProcess: Check;
  /** rmdir of the child afterwards: must be "yes", or the probe leaked a cgroup. */
  readonly removeChild: Check;
}

export interface CgroupControllerFacts {
  readonly name: string;
  readonly hierarchy: number;
  readonly enabled: boolean;
}

export interface CgroupFacts {
  /**
   * What is mounted: `v2` when /sys/fs/cgroup itself is cgroup2 (what runc and kubelet call unified
   * mode), `hybrid` when v1 hierarchies sit next to a cgroup2 mount, `v1`, or `none`.
   */
  readonly mode: "v1" | "v2" | "hybrid" | "none";
  /** /proc/cgroups: the v1 controllers the kernel offers. */
  readonly kernelControllers: readonly CgroupControllerFacts[];
  /** /proc/filesystems lists cgroup2. */
  readonly cgroup2Supported: boolean;
  readonly hierarchies: readonly CgroupHierarchyFacts[];
  /**
   * Only probed when nothing is mounted: each v1 hierarchy the kernel has, mounted in scratch space
   * and used as a container manager would.
   */
  readonly scratchV1Mounts: readonly ScratchV1Mount[];
  /** "yes" when the controllers kubelet requires all mounted and the scratch space was removed. */
  readonly scratchV1MountCheck: Check;
}

export interface ScratchV1Mount {
  readonly controllers: readonly string[];
  readonly mount: Check;
  readonly hierarchy: CgroupHierarchyFacts | null;
  readonly unmount: Check;
}

/**
 * Enabled controllers grouped as the kernel binds them: controllers sharing a /proc/cgroups
 * hierarchy id must be mounted together (mounting one alone is EBUSY; gVisor pre-assigns one
 * hierarchy per controller), and hierarchy 0 means not bound yet, so each stands alone.
 */
export function controllerGroups(controllers: readonly CgroupControllerFacts[]): string[][] {
  const byHierarchy = new Map<number, string[]>();
  const alone: string[][] = [];
  for (const c of controllers) {
    if (!c.enabled) continue;
    if (c.hierarchy === 0) {
      alone.push([c.name]);
      continue;
    }
    const group = byHierarchy.get(c.hierarchy) ?? [];
    group.push(c.name);
    byHierarchy.set(c.hierarchy, group);
  }
  return [...byHierarchy.values(), ...alone];
}

async function mountEachGroup(
  io: ProbeIO,
  dir: string,
  groups: readonly string[][],
): Promise<ScratchV1Mount[]> {
  const results: ScratchV1Mount[] = [];
  for (const controllers of groups) {
    const target = `${dir}/${controllers.join(",")}`;
    const made = fromCommand(await io.run(["mkdir", target]), `mkdir ${target}`);
    if (made.result !== "yes") {
      results.push({ controllers, mount: made, hierarchy: null, unmount: YES });
      continue;
    }
    const options = controllers.join(",");
    const mount = fromCommand(
      await io.run(["mount", "-t", "cgroup", "-o", options, "cgroup", target]),
      `mount -t cgroup -o ${options}`,
    );
    if (mount.result !== "yes") {
      results.push({ controllers, mount, hierarchy: null, unmount: YES });
      continue;
    }
    let hierarchy: CgroupHierarchyFacts | null = null;
    let unmount: Check = notRun("not attempted");
    try {
      hierarchy = await tryChildCgroup(io, target, 1, controllers, true);
    } finally {
      unmount = fromCommand(await io.run(["umount", target]), `umount ${target}`);
    }
    results.push({ controllers, mount, hierarchy, unmount });
  }
  return results;
}

const CGROUP_ROOT = "/sys/fs/cgroup";

/** kubelet's validateSystemRequirements fails unless each of these has a v1 mount point. */
export const KUBELET_REQUIRED_CONTROLLERS = ["cpu", "cpuacct", "cpuset", "memory"] as const;

const USUAL_V1_CONTROLLERS = [
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "pids",
  "devices",
  "freezer",
  "blkio",
  "hugetlb",
];

export function parseProcCgroups(text: string): CgroupControllerFacts[] {
  const controllers: CgroupControllerFacts[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const [name, hierarchy, , enabled] = line.split(/\s+/);
    if (name === undefined) continue;
    controllers.push({
      name,
      hierarchy: Number.parseInt(hierarchy ?? "0", 10),
      enabled: enabled === "1",
    });
  }
  return controllers;
}

/** Pure: the cgroup mode that runc and kubelet would detect from these mounts. */
export function cgroupMode(mounts: readonly MountEntry[]): CgroupFacts["mode"] {
  const v1 = mounts.some((m) => m.fsType === "cgroup");
  const v2Mounts = mounts.filter((m) => m.fsType === "cgroup2");
  if (v2Mounts.some((m) => m.mountPoint === CGROUP_ROOT)) return "v2";
  if (v1 && v2Mounts.length > 0) return "hybrid";
  if (v1) return "v1";
  return v2Mounts.length > 0 ? "v2" : "none";
}

function v1Controllers(mount: MountEntry, known: ReadonlySet<string>): string[] {
  return mount.superOptions
    .split(",")
    .filter((option) => known.has(option) || option.startsWith("name="));
}

/**
 * A new v1 cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and refuses tasks (ENOSPC)
 * until they are filled; runc copies them from the parent (libcontainer cpuset.go ensureParent).
 */
async function initCpuset(io: ProbeIO, parent: string, child: string): Promise<Check> {
  for (const file of ["cpuset.cpus", "cpuset.mems"]) {
    const value = await io.read(`${parent}/${file}`);
    if (!value.ok) return fromIo(value);
    const written = await io.write(`${child}/${file}`, value.value);
    if (!written.ok) return fromIo(written);
  }
  return YES;
}

async function tryChildCgroup(
  io: ProbeIO,
  mountPoint: string,
  version: 1 | 2,
  controllers: readonly string[],
  isRoot: boolean,
): Promise<CgroupHierarchyFacts> {
  const base = { mountPoint, version, controllers };
  if (!isRoot) {
    const skipped = notRun("not root: creating cgroups needs root");
    return { ...base, createChild: skipped, moveProcess: skipped, removeChild: skipped };
  }
  const child = `${mountPoint}/${io.scratchName("cgroup")}`;
  const createChild = fromCommand(await io.run(["mkdir", child]), `mkdir ${child}`);
  if (createChild.result !== "yes") {
    return { ...base, createChild, moveProcess: notRun("no child cgroup"), removeChild: YES };
  }
  let moveProcess: Check = notRun("not attempted");
  let removeChild: Check = notRun("not attempted");
  try {
    const ready =
      version === 1 && controllers.includes("cpuset")
        ? await initCpuset(io, mountPoint, child)
        : YES;
    // The shell moves itself and exits, so the child is empty again before rmdir. bash, because
    // dash reports every failed write as "I/O error" and hides the errno.
    moveProcess =
      ready.result === "yes"
        ? fromCommand(
            await io.run(["bash", "-c", 'echo $$ > "$1/cgroup.procs"', "bash", child]),
            `echo $$ > ${child}/cgroup.procs`,
          )
        : ready;
  } finally {
    removeChild = fromCommand(await io.run(["rmdir", child]), `rmdir ${child}`);
  }
  return { ...base, createChild, moveProcess, removeChild };
}

export async function probeCgroups(
  io: ProbeIO,
  mounts: readonly MountEntry[] | null,
  options: { readonly isRoot: boolean; readonly scratchParent: string },
): Promise<CgroupFacts> {
  const procCgroups = await io.read("/proc/cgroups");
  const kernelControllers = procCgroups.ok ? parseProcCgroups(procCgroups.value) : [];
  const known = new Set(kernelControllers.map((c) => c.name));
  const filesystems = await io.read("/proc/filesystems");
  const cgroup2Supported = filesystems.ok && /\tcgroup2$/m.test(filesystems.value);

  const cgroupMounts = (mounts ?? []).filter(
    (m) => m.fsType === "cgroup" || m.fsType === "cgroup2",
  );
  const hierarchies: CgroupHierarchyFacts[] = [];
  for (const mount of cgroupMounts) {
    let controllers: string[];
    if (mount.fsType === "cgroup") {
      controllers = v1Controllers(mount, known);
    } else {
      const listed = await io.read(`${mount.mountPoint}/cgroup.controllers`);
      controllers = listed.ok ? listed.value.trim().split(/\s+/).filter(Boolean) : [];
    }
    hierarchies.push(
      await tryChildCgroup(
        io,
        mount.mountPoint,
        mount.fsType === "cgroup" ? 1 : 2,
        controllers,
        options.isRoot,
      ),
    );
  }

  const mode = cgroupMode(cgroupMounts);
  let scratchV1Mounts: ScratchV1Mount[] = [];
  let scratchV1MountCheck: Check = notRun("cgroups are already mounted");
  const cgroupV1Supported = filesystems.ok && /\tcgroup$/m.test(filesystems.value);
  // Older gVisor lists controllers in /proc/cgroups only once a hierarchy is mounted, so an empty
  // list on a kernel with cgroupfs means "try the usual ones", not "none".
  const groups =
    kernelControllers.length === 0 && cgroupV1Supported
      ? USUAL_V1_CONTROLLERS.map((name) => [name])
      : controllerGroups(kernelControllers);
  if (mode === "none" && !options.isRoot) {
    scratchV1MountCheck = notRun("not root: mounting cgroupfs needs root");
  } else if (mode === "none" && groups.length === 0) {
    scratchV1MountCheck = notRun("no cgroup v1 filesystem and no enabled controller");
  } else if (mode === "none") {
    const outcome = await withScratchDir(io, options.scratchParent, "cgmnt", (dir) =>
      mountEachGroup(io, dir, groups),
    );
    scratchV1Mounts = outcome.value ?? [];
    const firstFailure = KUBELET_REQUIRED_CONTROLLERS.map(
      (name) =>
        scratchV1Mounts.find((m) => m.controllers.includes(name))?.mount ??
        no("ENOENT", `no ${name} controller to mount`),
    ).find((check) => check.result !== "yes");
    scratchV1MountCheck =
      outcome.created.result !== "yes" ? outcome.created : (firstFailure ?? outcome.removed);
  }

  return {
    mode,
    kernelControllers,
    cgroup2Supported,
    hierarchies,
    scratchV1Mounts,
    scratchV1MountCheck,
  };
}
