import { readFile, writeFile, readdir, stat } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import type { CommandResult, CommandRunner, RunOptions } from "../common/exec.js";
import { runCommand } from "../common/exec.js";

/** A file-system outcome as data: probes report errno codes, they do not throw. */
export type IoResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: string; readonly message: string };

export type FileKind = "file" | "directory" | "char-device" | "symlink" | "other";

/**
 * Everything a probe may touch. Paths are logical absolute paths such as `/proc/sys/kernel/osrelease`;
 * an implementation decides where they really live, so tests replay a recorded machine without root.
 */
export interface ProbeIO {
  read(path: string): Promise<IoResult<string>>;
  write(path: string, data: string): Promise<IoResult<null>>;
  list(path: string): Promise<IoResult<string[]>>;
  kind(path: string): Promise<IoResult<FileKind>>;
  run(argv: readonly string[], options?: RunOptions): Promise<CommandResult>;
  /**
   * A fresh name for a scratch object (directory, namespace, cgroup, link) labelled `label`. Probes
   * take scratch names from here, never from a clock or a random source, so replays match.
   */
  scratchName(label: string): string;
}

/** Where `/proc`, `/sys` and `/dev` really are. Other paths are used as given. */
export interface ProbeRoots {
  readonly proc: string;
  readonly sys: string;
  readonly dev: string;
}

export const SYSTEM_ROOTS: ProbeRoots = { proc: "/proc", sys: "/sys", dev: "/dev" };

export function mapPath(roots: ProbeRoots, path: string): string {
  for (const [prefix, root] of [
    ["/proc", roots.proc],
    ["/sys", roots.sys],
    ["/dev", roots.dev],
  ] as const) {
    if (path === prefix || path.startsWith(`${prefix}/`)) return root + path.slice(prefix.length);
  }
  return path;
}

function failure(error: unknown): { ok: false; code: string; message: string } {
  const e = error as NodeJS.ErrnoException;
  return { ok: false, code: e.code ?? "EUNKNOWN", message: e.message };
}

/** The real machine, read through injectable roots. */
export function systemIO(
  roots: ProbeRoots = SYSTEM_ROOTS,
  runner: CommandRunner = runCommand,
): ProbeIO {
  return {
    async read(path) {
      try {
        return { ok: true, value: await readFile(mapPath(roots, path), "utf8") };
      } catch (error) {
        return failure(error);
      }
    },
    async write(path, data) {
      try {
        await writeFile(mapPath(roots, path), data);
        return { ok: true, value: null };
      } catch (error) {
        return failure(error);
      }
    },
    async list(path) {
      try {
        return { ok: true, value: (await readdir(mapPath(roots, path))).sort() };
      } catch (error) {
        return failure(error);
      }
    },
    async kind(path) {
      try {
        const s = await stat(mapPath(roots, path));
        const kind: FileKind = s.isFile()
          ? "file"
          : s.isDirectory()
            ? "directory"
            : s.isCharacterDevice()
              ? "char-device"
              : "other";
        return { ok: true, value: kind };
      } catch (error) {
        return failure(error);
      }
    },
    run: (argv, options) => runner(argv, options),
    scratchName: (label) => `sk${label}${randomBytes(4).toString("hex")}`,
  };
}

/** One recorded call and its answer. A fixture is a list of these, replayed in any order. */
export type TranscriptEntry =
  | { readonly op: "read"; readonly path: string; readonly result: IoResult<string> }
  | {
      readonly op: "write";
      readonly path: string;
      readonly data: string;
      readonly result: IoResult<null>;
    }
  | { readonly op: "list"; readonly path: string; readonly result: IoResult<string[]> }
  | { readonly op: "kind"; readonly path: string; readonly result: IoResult<FileKind> }
  | { readonly op: "scratch"; readonly label: string; readonly result: string }
  | {
      readonly op: "run";
      readonly argv: readonly string[];
      readonly result: Omit<CommandResult, "argv">;
    };

export interface Transcript {
  readonly schema: "sandkube.transcript/v1";
  readonly description: string;
  readonly entries: TranscriptEntry[];
}

/** Wraps an IO and remembers every answer, so a real machine can become a unit-test fixture. */
export function recordingIO(inner: ProbeIO): { io: ProbeIO; transcript: () => Transcript } {
  const entries: TranscriptEntry[] = [];
  const io: ProbeIO = {
    async read(path) {
      const result = await inner.read(path);
      entries.push({ op: "read", path, result });
      return result;
    },
    async write(path, data) {
      const result = await inner.write(path, data);
      entries.push({ op: "write", path, data, result });
      return result;
    },
    async list(path) {
      const result = await inner.list(path);
      entries.push({ op: "list", path, result });
      return result;
    },
    async kind(path) {
      const result = await inner.kind(path);
      entries.push({ op: "kind", path, result });
      return result;
    },
    async run(argv, options) {
      const { argv: _argv, ...result } = await inner.run(argv, options);
      entries.push({ op: "run", argv: [...argv], result });
      return { argv, ...result };
    },
    scratchName(label) {
      const result = inner.scratchName(label);
      entries.push({ op: "scratch", label, result });
      return result;
    },
  };
  return {
    io,
    transcript: () => ({
      schema: "sandkube.transcript/v1",
      description: "",
      entries: [...entries],
    }),
  };
}

const ENOENT = { ok: false, code: "ENOENT", message: "not in the recorded machine" } as const;

/**
 * Serves a transcript. A call made several times gets the recorded answers in order, then keeps the
 * last. Paths never recorded read as missing, which is what a sandbox lacking them looks like. A
 * command never recorded is an error in the test, not a missing binary, so a fixture can't silently
 * drift from the probes.
 */
export function replayIO(transcript: Transcript): ProbeIO {
  const queues = new Map<string, TranscriptEntry[]>();
  const keyOf = (entry: TranscriptEntry): string => {
    switch (entry.op) {
      case "run":
        return `run\u0000${entry.argv.join("\u0001")}`;
      case "scratch":
        return `scratch\u0000${entry.label}`;
      default:
        return `${entry.op}\u0000${entry.path}`;
    }
  };
  for (const entry of transcript.entries) {
    const key = keyOf(entry);
    const queue = queues.get(key) ?? [];
    queue.push(entry);
    queues.set(key, queue);
  }
  const next = (key: string): TranscriptEntry | undefined => {
    const queue = queues.get(key);
    if (queue === undefined || queue.length === 0) return undefined;
    return queue.length > 1 ? queue.shift() : queue[0];
  };
  return {
    async read(path) {
      const e = next(`read\u0000${path}`);
      return e?.op === "read" ? e.result : ENOENT;
    },
    async write(path) {
      const e = next(`write\u0000${path}`);
      return e?.op === "write" ? e.result : ENOENT;
    },
    async list(path) {
      const e = next(`list\u0000${path}`);
      return e?.op === "list" ? e.result : ENOENT;
    },
    async kind(path) {
      const e = next(`kind\u0000${path}`);
      return e?.op === "kind" ? e.result : ENOENT;
    },
    async run(argv) {
      const e = next(`run\u0000${argv.join("\u0001")}`);
      if (e?.op !== "run") {
        throw new Error(
          `replayIO: command not in transcript "${transcript.description}": ${argv.join(" ")}`,
        );
      }
      return { argv, ...e.result };
    },
    scratchName(label) {
      const e = next(`scratch\u0000${label}`);
      if (e?.op !== "scratch") {
        throw new Error(
          `replayIO: scratch name "${label}" not in transcript "${transcript.description}"`,
        );
      }
      return e.result;
    },
  };
}
