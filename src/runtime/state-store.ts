import type { CgroupEntry } from "./cgroups.js";
import { RuntimeError } from "./errors.js";
import { isErrno, type Syscalls } from "./syscalls.js";

/** What the runtime remembers about a container between its invocations. */
export interface ContainerState {
  readonly ociVersion: string;
  readonly id: string;
  readonly pid: number;
  /** /proc/<pid>/stat field 22, so that a reused pid is never taken for the container. */
  readonly startTime: string;
  readonly bundle: string;
  readonly rootfs: string;
  readonly created: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly owner: string;
  readonly cgroups: readonly CgroupEntry[];
  /** Whether the container has its own pid namespace: then killing init kills everything. */
  readonly ownPidNamespace: boolean;
  /** Kernels without setns (agent-mode.ts): the keeper and exec agent, killed at delete. */
  readonly helpers?: readonly HelperProcess[];
  /**
   * Kernels without mount namespaces (rootfs/shared-mounts.ts): the container's mounts are in the
   * sandbox's mount table; delete unmounts them down to the `rootfsDepth` mounts the rootfs had.
   */
  readonly sharedMounts?: { readonly rootfsDepth: number };
}

export interface HelperProcess {
  readonly role: "keeper" | "agent";
  readonly pid: number;
  readonly startTime: string;
}

export const START_SOCKET = "start.sock";
/** Who is creating the container (pid and start time), written right after the state dir. */
export const CREATOR_FILE = "creator.json";
/** The cgroup dirs create is about to make, one a line, written before it makes them. */
export const PENDING_CGROUPS_FILE = "cgroups.pending";
export const STATE_FILE = "state.json";
export const SHARED_MOUNTS_FILE = "shared-mounts.json";

export interface CreatorRecord {
  readonly pid: number;
  readonly startTime: string;
}

export function stateDir(root: string, id: string): string {
  return `${root}/${id}`;
}

/** Field 22 of /proc/<pid>/stat (starttime), and field 3 (state); the name may hold spaces or ')'. */
export function parseProcStat(text: string): { startTime: string; state: string } | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(" ");
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { startTime, state };
}

export function processStartTime(
  sys: Syscalls,
  pid: number,
): { startTime: string; state: string } | undefined {
  try {
    return parseProcStat(sys.readFile(`/proc/${pid}/stat`));
  } catch {
    return undefined;
  }
}

/** Writes a file so that readers see the old content or the new, never a part: temp + rename. */
export function writeAtomic(sys: Syscalls, path: string, data: string, mode = 0o644): void {
  const tmp = `${path}.${sys.pid()}.tmp`;
  sys.writeFile(tmp, data, mode);
  try {
    sys.rename(tmp, path);
  } catch (e) {
    try {
      sys.unlink(tmp);
    } catch {
      // The rename error is the one to report.
    }
    throw e;
  }
}

export class StateStore {
  constructor(
    private readonly sys: Syscalls,
    readonly root: string,
  ) {}

  dir(id: string): string {
    return stateDir(this.root, id);
  }

  /**
   * Makes the container's directory; an existing one means the id is taken. It then names its
   * creator, so that `delete` can tell a create still under way from one that was killed.
   */
  createDir(id: string): void {
    this.sys.mkdir(this.root, true);
    try {
      this.sys.mkdir(this.dir(id), false);
    } catch (e) {
      if (isErrno(e, "EEXIST")) throw new RuntimeError(`container with id ${id} already exists`);
      throw e;
    }
    const self = processStartTime(this.sys, this.sys.pid());
    const record: CreatorRecord = { pid: this.sys.pid(), startTime: self?.startTime ?? "" };
    writeAtomic(this.sys, `${this.dir(id)}/${CREATOR_FILE}`, JSON.stringify(record), 0o600);
  }

  /** Whether create got as far as state.json: without it the container is half-created. */
  hasState(id: string): boolean {
    return this.sys.kindOf(`${this.dir(id)}/${STATE_FILE}`) === "file";
  }

  /** The process creating the container, if it is still alive (same pid and start time). */
  liveCreator(id: string): number | undefined {
    let record: CreatorRecord;
    try {
      record = JSON.parse(this.sys.readFile(`${this.dir(id)}/${CREATOR_FILE}`)) as CreatorRecord;
    } catch {
      // No record: the creator died between mkdir and writing it (or an older runtime made it).
      return undefined;
    }
    const proc = processStartTime(this.sys, record.pid);
    if (proc === undefined || proc.state === "Z" || proc.state === "X") return undefined;
    return proc.startTime === record.startTime ? record.pid : undefined;
  }

