import { readdir, readFile, rm, rmdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { runCommand } from "../common/exec.js";
import { parseOwnerRecord } from "../cni/ipam.js";
import { linkNames } from "../cni/plan.js";
import type { Progress } from "../cli/progress.js";
import { removeFromUserKubeconfig } from "./kubeconfig.js";
import type { NodeLayout } from "./layout.js";
import { isAlive, sleep, terminate, type ProcessIdentity } from "./process-identity.js";
import { undoRecord } from "./provision.js";
import type { NodeState } from "./state.js";
import { readNodeState, readSupervisorStatus } from "./state.js";
import { runningSupervisor } from "./up.js";

export interface DownResult {
  readonly found: boolean;
  /** What could not be removed, each naming the thing; empty when everything is gone. */
  readonly leftovers: readonly string[];
}

interface MountLine {
  readonly target: string;
  readonly fsType: string;
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

export async function currentMounts(): Promise<MountLine[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(" ");
      const separator = fields.indexOf("-");
      return { target: unescapeMountPath(fields[4] ?? ""), fsType: fields[separator + 1] ?? "" };
    });
}

/** Pure: mounts at or below `dir`, deepest first, so each unmount frees its parent. */
export function mountsBelow(mounts: readonly MountLine[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const inside = mounts.map((m) => m.target).filter((t) => t === dir || t.startsWith(prefix));
  return [...new Set(inside)].sort((a, b) => b.length - a.length);
}

async function unmountAllBelow(dir: string): Promise<string[]> {
  const problems: string[] = [];
  // Stacked mounts on one target need one umount each; a few passes take them all.
  for (let pass = 0; pass < 5; pass++) {
    const targets = mountsBelow(await currentMounts(), dir);
    if (targets.length === 0) return [];
    for (const target of targets) {
      const result = await runCommand(["umount", target]);
      if (result.exitCode !== 0) await runCommand(["umount", "-l", target]);
    }
  }
  for (const target of mountsBelow(await currentMounts(), dir)) problems.push(`mount ${target}`);
  return problems;
}

/**
 * Only the node's own programs are stopped: a user's `tail -f` on a node log names the data dir
 * too, and is none of `down`'s business.
 */
const NODE_PROGRAMS = new Set([
  "containerd",
  "containerd-shim-runc-v2",
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
  "runc",
  "sandkube-runtime",
  "sandkube-init",
]);
const SUPERVISOR = "supervisor-main.js";
const SANDKUBE_PROXY = "proxy/main.js";

/** This process and its ancestors: a script that runs `down --data-dir D` names D too. */
export async function selfAndAncestors(): Promise<Set<number>> {
  // process.pid is spared even when it is 1, as a sandbox's first process is.
  const chain = new Set<number>([process.pid]);
  let pid = process.pid;
  while (pid > 1) {
    chain.add(pid);
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] ?? "0");
  }
  return chain;
}

/** Processes whose command line names this node's data dir: shims and anything they left. */
export async function processesUsing(dataDir: string): Promise<ProcessIdentity[]> {
  const found: ProcessIdentity[] = [];
  const spared = await selfAndAncestors();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || spared.has(Number(entry))) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0");
    const ours = argv.some((a) => a.endsWith(SUPERVISOR) || a.endsWith(SANDKUBE_PROXY));
    if (!NODE_PROGRAMS.has(basename(argv[0] ?? "")) && !ours) continue;
    if (!argv.some((arg) => arg.startsWith(dataDir))) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    if (startTime !== undefined) found.push({ pid: Number(entry), startTime });
  }
  return found;
}

/** The OCI runtime's own record of each container, so containers whose shim died still go. */
async function deleteRuntimeContainers(state: NodeState, layout: NodeLayout): Promise<void> {
  // containerd-config.ts gives the shim Root = <state>/runc; the shim adds the namespace.
  const root = join(layout.containerdState, "runc", "k8s.io");
  const ids = await readdir(root).catch(() => [] as string[]);
  for (const id of ids) {
    await runCommand([state.config.binaries.ociRuntime, "--root", root, "delete", "--force", id], {
      timeoutMs: 30_000,
    });
  }
}

/**
 * Pods whose CNI DEL never ran (containerd died first): sandkube-cni's address files name each
 * pod's attachment, and its host link's name follows from that.
 */
async function removePodLinks(ipamDir: string): Promise<string[]> {
  const problems: string[] = [];
  for (const file of await readdir(ipamDir).catch(() => [] as string[])) {
    const owner = parseOwnerRecord(await readFile(join(ipamDir, file), "utf8").catch(() => ""));
    if (owner === undefined) continue;
    const { host } = linkNames(owner);
    const result = await runCommand(["ip", "link", "del", host]);
    if (result.exitCode !== 0 && !/Cannot find device|does not exist/.test(result.stderr)) {
      problems.push(`link ${host}: ${result.stderr.trim()}`);
    }
  }
  await rm(ipamDir, { recursive: true, force: true });
  return problems;
}

