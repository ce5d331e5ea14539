import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { access, copyFile, mkdir, readFile, rm, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { runCommand } from "../common/exec.js";
import type { Progress } from "../cli/progress.js";
import { UsageError } from "../cli/usage-error.js";
import type { DoctorReport } from "../cli/doctor-report.js";
import type { BinaryPaths, ClusterConfig } from "../plan/cluster-config.js";
import { cniConflistPath, renderCniConflist } from "../plan/cni-config.js";
import { registryHostsDir, renderContainerdConfig } from "../plan/containerd-config.js";
import { writeRegistryFiles } from "../registry/credentials.js";
import type { RegistryOptions } from "../registry/options.js";
import { containerdProxyEnv } from "../registry/proxy-env.js";
import { kubeletResolvConfPath, renderKubeletConfig } from "../plan/kubelet-config.js";
import { planComponents, adminKubeconfigPath } from "./components.js";
import { writeFileAtomic } from "./files.js";
import { ensurePki } from "./pki.js";
import {
  currentEntries,
  mergeIntoUserKubeconfig,
  writeComponentKubeconfigs,
} from "./kubeconfig.js";
import type { NodeLayout } from "./layout.js";
import { componentLogPath } from "./layout.js";
import { buildClusterConfig, type NodeOptions } from "./node-config.js";
import { isAlive, sleep, terminate, type ProcessIdentity } from "./process-identity.js";
import { applyStep, type ProvisionRecord } from "./provision.js";
import {
  iptablesLegacyDir,
  planProvisioning,
  uplinksFromIpJson,
  type Uplink,
} from "./provision-plan.js";
import { sandkubeProxyEntry, importWithoutMountsEntry, supervisorEntry } from "./package-root.js";
import { parseIpv4, parseSubnet, subnetContains } from "../cni/ipv4.js";
import type { NodeState, SupervisorStatus } from "./state.js";
import { readNodeState, readSupervisorStatus, writeNodeState } from "./state.js";
import { buildPauseImage } from "../images/pause.js";
import { waitForCluster } from "./cluster-ready.js";
import type { AddonBinaries } from "../addons/images.js";
import { installAddons } from "./addons-step.js";

export class NodeStartError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "NodeStartError";
  }
}

/** The supervisor recorded in the pid file, if it is still that same process. */
export async function runningSupervisor(layout: NodeLayout): Promise<ProcessIdentity | undefined> {
  const text = await readFile(layout.supervisorPidFile, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const identity = JSON.parse(text) as ProcessIdentity;
  return (await isAlive(identity)) ? identity : undefined;
}

/** Ports the node's components listen on; a taken one would make a component crash-loop. */
export function nodePorts(config: ClusterConfig): { port: number; owner: string }[] {
  return [
    { port: config.apiServerPort, owner: "kube-apiserver" },
    { port: 2379, owner: "etcd (client)" },
    { port: 2380, owner: "etcd (peer)" },
    { port: 10250, owner: "kubelet" },
    { port: 10248, owner: "kubelet (healthz)" },
    { port: 10257, owner: "kube-controller-manager" },
    { port: 10259, owner: "kube-scheduler" },
  ];
}

function portFree(port: number, host: string): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

export async function checkPorts(config: ClusterConfig): Promise<void> {
  for (const { port, owner } of nodePorts(config)) {
    // Binding loopback also fails when another process holds the port on 0.0.0.0.
    const error = await portFree(port, "127.0.0.1");
    if (error?.code === "EADDRINUSE") {
      throw new UsageError(
        `up: port ${port}, which ${owner} needs, is already in use by another process. Stop that process (see \`ss -ltnp 'sport = :${port}'\`) and run \`sandkube up\` again.`,
        1,
      );
    }
  }
}

async function uplinkMtu(): Promise<number> {
  const route = await runCommand(["ip", "-j", "route", "show", "default"]);
  const parsed =
    route.exitCode === 0 ? (JSON.parse(route.stdout || "[]") as { dev?: string }[]) : [];
  const dev = parsed[0]?.dev;
  if (dev === undefined) return 1500;
  const mtu = Number((await readFile(`/sys/class/net/${dev}/mtu`, "utf8").catch(() => "")).trim());
  return Number.isInteger(mtu) && mtu >= 1280 && mtu <= 9000 ? mtu : 1500;
}

/** Where pods leave the sandbox: every link with an address outside the cluster's ranges. */
async function readUplinks(config: ClusterConfig): Promise<Uplink[]> {
  const listed = await runCommand(["ip", "-j", "-4", "addr", "show"]);
  if (listed.exitCode !== 0) return [];
  const ranges = [config.clusterCIDR, config.serviceCIDR].map((cidr) => parseSubnet(cidr));
  return uplinksFromIpJson(listed.stdout || "[]", (address) => {
    const value = parseIpv4(address);
    return (
      value === undefined ||
      address.startsWith("127.") ||
      ranges.some((range) => range !== undefined && subnetContains(range, value))
    );
  });
}

async function readIpForward(): Promise<string | null> {
  return readFile("/proc/sys/net/ipv4/ip_forward", "utf8").then(
    (v) => v.trim(),
    () => null,
  );
}

/** containerd takes one CNI folder per entry; both plugins are linked into the node's own. */
async function prepareCniBinDir(dir: string, plugins: Record<string, string>): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const [name, path] of Object.entries(plugins)) await symlink(path, join(dir, name));
}

