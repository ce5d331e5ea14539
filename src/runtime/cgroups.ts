import type { OciDeviceRule, OciResources } from "./spec.js";
import { isErrno, type Syscalls } from "./syscalls.js";

/** One mounted cgroup hierarchy: a v1 controller set, or the unified (v2) tree. */
export interface Hierarchy {
  readonly version: 1 | 2;
  /** v1 controllers (and `name=...` for named hierarchies); empty for v2. */
  readonly controllers: readonly string[];
  readonly mountPoint: string;
  /** The cgroup the mount shows as its root (mountinfo field 4); "/" outside cgroup namespaces. */
  readonly root: string;
}

/** Reads cgroup mounts out of /proc/self/mountinfo. */
export function parseCgroupMounts(mountinfo: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of mountinfo.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (pre === undefined || post === undefined) continue;
    const fields = pre.split(" ");
    const [fstype, , superOptions] = post.split(" ");
    const root = fields[3];
    const mountPoint = fields[4];
    if (root === undefined || mountPoint === undefined) continue;
    if (fstype === "cgroup2") out.push({ version: 2, controllers: [], mountPoint, root });
    else if (fstype === "cgroup") {
      const controllers = (superOptions ?? "")
        .split(",")
        .filter(
          (o) =>
            o !== "rw" &&
            o !== "ro" &&
            !o.startsWith("release_agent") &&
            o !== "clone_children" &&
            o !== "xattr",
        );
      out.push({ version: 1, controllers, mountPoint, root });
    }
  }
  return out;
}

/** /proc/self/cgroup: hierarchy key ("cpu,cpuacct", "name=systemd", "" for v2) -> path. */
export function parseProcCgroup(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) map.set(m[1] as string, m[2] as string);
  }
  return map;
}

/** "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice", as systemd nests slices. */
export function expandSlice(slice: string): string {
  if (slice === "" || slice === "-.slice") return "";
  const base = slice.replace(/\.slice$/, "");
  const parts = base.split("-");
  let path = "";
  let prefix = "";
  for (const part of parts) {
    prefix = prefix === "" ? part : `${prefix}-${part}`;
    path += `/${prefix}.slice`;
  }
  return path;
}

export const SYSTEMD_FORM = /^[^/:]*:[^/:]*:[^/:]*$/;

export interface CgroupLocation {
  /** Absolute (from a hierarchy's root) or relative (to the runtime's own cgroup) path. */
  readonly path: string;
  readonly systemdForm: boolean;
}

/**
 * Interprets linux.cgroupsPath. Both forms CRI sends are accepted: a path, or systemd's
 * "slice:prefix:name" (with --systemd-cgroup), which becomes the same tree systemd would make.
 */
export function cgroupLocation(
  cgroupsPath: string | undefined,
  id: string,
  systemdFlag: boolean,
): CgroupLocation {
  const raw = cgroupsPath ?? "";
  if (systemdFlag || SYSTEMD_FORM.test(raw)) {
    const [slice = "", prefix = "", name = ""] =
      raw === "" ? ["system.slice", "sandkube", id] : raw.split(":");
    const unit = name.endsWith(".slice")
      ? name
      : `${prefix === "" ? "" : `${prefix}-`}${name === "" ? id : name}.scope`;
    const parent = expandSlice(slice === "" ? "system.slice" : slice);
    return { path: `${parent}/${unit}`, systemdForm: true };
  }
  if (raw === "") return { path: `/sandkube/${id}`, systemdForm: false };
  return { path: raw, systemdForm: false };
}

function hierarchyKey(h: Hierarchy): string {
  return h.version === 2 ? "" : h.controllers.join(",");
}