/** cgroups kubelet and containerd made under each v1 hierarchy, removed leaf first. */
async function removeCgroups(names: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const hierarchies = (await currentMounts())
    .filter((m) => m.fsType === "cgroup" || m.fsType === "cgroup2")
    .map((m) => m.target);
  const removeTree = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) await removeTree(join(dir, entry.name));
    await rmdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") problems.push(`cgroup ${dir} (${error.code ?? "error"})`);
    });
  };
  for (const hierarchy of [...new Set(hierarchies)]) {
    for (const name of names) await removeTree(join(hierarchy, name));
  }
  return problems;
}

async function waitGone(identity: ProcessIdentity, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await isAlive(identity))) return true;
    await sleep(200);
  }
  return false;
}

/**
 * Stops the node and undoes everything `up` did. Works from any state a crash can leave: with a
 * live supervisor (it removes the pods, then stops the components in order), a dead one, or a
 * half-finished `up`. Everything already gone is skipped, so a second `down` is harmless.
 */
export async function bringDown(
  layout: NodeLayout,
  progress: Progress,
  options: { readonly purge: boolean },
): Promise<DownResult> {
  const state = await readNodeState(layout).catch(() => undefined);
  if (state === undefined) {
    if (options.purge) await rm(layout.dataDir, { recursive: true, force: true });
    return { found: false, leftovers: [] };
  }
  const leftovers: string[] = [];
  const supervisor = await runningSupervisor(layout);
  if (supervisor !== undefined) {
    await progress.step("Removing pods and stopping the components", async () => {
      process.kill(supervisor.pid, "SIGTERM");
      if (!(await waitGone(supervisor, 180_000))) await terminate(supervisor, 1_000);
    });
  }
  await progress.step("Removing what the components left", async () => {
    const status = await readSupervisorStatus(layout);
    for (const component of [...(status?.components ?? [])].reverse()) {
      if (component.process !== null) await terminate(component.process, 5_000);
    }
    await deleteRuntimeContainers(state, layout);
    for (const leftover of await processesUsing(layout.dataDir)) await terminate(leftover, 3_000);
    leftovers.push(...(await removePodLinks(layout.cniIpamDir)));
    leftovers.push(...(await unmountAllBelow(layout.kubeletRoot)));
    leftovers.push(...(await unmountAllBelow(join(layout.dataDir, "run"))));
    leftovers.push(...(await unmountAllBelow(join(layout.dataDir, "containerd"))));
    leftovers.push(...(await removeCgroups(["kubepods", "kubepods.slice", "k8s.io", "sandkube"])));
    const kubeProxyRules = await cleanupKubeProxy(state);
    if (kubeProxyRules !== undefined) leftovers.push(kubeProxyRules);
  });
  await progress.step("Undoing the sandbox provisioning", async () => {
    for (const record of [...state.provisioned].reverse()) {
      const problem = await undoRecord(record);
      if (problem !== undefined) leftovers.push(problem);
    }
  });
  if (state.kubeconfig.user !== null) {
    await removeFromUserKubeconfig(state.kubeconfig.user, state.kubeconfig.context);
  }
  for (const leftover of await processesUsing(layout.dataDir)) {
    leftovers.push(`process ${leftover.pid} (${await commandOf(leftover.pid)})`);
  }
  // Only once nothing is mounted below the data dir: rm would follow a mount into its content.
  if (leftovers.length === 0 && mountsBelow(await currentMounts(), layout.dataDir).length === 0) {
    await rm(join(layout.dataDir, "run"), { recursive: true, force: true });
    await rm(layout.stateFile, { force: true });
    if (options.purge) await rm(layout.dataDir, { recursive: true, force: true });
  }
  return { found: true, leftovers };
}

/** kube-proxy leaves its iptables rules behind when it stops; its own --cleanup removes them. */
async function cleanupKubeProxy(state: NodeState): Promise<string | undefined> {
  const binary = state.config.binaries.kubeProxy;
  if (state.config.serviceProxy !== "kube-proxy" || binary === null) return undefined;
  const env = state.components.find((c) => c.name === "kube-proxy")?.env ?? {};
  const result = await runCommand([binary, "--cleanup"], {
    timeoutMs: 60_000,
    env: { ...process.env, ...env },
  });
  return result.exitCode === 0
    ? undefined
    : `kube-proxy --cleanup: ${result.stderr.trim().split("\n").slice(-1)[0] ?? result.exitCode}`;
}

async function commandOf(pid: number): Promise<string> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.split("\0").filter(Boolean).slice(0, 3).join(" ");
}
