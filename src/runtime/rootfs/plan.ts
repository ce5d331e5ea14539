import type { CgroupEntry } from "../cgroups.js";
import { RuntimeError } from "../errors.js";
import { ins, type Instruction } from "../instructions.js";
import type { OciMount, OciSpec } from "../spec.js";
import type { Syscalls } from "../syscalls.js";
import { mapText, parseIdMappings, type UserNamespacePlan } from "../userns.js";
import { MS, parseMountOptions, propagationFlags, type MountOptions } from "./mount-options.js";
import { resolveInRootfs } from "./resolve.js";

export interface RootfsContext {
  readonly rootfs: string;
  readonly bundle: string;
  readonly cgroups: readonly CgroupEntry[];
  readonly newCgroupNamespace: boolean;
  readonly noPivot: boolean;
  /** The process's cwd inside the rootfs (resolved). */
  readonly cwd: string;
  /** A directory outside the rootfs for read-only views of bind sources (see remountBind). */
  readonly scratchDir: string;
  /** The container's user namespace, if it has one: bind sources are then cloned from outside it. */
  readonly userns?: UserNamespacePlan;
}

export interface RootfsPlan {
  /**
   * Run by the helper before any namespace changes: detached clones of bind sources (idmapped ones,
   * and every bind of a container with a user namespace), attached later by slot.
   */
  readonly prepare: readonly Instruction[];
  /** Run in the new mount namespace, before the root changes. */
  readonly beforePivot: readonly Instruction[];
  /** Run after pivot_root, with the container's paths. */
  readonly afterPivot: readonly Instruction[];
  readonly warnings: readonly string[];
}

/** Devices OCI requires in every container, even when the spec does not list them. */
const DEFAULT_DEVICES: readonly { name: string; major: number; minor: number }[] = [
  { name: "null", major: 1, minor: 3 },
  { name: "zero", major: 1, minor: 5 },
  { name: "full", major: 1, minor: 7 },
  { name: "random", major: 1, minor: 8 },
  { name: "urandom", major: 1, minor: 9 },
  { name: "tty", major: 5, minor: 0 },
];

const DEV_SYMLINKS: readonly [string, string][] = [
  ["/proc/self/fd", "fd"],
  ["/proc/self/fd/0", "stdin"],
  ["/proc/self/fd/1", "stdout"],
  ["/proc/self/fd/2", "stderr"],
];

function dirName(p: string): string {
  return p.slice(0, p.lastIndexOf("/")) || "/";
}

/**
 * Turns root, mounts, devices, masked and read-only paths into helper instructions. Mount points
 * are resolved here, against the rootfs as it is before any mount, and an escaping destination is
 * refused before anything is created.
 */
/**
 * How the init names a path under the rootfs. In a user namespace, relative to its current
 * directory, which the helper set to the rootfs while it was still root on the host: the init is
 * then the mapped root, and the rootfs's parents may be closed to it (containerd's state dir under
 * a 0700 directory). Elsewhere by its absolute host path.
 */
export function initPath(rootfs: string, inUserns: boolean, hostPath: string): string {
  if (!inUserns) return hostPath;
  if (hostPath === rootfs) return ".";
  if (!hostPath.startsWith(`${rootfs}/`))
    throw new Error(`initPath: ${hostPath} is not under the rootfs ${rootfs}`);
  return `.${hostPath.slice(rootfs.length)}`;
}