/** The directory of the container's cgroup in each hierarchy. */
export function cgroupDirs(
  hierarchies: readonly Hierarchy[],
  location: CgroupLocation,
  own: Map<string, string>,
): string[] {
  return hierarchies.map((h) => {
    let path = location.path;
    if (!path.startsWith("/")) path = `${own.get(hierarchyKey(h)) ?? "/"}/${path}`;
    // Inside a cgroup namespace the mount root is not "/", and paths are relative to it.
    if (h.root !== "/" && path.startsWith(h.root)) path = path.slice(h.root.length);
    return `${h.mountPoint}${path.startsWith("/") ? "" : "/"}${path}`
      .replace(/\/+/g, "/")
      .replace(/\/$/, "");
  });
}

export interface CgroupWrite {
  readonly file: string;
  readonly value: string;
}

function deviceRule(r: OciDeviceRule): string {
  const num = (n: number | undefined): string => (n === undefined || n < 0 ? "*" : String(n));
  return `${r.type ?? "a"} ${num(r.major)}:${num(r.minor)} ${r.access ?? "rwm"}`;
}

/**
 * Devices every container may use, whatever the spec's device rules say: runc adds the same set
 * (libcontainer/specconv AllowedDevices), and the runtime binds these nodes into every /dev.
 */
export const DEFAULT_DEVICE_RULES: readonly OciDeviceRule[] = [
  { allow: true, type: "c", major: -1, minor: -1, access: "m" },
  { allow: true, type: "b", major: -1, minor: -1, access: "m" },
  { allow: true, type: "c", major: 1, minor: 3, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 5, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 7, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 8, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 9, access: "rwm" },
  { allow: true, type: "c", major: 5, minor: 0, access: "rwm" },
  { allow: true, type: "c", major: 5, minor: 2, access: "rwm" },
  { allow: true, type: "c", major: 136, minor: -1, access: "rwm" },
];

