import type { FileKind, HelperLaunch, HelperReport, Syscalls } from "./syscalls.js";

function enoent(path: string): Error {
  return Object.assign(new Error(`ENOENT: no such file or directory, '${path}'`), {
    code: "ENOENT",
  });
}

/**
 * The test double of `Syscalls`: an in-memory file tree and process table that records every call,
 * so unit tests can assert what the runtime did (youki's libcontainer tests work the same way).
 */
export class RecordingSyscalls implements Syscalls {
  readonly calls: string[] = [];
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>(["/"]);
  readonly links = new Map<string, string>();
  readonly sockets = new Set<string>();
  readonly alive = new Set<number>();
  readonly signals: [number, number][] = [];
  helperReport: HelperReport = { warnings: [], ready: true, pid: 4242, exitCode: 0 };
  startAnswer = "";
  clock = new Date("2026-01-02T03:04:05.000Z");
  ownPid = 100;

  readFile(path: string): string {
    this.calls.push(`readFile ${path}`);
    const v = this.files.get(path);
    if (v === undefined) throw enoent(path);
    return v;
  }
  writeFile(path: string, data: string): void {
    this.calls.push(`writeFile ${path}`);
    this.files.set(path, data);
  }
  createExclusive(path: string, data: string): boolean {
    this.calls.push(`createExclusive ${path}`);
    if (this.files.has(path)) return false;
    this.files.set(path, data);
    return true;
  }
  rename(from: string, to: string): void {
    this.calls.push(`rename ${from} ${to}`);
    const v = this.files.get(from);
    if (v === undefined) throw enoent(from);
    this.files.delete(from);
    this.files.set(to, v);
  }
  mkdir(path: string, recursive: boolean): void {
    this.calls.push(`mkdir ${path}`);
    if (this.dirs.has(path)) {
      if (recursive) return;
      throw Object.assign(new Error(`EEXIST: ${path}`), { code: "EEXIST" });
    }
    this.dirs.add(path);
  }
  rmdir(path: string): void {
    this.calls.push(`rmdir ${path}`);
    if (!this.dirs.delete(path)) throw enoent(path);
  }
  removeTree(path: string): void {
    this.calls.push(`removeTree ${path}`);
    for (const set of [this.dirs, this.sockets])
      for (const p of [...set]) if (p === path || p.startsWith(`${path}/`)) set.delete(p);
    for (const p of [...this.files.keys()]) if (p.startsWith(`${path}/`)) this.files.delete(p);
  }
  unlink(path: string): void {
    this.calls.push(`unlink ${path}`);
    if (!this.files.delete(path) && !this.sockets.delete(path)) throw enoent(path);
  }
  kindOf(path: string, follow?: boolean): FileKind | undefined {
    const link = this.links.get(path);
    if (link !== undefined)
      return follow === true
        ? this.kindOf(
            link.startsWith("/") ? link : `${path.slice(0, path.lastIndexOf("/"))}/${link}`,
            true,
          )
        : "symlink";
    if (this.dirs.has(path)) return "directory";
    if (this.sockets.has(path)) return "socket";
    if (this.files.has(path)) return "file";
    return undefined;
  }
  readlink(path: string): string {
    const v = this.links.get(path);
    if (v === undefined) throw enoent(path);
    return v;
  }
  /** Paths listed as aliases of each other (e.g. a netns bind and /proc/self/ns/net). */
  readonly sameFiles = new Set<string>();
  sameFile(a: string, b: string): boolean {
    return a === b || this.sameFiles.has(`${a}=${b}`) || this.sameFiles.has(`${b}=${a}`);
  }
  readdir(path: string): string[] {
    const prefix = `${path}/`;
    const names = [...this.dirs, ...this.files.keys()]
      .filter((p) => p.startsWith(prefix))
      .map((p) => p.slice(prefix.length).split("/")[0] as string);
    return [...new Set(names)];
  }
  kill(pid: number, signal: number): boolean {
    this.calls.push(`kill ${pid} ${signal}`);
    this.signals.push([pid, signal]);
    if (!this.alive.has(pid)) return false;
    if (signal === 9) {
      this.alive.delete(pid);
      this.files.delete(`/proc/${pid}/stat`);
    }
    return true;
  }
  pid(): number {
    return this.ownPid;
  }
  now(): Date {
    return this.clock;
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
  readStdin(): string {
    return this.files.get("<stdin>") ?? "";
  }
  runHelper(launch: HelperLaunch): Promise<HelperReport> {
    this.calls.push(`runHelper ${launch.instructionFile}`);
    return Promise.resolve(this.helperReport);
  }
  signalStart(dir: string, name: string): Promise<string> {
    this.calls.push(`signalStart ${dir}/${name}`);
    this.sockets.delete(`${dir}/${name}`);
    return Promise.resolve(this.startAnswer);
  }

  /** A fake /proc/<pid>/stat with the given start time (field 22). */
  addProcess(pid: number, startTime: string, state = "S"): void {
    this.alive.add(pid);
    const fields = [state, ...Array.from({ length: 18 }, () => "0"), startTime, "0"];
    this.files.set(`/proc/${pid}/stat`, `${pid} (a (strange) name) ${fields.join(" ")}`);
  }
}
