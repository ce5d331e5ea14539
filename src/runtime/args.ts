import { RuntimeError } from "./errors.js";

/** Global flags, which containerd's shim always puts before the command. */
export interface GlobalOptions {
  readonly root: string;
  readonly log?: string;
  readonly logFormat: "json" | "text";
  readonly systemdCgroup: boolean;
  readonly debug: boolean;
}

export interface ParsedCommandLine {
  readonly global: GlobalOptions;
  readonly command: string | undefined;
  readonly flags: ReadonlyMap<string, string | true>;
  readonly positionals: readonly string[];
}

/** Flags taking a value; every other flag is a boolean. Names as runc spells them. */
const VALUE_FLAGS = new Set([
  "root",
  "log",
  "log-format",
  "criu",
  "bundle",
  "b",
  "pid-file",
  "console-socket",
  "preserve-fds",
  "pidfd-socket",
  "process",
  "p",
  "format",
  "f",
  "resources",
  "r",
  "cwd",
  "env",
  "e",
  "user",
  "u",
  "interval",
  "image-path",
  "work-path",
  "memory",
  "cpu-shares",
  "pids-limit",
]);

const GLOBAL_FLAGS = new Set([
  "root",
  "log",
  "log-format",
  "systemd-cgroup",
  "debug",
  "rootless",
  "criu",
]);

/**
 * Parses runc's command line. Flags come Go style: one or two dashes, `--flag value` or
 * `--flag=value` (`--resources=-`, `-no-subreaper`), and may follow positionals.
 */
export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  const globals = new Map<string, string | true>();
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("-") && arg !== "-") {
      const body = arg.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const name = eq < 0 ? body : body.slice(0, eq);
      let value: string | true = true;
      if (eq >= 0) value = body.slice(eq + 1);
      else if (VALUE_FLAGS.has(name)) {
        const next = argv[++i];
        if (next === undefined) throw new RuntimeError(`flag --${name} needs a value`);
        value = next;
      }
      const target = command === undefined && GLOBAL_FLAGS.has(name) ? globals : flags;
      if (
        command === undefined &&
        !GLOBAL_FLAGS.has(name) &&
        name !== "version" &&
        name !== "v" &&
        name !== "help" &&
        name !== "h"
      )
        throw new RuntimeError(`unknown global flag ${arg}`);
      if (command === undefined && (name === "version" || name === "v")) {
        command = "--version";
        continue;
      }
      target.set(name, value);
      continue;
    }
    if (command === undefined) command = arg;
    else positionals.push(arg);
  }
  const logFormat = globals.get("log-format");
  if (logFormat !== undefined && logFormat !== "json" && logFormat !== "text")
    throw new RuntimeError(`--log-format must be "json" or "text", not ${String(logFormat)}`);
  const str = (v: string | true | undefined): string | undefined =>
    typeof v === "string" ? v : undefined;
  const bool = (v: string | true | undefined): boolean => v === true || v === "true";
  const log = str(globals.get("log"));
  return {
    global: {
      root: str(globals.get("root")) ?? "/run/sandkube-runtime",
      ...(log === undefined ? {} : { log }),
      logFormat: logFormat === "text" ? "text" : "json",
      systemdCgroup: bool(globals.get("systemd-cgroup")),
      debug: bool(globals.get("debug")),
    },
    command,
    flags,
    positionals,
  };
}

export function flagString(
  flags: ReadonlyMap<string, string | true>,
  ...names: string[]
): string | undefined {
  for (const n of names) {
    const v = flags.get(n);
    if (typeof v === "string") return v;
  }
  return undefined;
}

export function flagBool(flags: ReadonlyMap<string, string | true>, ...names: string[]): boolean {
  return names.some((n) => {
    const v = flags.get(n);
    return v === true || v === "true";
  });
}

const ID_PATTERN = /^[\w+.-]+$/;

/** The container id: one positional, a safe file name (it names a directory under --root). */
export function containerId(positionals: readonly string[], command: string): string {
  const id = positionals[0];
  if (id === undefined || id === "") throw new RuntimeError(`${command} needs a container id`);
  if (!ID_PATTERN.test(id) || id === "." || id === "..")
    throw new RuntimeError(
      `invalid container id "${id}": use letters, digits, '_', '+', '-' and '.'`,
    );
  return id;
}
