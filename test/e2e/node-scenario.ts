import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { busyboxRootfs } from "../../src/images/busybox.js";
import { nodeLayout } from "../../src/node/layout.js";
import { sleep } from "../../src/node/process-identity.js";
import { readNodeState, readSupervisorStatus } from "../../src/node/state.js";
import { selfAndAncestors } from "../../src/node/down.js";
import { brief, must, runScenarioProgram, Scenario, type ScenarioReport } from "./scenario.js";

export type { ScenarioReport, ScenarioStep } from "./scenario.js";
import { labBinary } from "../../lab/paths.js";
import { openOutsideWorld, OUTSIDE_GREETING, type OutsideWorld } from "./outside-world.js";

/**
 * The `sandkube up` scenario of issue 8, as one program: the host test runs it directly and the
 * gVisor test runs the same file inside a real runsc sandbox, so both prove the same things.
 * It prints one JSON object: every step with ok and an honest detail.
 *
 * Issue 9's part runs `sandkube verify` (Services, DNS, NodePort, egress, a PVC) with an outside
 * world of its own (test/e2e/outside-world.ts) and installs, tests and removes a Helm chart.
 *
 *   node dist/test/e2e/node-scenario.js --data-dir DIR [--runtime auto|runc|sandkube]
 *     [--service-proxy auto|kube-proxy|sandkube-proxy] [--faults] [--out FILE]
 */

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const DEMO_CHART = fileURLToPath(
  new URL("../../../test/fixtures/charts/sandkube-demo", import.meta.url),
);
/** The count: a Service over 3 replicas, called 300 times. */
const SERVICE_REQUESTS = 300;
export const BUSYBOX_IMAGE = "sandkube.local/busybox:latest";

function sandkube(args: readonly string[], timeoutMs = 600_000): Promise<CommandResult> {
  return runCommand([process.execPath, CLI, ...args], { timeoutMs });
}

async function kubectlJson(
  kubectl: string,
  kubeconfig: string,
  args: readonly string[],
): Promise<unknown> {
  const result = await runCommand([kubectl, "--kubeconfig", kubeconfig, ...args, "-o", "json"], {
    timeoutMs: 60_000,
  });
  return JSON.parse(must(result, `kubectl ${args.join(" ")}`)) as unknown;
}

interface ContainerList {
  readonly containers: readonly { id: string; state: string; metadata: { name: string } }[];
}

async function runningContainers(crictl: string, socket: string): Promise<Map<string, string>> {
  const result = await runCommand(
    [crictl, "--runtime-endpoint", `unix://${socket}`, "ps", "-o", "json"],
    { timeoutMs: 30_000 },
  );
  const list = JSON.parse(must(result, "crictl ps")) as ContainerList;
  return new Map(
    list.containers
      .filter((c) => c.state === "CONTAINER_RUNNING")
      .map((c) => [c.metadata.name, c.id]),
  );
}

async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(500);
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

/** The machine's mounts and links: what a node adds must be gone again after `down`. */
export interface MachineSnapshot {
  readonly mounts: readonly string[];
  readonly links: readonly string[];
}

export async function snapshotMachine(): Promise<MachineSnapshot> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  const mounts = mountinfo
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(" ");
      return `${fields[4] ?? ""} (${fields[fields.indexOf("-") + 1] ?? ""})`;
    });
  const links = (await runCommand(["ip", "-o", "link", "show"])).stdout
    .split("\n")
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
  return { mounts, links };
}

/**
 * Nothing of the node may remain: no process naming its data dir, and no mount or link that was
 * not there before `up` (or, with no baseline, none under the data dir and no sandkube link).
 */