async function pauseImageTar(layout: NodeLayout): Promise<string> {
  const file = join(layout.imageDir, "pause.oci.tar");
  const present = await access(file).then(
    () => true,
    () => false,
  );
  if (!present) {
    await mkdir(layout.imageDir, { recursive: true });
    await buildPauseImage(`${file}.partial`);
    await copyFile(`${file}.partial`, file);
    await rm(`${file}.partial`, { force: true });
  }
  return file;
}

export interface UpRequest {
  readonly options: NodeOptions;
  readonly layout: NodeLayout;
  readonly report: DoctorReport;
  /** Binaries as found or installed; ociRuntime and cniBinDir are filled here. */
  readonly binaries: Omit<BinaryPaths, "ociRuntime" | "cniBinDir">;
  readonly runc: string;
  readonly sandkubeRuntime: string;
  readonly sandkubeCni: string;
  readonly loopbackCni: string;
  readonly crictl: string | null;
  readonly userKubeconfig: string | null;
  /** Mirrors, CAs and logins for image pulls (docs/registries.md). */
  readonly registries: RegistryOptions;
  /** The resolver pods get (and cluster DNS forwards to); null: the sandbox's /etc/resolv.conf. */
  readonly resolvConf: string | null;
  /** CoreDNS and local-path-provisioner, installed once the node is Ready; null: no add-ons. */
  readonly addons: AddonBinaries | null;
  readonly timeoutMs: number;
  readonly progress: Progress;
  readonly host?: string;
}

export interface UpResult {
  readonly state: NodeState;
  readonly recovered: boolean;
  readonly alreadyRunning: boolean;
  readonly timings: Record<string, number>;
}

