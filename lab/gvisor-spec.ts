import { join } from "node:path";
import { labBinDir, labDir } from "./paths.js";
import { KNOWN_CAPABILITIES } from "../src/runtime/process/capabilities.js";

/**
 * Pure parts of `npm run lab:gvisor`: the command line and the OCI bundle that runs a command in a
 * runsc sandbox shaped like the ones users live in (root with every capability, gVisor's own
 * network stack, a gofer-backed root). No I/O here, so every decision is unit-tested.
 */

export type RunscFlavour = "new" | "old";
export type SandboxNetwork = "sandbox" | "none";

export interface GvisorRunOptions {
  readonly runsc: RunscFlavour;
  readonly timeoutSeconds: number;
  readonly network: SandboxNetwork;
  /** Writable directory shared with the host; undefined means "make a fresh one". */
  readonly outDir: string | undefined;
  readonly debug: boolean;
  readonly command: readonly string[];
}

export const DEFAULT_TIMEOUT_SECONDS = 600;

export class GvisorUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GvisorUsageError";
  }
}

export const GVISOR_USAGE = [
  "usage: npm run lab:gvisor -- [--runsc new|old] [--timeout SECONDS] [--network sandbox|none]",
  "                             [--out DIR] [--debug] [--] CMD [ARG...]",
  "",
  "Runs CMD as root with every capability inside a runsc sandbox whose root is this machine's / under",
  "an in-memory overlay (nothing is written to the host's /). The repository is the working directory,",
  "the lab binaries are on PATH, and $SANDKUBE_GVISOR_OUT is a writable directory kept on the host.",
].join("\n");

function takeValue(argv: readonly string[], index: number, flag: string): string {
  const value = argv[index + 1];
  if (value === undefined) throw new GvisorUsageError(`${flag} needs a value. ${shortHelp()}`);
  return value;
}

function shortHelp(): string {
  return "Run `npm run lab:gvisor -- --help` for the options.";
}

/** Returns undefined for --help. Options end at the first word that is not an option, or at `--`. */
export function parseGvisorArgs(argv: readonly string[]): GvisorRunOptions | undefined {
  let runsc: RunscFlavour = "new";
  let timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
  let network: SandboxNetwork = "none";
  let outDir: string | undefined;
  let debug = false;
  let index = 0;
  for (; index < argv.length; index++) {
    const arg = argv[index] as string;
    if (arg === "--") {
      index++;
      break;
    }
    if (!arg.startsWith("-")) break;
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const value = (): string => {
      if (inline !== undefined) return inline;
      const taken = takeValue(argv, index, flag);
      index++;
      return taken;
    };
    switch (flag) {
      case "-h":
      case "--help":
        return undefined;
      case "--runsc": {
        const v = value();
        if (v !== "new" && v !== "old") {
          throw new GvisorUsageError(`--runsc must be "new" or "old", not "${v}".`);
        }
        runsc = v;
        break;
      }
      case "--timeout": {
        const v = value();
        const n = Number(v);
        if (!/^\d+$/.test(v) || n <= 0) {
          throw new GvisorUsageError(
            `--timeout takes a whole number of seconds above 0, not "${v}".`,
          );
        }
        timeoutSeconds = n;
        break;
      }
      case "--network": {
        const v = value();
        if (v !== "sandbox" && v !== "none") {
          throw new GvisorUsageError(
            `--network must be "sandbox" or "none", not "${v}" (host networking cannot create veth or bridge devices).`,
          );
        }
        network = v;
        break;
      }
      case "--out": {
        const v = value();
        if (!v.startsWith("/"))
          throw new GvisorUsageError(`--out needs an absolute path, not "${v}".`);
        outDir = v;
        break;
      }
      case "--debug":
        if (inline !== undefined) throw new GvisorUsageError("--debug takes no value.");
        debug = true;
        break;
      default:
        throw new GvisorUsageError(`unknown option "${arg}". ${shortHelp()}`);
    }
  }
  const command = argv.slice(index);
  if (command.length === 0) {
    throw new GvisorUsageError(
      `no command given: put the command to run after the options. ${shortHelp()}`,
    );
  }
  return { runsc, timeoutSeconds, network, outDir, debug, command };
}

export function runscBinary(flavour: RunscFlavour, env: NodeJS.ProcessEnv = process.env): string {
  return join(labBinDir(env), flavour === "new" ? "runsc" : "runsc-old");
}

/** Every capability Linux 6.x defines, so the sandboxed root is as strong as a user sandbox's root. */
export const ALL_CAPABILITIES: readonly string[] = KNOWN_CAPABILITIES;

export interface SandboxLayout {
  /** Host directory the sandbox sees as / (see rootfsMountArgs). */
  readonly rootfs: string;
  /** Repository root: the working directory inside the sandbox. */
  readonly repoRoot: string;
  /** Writable directory bind-mounted at the same path, so the host sees what the sandbox writes. */
  readonly outDir: string;
  /** The lab's and `sandkube install`'s shared bin/ (lab/paths.ts): first on the sandbox's PATH. */
  readonly labBinDir: string;
  readonly labDir: string;
  /** Directory holding the node binary that runs this script, so `node` and `npx` resolve inside. */
  readonly nodeBinDir: string;
}

export interface OciMount {
  readonly destination: string;
  readonly type: string;
  readonly source: string;
  readonly options?: readonly string[];
}