export async function leftoversOf(dataDir: string, baseline?: MachineSnapshot): Promise<string[]> {
  const found: string[] = [];
  const now = await snapshotMachine();
  // Only where a node mounts: its data dir and what provisioning covers. Other tests' sandboxes
  // mount and unmount elsewhere on the host meanwhile, and /run/netns is left out on purpose:
  // iproute2's `ip netns add` (doctor's network probe) binds it onto itself, shared, and no
  // `ip netns` command ever undoes that.
  const nodeMount = (mount: string): boolean =>
    [dataDir, "/dev/kmsg", "/proc/sys", "/sys/fs/cgroup"].some((p) => mount.startsWith(p));
  for (const mount of now.mounts.filter(nodeMount)) {
    const extra =
      baseline === undefined ? mount.startsWith(dataDir) : !baseline.mounts.includes(mount);
    if (extra) found.push(`mount ${mount}`);
  }
  for (const link of now.links) {
    const extra =
      baseline === undefined
        ? link.startsWith("sandkube") || /^sk[0-9a-f]{11}$/.test(link)
        : !baseline.links.includes(link);
    if (extra) found.push(`link ${link}`);
  }
  const spared = await selfAndAncestors();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || spared.has(Number(entry))) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(dataDir)) {
      found.push(`process ${entry}: ${cmdline.split("\0").slice(0, 3).join(" ")}`);
    }
  }
  return found;
}

export async function runScenario(options: {
  readonly dataDir: string;
  readonly runtime: string;
  readonly serviceProxy?: string;
  readonly faults: boolean;
}): Promise<ScenarioReport> {
  const s = new Scenario();
  const serviceProxy = options.serviceProxy ?? "auto";
  let outside: OutsideWorld | undefined;
  await s.step("outside-world", async () => {
    outside = await openOutsideWorld(labBinary("coredns"));
    return `${outside.httpUrl} and DNS for ${outside.name} behind ${outside.uplink.name}`;
  });
  try {
    return await scenarioOnNode(s, options, serviceProxy, outside);
  } finally {
    await outside?.close();
  }
}