/** Starts the supervisor detached, in its own session, so it outlives the terminal. */
async function spawnSupervisor(layout: NodeLayout): Promise<void> {
  await mkdir(layout.logDir, { recursive: true });
  const fd = openSync(componentLogPath(layout, "supervisor"), "a");
  const child = spawn(process.execPath, [supervisorEntry(), layout.dataDir], {
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  child.unref();
  for (let i = 0; i < 100; i++) {
    if (await runningSupervisor(layout)) return;
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  const tail = await logTail(componentLogPath(layout, "supervisor"));
  throw new NodeStartError(`the node supervisor did not start: ${tail}`);
}

export async function logTail(path: string, lines = 5): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-lines).join(" | ");
}

/** Components a dead supervisor left running; the new one starts them afresh. */
async function stopOrphans(status: SupervisorStatus | undefined): Promise<void> {
  for (const component of [...(status?.components ?? [])].reverse()) {
    if (component.process !== null) await terminate(component.process, 10_000);
  }
}

export async function bringUp(request: UpRequest): Promise<UpResult> {
  const { layout, progress } = request;
  const timings: Record<string, number> = {};
  const started = Date.now();
  const existing = await readNodeState(layout);
  if (existing !== undefined) {
    if (await runningSupervisor(layout)) {
      return { state: existing, recovered: false, alreadyRunning: true, timings };
    }
    await progress.step("Recovering the node (its supervisor is gone)", async () => {
      await stopOrphans(await readSupervisorStatus(layout));
      await spawnSupervisor(layout);
    });
    await waitForCluster(existing, layout, progress, request.timeoutMs, timings, started);
    return { state: existing, recovered: true, alreadyRunning: false, timings };
  }

  const { report } = request;
  const cniBinDir = join(layout.dataDir, "cni", "bin");
  const mtu = await uplinkMtu();
  const provisional = buildClusterConfig(
    request.options,
    report.facts,
    report.adaptations,
    { ...request.binaries, ociRuntime: "", cniBinDir },
    mtu,
    request.host,
  );
  const binaries: BinaryPaths = {
    ...request.binaries,
    ociRuntime: provisional.runtime === "sandkube" ? request.sandkubeRuntime : request.runc,
    cniBinDir,
  };
  const config: ClusterConfig = { ...provisional, binaries };
  await checkPorts(config);

  const pathPrefix = report.adaptations.some((a) => a.id === "iptables-legacy")
    ? [iptablesLegacyDir(layout)]
    : [];
  const pauseTar = join(layout.imageDir, "pause.oci.tar");
  const state: NodeState = {
    schema: "sandkube.node/v1",
    config,
    provisioned: [],
    components: planComponents({
      config,
      layout,
      pathPrefix,
      basePath: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      pauseImageTar: pauseTar,
      // V8's young generation grows to 3 x 16 MB under connection churn; the proxy's objects are
      // short-lived buffers, so small semi-spaces keep its memory down (bench: services).
      sandkubeProxyCommand: [process.execPath, "--max-semi-space-size=2", sandkubeProxyEntry()],
      importWithoutMountsCommand: [process.execPath, importWithoutMountsEntry()],
      containerdProxyEnv: containerdProxyEnv(process.env, config),
    }),
    kubeconfig: {
      admin: adminKubeconfigPath(layout),
      user: request.userKubeconfig,
      context: "sandkube",
    },
    tools: { crictl: request.crictl },
    createdAt: new Date().toISOString(),
  };
  await writeNodeState(layout, state);

  const records: ProvisionRecord[] = [];
  await progress.step("Provisioning the sandbox", async () => {
    const steps = planProvisioning(report.facts, report.adaptations, config, layout, {
      ipForward: await readIpForward(),
      uplinks: await readUplinks(config),
    });
    for (const step of steps) {
      await applyStep(step, async (record) => {
        records.push(record);
        await writeNodeState(layout, { ...state, provisioned: [...records] });
      });
    }
  });
  const provisioned: NodeState = { ...state, provisioned: [...records] };

  await progress.step("Writing certificates and configuration", async () => {
    await ensurePki(config, layout);
    await writeComponentKubeconfigs(config, layout);
    await writeFileAtomic(
      layout.containerdConfig,
      renderContainerdConfig(config, report.facts, layout),
    );
    await writeFileAtomic(layout.kubeletConfig, renderKubeletConfig(config, report.facts, layout));
    await mkdir(layout.cniConfDir, { recursive: true });
    await writeFileAtomic(cniConflistPath(layout), renderCniConflist(config, layout));
    await prepareCniBinDir(cniBinDir, {
      "sandkube-cni": request.sandkubeCni,
      loopback: request.loopbackCni,
    });
    const resolv = await readFile(request.resolvConf ?? "/etc/resolv.conf", "utf8").catch(() => "");
    await writeFileAtomic(kubeletResolvConfPath(layout), resolv);
    await mkdir(layout.kubeletRoot, { recursive: true });
    await writeRegistryFiles(
      { hostsDir: registryHostsDir(layout), kubeletRoot: layout.kubeletRoot },
      request.registries,
    );
    await pauseImageTar(layout);
  });
  timings["configured_s"] = (Date.now() - started) / 1000;

  await progress.step("Starting the node supervisor", () => spawnSupervisor(layout));
  await waitForCluster(provisioned, layout, progress, request.timeoutMs, timings, started);
  if (request.addons !== null) {
    const left = Math.max(60_000, request.timeoutMs - (Date.now() - started));
    await installAddons(provisioned, layout, request.addons, progress, left);
    timings["addons_s"] = (Date.now() - started) / 1000;
  }
  if (request.userKubeconfig !== null) {
    const entries = currentEntries(await readFile(adminKubeconfigPath(layout), "utf8"));
    if (entries === undefined)
      throw new NodeStartError(`${adminKubeconfigPath(layout)} has no current context`);
    await mergeIntoUserKubeconfig(request.userKubeconfig, entries, "sandkube");
  }
  return { state: provisioned, recovered: false, alreadyRunning: false, timings };
}
