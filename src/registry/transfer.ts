import { runCommand, type CommandResult, type CommandRunner } from "../common/exec.js";
import { CRI_NAMESPACE, type ContainerdTarget } from "../images/containerd.js";
import type { RegistryLogin } from "./credentials.js";

/** The node's containerd, and the certs.d folder its CRI plugin reads. */
export interface TransferTarget extends ContainerdTarget {
  /** registryHostsDir(layout) in src/plan/containerd-config.ts. */
  readonly hostsDir: string;
}

export interface PullTarget extends TransferTarget {
  /** The snapshotter the CRI plugin unpacks into, so kubelet finds the layers ready. */
  readonly snapshotter: string;
}

function ctrArgv(target: ContainerdTarget, args: readonly string[]): string[] {
  return [target.ctr, "--address", target.socket, "--namespace", CRI_NAMESPACE, ...args];
}

/**
 * Pure: `ctr images pull` through containerd's transfer service (ctr's default since 2.0): the
 * daemon itself fetches, so the pull takes containerd's proxy environment and reads the same
 * hosts.toml files as the CRI plugin. `--user NAME` without a password makes ctr ask for it on
 * its terminal (passwordPrompt, cmd/ctr/commands/resolver.go); see withPasswordOnTerminal.
 */
export function pullArgv(target: PullTarget, ref: string, username?: string): string[] {
  return ctrArgv(target, [
    "images",
    "pull",
    "--hosts-dir",
    target.hostsDir,
    "--snapshotter",
    target.snapshotter,
    ...(username === undefined ? [] : ["--user", username]),
    ref,
  ]);
}

/** Pure: `ctr images push` of the node's image REF to the registry REF names, via the daemon. */
export function pushArgv(target: TransferTarget, ref: string, username?: string): string[] {
  return ctrArgv(target, [
    "images",
    "push",
    "--hosts-dir",
    target.hostsDir,
    ...(username === undefined ? [] : ["--user", username]),
    ref,
  ]);
}

/** Pure: one argument as a POSIX shell word. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:@=+,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Pure: argv run under util-linux `script`, which gives it a pseudo-terminal fed from our stdin.
 * ctr reads a password only from a terminal (console.Current(), resolver.go) and otherwise only
 * from `--user name:password` on its command line, where any local user could read it in
 * /proc/PID/cmdline. `-E never` keeps the terminal from echoing what is typed before ctr turns
 * echo off; `-e` returns ctr's exit status; /dev/null keeps no typescript.
 */
export function withPasswordOnTerminal(argv: readonly string[]): string[] {
  return ["script", "-E", "never", "-qec", argv.map(shellQuote).join(" "), "/dev/null"];
}

/** Pure: output with every occurrence of the secret replaced, should a tool ever print it. */
export function redact(text: string, secret: string): string {
  return secret === "" ? text : text.split(secret).join("***");
}

/**
 * Runs a ctr pull or push made by pullArgv/pushArgv (with `--user login.username` when a login is
 * given), typing the password on the terminal. Never throws for a failed command.
 */
export async function runWithLogin(
  argv: readonly string[],
  login: RegistryLogin | undefined,
  run: CommandRunner = runCommand,
  timeoutMs = 600_000,
): Promise<CommandResult> {
  if (login === undefined) return run(argv, { timeoutMs });
  const result = await run(withPasswordOnTerminal(argv), {
    timeoutMs,
    input: `${login.password}\n`,
  });
  return {
    ...result,
    argv,
    stdout: redact(result.stdout, login.password),
    stderr: redact(result.stderr, login.password),
  };
}

/**
 * Pure: the line of ctr's output that says why it failed, e.g. `ctr: failed to resolve
 * reference "...": ... 401 Unauthorized`. Through `script` stdout and stderr are one stream.
 */
export function ctrFailureLine(result: CommandResult): string {
  const lines = `${result.stdout}\n${result.stderr}`
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && line !== "Password:");
  return lines.filter((line) => line.startsWith("ctr: ")).pop() ?? lines.pop() ?? "";
}