async function scenarioOnNode(
  s: Scenario,
  options: { readonly dataDir: string; readonly runtime: string; readonly faults: boolean },
  serviceProxy: string,
  outside: OutsideWorld | undefined,
): Promise<ScenarioReport> {
  const { dataDir } = options;
  const layout = nodeLayout(dataDir);
  const userKubeconfig = join(
    dataDir,
    "..",
    `${dataDir.split("/").pop() ?? "node"}-user-kubeconfig`,
  );
  let kubectl = "";
  let admin = "";
  let crictl = "";
  const baseline = await snapshotMachine();

  const upOk = await s.step("up", async () => {
    const result = await sandkube([
      "up",
      "--data-dir",
      dataDir,
      "--runtime",
      options.runtime,
      "--service-proxy",
      serviceProxy,
      ...(outside === undefined ? [] : ["--resolv-conf", outside.resolvConf]),
      "--kubeconfig",
      userKubeconfig,
      "--json",
    ]);
    const summary = JSON.parse(must(result, "sandkube up")) as {
      timings: Record<string, number>;
      runtime: string;
    };
    const state = await readNodeState(layout);
    if (state === undefined) throw new Error("no node state after up");
    kubectl = state.config.binaries.kubectl;
    admin = state.kubeconfig.admin;
    crictl = state.tools.crictl ?? "";
    return `runtime ${summary.runtime}; ${JSON.stringify(summary.timings)}`;
  });
  if (upOk) {
    await s.step("up-again-changes-nothing", async () => {
      // Content, not mtime: gVisor's 9p root does not keep mtimes stable between stats.
      const before = await readFile(layout.stateFile, "utf8");
      const supervisorBefore = await readFile(layout.supervisorPidFile, "utf8");
      const result = await sandkube([
        "up",
        "--data-dir",
        dataDir,
        "--runtime",
        options.runtime,
        "--kubeconfig",
        userKubeconfig,
      ]);
      must(result, "second sandkube up");
      if (!/already running/.test(result.stderr))
        throw new Error(`second up did not say so: ${brief(result)}`);
      if ((await readFile(layout.stateFile, "utf8")) !== before)
        throw new Error("second up rewrote node.json");
      if ((await readFile(layout.supervisorPidFile, "utf8")) !== supervisorBefore) {
        throw new Error("second up replaced the supervisor");
      }
      return "said it is already running; node.json and the supervisor unchanged";
    });
    await s.step("user-kubeconfig-context", async () => {
      const text = await readFile(userKubeconfig, "utf8");
      if (!/current-context: sandkube/.test(text))
        throw new Error(`${userKubeconfig} has no current-context sandkube`);
      const nodes = await runCommand([
        kubectl,
        "--kubeconfig",
        userKubeconfig,
        "get",
        "nodes",
        "-o",
        "name",
      ]);
      return must(nodes, "kubectl get nodes with the merged kubeconfig").trim();
    });
    await s.step("unauthenticated-refused", async () => {
      const state = await readNodeState(layout);
      const host =
        state?.config.apiServerBindAddress === "0.0.0.0"
          ? "127.0.0.1"
          : state?.config.apiServerBindAddress;
      const api = await runCommand([
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `https://${host}:6443/api/v1/secrets`,
      ]);
      const kubelet = await runCommand([
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `https://${state?.config.nodeIP ?? ""}:10250/pods`,
      ]);
      if (api.stdout !== "401" || kubelet.stdout !== "401") {
        throw new Error(
          `expected 401 from both; apiserver ${api.stdout || brief(api)}, kubelet ${kubelet.stdout || brief(kubelet)}`,
        );
      }
      return "apiserver 401, kubelet 401";
    });
    await s.step("status", async () => {
      const result = await sandkube(["status", "--data-dir", dataDir, "--json"]);
      const status = JSON.parse(must(result, "sandkube status")) as {
        ready: boolean;
        components: { name: string; healthy: boolean }[];
      };
      const sick = status.components.filter((c) => !c.healthy).map((c) => c.name);
      if (!status.ready || sick.length > 0)
        throw new Error(`ready ${status.ready}; unhealthy: ${sick.join(", ")}`);
      return `${status.components.length} components healthy, node Ready`;
    });
    await s.step("image-build", async () => {
      const rootfs = await mkdtemp(join(tmpdir(), "sk-busybox-"));
      try {
        await busyboxRootfs(rootfs);
        must(
          await sandkube([
            "images",
            "build",
            "--from-dir",
            rootfs,
            "--name",
            BUSYBOX_IMAGE,
            "--data-dir",
            dataDir,
          ]),
          "images build",
        );
      } finally {
        await rm(rootfs, { recursive: true, force: true });
      }
      const listed = must(await sandkube(["images", "ls", "--data-dir", dataDir]), "images ls");
      if (!listed.includes(BUSYBOX_IMAGE))
        throw new Error(`images ls lacks ${BUSYBOX_IMAGE}: ${listed}`);
      return `${BUSYBOX_IMAGE} imported`;
    });
    await s.step("service-proxy", async () => {
      const state = await readNodeState(layout);
      const chosen = state?.config.serviceProxy ?? "none";
      if (serviceProxy !== "auto" && chosen !== serviceProxy)
        throw new Error(`asked for ${serviceProxy}, the node runs ${chosen}`);
      return `${chosen} carries Service traffic`;
    });
    await verifyEverything(s, dataDir, outside);
    await helmChart(s, kubectl, admin);
    if (options.faults)
      await faults(s, {
        dataDir,
        kubectl,
        admin,
        crictl,
        runtime: options.runtime,
        userKubeconfig,
      });
  }
  await s.step("down", async () => {
    const result = await sandkube(["down", "--data-dir", dataDir]);
    must(result, "sandkube down");
    const left = await leftoversOf(dataDir, baseline);
    if (left.length > 0) throw new Error(`left behind: ${left.join("; ")}`);
    return "nothing left behind";
  });
  await s.step("down-purge", async () => {
    must(await sandkube(["down", "--data-dir", dataDir, "--purge"]), "sandkube down --purge");
    const gone = await stat(dataDir).then(
      () => false,
      () => true,
    );
    if (!gone) throw new Error(`${dataDir} still exists`);
    await rm(userKubeconfig, { force: true });
    return "data dir removed";
  });
  return s.report();
}