/** The files to write for `resources` in one hierarchy. */
export function resourceWrites(h: Hierarchy, r: OciResources, withDevices: boolean): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  const has = (c: string): boolean => h.controllers.includes(c);
  if (h.version === 1) {
    const memory = r.memory ?? {};
    if (has("memory")) {
      if (memory.limit !== undefined)
        w.push({ file: "memory.limit_in_bytes", value: String(memory.limit) });
      if (memory.reservation !== undefined)
        w.push({ file: "memory.soft_limit_in_bytes", value: String(memory.reservation) });
      // After the limit: memsw may never be below memory.limit_in_bytes (runc's setMemoryAndSwap).
      if (memory.swap !== undefined)
        w.push({ file: "memory.memsw.limit_in_bytes", value: String(memory.swap) });
      if (memory.swappiness !== undefined)
        w.push({ file: "memory.swappiness", value: String(memory.swappiness) });
      if (memory.disableOOMKiller === true) w.push({ file: "memory.oom_control", value: "1" });
    }
    const blockIO = r.blockIO ?? {};
    if (has("blkio")) {
      if (blockIO.weight !== undefined && blockIO.weight !== 0)
        w.push({ file: "blkio.weight", value: String(blockIO.weight) });
      if (blockIO.leafWeight !== undefined && blockIO.leafWeight !== 0)
        w.push({ file: "blkio.leaf_weight", value: String(blockIO.leafWeight) });
      for (const d of blockIO.weightDevice ?? []) {
        if (d.weight !== undefined)
          w.push({ file: "blkio.weight_device", value: `${d.major}:${d.minor} ${d.weight}` });
        if (d.leafWeight !== undefined)
          w.push({
            file: "blkio.leaf_weight_device",
            value: `${d.major}:${d.minor} ${d.leafWeight}`,
          });
      }
      for (const [field, file] of BLKIO_THROTTLES)
        for (const d of blockIO[field] ?? [])
          w.push({ file, value: `${d.major}:${d.minor} ${d.rate}` });
    }
    if (has("net_cls") && r.network?.classID !== undefined)
      w.push({ file: "net_cls.classid", value: String(r.network.classID) });
    if (has("net_prio"))
      for (const p of r.network?.priorities ?? [])
        w.push({ file: "net_prio.ifpriomap", value: `${p.name} ${p.priority}` });
    if (has("hugetlb"))
      for (const l of r.hugepageLimits ?? [])
        w.push({ file: `hugetlb.${l.pageSize}.limit_in_bytes`, value: String(l.limit) });
    if (has("cpu") && r.cpu?.shares !== undefined)
      w.push({ file: "cpu.shares", value: String(r.cpu.shares) });
    if (has("cpu") && r.cpu?.period !== undefined)
      w.push({ file: "cpu.cfs_period_us", value: String(r.cpu.period) });
    if (has("cpu") && r.cpu?.quota !== undefined)
      w.push({ file: "cpu.cfs_quota_us", value: String(r.cpu.quota) });
    if (has("cpuset") && r.cpu?.cpus) w.push({ file: "cpuset.cpus", value: r.cpu.cpus });
    if (has("cpuset") && r.cpu?.mems) w.push({ file: "cpuset.mems", value: r.cpu.mems });
    if (has("pids") && r.pids?.limit !== undefined)
      w.push({ file: "pids.max", value: r.pids.limit <= 0 ? "max" : String(r.pids.limit) });
    if (has("devices") && withDevices && r.devices !== undefined) {
      for (const rule of [...r.devices, ...DEFAULT_DEVICE_RULES])
        w.push({ file: rule.allow ? "devices.allow" : "devices.deny", value: deviceRule(rule) });
    }
  } else {
    if (r.memory?.limit !== undefined)
      w.push({ file: "memory.max", value: r.memory.limit < 0 ? "max" : String(r.memory.limit) });
    if (r.memory?.reservation !== undefined)
      w.push({
        file: "memory.low",
        value: r.memory.reservation < 0 ? "max" : String(r.memory.reservation),
      });
    // OCI's swap is memory+swap, v2's memory.swap.max is swap alone (runc's ConvertMemorySwapToCgroupV2Value).
    if (r.memory?.swap !== undefined && r.memory.limit !== undefined)
      w.push({
        file: "memory.swap.max",
        value:
          r.memory.swap < 0 || r.memory.limit < 0
            ? "max"
            : String(Math.max(0, r.memory.swap - r.memory.limit)),
      });
    if (r.cpu?.shares !== undefined && r.cpu.shares > 0)
      // runc's cgroups.ConvertCPUSharesToCgroupV2Value.
      w.push({
        file: "cpu.weight",
        value: String(1 + Math.floor(((r.cpu.shares - 2) * 9999) / 262142)),
      });
    if (r.cpu?.quota !== undefined || r.cpu?.period !== undefined)
      w.push({
        file: "cpu.max",
        value: `${r.cpu.quota === undefined || r.cpu.quota < 0 ? "max" : r.cpu.quota} ${r.cpu.period ?? 100000}`,
      });
    if (r.cpu?.cpus) w.push({ file: "cpuset.cpus", value: r.cpu.cpus });
    if (r.cpu?.mems) w.push({ file: "cpuset.mems", value: r.cpu.mems });
    if (r.pids?.limit !== undefined)
      w.push({ file: "pids.max", value: r.pids.limit <= 0 ? "max" : String(r.pids.limit) });
    for (const [file, value] of Object.entries(r.unified ?? {})) w.push({ file, value });
  }
  return w;
}

const BLKIO_THROTTLES = [
  ["throttleReadBpsDevice", "blkio.throttle.read_bps_device"],
  ["throttleWriteBpsDevice", "blkio.throttle.write_bps_device"],
  ["throttleReadIOPSDevice", "blkio.throttle.read_iops_device"],
  ["throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"],
] as const;

/**
 * Resource fields the spec sets that no write above carries out on this cgroup version, so the
 * container's log says so instead of the limit vanishing.
 */
