import type { CommandResult } from "../common/exec.js";
import type { IoResult } from "./io.js";

/**
 * The answer to "can this be done here?". `not-run` is kept apart from `no`: a probe that could not
 * try (not root, tool missing, a step it builds on failed) must never be read as proof that the
 * machine lacks the feature.
 */
export type Check =
  | { readonly result: "yes" }
  | { readonly result: "no"; readonly code: string; readonly detail: string }
  | { readonly result: "not-run"; readonly detail: string };

/** A check that failed or could not run; also the failure half of checks that yield a value. */
export type NotYes = Exclude<Check, { readonly result: "yes" }>;

export const YES: Check = { result: "yes" };

export function no(code: string, detail: string): NotYes {
  return { result: "no", code, detail };
}

export function notRun(detail: string): NotYes {
  return { result: "not-run", detail };
}

export function fromIo<T>(result: IoResult<T>): Check {
  return result.ok ? YES : no(result.code, result.message);
}

// strerror(3) texts as glibc and util-linux print them, so a failed command still yields an errno.
const STRERROR: ReadonlyArray<readonly [string, string]> = [
  ["Operation not permitted", "EPERM"],
  ["No such file or directory", "ENOENT"],
  ["Permission denied", "EACCES"],
  ["Device or resource busy", "EBUSY"],
  ["Invalid argument", "EINVAL"],
  ["Function not implemented", "ENOSYS"],
  ["Operation not supported", "EOPNOTSUPP"],
  ["Not supported", "EOPNOTSUPP"],
  ["No such device", "ENODEV"],
  ["Read-only file system", "EROFS"],
  ["Input/output error", "EIO"],
  ["No space left on device", "ENOSPC"],
  ["Protocol not supported", "EPROTONOSUPPORT"],
  ["Too many users", "EUSERS"],
  ["Bad file descriptor", "EBADF"],
  // util-linux mount(8) words some errnos its own way.
  ["already mounted or mount point busy", "EBUSY"],
  ["wrong fs type, bad option, bad superblock", "EINVAL"],
  ["unknown filesystem type", "ENODEV"],
  ["must be superuser", "EPERM"],
];

// mount(8) appends this to every failure; it says nothing about the failure itself.
const NOISE = /dmesg\(1\) may have more information/;

/** The errno named in a command's stderr, or a code built from how it ended. */
export function errnoOf(result: Omit<CommandResult, "argv">): string {
  if (result.failure !== undefined) return result.failure;
  for (const [text, code] of STRERROR) {
    if (result.stderr.includes(text)) return code;
  }
  return `EXIT_${result.exitCode}`;
}

/** A command's outcome as a Check; its last stderr line is the detail a human needs. */
export function fromCommand(result: CommandResult, label = result.argv.join(" ")): Check {
  if (result.exitCode === 0 && result.failure === undefined) return YES;
  const lines = result.stderr
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !NOISE.test(line));
  const lastLine = lines.at(-1) ?? "";
  const how = result.failure ?? `exit status ${result.exitCode}`;
  return no(errnoOf(result), `${label}: ${lastLine || how}`);
}

/** Lines that restate usage rather than the failure; they would only bury the real message. */
const USAGE_HINT = /^Try `\S+ -h' or '\S+ --help' for more information\.$/;

/**
 * The failure of a command in the command's own words (all of stderr, else stdout), or what
 * stopped it from running. ip, iptables and nft messages are kept whole so a reader can search
 * for them upstream.
 */
export function commandError(result: CommandResult): string {
  const program = result.argv[0] ?? "command";
  if (result.failure === "ENOENT") return `${program}: command not found (ENOENT)`;
  if (result.failure === "TIMEOUT") return `${program}: timed out`;
  if (result.failure !== undefined) return `${program}: ${result.failure}`;
  const words = (text: string): string =>
    text
      .split("\n")
      .map((line) => line.trimEnd())
      .filter((line) => line.trim() !== "" && !USAGE_HINT.test(line.trim()))
      .join("\n");
  return words(result.stderr) || words(result.stdout) || `exit status ${result.exitCode}`;
}

/** A command's outcome as a Check whose detail is the tool's whole message (see commandError). */
export function fromToolCommand(result: CommandResult): Check {
  if (result.exitCode === 0 && result.failure === undefined) return YES;
  return no(errnoOf(result), commandError(result));
}

/** Why a check did not pass, in the words a report or an adaptation's `because` quotes. */
export function failureText(check: Check): string {
  if (check.result === "yes") return "";
  return check.result === "not-run" ? `not tried: ${check.detail}` : check.detail;
}

export function isYes(check: Check): boolean {
  return check.result === "yes";
}

export function isNo(check: Check): boolean {
  return check.result === "no";
}
