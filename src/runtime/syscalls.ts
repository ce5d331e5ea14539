import * as fs from "node:fs";
import { constants } from "node:os";

export type FileKind = "file" | "directory" | "symlink" | "socket" | "other";

/** What the native helper said on its report pipe (see native/sandkube-init.c). */
export interface HelperReport {
  /** The container process, as the host sees it. */
  readonly pid?: number;
  readonly warnings: readonly string[];
  readonly error?: string;
  readonly ready: boolean;
  /** The helper's own exit status (it exits right after forking unless told to wait). */
  readonly exitCode: number;
  /** Kernels without setns: the keeper of the pod-level namespaces, and the exec agent. */
  readonly keeperPid?: number;
  readonly agentPid?: number;
  /** The waited-for process's status, when a handed-over helper reports it (it is not our child). */
  readonly exitStatus?: number;
}

export interface HelperLaunch {
  readonly helperPath: string;
  readonly instructionFile: string;
  /** Extra fds from our caller (--preserve-fds) that the container gets as 3, 4, ... */
  readonly preserveFds: number;
}

/**
 * Every system call the TypeScript side of the runtime makes. The real implementation is
 * `hostSyscalls`; unit tests use a recording double, so the logic runs without root.
 */
export interface Syscalls {
  readFile(path: string): string;
  writeFile(path: string, data: string, mode?: number): void;
  /** Creates the file only if it does not exist; false when it already did. */
  createExclusive(path: string, data: string): boolean;
  rename(from: string, to: string): void;
  mkdir(path: string, recursive: boolean): void;
  rmdir(path: string): void;
  removeTree(path: string): void;
  unlink(path: string): void;
  /** The file's kind; a symlink is reported as such unless `follow` is set. */
  kindOf(path: string, follow?: boolean): FileKind | undefined;
  readlink(path: string): string;
  /** Same inode on the same device (e.g. two paths to one namespace); false if either is missing. */
  sameFile(a: string, b: string): boolean;
  readdir(path: string): string[];
  /** Sends a signal; false when the process does not exist (ESRCH). */
  kill(pid: number, signal: number): boolean;
  pid(): number;
  now(): Date;
  sleep(ms: number): Promise<void>;
  readStdin(): string;
  runHelper(launch: HelperLaunch): Promise<HelperReport>;
  /** Connects to the parked init's socket, removes it, sends the start byte and reads until EOF. */
  signalStart(dir: string, name: string): Promise<string>;
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

export function isErrno(e: unknown, code: string): boolean {
  return errnoOf(e) === code;
}

export function parseHelperReport(text: string, exitCode: number): HelperReport {
  let pid: number | undefined;
  let error: string | undefined;
  let ready = false;
  let keeperPid: number | undefined;
  let agentPid: number | undefined;
  let exitStatus: number | undefined;
  const warnings: string[] = [];
  for (const line of text.split("\n")) {
    const space = line.indexOf(" ");
    const kind = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? "" : line.slice(space + 1);
    if (kind === "pid") pid = Number(rest);
    else if (kind === "warn") warnings.push(rest);
    else if (kind === "error") error = rest;
    else if (kind === "ready") ready = true;
    else if (kind === "keeper") keeperPid = Number(rest);
    else if (kind === "agent") agentPid = Number(rest);
    else if (kind === "exit") exitStatus = Number(rest);
  }
  return {
    ...(pid === undefined ? {} : { pid }),
    warnings,
    ...(error === undefined ? {} : { error }),
    ready,
    exitCode,
    ...(keeperPid === undefined ? {} : { keeperPid }),
    ...(agentPid === undefined ? {} : { agentPid }),
    ...(exitStatus === undefined ? {} : { exitStatus }),
  };
}

export const hostSyscalls: Syscalls = {
  readFile: (path) => fs.readFileSync(path, "utf8"),
  writeFile: (path, data, mode) => fs.writeFileSync(path, data, { mode: mode ?? 0o644 }),
  createExclusive(path, data) {
    try {
      fs.writeFileSync(path, data, { flag: "wx" });
      return true;
    } catch (e) {
      if (isErrno(e, "EEXIST")) return false;
      throw e;
    }
  },
  rename: (from, to) => fs.renameSync(from, to),
  mkdir: (path, recursive) => void fs.mkdirSync(path, { recursive, mode: 0o711 }),
  rmdir: (path) => fs.rmdirSync(path),
  removeTree: (path) => fs.rmSync(path, { recursive: true, force: true }),
  unlink: (path) => fs.unlinkSync(path),
  kindOf(path, follow) {
    let st: fs.Stats;
    try {
      st = follow === true ? fs.statSync(path) : fs.lstatSync(path);
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR")) return undefined;
      throw e;
    }
    if (st.isSymbolicLink()) return "symlink";
    if (st.isDirectory()) return "directory";
    if (st.isFile()) return "file";
    if (st.isSocket()) return "socket";
    return "other";
  },
  readlink: (path) => fs.readlinkSync(path),
  sameFile(a, b) {
    try {
      const sa = fs.statSync(a);
      const sb = fs.statSync(b);
      return sa.dev === sb.dev && sa.ino === sb.ino;
    } catch {
      return false;
    }
  },
  readdir: (path) => fs.readdirSync(path),
  kill(pid, signal) {
    try {
      process.kill(pid, signal);
      return true;
    } catch (e) {
      if (isErrno(e, "ESRCH")) return false;
      throw e;
    }
  },
  pid: () => process.pid,
  now: () => new Date(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  readStdin: () => fs.readFileSync(0, "utf8"),
  // child_process and net are loaded on first use: most commands need neither, and each command's
  // startup is the runtime's speed (docs/runtime-engine.md).
  async runHelper(launch) {
    const { spawn } = await import("node:child_process");
    const reportFd = 3 + launch.preserveFds;
    const stdio: ("inherit" | "pipe" | number)[] = ["inherit", "inherit", "inherit"];
    for (let i = 0; i < launch.preserveFds; i++) stdio.push(3 + i);
    stdio.push("pipe");
    return new Promise((resolve, reject) => {
      const child = spawn(launch.helperPath, [launch.instructionFile, String(reportFd)], { stdio });
      let text = "";
      let exitCode: number | undefined;
      let closed = false;
      const finish = (): void => {
        if (closed && exitCode !== undefined) resolve(parseHelperReport(text, exitCode));
      };
      const pipe = child.stdio[reportFd];
      if (pipe === null || pipe === undefined) throw new Error("no report pipe from the helper");
      pipe.on("data", (d: string | Buffer) => (text += d.toString()));
      // The container keeps the pipe until it is ready (or execs), so EOF is the answer we wait for.
      pipe.on("end", () => ((closed = true), finish()));
      child.on("error", (e) => reject(new Error(`cannot run ${launch.helperPath}: ${e.message}`)));
      child.on("exit", (code, signal) => {
        exitCode = code ?? 128 + (signal === null ? 0 : constants.signals[signal]);
        finish();
      });
    });
  },
  async signalStart(dir, name) {
    // A relative name keeps long state directories under sun_path's 108 bytes.
    process.chdir(dir);
    const bun = (globalThis as { Bun?: BunSockets }).Bun;
    if (bun !== undefined) return signalStartWithBun(bun, name);
    const { createConnection } = await import("node:net");
    return new Promise((resolve, reject) => {
      const socket = createConnection(name);
      let text = "";
      socket.on("connect", () => {
        // Gone from the moment init has its start byte: the socket's presence means "created".
        fs.rmSync(name, { force: true });
        socket.write("s");
      });
      socket.on("data", (d) => (text += d.toString()));
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
  },
};

/** The part of Bun's socket API `start` uses (the runtime is compiled with Bun; see below). */
interface BunSockets {
  connect(options: {
    unix: string;
    socket: {
      open(socket: { write(data: string): number }): void;
      data(socket: unknown, data: Uint8Array): void;
      close(): void;
      error(socket: unknown, error: Error): void;
      connectError?(socket: unknown, error: Error): void;
    };
  }): Promise<unknown>;
}

/**
 * `start` through Bun's own sockets: loading node:net costs the compiled runtime about 3 ms of
 * every `start` (docs/runtime-engine.md, "Start time"), more than the rest of the command.
 */
function signalStartWithBun(bun: BunSockets, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const decoder = new TextDecoder();
    bun
      .connect({
        unix: name,
        socket: {
          open(socket) {
            fs.rmSync(name, { force: true });
            socket.write("s");
          },
          data(_socket, data) {
            text += decoder.decode(data, { stream: true });
          },
          close() {
            resolve(text + decoder.decode());
          },
          error(_socket, error) {
            reject(error);
          },
          connectError(_socket, error) {
            reject(error);
          },
        },
      })
      .catch(reject);
  });
}