export function planRootfs(sys: Syscalls, spec: OciSpec, ctx: RootfsContext): RootfsPlan {
  const inUserns = ctx.userns !== undefined;
  const at = (hostPath: string): string => initPath(ctx.rootfs, inUserns, hostPath);
  const prepare: Instruction[] = [];
  const before: Instruction[] = [];
  const after: Instruction[] = [];
  const warnings: string[] = [];
  const rootPropagation = propagationFlags(spec.linux?.rootfsPropagation);
  if (spec.linux?.rootfsPropagation && rootPropagation === undefined)
    throw new RuntimeError(
      `config.json: linux.rootfsPropagation "${spec.linux.rootfsPropagation}" is not a propagation mode`,
    );
  // Our mounts must not leak back to the host (runc: MS_SLAVE|MS_REC unless the spec says otherwise).
  const propagation = rootPropagation ?? MS.SLAVE | MS.REC;
  before.push(ins.rootPropagation(propagation));
  const clonePropagation = propagation & ~MS.REC;
  // pivot_root needs the new root to be a mount point.
  if (inUserns) {
    prepare.push(ins.mountPrepare(0, ctx.rootfs, true, clonePropagation, undefined));
    prepare.push(ins.chdir(ctx.rootfs));
    before.push(ins.rootAttach(0));
  } else {
    // As runc's prepareRoot: pivot_root refuses a new root whose parent mount is shared (EINVAL),
    // which a shared rootfsPropagation makes it; the bind then does not propagate either.
    before.push(ins.parentMountPrivate(ctx.rootfs));
    before.push(ins.mount(ctx.rootfs, ctx.rootfs, "", MS.BIND | MS.REC, "", false));
  }
  if (spec.root.readonly === true) {
    // A kernel that cannot remount gets its read-only root now, as an overlay view, so every mount
    // point in the root itself has to exist before (mount points inside other mounts come later).
    before.push(...mountPointsInRoot(sys, spec, ctx, at), ins.readonlyRootEarly(at(ctx.rootfs)));
  }

  let devMounted = false;
  for (const [index, m] of (spec.mounts ?? []).entries()) {
    const what = `mounts[${index}].destination`;
    const target = at(resolveInRootfs(sys, ctx.rootfs, m.destination, what));
    const opts = parseMountOptions(m.options);
    warnings.push(...opts.warnings.map((w) => `${m.destination}: ${w}`));
    const type = m.type ?? "";
    const isBind = (opts.flags & MS.BIND) !== 0 || type === "bind";
    if (m.destination.replace(/\/+$/, "") === "/dev") devMounted = true;

    if (type === "cgroup" || type === "cgroup2") {
      before.push(...cgroupMount(target, ctx, opts.flags, warnings));
      continue;
    }
    if (isBind) {
      const source = (m.source ?? "").startsWith("/")
        ? (m.source as string)
        : `${ctx.bundle}/${m.source ?? ""}`;
      const kind = sys.kindOf(source, true);
      if (kind === undefined)
        throw new RuntimeError(`mounts[${index}]: bind source ${source} does not exist`);
      before.push(kind === "directory" ? ins.mkdir(target) : ins.touch(target));
      const idmap = idmapOf(m, index, opts, ctx.userns);
      // Inside a user namespace the init is the mapped root, without any right over host paths
      // (a bundle under a 0700 directory, containerd's sandbox files), so the clone is made outside.
      if (idmap !== undefined || ctx.userns !== undefined) {
        const slot = prepare.filter((i) => i[0] === "mount_prepare").length;
        const recursive = (opts.flags & MS.REC) !== 0;
        prepare.push(ins.mountPrepare(slot, source, recursive, clonePropagation, idmap));
        before.push(ins.mountAttach(slot, target));
      } else before.push(ins.mount(source, target, "", MS.BIND | (opts.flags & MS.REC), "", false));
      const extra = opts.flags & ~(MS.BIND | MS.REC | MS.REMOUNT);
      if (extra !== 0)
        before.push(
          ins.remountBind(
            source,
            target,
            extra | (opts.flags & MS.REC),
            `${ctx.scratchDir}/${String(index)}`,
          ),
        );
    } else {
      if (m.uidMappings !== undefined || m.gidMappings !== undefined || opts.idmap !== undefined)
        throw new RuntimeError(
          `mounts[${index}] (${m.destination}): idmapped mounts must be bind mounts, not type "${type}"`,
        );
      before.push(ins.mkdir(target));
      // mqueue needs an IPC namespace the sandbox may not give; losing it does not weaken isolation.
      const optional = type === "mqueue";
      before.push(ins.mount(m.source ?? type, target, type, opts.flags, opts.data, optional));
    }
    if (opts.recursiveReadonly) before.push(ins.recursiveReadonly(target));
    for (const p of opts.propagation) before.push(ins.propagation(target, p));
  }

  const devOnHost = resolveInRootfs(sys, ctx.rootfs, "/dev", "/dev");
  const dev = at(devOnHost);
  if (devMounted || sys.kindOf(devOnHost) === "directory") {
    for (const d of DEFAULT_DEVICES)
      before.push(
        ins.device(`${dev}/${d.name}`, "c", d.major, d.minor, 0o666, 0, 0, `/dev/${d.name}`),
      );
    for (const d of spec.linux?.devices ?? []) {
      const target = at(resolveInRootfs(sys, ctx.rootfs, d.path, `linux.devices path`));
      before.push(ins.mkdir(dirName(target)));
      before.push(
        ins.device(
          target,
          d.type,
          d.major ?? 0,
          d.minor ?? 0,
          d.fileMode ?? 0o666,
          d.uid ?? 0,
          d.gid ?? 0,
          d.path,
        ),
      );
    }
    before.push(ins.symlink("pts/ptmx", `${dev}/ptmx`));
    for (const [target, name] of DEV_SYMLINKS) before.push(ins.symlink(target, `${dev}/${name}`));
  }
  before.push(ctx.noPivot ? ins.moveRoot(at(ctx.rootfs)) : ins.pivotRoot(at(ctx.rootfs)));

  // ...and, as runc, the propagation asked for is set again on the new root once it is the root.
  if (rootPropagation !== undefined && (rootPropagation & MS.PRIVATE) === 0)
    after.push(ins.propagation("/", rootPropagation));
  for (const [name, value] of Object.entries(spec.linux?.sysctl ?? {})) {
    // As runc (libcontainer/configs/validate): net.* only in a network namespace that is not the host's.
    const net = spec.linux?.namespaces?.find((n) => n.type === "network");
    const hostNet =
      net === undefined || (net.path !== undefined && sys.sameFile(net.path, "/proc/self/ns/net"));
    if (name.startsWith("net.") && hostNet)
      throw new RuntimeError(
        `sysctl "${name}" would change the host: the container uses the host's network namespace`,
      );
    after.push(ins.sysctl(`/proc/sys/${name.replace(/\./g, "/")}`, value));
  }
  for (const p of spec.linux?.readonlyPaths ?? []) after.push(ins.readonly(p));
  for (const p of spec.linux?.maskedPaths ?? []) after.push(ins.mask(p));
  if (spec.root.readonly === true) after.push(ins.remountRootReadonly());
  return { prepare, beforePivot: before, afterPivot: after, warnings };
}