export function unappliedResources(r: OciResources, version: 1 | 2): string[] {
  const set = (v: unknown): boolean =>
    v !== undefined && !(Array.isArray(v) && v.length === 0) && v !== false;
  const unapplied: string[] = [];
  if (set(r.memory?.kernel)) unapplied.push("memory.kernel (deprecated; runc ignores it too)");
  if (set(r.memory?.kernelTCP)) unapplied.push("memory.kernelTCP");
  if (set(r.rdma) && Object.keys(r.rdma ?? {}).length > 0) unapplied.push("rdma");
  if (version === 2) {
    if (set(r.memory?.swappiness)) unapplied.push("memory.swappiness (no cgroup v2 file)");
    if (r.memory?.disableOOMKiller === true)
      unapplied.push("memory.disableOOMKiller (no cgroup v2 file)");
    if (r.memory?.swap !== undefined && r.memory.limit === undefined)
      unapplied.push("memory.swap without memory.limit");
    const b = r.blockIO ?? {};
    if (Object.values(b).some(set)) unapplied.push("blockIO (io.* files on cgroup v2)");
    if (set(r.network?.classID) || set(r.network?.priorities))
      unapplied.push("network (no net_cls/net_prio on cgroup v2)");
    if (set(r.hugepageLimits)) unapplied.push("hugepageLimits (cgroup v2)");
  }
  return unapplied;
}

/** Pure: v1 controllers the spec's resources need that are not mounted, with the fields affected. */
export function missingControllers(
  r: OciResources,
  mounted: ReadonlySet<string>,
): [controller: string, fields: string][] {
  const needs: [string, string, boolean][] = [
    ["memory", "memory", Object.values(r.memory ?? {}).some((v) => v !== undefined && v !== false)],
    ["cpu", "cpu", [r.cpu?.shares, r.cpu?.quota, r.cpu?.period].some((v) => v !== undefined)],
    ["cpuset", "cpu.cpus/mems", Boolean(r.cpu?.cpus || r.cpu?.mems)],
    ["pids", "pids", r.pids?.limit !== undefined],
    ["blkio", "blockIO", Object.values(r.blockIO ?? {}).some((v) => v !== undefined)],
    ["net_cls", "network.classID", r.network?.classID !== undefined],
    ["net_prio", "network.priorities", (r.network?.priorities ?? []).length > 0],
    ["hugetlb", "hugepageLimits", (r.hugepageLimits ?? []).length > 0],
  ];
  return needs
    .filter(([controller, , wanted]) => wanted && !mounted.has(controller))
    .map(([controller, fields]) => [controller, fields]);
}

/** A cgroup the container was put in, as recorded in its state. */
export interface CgroupEntry {
  readonly dir: string;
  readonly version: 1 | 2;
  readonly controllers: readonly string[];
}

export interface CgroupSetup {
  readonly entries: readonly CgroupEntry[];
  readonly warnings: readonly string[];
}

/** True when the unified tree carries the controllers (pure v2), not just process tracking (hybrid). */
export function controllersOnV2(
  hierarchies: readonly Pick<Hierarchy, "version" | "controllers">[],
): boolean {
  return !hierarchies.some(
    (h) => h.version === 1 && h.controllers.some((c) => !c.startsWith("name=")),
  );
}

/**
 * Makes the container's cgroup in every hierarchy and applies resources. A hierarchy the sandbox
 * will not let us write is skipped with a warning: cgroups are limits, not isolation.
 */
export function setupCgroups(
  sys: Syscalls,
  hierarchies: readonly Hierarchy[],
  dirs: readonly string[],
  resources: OciResources | undefined,
): CgroupSetup {
  const warnings: string[] = [];
  const entries: CgroupEntry[] = [];
  hierarchies.forEach((h, i) => {
    const dir = dirs[i] as string;
    try {
      sys.mkdir(dir, true);
    } catch (e) {
      warnings.push(
        `cgroup ${dir} not created (${(e as Error).message}); the container runs without it`,
      );
      return;
    }
    entries.push({ dir, version: h.version, controllers: h.controllers });
    if (h.controllers.includes("cpuset")) initCpuset(sys, dir);
  });
  if (resources !== undefined) warnings.push(...applyResources(sys, entries, resources));
  return { entries, warnings };
}