/** `sandkube verify --json`: each of its checks becomes a scenario step. */
async function verifyEverything(
  s: Scenario,
  dataDir: string,
  outside: OutsideWorld | undefined,
): Promise<void> {
  const result = await sandkube([
    "verify",
    "--data-dir",
    dataDir,
    "--image",
    BUSYBOX_IMAGE,
    "--requests",
    String(SERVICE_REQUESTS),
    ...(outside === undefined
      ? []
      : ["--egress-url", outside.httpUrl, "--outside-name", outside.name]),
    "--json",
  ]);
  let report: {
    checks: { id: string; status: string; detail: string; durationMs: number }[];
  };
  try {
    report = JSON.parse(result.stdout) as typeof report;
  } catch {
    s.steps.push({ id: "verify", ok: false, detail: brief(result), seconds: 0 });
    return;
  }
  for (const check of report.checks) {
    let ok = check.status === "ok";
    let detail = check.detail;
    // The outside server names who called: the node's uplink address proves the SNAT.
    if (check.id === "egress" && outside !== undefined && ok) {
      const seen = `${OUTSIDE_GREETING} ${outside.uplink.address}`;
      if (!detail.includes(seen)) {
        ok = false;
        detail = `expected "${seen}" in: ${detail}`;
      }
    }
    s.steps.push({ id: `verify-${check.id}`, ok, detail, seconds: check.durationMs / 1000 });
    process.stderr.write(`${ok ? "ok  " : "FAIL"} verify-${check.id}: ${detail}\n`);
  }
  if (result.exitCode !== 0 && report.checks.every((c) => c.status !== "failed")) {
    s.steps.push({ id: "verify-exit", ok: false, detail: brief(result), seconds: 0 });
  }
}

/** The chart: a Deployment, a Service, a ConfigMap and a PVC; `helm test`; uninstall. */
async function helmChart(s: Scenario, kubectl: string, admin: string): Promise<void> {
  const helm = labBinary("helm");
  const namespace = "helm-demo";
  const base = ["--kubeconfig", admin, "--namespace", namespace];
  const installed = await s.step("helm-install", async () => {
    const result = await runCommand(
      [
        helm,
        "install",
        "demo",
        DEMO_CHART,
        ...base,
        "--create-namespace",
        "--wait",
        "--timeout",
        "240s",
      ],
      { timeoutMs: 300_000 },
    );
    must(result, "helm install");
    return result.stdout.split("\n").find((l) => l.startsWith("STATUS")) ?? "installed";
  });
  if (installed) {
    await s.step("helm-test", async () => {
      const result = await runCommand(
        [helm, "test", "demo", ...base, "--timeout", "180s", "--logs"],
        { timeoutMs: 240_000 },
      );
      must(result, "helm test");
      if (!/Phase:\s+Succeeded/.test(result.stdout))
        throw new Error(`helm test did not succeed: ${brief(result)}`);
      return "the chart's test pod succeeded";
    });
  }
  await s.step("helm-uninstall", async () => {
    must(
      await runCommand([helm, "uninstall", "demo", ...base, "--wait", "--timeout", "180s"], {
        timeoutMs: 240_000,
      }),
      "helm uninstall",
    );
    const left = await runCommand(
      [kubectl, "--kubeconfig", admin, "-n", namespace, "get", "deploy,svc,cm,pvc", "-o", "name"],
      { timeoutMs: 60_000 },
    );
    const names = must(left, "kubectl get after uninstall")
      .split("\n")
      .filter((n) => n !== "" && n !== "configmap/kube-root-ca.crt");
    if (names.length > 0) throw new Error(`still there after uninstall: ${names.join(", ")}`);
    must(
      await runCommand(
        [
          kubectl,
          "--kubeconfig",
          admin,
          "delete",
          "namespace",
          namespace,
          "--wait",
          "--timeout=120s",
        ],
        { timeoutMs: 150_000 },
      ),
      "delete the chart's namespace",
    );
    return "Deployment, Service, ConfigMap and PVC removed";
  });
}

