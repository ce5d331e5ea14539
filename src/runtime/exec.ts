import { flagBool, flagString } from "./args.js";
import { loadContainer } from "./container.js";
import type { RuntimeContext } from "./context.js";
import { writePidFile } from "./create.js";
import { RuntimeError } from "./errors.js";
import { encodeInstructions, ins, type Instruction } from "./instructions.js";
import { AGENT_SOCKET } from "./agent-mode.js";
import { planJoinContainer } from "./namespaces.js";
import { planProcess } from "./process/plan.js";
import { parseProcess, parseSpec, type OciProcess, type OciSpec } from "./spec.js";
import type { ContainerState } from "./state-store.js";
import type { Syscalls } from "./syscalls.js";

export interface ExecOptions {
  readonly processFile?: string;
  readonly args: readonly string[];
  readonly detach: boolean;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  readonly tty: boolean;
  readonly preserveFds: number;
}

export function execOptions(
  flags: ReadonlyMap<string, string | true>,
  positionals: readonly string[],
): ExecOptions {
  const processFile = flagString(flags, "process", "p");
  const pidFile = flagString(flags, "pid-file");
  const consoleSocket = flagString(flags, "console-socket");
  return {
    ...(processFile === undefined ? {} : { processFile }),
    args: positionals.slice(1),
    detach: flagBool(flags, "detach", "d"),
    ...(pidFile === undefined ? {} : { pidFile }),
    ...(consoleSocket === undefined ? {} : { consoleSocket }),
    tty: flagBool(flags, "tty", "t"),
    preserveFds: Number(flagString(flags, "preserve-fds") ?? "0"),
  };
}

/** The process to run: the --process file, or the command line on top of the init's settings. */
export function execProcess(sys: Syscalls, spec: OciSpec, options: ExecOptions): OciProcess {
  if (options.processFile !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(sys.readFile(options.processFile));
    } catch (e) {
      throw new RuntimeError(`--process ${options.processFile}: ${(e as Error).message}`);
    }
    return parseProcess(raw, "--process");
  }
  if (options.args.length === 0)
    throw new RuntimeError("exec needs --process FILE or a command after the container id");
  const base = spec.process as OciProcess;
  return { ...base, args: options.args, terminal: options.tty };
}

export function planExec(
  state: ContainerState,
  stateDir: string,
  spec: OciSpec,
  process: OciProcess,
  options: ExecOptions,
): { instructions: Instruction[]; warnings: readonly string[] } {
  const proc = planProcess(process, {
    ...(options.consoleSocket === undefined ? {} : { consoleSocket: options.consoleSocket }),
    preserveFds: options.preserveFds,
    isInit: false,
    ...(spec.linux?.seccomp === undefined ? {} : { seccomp: spec.linux.seccomp }),
  });
  // Without setns the container's exec agent forks the process; it is in the cgroups already.
  const enter = (state.helpers ?? []).some((h) => h.role === "agent")
    ? [ins.handover(`${stateDir}/${AGENT_SOCKET}`, options.preserveFds)]
    : [
        ...state.cgroups.map((c) => ins.cgroupJoin(`${c.dir}/cgroup.procs`)),
        ...planJoinContainer(state.pid, spec.linux?.namespaces ?? []),
      ];
  return {
    instructions: [
      ...proc.early,
      ...enter,
      ins.fork(!options.detach),
      ...proc.credentials,
      ...proc.beforeExec,
      proc.exec,
    ],
    warnings: proc.warnings,
  };
}

/** Runs a process in a running container. Returns the exit status to leave with. */
export async function exec(ctx: RuntimeContext, id: string, options: ExecOptions): Promise<number> {
  const { sys } = ctx;
  const c = loadContainer(ctx, id);
  if (c.status !== "running") throw new RuntimeError(`cannot exec in a ${c.status} container`);
  const spec = parseSpec(sys.readFile(`${c.state.bundle}/config.json`));
  const process = execProcess(sys, spec, options);
  const plan = planExec(c.state, c.dir, spec, process, options);
  plan.warnings.forEach((w) => ctx.log.warn(w));
  const instructionFile = `${c.dir}/exec-${sys.pid()}.instructions`;
  sys.writeFile(instructionFile, encodeInstructions(plan.instructions), 0o600);
  try {
    const report = await sys.runHelper({
      helperPath: ctx.helperPath,
      instructionFile,
      preserveFds: options.preserveFds,
    });
    report.warnings.forEach((w) => ctx.log.warn(w));
    if (report.error !== undefined || report.pid === undefined)
      throw new RuntimeError(
        report.error ??
          `exec failed before the process started (helper exit status ${report.exitCode})`,
      );
    if (options.pidFile !== undefined) writePidFile(sys, options.pidFile, report.pid);
    return options.detach ? 0 : (report.exitStatus ?? report.exitCode);
  } finally {
    sys.unlink(instructionFile);
  }
}
