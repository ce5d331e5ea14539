/**
 * How much memory a running node takes: the resident set (VmRSS) of every process of the stack,
 * attributed to one component each. Pure accounting over a process table, plus one reader of /proc.
 *
 * Resident sets overlap where processes share pages (libraries, the same binary), so the sum
 * overstates what the node costs; it is what `ps` and users see, and the same rule on both sides of
 * a comparison.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";

export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** undefined for kernel threads and zombies, which have no VmRSS line. */
  readonly rssKb: number | undefined;
  readonly argv: readonly string[];
  /** The executable's path, when /proc/PID/exe could be read. */
  readonly exe: string | undefined;
}

export interface StackRoots {
  readonly supervisorPid: number;
  readonly components: readonly { readonly name: string; readonly pid: number }[];
  /** containerd's socket: a shim names it in `-address`, which tells this node's shims apart. */
  readonly containerdSocket: string;
}

export interface StackMemory {
  /** Per bucket: "supervisor", each component, and "pods" (shims and the containers under them). */
  readonly bucketsKb: Readonly<Record<string, number>>;
  readonly stackKb: number;
  /** sandkube's own processes by name (the supervisor, sandkube-runtime, sandkube-cni...). */
  readonly sandkubeKb: Readonly<Record<string, number>>;
  readonly sandkubeTotalKb: number;
  readonly processCount: number;
}

/** Names sandkube's executables carry; the supervisor is a node process found by its pid file. */
const SANDKUBE_EXECUTABLES = ["sandkube-runtime", "sandkube-init", "sandkube-cni"] as const;

/** Field 4 of /proc/PID/stat; the command name in field 2 may hold spaces and parentheses. */
export function parseStatPpid(stat: string): number | undefined {
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  const ppid = Number(stat.slice(close + 2).split(" ")[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

export function parseVmRssKb(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return m === null ? undefined : Number(m[1]);
}

function isShimOf(p: ProcessInfo, containerdSocket: string): boolean {
  const name = basename(p.exe ?? p.argv[0] ?? "");
  if (!name.startsWith("containerd-shim")) return false;
  const i = p.argv.indexOf("-address");
  return i >= 0 && p.argv[i + 1] === containerdSocket;
}

function sandkubeName(p: ProcessInfo): string | undefined {
  const names = [p.exe, p.argv[0]].filter((x) => x !== undefined).map((x) => basename(x));
  return SANDKUBE_EXECUTABLES.find((n) => names.includes(n));
}

export function accountStack(processes: readonly ProcessInfo[], roots: StackRoots): StackMemory {
  const children = new Map<number, number[]>();
  const byPid = new Map<number, ProcessInfo>();
  for (const p of processes) {
    byPid.set(p.pid, p);
    children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  }
  const owner = new Map<number, string>();
  /** Claims pid and its descendants for bucket, leaving alone what another bucket claimed first. */
  const claim = (pid: number, bucket: string): void => {
    const stack = [pid];
    while (stack.length > 0) {
      const next = stack.pop() as number;
      if (owner.has(next) || !byPid.has(next)) continue;
      owner.set(next, bucket);
      stack.push(...(children.get(next) ?? []));
    }
  };
  // Shims first: a shim daemonizes away from containerd, but while one is still its child it and
  // its containers are the pods' memory, not containerd's.
  for (const p of processes) if (isShimOf(p, roots.containerdSocket)) claim(p.pid, "pods");
  for (const c of roots.components) claim(c.pid, c.name);
  claim(roots.supervisorPid, "supervisor");

  const bucketsKb: Record<string, number> = { supervisor: 0, pods: 0 };
  for (const c of roots.components) bucketsKb[c.name] = 0;
  const sandkubeKb: Record<string, number> = {};
  let stackKb = 0;
  for (const [pid, bucket] of owner) {
    const p = byPid.get(pid) as ProcessInfo;
    const kb = p.rssKb ?? 0;
    bucketsKb[bucket] = (bucketsKb[bucket] ?? 0) + kb;
    stackKb += kb;
    const own = pid === roots.supervisorPid ? "supervisor" : sandkubeName(p);
    if (own !== undefined) sandkubeKb[own] = (sandkubeKb[own] ?? 0) + kb;
  }
  return {
    bucketsKb,
    stackKb,
    sandkubeKb,
    sandkubeTotalKb: Object.values(sandkubeKb).reduce((a, b) => a + b, 0),
    processCount: owner.size,
  };
}

/** Every process /proc shows; one that exits while being read is left out. */
export async function readProcesses(proc = "/proc"): Promise<ProcessInfo[]> {
  const entries = (await readdir(proc)).filter((e) => /^\d+$/.test(e));
  const read = async (pid: string): Promise<ProcessInfo | undefined> => {
    try {
      const [stat, status, cmdline] = await Promise.all([
        readFile(`${proc}/${pid}/stat`, "utf8"),
        readFile(`${proc}/${pid}/status`, "utf8"),
        readFile(`${proc}/${pid}/cmdline`, "utf8"),
      ]);
      const ppid = parseStatPpid(stat);
      if (ppid === undefined) return undefined;
      const exe = await readlink(`${proc}/${pid}/exe`).catch(() => undefined);
      return {
        pid: Number(pid),
        ppid,
        rssKb: parseVmRssKb(status),
        argv: cmdline.split("\0").filter((a) => a !== ""),
        exe,
      };
    } catch {
      return undefined;
    }
  };
  const all = await Promise.all(entries.map(read));
  return all.filter((p) => p !== undefined);
}
