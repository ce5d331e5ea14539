import { RuntimeError } from "../errors.js";
import { ins, type Instruction } from "../instructions.js";

/** linux.seccomp of the OCI runtime spec. */
export interface OciSeccompArg {
  readonly index: number;
  readonly value: number;
  readonly valueTwo?: number;
  readonly op: string;
}

export interface OciSeccompSyscall {
  readonly names: readonly string[];
  readonly action: string;
  readonly errnoRet?: number;
  readonly args?: readonly OciSeccompArg[];
}

export interface OciSeccomp {
  readonly defaultAction: string;
  readonly defaultErrnoRet?: number;
  readonly architectures?: readonly string[];
  readonly flags?: readonly string[];
  readonly listenerPath?: string;
  readonly syscalls?: readonly OciSeccompSyscall[];
}

const EPERM = 1;

/** libseccomp's action values (seccomp.h SCMP_ACT_*), which the helper hands to seccomp_init. */
export const SECCOMP_ACTIONS = [
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
] as const;

/** seccomp.h enum scmp_compare. */
const OPERATORS: Readonly<Record<string, number>> = {
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
};
export const SECCOMP_OPERATORS = Object.keys(OPERATORS);

/** OCI architecture -> libseccomp's name for seccomp_arch_resolve_name. */
const ARCHES: Readonly<Record<string, string>> = {
  SCMP_ARCH_X86: "x86",
  SCMP_ARCH_X86_64: "x86_64",
  SCMP_ARCH_X32: "x32",
  SCMP_ARCH_ARM: "arm",
  SCMP_ARCH_AARCH64: "aarch64",
  SCMP_ARCH_MIPS: "mips",
  SCMP_ARCH_MIPS64: "mips64",
  SCMP_ARCH_MIPS64N32: "mips64n32",
  SCMP_ARCH_MIPSEL: "mipsel",
  SCMP_ARCH_MIPSEL64: "mipsel64",
  SCMP_ARCH_MIPSEL64N32: "mipsel64n32",
  SCMP_ARCH_PPC: "ppc",
  SCMP_ARCH_PPC64: "ppc64",
  SCMP_ARCH_PPC64LE: "ppc64le",
  SCMP_ARCH_S390: "s390",
  SCMP_ARCH_S390X: "s390x",
  SCMP_ARCH_PARISC: "parisc",
  SCMP_ARCH_PARISC64: "parisc64",
  SCMP_ARCH_RISCV64: "riscv64",
};
export const SECCOMP_ARCHES = Object.keys(ARCHES);

/** Filter flags -> the helper's libseccomp attribute names. TSYNC is moot: the helper has one thread. */
const FLAGS: Readonly<Record<string, string | undefined>> = {
  SECCOMP_FILTER_FLAG_TSYNC: undefined,
  SECCOMP_FILTER_FLAG_LOG: "log",
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: "spec_allow",
};
export const SECCOMP_FLAGS = Object.keys(FLAGS);

/** The action as libseccomp's 32-bit value; errno defaults to EPERM as in runc's seccomp package. */
export function seccompAction(action: string, errnoRet: number | undefined, where: string): number {
  const ret = (errnoRet ?? EPERM) & 0xffff;
  switch (action) {
    case "SCMP_ACT_KILL":
    case "SCMP_ACT_KILL_THREAD":
      return 0;
    case "SCMP_ACT_KILL_PROCESS":
      return 0x80000000;
    case "SCMP_ACT_TRAP":
      return 0x00030000;
    case "SCMP_ACT_ERRNO":
      return (0x00050000 | ret) >>> 0;
    case "SCMP_ACT_TRACE":
      return (0x7ff00000 | ret) >>> 0;
    case "SCMP_ACT_LOG":
      return 0x7ffc0000;
    case "SCMP_ACT_ALLOW":
      return 0x7fff0000;
    case "SCMP_ACT_NOTIFY":
      throw new RuntimeError(
        `${where}: SCMP_ACT_NOTIFY needs a seccomp agent (listenerPath), which sandkube-runtime does not support; use SCMP_ACT_ERRNO or remove the rule`,
      );
    default:
      throw new RuntimeError(
        `${where}: unknown seccomp action "${action}" (one of: ${SECCOMP_ACTIONS.join(", ")})`,
      );
  }
}

function condition(arg: OciSeccompArg, where: string): string {
  const op = OPERATORS[arg.op];
  if (op === undefined)
    throw new RuntimeError(
      `${where}.op: unknown comparison "${arg.op}" (one of: ${SECCOMP_OPERATORS.join(", ")})`,
    );
  if (!Number.isInteger(arg.index) || arg.index < 0 || arg.index > 5)
    throw new RuntimeError(`${where}.index: ${arg.index} is not a syscall argument index (0-5)`);
  for (const [name, v] of [
    ["value", arg.value],
    ["valueTwo", arg.valueTwo ?? 0],
  ] as const)
    if (!Number.isInteger(v) || v < 0)
      throw new RuntimeError(`${where}.${name}: ${v} is not an unsigned 64-bit integer`);
  // JSON numbers past 2^53 are already rounded; BigInt keeps what we were given exactly.
  return `${arg.index} ${op} ${BigInt(arg.value)} ${BigInt(arg.valueTwo ?? 0)}`;
}