/** Writes resource limits; each one the kernel or sandbox refuses becomes a warning. */
export function applyResources(
  sys: Syscalls,
  entries: readonly CgroupEntry[],
  resources: OciResources,
): string[] {
  const warnings: string[] = [];
  const v2Controls = controllersOnV2(entries);
  const version = v2Controls ? 2 : 1;
  for (const what of unappliedResources(resources, version))
    warnings.push(`cgroup resource ${what} not applied: sandkube-runtime has no way to apply it`);
  if (version === 1) {
    const mounted = new Set(entries.flatMap((e) => e.controllers));
    for (const [controller, fields] of missingControllers(resources, mounted))
      warnings.push(
        `cgroup resource ${fields} not applied: no ${controller} cgroup controller here`,
      );
  }
  for (const e of entries) {
    if (e.version === 2 && !v2Controls) continue;
    const h: Hierarchy = {
      version: e.version,
      controllers: e.controllers,
      mountPoint: "",
      root: "/",
    };
    for (const w of resourceWrites(h, resources, true)) {
      try {
        sys.writeFile(`${e.dir}/${w.file}`, w.value);
      } catch (err) {
        warnings.push(
          `cgroup limit ${w.file}=${w.value} not applied in ${e.dir}: ${(err as Error).message}`,
        );
      }
    }
    if (e.version === 2 && resources.devices !== undefined && resources.devices.length > 0)
      warnings.push(
        "device cgroup rules not applied: cgroup v2 needs an eBPF device filter, which sandkube-runtime does not load",
      );
  }
  return warnings;
}

/** A v1 cpuset starts empty, and joining an empty cpuset fails with ENOSPC; copy from the parent. */
function initCpuset(sys: Syscalls, dir: string): void {
  for (const file of ["cpuset.cpus", "cpuset.mems"]) {
    try {
      if (sys.readFile(`${dir}/${file}`).trim() !== "") continue;
      const parent = dir.slice(0, dir.lastIndexOf("/"));
      if (parent.split("/").length > 4) initCpuset(sys, parent);
      sys.writeFile(`${dir}/${file}`, sys.readFile(`${parent}/${file}`).trim());
    } catch {
      // Reported when the process fails to join.
    }
  }
}

/** Pids in the container's cgroup, from the first hierarchy that has the directory. */
export function cgroupPids(sys: Syscalls, dirs: readonly string[]): number[] | undefined {
  for (const dir of dirs) {
    try {
      return sys
        .readFile(`${dir}/cgroup.procs`)
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map(Number);
    } catch {
      continue;
    }
  }
  return undefined;
}

/** Removes the container's cgroups, retrying while exiting processes still hold them. */
export async function removeCgroups(sys: Syscalls, dirs: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt++) {
      try {
        sys.rmdir(dir);
        break;
      } catch (e) {
        if (isErrno(e, "ENOENT")) break;
        if (attempt >= 50) {
          left.push(`${dir}: ${(e as Error).message}`);
          break;
        }
        await sys.sleep(10);
      }
    }
  }
  return left;
}

export function freezerFile(
  entries: readonly CgroupEntry[],
): { file: string; version: 1 | 2 } | undefined {
  const v1 = entries.find((e) => e.version === 1 && e.controllers.includes("freezer"));
  if (v1) return { file: `${v1.dir}/freezer.state`, version: 1 };
  const v2 = entries.find((e) => e.version === 2);
  if (v2 && controllersOnV2(entries)) return { file: `${v2.dir}/cgroup.freeze`, version: 2 };
  return undefined;
}
