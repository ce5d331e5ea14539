import {
  cgroupDirs,
  cgroupLocation,
  parseCgroupMounts,
  parseProcCgroup,
  removeCgroups,
  setupCgroups,
  type CgroupEntry,
} from "./cgroups.js";
import { flagBool, flagString } from "./args.js";
import type { RuntimeContext } from "./context.js";
import { RuntimeError } from "./errors.js";
import { encodeInstructions, ins, type Instruction } from "./instructions.js";
import { planNamespaces } from "./namespaces.js";
import { planProcess } from "./process/plan.js";
import { initPath, planRootfs } from "./rootfs/plan.js";
import { resolveInRootfs } from "./rootfs/resolve.js";
import { namespaceOf, parseSpec, type OciSpec } from "./spec.js";
import { processStartTime, START_SOCKET, writeAtomic, type ContainerState } from "./state-store.js";
import type { Syscalls } from "./syscalls.js";
import { planUserNamespace } from "./userns.js";

export interface CreateOptions {
  readonly id: string;
  readonly bundle: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  readonly noPivot: boolean;
  readonly preserveFds: number;
}

export interface CreatePlan {
  readonly instructions: readonly Instruction[];
  readonly warnings: readonly string[];
}

export interface CreateInputs {
  readonly spec: OciSpec;
  readonly rootfs: string;
  readonly bundle: string;
  readonly stateDir: string;
  readonly cgroups: readonly CgroupEntry[];
  readonly options: CreateOptions;
  readonly capLastCapPresent: boolean;
}

/**
 * spec -> the init's instruction list. Pure apart from reading the rootfs to resolve mount points,
 * so every check that can fail runs before anything is created.
 */
export function planCreate(sys: Syscalls, input: CreateInputs): CreatePlan {
  const { spec, options } = input;
  const process = spec.process;
  if (process === undefined) throw new RuntimeError("config.json: process is missing");
  const warnings: string[] = [];
  const userns = planUserNamespace(sys, spec);
  const ns = planNamespaces(spec.linux?.namespaces ?? [], userns);
  const newUts =
    namespaceOf(spec, "uts") !== undefined && namespaceOf(spec, "uts")?.path === undefined;
  if ((spec.hostname || spec.domainname) && !newUts)
    throw new RuntimeError(
      "config.json sets a hostname but has no new uts namespace: it would rename the host",
    );
  const rootfs = planRootfs(sys, spec, {
    rootfs: input.rootfs,
    bundle: input.bundle,
    cgroups: input.cgroups,
    newCgroupNamespace: ns.unshareCgroup.length > 0,
    noPivot: options.noPivot,
    ...(userns === undefined ? {} : { userns }),
  });
  const proc = planProcess(process, {
    ...(options.consoleSocket === undefined ? {} : { consoleSocket: options.consoleSocket }),
    preserveFds: options.preserveFds,
    isInit: true,
    ...(spec.linux?.seccomp === undefined ? {} : { seccomp: spec.linux.seccomp }),
  });
  warnings.push(...ns.warnings, ...rootfs.warnings, ...proc.warnings);
  if (
    spec.hooks !== undefined &&
    Object.values(spec.hooks).some((h) => Array.isArray(h) && h.length > 0)
  )
    warnings.push("OCI hooks are not run by sandkube-runtime");
  if (spec.linux?.intelRdt !== undefined)
    warnings.push("linux.intelRdt ignored: RDT is not supported");
  if (spec.linux?.personality !== undefined)
    warnings.push("linux.personality ignored: not supported");
  if (!input.capLastCapPresent)
    warnings.push(
      "/proc/sys/kernel/cap_last_cap is absent; the last capability is probed with PR_CAPBSET_READ instead",
    );

  const cwd = resolveInRootfs(sys, input.rootfs, process.cwd, "process.cwd");
  const list: Instruction[] = [
    ...proc.early,
    ...input.cgroups.map((c) => ins.cgroupJoin(`${c.dir}/cgroup.procs`)),
    // Host paths first (bind clones, the start socket in the state dir): once in a user namespace
    // the helper is the container's mapped root and may not reach them.
    ...rootfs.prepare,
    ins.listen(input.stateDir, START_SOCKET),
    ...ns.join,
    ...ns.newUser,
    ...ns.unshare,
    ...ns.unshareCgroup,
    ins.fork(false),
    ...(spec.hostname ? [ins.hostname(spec.hostname)] : []),
    ...(spec.domainname ? [ins.domainname(spec.domainname)] : []),
    ...rootfs.beforePivot.slice(0, -1),
    ins.mkdir(initPath(input.rootfs, userns !== undefined, cwd)),
    ...rootfs.beforePivot.slice(-1),
    ...rootfs.afterPivot,
    ...proc.credentials,
    ins.ready(),
    ins.park(),
    ...proc.beforeExec,
    proc.exec,
  ];
  return { instructions: list, warnings };
}

function absolute(path: string, base: string): string {
  return path.startsWith("/") ? path : `${base}/${path}`.replace(/\/+/g, "/");
}