const FAULT_POD = `apiVersion: v1
kind: Pod
metadata: {name: survivor, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: survivor
    image: ${BUSYBOX_IMAGE}
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "while :; do sleep 1; done"]
`;

async function faults(
  s: Scenario,
  ctx: {
    dataDir: string;
    kubectl: string;
    admin: string;
    crictl: string;
    runtime: string;
    userKubeconfig: string;
  },
): Promise<void> {
  const layout = nodeLayout(ctx.dataDir);
  const socket = layout.containerdSocket;
  let before = new Map<string, string>();
  const started = await s.step("faults-pod-running", async () => {
    const manifest = join(ctx.dataDir, "survivor.yaml");
    await writeFile(manifest, FAULT_POD);
    must(
      await runCommand([ctx.kubectl, "--kubeconfig", ctx.admin, "apply", "-f", manifest]),
      "apply survivor",
    );
    must(
      await runCommand(
        [
          ctx.kubectl,
          "--kubeconfig",
          ctx.admin,
          "wait",
          "--for=condition=Ready",
          "pod/survivor",
          "--timeout=120s",
        ],
        { timeoutMs: 130_000 },
      ),
      "survivor Ready",
    );
    before = await runningContainers(ctx.crictl, socket);
    return `containers ${[...before.keys()].join(", ")}`;
  });
  if (!started) return;
  for (const name of ["kubelet", "containerd", "kube-apiserver", "etcd"]) {
    await s.step(`faults-sigkill-${name}`, async () => {
      const status = await readSupervisorStatus(layout);
      const victim = status?.components.find((c) => c.name === name)?.process;
      if (!victim) throw new Error(`no recorded process for ${name}`);
      process.kill(victim.pid, "SIGKILL");
      await waitFor(`${name} to be restarted and ready`, 120_000, async () => {
        const now = (await readSupervisorStatus(layout))?.components.find((c) => c.name === name);
        return now?.phase === "ready" && now.process !== null && now.process.pid !== victim.pid;
      });
      await waitFor("the node to be Ready again", 120_000, async () => {
        const node = (await kubectlJson(ctx.kubectl, ctx.admin, ["get", "nodes"])) as {
          items: { status: { conditions: { type: string; status: string }[] } }[];
        };
        return node.items.every((n) =>
          n.status.conditions.some((c) => c.type === "Ready" && c.status === "True"),
        );
      });
      const after = await runningContainers(ctx.crictl, socket);
      for (const [container, id] of before) {
        if (after.get(container) !== id)
          throw new Error(`${container} was ${id}, now ${after.get(container) ?? "gone"}`);
      }
      return `${name} restarted (pid ${victim.pid} -> new); containers kept their IDs`;
    });
  }
  await s.step("faults-sigkill-supervisor-then-up", async () => {
    const text = await readFile(layout.supervisorPidFile, "utf8");
    const supervisor = JSON.parse(text) as { pid: number };
    process.kill(supervisor.pid, "SIGKILL");
    await sleep(500);
    const result = await sandkube([
      "up",
      "--data-dir",
      ctx.dataDir,
      "--runtime",
      ctx.runtime,
      "--kubeconfig",
      ctx.userKubeconfig,
      "--json",
    ]);
    const summary = JSON.parse(must(result, "up after the supervisor died")) as {
      recovered: boolean;
    };
    if (!summary.recovered) throw new Error("up did not report a recovery");
    const after = await runningContainers(ctx.crictl, socket);
    for (const [container, id] of before) {
      if (after.get(container) !== id)
        throw new Error(`${container} was ${id}, now ${after.get(container) ?? "gone"}`);
    }
    return "recovered; containers kept their IDs";
  });
}

runScenarioProgram(import.meta.url, "node-scenario", (flag, argv) =>
  runScenario({
    dataDir: resolve(flag("--data-dir") ?? "/var/lib/sandkube-e2e"),
    runtime: flag("--runtime") ?? "auto",
    serviceProxy: flag("--service-proxy") ?? "auto",
    faults: argv.includes("--faults"),
  }),
);
