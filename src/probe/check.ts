import type { CommandResult } from "../common/exec.js";
import type { IoResult } from "./io.js";

/**
 * The answer to "can this be done here?". `not-run` is kept apart from `no`: a probe that could not
 * try (not root, tool missing) must never be read as proof that the machine lacks the feature.
 */
export type Check =
  | { readonly result: "yes" }
  | { readonly result: "no"; readonly code: string; readonly detail: string }
  | { readonly result: "not-run"; readonly detail: string };

export const YES: Check = { result: "yes" };

export function no(code: string, detail: string): Check {
  return { result: "no", code, detail };
}

export function notRun(detail: string): Check {
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

export function isYes(check: Check): boolean {
  return check.result === "yes";
}

export function isNo(check: Check): boolean {
  return check.result === "no";
}