export interface SeccompPlan {
  /** Builds the filter in the helper (userspace only, nothing is loaded yet). */
  readonly build: readonly Instruction[];
  readonly warnings: readonly string[];
}

/**
 * The profile as helper instructions: one init, then one rule per syscall name (and per argument
 * condition where an index repeats). Mirrors runc's libcontainer/seccomp: rules whose action is the
 * default are dropped (libseccomp refuses them), and names the helper's libseccomp cannot resolve are
 * skipped there, not here, because only it knows the syscall table.
 */
export function planSeccomp(raw: unknown): SeccompPlan {
  const profile = parseSeccomp(raw);
  const warnings: string[] = [];
  const defaultAction = seccompAction(
    profile.defaultAction,
    profile.defaultErrnoRet,
    "linux.seccomp.defaultAction",
  );
  const arches = (profile.architectures ?? []).map((a, i) => {
    const name = ARCHES[a];
    if (name === undefined)
      throw new RuntimeError(
        `linux.seccomp.architectures[${i}]: unknown architecture "${a}" (one of: ${SECCOMP_ARCHES.join(", ")})`,
      );
    return name;
  });
  const flags = (profile.flags ?? []).flatMap((f, i) => {
    if (!(f in FLAGS))
      throw new RuntimeError(
        `linux.seccomp.flags[${i}]: unknown flag "${f}" (one of: ${SECCOMP_FLAGS.join(", ")})`,
      );
    const attr = FLAGS[f];
    return attr === undefined ? [] : [attr];
  });
  if (profile.listenerPath)
    warnings.push("linux.seccomp.listenerPath ignored: seccomp agents are not supported");
  const build: Instruction[] = [ins.seccompInit(defaultAction, arches, flags)];
  for (const [i, call] of (profile.syscalls ?? []).entries()) {
    const where = `linux.seccomp.syscalls[${i}]`;
    const action = seccompAction(call.action, call.errnoRet, `${where}.action`);
    if (action === defaultAction) continue;
    const conditions = (call.args ?? []).map((a, j) => condition(a, `${where}.args[${j}]`));
    const indexes = (call.args ?? []).map((a) => a.index);
    // libseccomp cannot AND two comparisons of one argument; runc then adds one rule per condition.
    const perCondition = new Set(indexes).size !== indexes.length;
    for (const name of call.names) {
      if (perCondition) for (const c of conditions) build.push(ins.seccompRule(name, action, [c]));
      else build.push(ins.seccompRule(name, action, conditions));
    }
  }
  return { build, warnings };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks the shape the planner relies on, naming the field that is wrong. */
export function parseSeccomp(raw: unknown): OciSeccomp {
  const bad = (where: string, what: string): never => {
    throw new RuntimeError(`config.json: linux.seccomp${where} ${what}`);
  };
  if (!isObject(raw)) return bad("", "must be an object");
  if (typeof raw["defaultAction"] !== "string") bad(".defaultAction", "is missing");
  for (const key of ["architectures", "flags"]) {
    const v = raw[key];
    if (v !== undefined && (!Array.isArray(v) || v.some((s) => typeof s !== "string")))
      bad(`.${key}`, "must be an array of strings");
  }
  const syscalls = raw["syscalls"];
  if (syscalls !== undefined) {
    if (!Array.isArray(syscalls)) bad(".syscalls", "must be an array");
    (syscalls as unknown[]).forEach((s, i) => {
      if (!isObject(s)) return bad(`.syscalls[${i}]`, "must be an object");
      const names = s["names"];
      if (!Array.isArray(names) || names.some((n) => typeof n !== "string" || n === ""))
        bad(`.syscalls[${i}].names`, "must be an array of syscall names");
      if (typeof s["action"] !== "string") bad(`.syscalls[${i}].action`, "is missing");
      const args = s["args"];
      if (args === undefined || args === null) return;
      if (!Array.isArray(args)) return bad(`.syscalls[${i}].args`, "must be an array");
      args.forEach((a: unknown, j) => {
        if (
          !isObject(a) ||
          typeof a["index"] !== "number" ||
          typeof a["value"] !== "number" ||
          typeof a["op"] !== "string"
        )
          bad(`.syscalls[${i}].args[${j}]`, "needs numeric index and value and an op");
      });
    });
  }
  return raw as unknown as OciSeccomp;
}