/**
 * The idmapping of a bind mount, as runc reads it (libcontainer/specconv): the mount's own maps, or
 * with "idmap"/"ridmap" alone the container's user namespace. "ridmap" maps submounts too.
 */
function idmapOf(
  m: OciMount,
  index: number,
  opts: MountOptions,
  userns: UserNamespacePlan | undefined,
): Parameters<typeof ins.mountPrepare>[4] {
  const hasMaps = m.uidMappings !== undefined || m.gidMappings !== undefined;
  if (!hasMaps && opts.idmap === undefined) return undefined;
  const recursive = opts.idmap === "ridmap";
  if (hasMaps) {
    if (m.uidMappings === undefined || m.gidMappings === undefined)
      throw new RuntimeError(
        `config.json: mounts[${index}] (${m.destination}) is idmapped but lacks ${m.uidMappings === undefined ? "uidMappings" : "gidMappings"}; give both`,
      );
    const uid = parseIdMappings(m.uidMappings, `mounts[${index}].uidMappings`);
    const gid = parseIdMappings(m.gidMappings, `mounts[${index}].gidMappings`);
    return { recursive, uidMap: mapText(uid), gidMap: mapText(gid) };
  }
  if (userns === undefined)
    throw new RuntimeError(
      `config.json: mounts[${index}] (${m.destination}) has option "${opts.idmap}" but neither uidMappings/gidMappings nor a user namespace to take them from`,
    );
  if (userns.kind === "join") return { recursive, usernsPath: userns.path };
  return {
    recursive,
    uidMap: mapText(userns.uidMappings),
    gidMap: mapText(userns.gidMappings),
  };
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** mkdir/touch of every mount target not inside an earlier mount's target, and of the cwd. */
function mountPointsInRoot(
  sys: Syscalls,
  spec: OciSpec,
  ctx: RootfsContext,
  at: (hostPath: string) => string,
): Instruction[] {
  const out: Instruction[] = [];
  const mounted: string[] = [];
  for (const [index, m] of (spec.mounts ?? []).entries()) {
    const target = resolveInRootfs(sys, ctx.rootfs, m.destination, `mounts[${index}].destination`);
    if (!mounted.some((dir) => isUnder(target, dir))) {
      const isBind =
        m.type === "bind" || (m.options ?? []).some((o) => o === "bind" || o === "rbind");
      const source = (m.source ?? "").startsWith("/")
        ? (m.source as string)
        : `${ctx.bundle}/${m.source ?? ""}`;
      const file = isBind && sys.kindOf(source, true) !== "directory";
      out.push(file ? ins.touch(at(target)) : ins.mkdir(at(target)));
    }
    mounted.push(target);
  }
  if (!mounted.some((dir) => isUnder(ctx.cwd, dir))) out.push(ins.mkdir(at(ctx.cwd)));
  return out;
}

/**
 * On a v1 or hybrid host, "cgroup" means a tmpfs holding one bind of the container's own cgroup per
 * hierarchy (what runc shows). With its own cgroup namespace on pure v2 the container gets cgroup2.
 */
function cgroupMount(
  target: string,
  ctx: RootfsContext,
  flags: number,
  warnings: string[],
): Instruction[] {
  if (ctx.cgroups.length === 0) {
    // Nothing to show, and the mount point may not even exist (gVisor's sysfs has no fs/cgroup).
    warnings.push(
      `${target}: not mounted, the container has no cgroup (none is mounted in this sandbox)`,
    );
    return [];
  }
  const out: Instruction[] = [ins.mkdir(target)];
  const v2Only = ctx.cgroups.length > 0 && ctx.cgroups.every((c) => c.version === 2);
  const ro = flags & MS.RDONLY;
  if (v2Only && ctx.newCgroupNamespace) {
    out.push(ins.mount("cgroup", target, "cgroup2", flags & ~MS.BIND, "", true));
    return out;
  }
  if (v2Only) {
    const dir = (ctx.cgroups[0] as CgroupEntry).dir;
    out.push(
      ins.mount(dir, target, "", MS.BIND, "", true),
      ins.remount(target, ro | MS.NOSUID | MS.NODEV | MS.NOEXEC),
    );
    return out;
  }
  out.push(
    ins.mount("tmpfs", target, "tmpfs", MS.NOSUID | MS.NODEV | MS.NOEXEC, "mode=755", false),
  );
  for (const c of ctx.cgroups) {
    const name =
      c.version === 2 ? "unified" : c.controllers.map((n) => n.replace(/^name=/, "")).join(",");
    out.push(ins.mkdir(`${target}/${name}`));
    out.push(ins.mount(c.dir, `${target}/${name}`, "", MS.BIND, "", true));
    out.push(ins.remount(`${target}/${name}`, MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RDONLY));
  }
  if (ro !== 0) out.push(ins.remount(target, MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC));
  return out;
}