  /** Records cgroup dirs before they are made, so a killed create leaves none nobody knows of. */
  recordPendingCgroups(id: string, dirs: readonly string[]): void {
    writeAtomic(this.sys, `${this.dir(id)}/${PENDING_CGROUPS_FILE}`, dirs.join("\n"), 0o600);
  }

  pendingCgroups(id: string): string[] {
    try {
      return this.sys
        .readFile(`${this.dir(id)}/${PENDING_CGROUPS_FILE}`)
        .split("\n")
        .filter((l) => l !== "");
    } catch {
      return [];
    }
  }

  save(state: ContainerState): void {
    writeAtomic(
      this.sys,
      `${this.dir(state.id)}/${STATE_FILE}`,
      `${JSON.stringify(state)}\n`,
      0o600,
    );
  }

  load(id: string): ContainerState {
    let text: string;
    try {
      text = this.sys.readFile(`${this.dir(id)}/${STATE_FILE}`);
    } catch (e) {
      if (isErrno(e, "ENOENT") || isErrno(e, "ENOTDIR"))
        throw new RuntimeError(`container ${id} does not exist`);
      throw e;
    }
    return JSON.parse(text) as ContainerState;
  }

  /**
   * Kernels without mount namespaces: the rootfs and its mount depth, written before the helper
   * mounts anything in the shared table, so that a create killed before state.json is undone too.
   */
  recordPendingSharedMounts(id: string, rootfs: string, rootfsDepth: number): void {
    writeAtomic(
      this.sys,
      `${this.dir(id)}/${SHARED_MOUNTS_FILE}`,
      JSON.stringify({ rootfs, rootfsDepth }),
      0o600,
    );
  }

  pendingSharedMounts(id: string): { rootfs: string; rootfsDepth: number } | undefined {
    try {
      return JSON.parse(this.sys.readFile(`${this.dir(id)}/${SHARED_MOUNTS_FILE}`)) as {
        rootfs: string;
        rootfsDepth: number;
      };
    } catch {
      return undefined;
    }
  }

  /** The ids of every container under this root. */
  ids(): string[] {
    if (this.sys.kindOf(this.root) !== "directory") return [];
    return this.sys.readdir(this.root).filter((e) => this.sys.kindOf(this.dir(e)) === "directory");
  }

  remove(id: string): void {
    this.sys.removeTree(this.dir(id));
  }

  /**
   * Serialises commands on one container. The lock file holds the owner's pid; a lock whose owner
   * is gone (killed runtime) is taken over, so a crash never wedges the container.
   */
  async withLock<T>(id: string, body: () => Promise<T>): Promise<T> {
    this.sys.mkdir(this.root, true);
    const lock = `${this.root}/.${id}.lock`;
    for (let attempt = 0; ; attempt++) {
      if (this.sys.createExclusive(lock, String(this.sys.pid()))) break;
      let owner = Number.NaN;
      try {
        owner = Number(this.sys.readFile(lock));
      } catch {
        continue;
      }
      if (Number.isInteger(owner) && owner > 0 && !this.sys.kill(owner, 0)) {
        try {
          this.sys.unlink(lock);
        } catch {
          // Someone else took it over first.
        }
        continue;
      }
      if (attempt > 3000) throw new RuntimeError(`container ${id} is locked by process ${owner}`);
      await this.sys.sleep(2);
    }
    try {
      return await body();
    } finally {
      try {
        this.sys.unlink(lock);
      } catch {
        // Already gone: nothing to release.
      }
    }
  }
}

export type Status = "created" | "running" | "paused" | "stopped";

/** Works out the status from the process and the start socket, never from a bare pid. */
export function containerStatus(
  sys: Syscalls,
  state: ContainerState,
  dir: string,
  frozen: () => boolean,
): Status {
  const proc = processStartTime(sys, state.pid);
  if (
    proc === undefined ||
    proc.startTime !== state.startTime ||
    proc.state === "Z" ||
    proc.state === "X"
  )
    return "stopped";
  if (sys.kindOf(`${dir}/${START_SOCKET}`) === "socket") return "created";
  if (frozen()) return "paused";
  return "running";
}