/** The subset of the OCI runtime spec this lab writes; runsc reads the rest as defaults. */
export interface OciSpec {
  readonly ociVersion: string;
  readonly process: {
    readonly terminal: boolean;
    readonly user: { readonly uid: number; readonly gid: number };
    readonly args: readonly string[];
    readonly env: readonly string[];
    readonly cwd: string;
    readonly capabilities: Readonly<
      Record<"bounding" | "effective" | "inheritable" | "permitted" | "ambient", readonly string[]>
    >;
    readonly rlimits: readonly {
      readonly type: string;
      readonly hard: number;
      readonly soft: number;
    }[];
    readonly noNewPrivileges: boolean;
  };
  readonly root: { readonly path: string; readonly readonly: boolean };
  readonly hostname: string;
  readonly mounts: readonly OciMount[];
  readonly linux: { readonly namespaces: readonly { readonly type: string }[] };
}

const STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function sandboxPath(layout: SandboxLayout): string {
  const parts = [layout.labBinDir, layout.nodeBinDir, ...STANDARD_PATH.split(":")];
  return parts.filter((p, i) => parts.indexOf(p) === i).join(":");
}

export function renderSandboxSpec(command: readonly string[], layout: SandboxLayout): OciSpec {
  if (command.length === 0) throw new Error("renderSandboxSpec: empty command");
  const caps = [...ALL_CAPABILITIES];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [...command],
      env: [
        `PATH=${sandboxPath(layout)}`,
        "HOME=/root",
        "TERM=xterm",
        `SANDKUBE_LAB_DIR=${layout.labDir}`,
        `SANDKUBE_GVISOR_OUT=${layout.outDir}`,
        "SANDKUBE_IN_GVISOR_LAB=1",
      ],
      cwd: layout.repoRoot,
      capabilities: {
        bounding: caps,
        effective: caps,
        inheritable: caps,
        permitted: caps,
        ambient: caps,
      },
      // containerd and kubelet open many files; runsc's own default of 1024 starves them.
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1048576, soft: 1048576 }],
      noNewPrivileges: false,
    },
    // A host overlay of / (rootfsMountArgs), served by the gofer like a user sandbox's 9p root.
    root: { path: layout.rootfs, readonly: false },
    hostname: "sandkube-lab",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/tmp",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", "mode=1777"],
      },
      // The sandbox's /tmp is a fresh tmpfs, which hides a checkout or lab kept under the host's
      // /tmp (CI clones into a folder of its own choosing), so those are bound through.
      ...[layout.repoRoot, layout.labDir]
        .filter((dir) => dir.startsWith("/tmp/"))
        .map((dir): OciMount => ({
          destination: dir,
          type: "bind",
          source: dir,
          options: ["rbind", "rw"],
        })),
      // The one place whose writes reach the host's real file system.
      { destination: layout.outDir, type: "bind", source: layout.outDir, options: ["rbind", "rw"] },
    ],
    linux: {
      namespaces: [
        { type: "pid" },
        { type: "network" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
      ],
    },
  };
}

export interface RunscInvocation {
  readonly stateDir: string;
  readonly network: SandboxNetwork;
  readonly debugLogDir: string | undefined;
}

/** Global flags, which runsc (like runc) takes before the subcommand. */
export function runscGlobalArgs(invocation: RunscInvocation): string[] {
  const args = [
    `--root=${invocation.stateDir}`,
    `--network=${invocation.network}`,
    // iptables needs raw sockets, and gVisor drops CAP_NET_RAW without this flag.
    "--net-raw",
    // User sandboxes show `runsc-root on / type 9p`: a gofer-backed root with no sentry overlay. The
    // host-side overlay (rootfsMountArgs) already keeps the host's / untouched. runsc's own overlay
    // would also make the gofer's mounts read-only, bind mounts below / included.
    "--overlay2=none",
    // The lab needs no host cgroup limits; the spec sets no cgroupsPath either.
    "--ignore-cgroups",
  ];
  if (invocation.debugLogDir !== undefined) {
    args.push("--debug", `--debug-log=${invocation.debugLogDir}/`, "--strace");
  }
  return args;
}

export interface RootfsLayers {
  /** Read-only lower layer: the host's /. Submounts (/proc, /sys, /dev) are not part of it. */
  readonly lower: string;
  /** Upper and work directories, on a tmpfs so nothing the sandbox writes touches the disk. */
  readonly upper: string;
  readonly work: string;
  readonly merged: string;
}

export function rootfsLayers(workDir: string, lower = "/"): RootfsLayers {
  return {
    lower,
    upper: join(workDir, "rootfs-rw", "upper"),
    work: join(workDir, "rootfs-rw", "work"),
    merged: join(workDir, "rootfs"),
  };
}

/** `mount` argv for the host overlay that becomes the sandbox's root. */
export function rootfsMountArgs(layers: RootfsLayers): string[] {
  return [
    "mount",
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${layers.lower},upperdir=${layers.upper},workdir=${layers.work}`,
    layers.merged,
  ];
}

export function defaultOutDir(runId: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(env), "gvisor-out", runId);
}

export function runDir(runId: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(env), "gvisor-runs", runId);
}

/** A container id runsc accepts and a human can match to its directories. */
export function makeRunId(now: Date, pid: number, salt: string): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
  return `sk-${stamp}-${pid}-${salt}`;
}

function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

/**
 * Mount points at or below `dir` in a /proc/self/mountinfo text, deepest first so they unmount in
 * order. New runsc bind-mounts a `null-netns` file into its --root (the gofers' empty network
 * namespace) and never unmounts it, so a state directory cannot be removed until it is unmounted.
 */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const found: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const field = line.split(" ")[4];
    if (field === undefined) continue;
    const mountPoint = unescapeMountPath(field);
    if (mountPoint === dir || mountPoint.startsWith(prefix)) found.push(mountPoint);
  }
  return found.sort((a, b) => b.length - a.length);
}
