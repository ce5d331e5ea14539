/**
 * Shared by the runtime's host tests: a busybox bundle, and a way to run sandkube-runtime whose
 * stdio are files, so a container that inherits them never keeps a test waiting on a pipe.
 */
import { spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  copyFileSync,
  writeFileSync,
  chmodSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
export const HELPER = join(REPO, "native/build/sandkube-init");
export const CONSOLE_RECEIVER = join(REPO, "native/build/sandkube-console-receiver");
export const SUBREAPER = join(REPO, "native/build/sandkube-subreaper");
const BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"];

/** The runtime under test: $SANDKUBE_RUNTIME (e.g. dist/bin/sandkube-runtime), else Bun on the source. */
export function runtimeArgv(): string[] {
  const fromEnv = process.env["SANDKUBE_RUNTIME"];
  if (fromEnv) return [fromEnv];
  return [join(REPO, "node_modules/.bin/bun"), join(REPO, "src/runtime/main.ts")];
}

function isStaticBusybox(path: string): boolean {
  if (!existsSync(path)) return false;
  const r = spawnSync("file", ["-L", path], { encoding: "utf8" });
  return r.status !== 0 || /statically linked|static-pie/.test(r.stdout);
}

export function busybox(): string | undefined {
  return BUSYBOX_CANDIDATES.find(isStaticBusybox);
}

/** Why these tests cannot run here, or undefined when they can. */
export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0)
    return "SKIPPED: runtime host tests need root (namespaces, mounts, cgroups)";
  if (!existsSync(HELPER)) return `SKIPPED: ${HELPER} is missing; run npm run build:native`;
  if (busybox() === undefined)
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  return undefined;
}

const APPLETS = [
  "sh",
  "ls",
  "cat",
  "echo",
  "sleep",
  "id",
  "grep",
  "ps",
  "mount",
  "hostname",
  "touch",
  "wc",
  "true",
  "false",
  "env",
  "readlink",
  "stat",
  "tty",
  "head",
];

export interface BundleOptions {
  readonly args: readonly string[];
  readonly terminal?: boolean;
  readonly uid?: number;
  readonly gid?: number;
  readonly additionalGids?: readonly number[];
  readonly capabilities?: readonly string[];
  readonly noNewPrivileges?: boolean;
  readonly readonlyRoot?: boolean;
  readonly extraMounts?: readonly Record<string, unknown>[];
  readonly namespaces?: readonly Record<string, unknown>[];
  readonly maskedPaths?: readonly string[];
  readonly readonlyPaths?: readonly string[];
  readonly cgroupsPath?: string;
  readonly rootPath?: string;
}

export const DEFAULT_CAPS = [
  "CAP_CHOWN",
  "CAP_KILL",
  "CAP_NET_BIND_SERVICE",
  "CAP_SETUID",
  "CAP_SETGID",
  "CAP_AUDIT_WRITE",
];

/** The spec CRI would send for a simple pod container, trimmed to what busybox needs. */
export function config(o: BundleOptions): Record<string, unknown> {
  const caps = o.capabilities ?? DEFAULT_CAPS;
  return {
    ociVersion: "1.2.0",
    process: {
      terminal: o.terminal ?? false,
      user: {
        uid: o.uid ?? 0,
        gid: o.gid ?? 0,
        ...(o.additionalGids ? { additionalGids: o.additionalGids } : {}),
      },
      args: o.args,
      env: ["PATH=/bin", "HOME=/"],
      cwd: "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: o.noNewPrivileges ?? true,
    },
    root: { path: o.rootPath ?? "rootfs", readonly: o.readonlyRoot ?? true },
    hostname: "sandkube-test",
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
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      {
        destination: "/tmp",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "nodev", "mode=1777"],
      },
      ...(o.extraMounts ?? []),
    ],
    linux: {
      namespaces: o.namespaces ?? [
        { type: "pid" },
        { type: "network" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
      ],
      ...(o.cgroupsPath ? { cgroupsPath: o.cgroupsPath } : {}),
      resources: { devices: [{ allow: false, access: "rwm" }], pids: { limit: 100 } },
      maskedPaths: o.maskedPaths ?? [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: o.readonlyPaths ?? [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
      ],
    },
  };
}

