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
import {
  AGENT_SOCKET,
  kernelJoinsNamespaces,
  planAgentNamespaces,
  type JoinTarget,
} from "./agent-mode.js";
import { planNamespaces } from "./namespaces.js";
import { releaseSharedMounts } from "./release-mounts.js";
import { kernelIsolatesMounts, mountDepth } from "./rootfs/shared-mounts.js";
import { planProcess } from "./process/plan.js";
import { initPath, planRootfs } from "./rootfs/plan.js";
import { resolveInRootfs } from "./rootfs/resolve.js";
import { namespaceOf, parseSpec, type OciSpec } from "./spec.js";
import {
  processStartTime,
  START_SOCKET,
  writeAtomic,
  type ContainerState,
  type HelperProcess,
} from "./state-store.js";
import type { HelperReport, Syscalls } from "./syscalls.js";
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
  /**
   * Set where the kernel has no setns(2): containers get an exec agent, and joined namespaces are
   * found through the container that owns them (agent-mode.ts).
   */
  readonly withoutSetns?: { readonly findByInitPid: (pid: number) => JoinTarget | undefined };
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
  const agent =
    input.withoutSetns === undefined
      ? undefined
      : planAgentNamespaces(
          spec.linux?.namespaces ?? [],
          input.stateDir,
          options.preserveFds,
          input.withoutSetns.findByInitPid,
        );
  // A namespace joined by path may be the host's own; what would change the host is refused.
  const isHosts = (type: "mount" | "uts", file: string): boolean => {
    const path = namespaceOf(spec, type)?.path;
    return path !== undefined && sys.sameFile(path, `/proc/self/ns/${file}`);
  };
  if (isHosts("mount", "mnt"))
    throw new RuntimeError(
      `the mount namespace at ${namespaceOf(spec, "mount")?.path ?? ""} is the host's: sandkube-runtime will not set up a root filesystem in it`,
    );
  if (
    (spec.hostname || spec.domainname) &&
    (namespaceOf(spec, "uts") === undefined || isHosts("uts", "uts"))
  )
    throw new RuntimeError(
      "config.json sets a hostname but the container has no uts namespace of its own: it would rename the host",
    );
  const cwd = resolveInRootfs(sys, input.rootfs, process.cwd, "process.cwd");
  const rootfs = planRootfs(sys, spec, {
    rootfs: input.rootfs,
    bundle: input.bundle,
    cgroups: input.cgroups,
    newCgroupNamespace: ns.unshareCgroup.length > 0,
    noPivot: options.noPivot,
    cwd,
    scratchDir: `${input.stateDir}/views`,
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

  const cgroupJoins = input.cgroups.map((c) => ins.cgroupJoin(`${c.dir}/cgroup.procs`));
  const namespacesAndFork: Instruction[] =
    agent === undefined
      ? [
          ...cgroupJoins,
          // Host paths first (bind clones, the start socket in the state dir): once in a user
          // namespace the helper is the container's mapped root and may not reach them.
          ...rootfs.prepare,
          ins.listen(input.stateDir, START_SOCKET),
          ...ns.join,
          ...ns.newUser,
          ...ns.unshare,
          ...ns.unshareCgroup,
          ins.fork(false),
        ]
      : [
          // After a handover the keeper's child does all of it, in the keeper's namespaces.
          ...agent.handover,
          ...cgroupJoins,
          ...rootfs.prepare,
          ...agent.podLevel,
          ...agent.own,
          ...agent.unshareCgroup,
          ins.listen(input.stateDir, START_SOCKET),
          ins.agentListen(input.stateDir, AGENT_SOCKET),
          ins.forkWithAgent(),
        ];
  const list: Instruction[] = [
    ...proc.early,
    ...namespacesAndFork,
    ...(spec.hostname ? [ins.hostname(spec.hostname)] : []),
    ...(spec.domainname ? [ins.domainname(spec.domainname)] : []),
    ...rootfs.beforePivot.slice(0, -1),
    ins.mkdir(initPath(input.rootfs, userns !== undefined, cwd)),
    ...rootfs.beforePivot.slice(-1),
    ...(agent === undefined ? [] : [ins.agentRoot()]),
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
  const sharedMounts = kernelIsolatesMounts(sys)
    ? undefined
    : { rootfsDepth: mountDepth(sys.readFile("/proc/self/mountinfo"), rootfs) };
  const withoutSetns = kernelJoinsNamespaces(sys)
    ? {}
    : { withoutSetns: { findByInitPid: (pid: number) => findByInitPid(ctx, pid) } };
  // Planning first: a bad spec fails before any state, cgroup or process exists.
  planCreate(sys, {
    spec,
    rootfs,
    bundle: options.bundle,
    stateDir,
    cgroups: plannedCgroups,
    options,
    capLastCapPresent,
    ...withoutSetns,
  });

  store.createDir(options.id);
  let cgroups: readonly CgroupEntry[] = [];
  let pid: number | undefined;
  let helpers: HelperProcess[] = [];
  try {
    // Recorded before they exist, so that a create killed from here on leaves no unknown cgroup.
    store.recordPendingCgroups(options.id, dirs);
    if (sharedMounts !== undefined)
      store.recordPendingSharedMounts(options.id, rootfs, sharedMounts.rootfsDepth);
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
      ...withoutSetns,
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
    helpers = helperProcesses(sys, report);
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
      ...(helpers.length === 0 ? {} : { helpers }),
      ...(sharedMounts === undefined ? {} : { sharedMounts }),
    };
    if (withoutSetns.withoutSetns !== undefined && !helpers.some((h) => h.role === "agent"))
      throw new RuntimeError("the container's exec agent did not start (kernel without setns)");
    store.save(state);
    if (options.pidFile !== undefined) writePidFile(sys, options.pidFile, pid);
  } catch (e) {
    if (pid !== undefined) sys.kill(pid, 9);
    helpers.forEach((h) => sys.kill(h.pid, 9));
    if (sharedMounts !== undefined)
      await releaseSharedMounts(ctx, rootfs, stateDir, sharedMounts.rootfsDepth);
    await removeCgroups(
      sys,
      cgroups.map((c) => c.dir),
    );
    store.remove(options.id);
    throw e;
  }
}

function helperProcesses(sys: Syscalls, report: HelperReport): HelperProcess[] {
  const out: HelperProcess[] = [];
  for (const [role, pid] of [
    ["keeper", report.keeperPid],
    ["agent", report.agentPid],
  ] as const) {
    if (pid === undefined) continue;
    const proc = processStartTime(sys, pid);
    if (proc !== undefined) out.push({ role, pid, startTime: proc.startTime });
  }
  return out;
}

/** The container of this runtime whose init is `pid`, for joining its namespaces without setns. */
function findByInitPid(ctx: RuntimeContext, pid: number): JoinTarget | undefined {
  for (const id of ctx.store.ids()) {
    if (!ctx.store.hasState(id)) continue;
    const state = ctx.store.load(id);
    if (state.pid !== pid) continue;
    if (processStartTime(ctx.sys, pid)?.startTime !== state.startTime) return undefined;
    return {
      id,
      dir: ctx.store.dir(id),
      hasKeeper: (state.helpers ?? []).some((h) => h.role === "keeper"),
    };
  }
  return undefined;
}
