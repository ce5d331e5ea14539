import { RuntimeError } from "../errors.js";
import { ins, type Instruction } from "../instructions.js";
import type { OciProcess } from "../spec.js";
import { capabilityMask } from "./capabilities.js";
import { rlimitNumber } from "./rlimits.js";
import { planSeccomp } from "./seccomp.js";

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface ProcessPlan {
  /** Before the root changes: the console socket path is a host path. */
  readonly early: readonly Instruction[];
  /** Credentials and the checks that must run as the container user, ending just before execve. */
  readonly credentials: readonly Instruction[];
  /** Last steps before execve (a create parks in between): the seccomp filter under no_new_privs. */
  readonly beforeExec: readonly Instruction[];
  readonly exec: Instruction;
  readonly warnings: readonly string[];
}

export interface ProcessContext {
  readonly consoleSocket?: string;
  /** Fds 3.. that the caller asked to keep (--preserve-fds). */
  readonly preserveFds: number;
  /** Init of a new container (setsid always, as runc's standard init) or an exec'd process. */
  readonly isInit: boolean;
  /** The container's linux.seccomp (exec'd processes get the container's, as in runc). */
  readonly seccomp?: unknown;
}

function limit(v: number): bigint {
  // JSON cannot carry 2^64-1 exactly; anything at or past 2^63 means RLIM_INFINITY.
  return v >= 2 ** 63 || v < 0 ? 18446744073709551615n : BigInt(v);
}

/** The process fields of the spec as helper instructions. */
export function planProcess(p: OciProcess, ctx: ProcessContext): ProcessPlan {
  const early: Instruction[] = [];
  const cred: Instruction[] = [];
  const warnings: string[] = [];
  if (p.terminal === true) {
    if (ctx.consoleSocket === undefined)
      throw new RuntimeError(
        "process.terminal is true but no --console-socket was given to receive the pty",
      );
    early.push(ins.consoleConnect(ctx.consoleSocket));
  } else if (ctx.consoleSocket !== undefined) {
    warnings.push("--console-socket given but process.terminal is false; the socket is not used");
  }
  if (p.oomScoreAdj !== undefined) early.push(ins.oomScoreAdj(p.oomScoreAdj));
  for (const r of p.rlimits ?? []) {
    const n = rlimitNumber(r.type);
    if (n === undefined) throw new RuntimeError(`process.rlimits: unknown rlimit type "${r.type}"`);
    cred.push(ins.rlimit(n, limit(r.soft), limit(r.hard)));
  }
  const uid = p.user.uid;
  const gid = p.user.gid;
  if (p.terminal === true) cred.push(ins.pty(uid, gid));
  else {
    cred.push(ins.chownStdio(uid, gid));
    if (ctx.isInit) cred.push(ins.setsid());
  }
  const caps = p.capabilities ?? {};
  const sets = {
    bounding: capabilityMask(caps.bounding),
    effective: capabilityMask(caps.effective),
    permitted: capabilityMask(caps.permitted),
    inheritable: capabilityMask(caps.inheritable),
    ambient: capabilityMask(caps.ambient),
  };
  const unknown = new Set(Object.values(sets).flatMap((s) => s.unknown));
  if (unknown.size > 0) warnings.push(`unknown capabilities ignored: ${[...unknown].join(", ")}`);
  const seccomp = ctx.seccomp === undefined ? undefined : planSeccomp(ctx.seccomp);
  const beforeExec: Instruction[] = [];
  if (seccomp !== undefined) {
    warnings.push(...seccomp.warnings);
    cred.push(...seccomp.build);
    // As runc's standard_init_linux.go: without no_new_privs, loading a filter needs CAP_SYS_ADMIN,
    // so it goes in before capabilities drop; with it, as late as possible, right before execve.
    if (p.noNewPrivileges === true) beforeExec.push(ins.seccompLoad());
    else cred.push(ins.seccompLoad());
  }
  cred.push(ins.bounding(sets.bounding.mask));
  cred.push(ins.user(uid, gid, p.user.additionalGids ?? []));
  cred.push(
    ins.caps(sets.effective.mask, sets.permitted.mask, sets.inheritable.mask, sets.ambient.mask),
  );
  if (p.noNewPrivileges === true) cred.push(ins.noNewPrivs());
  if (p.apparmorProfile)
    warnings.push(
      `AppArmor profile "${p.apparmorProfile}" not applied: sandkube-runtime does not load AppArmor`,
    );
  if (p.selinuxLabel) warnings.push(`SELinux label "${p.selinuxLabel}" not applied`);
  cred.push(ins.chdir(p.cwd));
  const env = p.env ?? [];
  const pathVar = env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  // Resolved as the container user, before parking: a missing program fails create, as in runc.
  cred.push(ins.resolveExec(p.args[0] as string, pathVar));
  return {
    early,
    credentials: cred,
    beforeExec,
    exec: ins.exec(3 + ctx.preserveFds, p.args, env),
    warnings,
  };
}