/** A scratch directory with a busybox bundle in bundle/ and a state root in root/. */
export interface Lab {
  readonly dir: string;
  readonly bundle: string;
  readonly root: string;
  readonly log: string;
  writeConfig(o: BundleOptions): void;
  run(args: readonly string[], stdin?: string): RunResult;
  cleanup(): void;
}

export interface RunResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

let counter = 0;

export function makeLab(): Lab {
  const dir = mkdtempSync(join(tmpdir(), "skrt-"));
  const bundle = join(dir, "bundle");
  const rootfs = join(bundle, "rootfs");
  for (const d of ["bin", "proc", "dev", "sys", "tmp", "etc"])
    mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync(busybox() as string, join(rootfs, "bin/busybox"));
  chmodSync(join(rootfs, "bin/busybox"), 0o755);
  for (const a of APPLETS) symlinkSync("busybox", join(rootfs, "bin", a));
  writeFileSync(
    join(rootfs, "etc/passwd"),
    "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
  );
  const root = join(dir, "state");
  const log = join(dir, "log.json");
  const lab: Lab = {
    dir,
    bundle,
    root,
    log,
    writeConfig: (o) =>
      writeFileSync(join(bundle, "config.json"), JSON.stringify(config(o), null, 2)),
    run(args, stdin) {
      const n = counter++;
      const out = join(dir, `out.${n}`);
      const err = join(dir, `err.${n}`);
      const fds = [openSync(out, "w"), openSync(err, "w")];
      const inFd = stdin === undefined ? "ignore" : openSync(writeStdin(dir, n, stdin), "r");
      const r = spawnSync(...runtimeCommand(root, log, args), {
        stdio: [inFd, fds[0] as number, fds[1] as number],
        timeout: 30_000,
        env: { ...process.env, SANDKUBE_INIT: HELPER },
      });
      fds.forEach((fd) => closeSync(fd));
      if (typeof inFd === "number") closeSync(inFd);
      return {
        status: r.status ?? 128,
        stdout: readFileSync(out, "utf8"),
        stderr: readFileSync(err, "utf8"),
      };
    },
    cleanup() {
      // A failed test must not leave parked inits behind (SIGTERM does not reach a pid-namespace init).
      if (existsSync(root))
        for (const id of readdirSync(root).filter((n) => !n.startsWith(".")))
          lab.run(["delete", "--force", id]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return lab;
}

function writeStdin(dir: string, n: number, text: string): string {
  const p = join(dir, `in.${n}`);
  writeFileSync(p, text);
  return p;
}

/** The runtime's command line as containerd's shim builds it: global flags, then the command. */
export function runtimeCommand(
  root: string,
  log: string,
  args: readonly string[],
): [file: string, args: string[]] {
  const [file, ...prefix] = runtimeArgv();
  return [
    file as string,
    [...prefix, "--root", root, "--log", log, "--log-format", "json", ...args],
  ];
}

/** Runs the runtime with the given fds as its stdout/stderr, as the shim's pipes would be. */
export function runWithStdio(
  lab: Lab,
  args: readonly string[],
  stdout: string,
  stderr: string,
): number {
  const fds = [openSync(stdout, "a"), openSync(stderr, "a")];
  const r = spawnSync(...runtimeCommand(lab.root, lab.log, args), {
    stdio: ["ignore", fds[0] as number, fds[1] as number],
    timeout: 30_000,
    env: { ...process.env, SANDKUBE_INIT: HELPER },
  });
  fds.forEach((fd) => closeSync(fd));
  return r.status ?? 128;
}

export function logRecords(lab: Lab): { level: string; msg: string; time: string }[] {
  if (!existsSync(lab.log)) return [];
  return readFileSync(lab.log, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { level: string; msg: string; time: string });
}

export function stateOf(lab: Lab, id: string): Record<string, unknown> {
  const r = lab.run(["state", id]);
  if (r.status !== 0) throw new Error(`state ${id} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export async function waitFor(
  check: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}