function parentDir(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

export function createOptions(
  id: string,
  flags: ReadonlyMap<string, string | true>,
  cwd: string,
): CreateOptions {
  const bundle = absolute(flagString(flags, "bundle", "b") ?? cwd, cwd);
  const pidFile = flagString(flags, "pid-file");
  const consoleSocket = flagString(flags, "console-socket");
  const preserve = Number(flagString(flags, "preserve-fds") ?? "0");
  if (!Number.isInteger(preserve) || preserve < 0)
    throw new RuntimeError(
      `--preserve-fds must be a count of fds, not ${flagString(flags, "preserve-fds")}`,
    );
  return {
    id,
    bundle,
    ...(pidFile === undefined ? {} : { pidFile: absolute(pidFile, cwd) }),
    ...(consoleSocket === undefined ? {} : { consoleSocket: absolute(consoleSocket, cwd) }),
    noPivot: flagBool(flags, "no-pivot"),
    preserveFds: preserve,
  };
}

function readSpec(sys: Syscalls, bundle: string): OciSpec {
  if (sys.kindOf(bundle, true) !== "directory")
    throw new RuntimeError(`bundle ${bundle} is not a directory`);
  let text: string;
  try {
    text = sys.readFile(`${bundle}/config.json`);
  } catch {
    throw new RuntimeError(`bundle ${bundle} has no readable config.json`);
  }
  return parseSpec(text, `${bundle}/config.json`);
}

/** Writes the pid file as runc does: digits only, no newline, atomically. */
export function writePidFile(sys: Syscalls, path: string, pid: number): void {
  writeAtomic(sys, path, String(pid));
}

export async function create(ctx: RuntimeContext, options: CreateOptions): Promise<void> {
  const { sys, store, log } = ctx;
  const spec = readSpec(sys, options.bundle);
  const rootfs = absolute(spec.root.path, options.bundle);
  if (sys.kindOf(rootfs, true) !== "directory")
    throw new RuntimeError(
      `rootfs ${rootfs} (config.json root.path) does not exist or is not a directory`,
    );
  if (options.pidFile !== undefined && sys.kindOf(parentDir(options.pidFile), true) !== "directory")
    throw new RuntimeError(
      `pid file ${options.pidFile}: directory ${parentDir(options.pidFile)} does not exist`,
    );
  if (options.consoleSocket !== undefined && sys.kindOf(options.consoleSocket, true) !== "socket")
    throw new RuntimeError(`console socket ${options.consoleSocket} is not a unix socket`);

  const hierarchies = parseCgroupMounts(sys.readFile("/proc/self/mountinfo"));
  const location = cgroupLocation(spec.linux?.cgroupsPath, options.id, ctx.global.systemdCgroup);
  if (location.systemdForm)
    log.warn(
      `cgroupsPath ${spec.linux?.cgroupsPath ?? ""} is systemd's form; sandkube-runtime makes ${location.path} with cgroupfs, not through systemd`,
    );
  const dirs = cgroupDirs(
    hierarchies,
    location,
    parseProcCgroup(sys.readFile("/proc/self/cgroup")),
  );
  const stateDir = store.dir(options.id);
  const plannedCgroups = hierarchies.map((h, i) => ({
    dir: dirs[i] as string,
    version: h.version,
    controllers: h.controllers,
  }));
  const capLastCapPresent = sys.kindOf("/proc/sys/kernel/cap_last_cap") !== undefined;
  // Planning first: a bad spec fails before any state, cgroup or process exists.
  planCreate(sys, {
    spec,
    rootfs,
    bundle: options.bundle,
    stateDir,
    cgroups: plannedCgroups,
    options,
    capLastCapPresent,
  });

  store.createDir(options.id);
  let cgroups: readonly CgroupEntry[] = [];
  let pid: number | undefined;
  try {
    // Recorded before they exist, so that a create killed from here on leaves no unknown cgroup.
    store.recordPendingCgroups(options.id, dirs);
    if (hierarchies.length === 0)
      log.warn("no cgroup filesystem is mounted; the container runs without cgroups");
    const setup = setupCgroups(sys, hierarchies, dirs, spec.linux?.resources);
    cgroups = setup.entries;
    setup.warnings.forEach((w) => log.warn(w));
    const plan = planCreate(sys, {
      spec,
      rootfs,
      bundle: options.bundle,
      stateDir,
      cgroups,
      options,
      capLastCapPresent,
    });
    plan.warnings.forEach((w) => log.warn(w));
    const instructionFile = `${stateDir}/init.instructions`;
    sys.writeFile(instructionFile, encodeInstructions(plan.instructions), 0o600);
    const report = await sys.runHelper({
      helperPath: ctx.helperPath,
      instructionFile,
      preserveFds: options.preserveFds,
    });
    pid = report.pid;
    report.warnings.forEach((w) => log.warn(w));
    sys.unlink(instructionFile);
    if (report.error !== undefined || !report.ready || pid === undefined)
      throw new RuntimeError(
        report.error ??
          `container init exited before it was ready (helper exit status ${report.exitCode})`,
      );
    const proc = processStartTime(sys, pid);
    if (proc === undefined)
      throw new RuntimeError(`container init ${pid} vanished right after it was ready`);
    const state: ContainerState = {
      ociVersion: spec.ociVersion,
      id: options.id,
      pid,
      startTime: proc.startTime,
      bundle: options.bundle,
      rootfs,
      created: sys.now().toISOString(),
      annotations: spec.annotations ?? {},
      owner: "",
      cgroups,
      ownPidNamespace:
        namespaceOf(spec, "pid") !== undefined && namespaceOf(spec, "pid")?.path === undefined,
    };
    store.save(state);
    if (options.pidFile !== undefined) writePidFile(sys, options.pidFile, pid);
  } catch (e) {
    if (pid !== undefined) sys.kill(pid, 9);
    await removeCgroups(
      sys,
      cgroups.map((c) => c.dir),
    );
    store.remove(options.id);
    throw e;
  }
}
