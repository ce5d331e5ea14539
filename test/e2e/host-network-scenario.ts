import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand, type CommandResult } from "../../src/common/exec.js";
import { nodeLayout } from "../../src/node/layout.js";
import { sleep } from "../../src/node/process-identity.js";
import { readNodeState } from "../../src/node/state.js";
import { leftoversOf, snapshotMachine } from "./node-scenario.js";
import { brief, must, runScenarioProgram, Scenario, type ScenarioReport } from "./scenario.js";

/**
 * Issue 10's test for gVisor 2023-07 (runsc old), as one program run inside that sandbox: a kernel
 * without MS_REC (images are unpacked by sandkube, without mounts) and without veth (every pod
 * shares the node's network namespace). `sandkube up`, then a busybox Deployment on the host
 * network that runs, with `kubectl logs` and `exec` on it; a pod that asks for its own network
 * namespace fails with an event that says why (docs/gvisor-blockers.md B10: CNI's loopback plugin
 * cannot statfs the netns file there; sandkube-cni would fail next, on the veth, B9); `sandkube
 * verify` passes what such a node can do and names the blocker for the rest; `down` leaves
 * nothing, the node address on `lo` included. It prints one JSON object (ScenarioReport).
 *
 *   node dist/test/e2e/host-network-scenario.js --data-dir DIR [--out FILE]
 */

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const LOG_LINE = "hello from a hostNetwork pod";
const NEEDS_POD_NETWORK = ["podToPod", "pvc", "endpointChange"];
const WORKS_ON_HOST_NETWORK = [
  "deploymentReady",
  "logs",
  "exec",
  "portForward",
  "service",
  "dns",
  "nodePort",
  "udpService",
  "jobCompletes",
];

function sandkube(args: readonly string[], timeoutMs = 900_000): Promise<CommandResult> {
  return runCommand([process.execPath, CLI, ...args], { timeoutMs });
}

async function loAddresses(): Promise<string> {
  return (await runCommand(["ip", "-4", "-o", "addr", "show", "dev", "lo"])).stdout
    .split("\n")
    .map((line) => /inet (\S+)/.exec(line)?.[1])
    .filter((a): a is string => a !== undefined)
    .sort()
    .join(" ");
}

function deployment(image: string): string {
  return JSON.stringify({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "hello", namespace: "default" },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: "hello" } },
      template: {
        metadata: { labels: { app: "hello" } },
        spec: {
          hostNetwork: true,
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "hello",
              image,
              imagePullPolicy: "Never",
              command: ["sh", "-c", `echo '${LOG_LINE}'; exec sleep 3600`],
            },
          ],
        },
      },
    },
  });
}

function ownNetworkPod(image: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "own-netns", namespace: "default" },
    spec: {
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: "c",
          image,
          imagePullPolicy: "Never",
          command: ["sleep", "3600"],
        },
      ],
    },
  });
}

export async function runHostNetworkScenario(dataDir: string): Promise<ScenarioReport> {
  const scenario = new Scenario();
  const baseline = await snapshotMachine();
  const loBefore = await loAddresses();
  const up = await sandkube(["up", "--data-dir", dataDir]);
  const upOutput = `${up.stdout}\n${up.stderr}`;
  const isUp = await scenario.step("up", async () => {
    must(up, "sandkube up");
    const said = [
      /Unpack images without mounts \(because .*refuses MS_REC\)/,
      /only hostNetwork pods can run/,
    ].filter((pattern) => !pattern.test(upOutput));
    if (said.length > 0) throw new Error(`up did not say ${said.join(", ")}: ${brief(up)}`);
    return "node Ready; up named the unpack without mounts and the hostNetwork-only pods";
  });
  const state = await readNodeState(nodeLayout(dataDir));
  if (isUp && state !== undefined) {
    const kube = (args: readonly string[], timeoutMs = 120_000, input?: string) =>
      runCommand([state.config.binaries.kubectl, "--kubeconfig", state.kubeconfig.admin, ...args], {
        timeoutMs,
        ...(input === undefined ? {} : { input }),
      });
    const images = must(await sandkube(["images", "ls", "--data-dir", dataDir]), "images ls");
    const busybox = /sandkube\.local\/busybox:\S+/.exec(images)?.[0] ?? "";
    await scenario.step("deployment", async () => {
      if (busybox === "") throw new Error(`no busybox image on the node: ${images}`);
      must(await kube(["apply", "-f", "-"], 60_000, deployment(busybox)), "apply");
      must(
        await kube(["rollout", "status", "deployment/hello", "--timeout=180s"], 200_000),
        "rollout",
      );
      return `deployment/hello (${busybox}, hostNetwork) rolled out`;
    });
    await scenario.step("logs", async () => {
      const logs = must(await kube(["logs", "deployment/hello"]), "kubectl logs");
      if (!logs.includes(LOG_LINE)) throw new Error(`logs: ${JSON.stringify(logs)}`);
      return `kubectl logs: "${LOG_LINE}"`;
    });
    await scenario.step("exec", async () => {
      const out = must(
        await kube(["exec", "deployment/hello", "--", "sh", "-c", "echo $((6 * 7))"]),
        "kubectl exec",
      );
      if (out.trim() !== "42") throw new Error(`exec printed ${JSON.stringify(out)}`);
      return "kubectl exec ran a shell in the pod (it printed 42)";
    });
    await scenario.step("own-network-namespace-named", async () => {
      must(await kube(["apply", "-f", "-"], 60_000, ownNetworkPod(busybox)), "apply");
      let events = "";
      const named = /FailedCreatePodSandBox.*(veth|Statfs .*function not implemented)/;
      for (let i = 0; i < 60 && !named.test(events); i++) {
        await sleep(1000);
        events = (
          await kube([
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=own-netns",
            "-o",
            'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}',
          ])
        ).stdout;
      }
      // It never got a sandbox, so there is nothing to stop gracefully; kubelet keeps retrying
      // the sandbox until it sees the pod gone.
      must(
        await kube(["delete", "pod", "own-netns", "--grace-period=0", "--force", "--wait=false"]),
        "delete",
      );
      const line = events.split("\n").find((l) => named.test(l));
      if (line === undefined) throw new Error(`no event names why the sandbox failed: ${events}`);
      return line.slice(0, 400);
    });
    await scenario.step("verify", async () => {
      const verify = await sandkube([
        "verify",
        "--data-dir",
        dataDir,
        "--requests",
        "30",
        "--json",
      ]);
      const report = JSON.parse(verify.stdout.slice(verify.stdout.indexOf("{"))) as {
        checks: { id: string; status: string; blocker?: string }[];
      };
      const status = (id: string) => report.checks.find((c) => c.id === id);
      const wrong = [
        ...WORKS_ON_HOST_NETWORK.filter((id) => status(id)?.status !== "ok"),
        ...NEEDS_POD_NETWORK.filter(
          (id) =>
            status(id)?.status !== "failed" ||
            !/^cni-host-network: /.test(status(id)?.blocker ?? ""),
        ),
      ];
      if (wrong.length > 0) {
        throw new Error(
          `unexpected results for ${wrong.join(", ")}: ${verify.stdout.slice(-3000)}`,
        );
      }
      return `${WORKS_ON_HOST_NETWORK.length} checks ok; ${NEEDS_POD_NETWORK.join(", ")} failed naming cni-host-network`;
    });
  }
  await scenario.step("down", async () => {
    must(await sandkube(["down", "--data-dir", dataDir, "--purge"]), "sandkube down --purge");
    const left = await leftoversOf(dataDir, baseline);
    const loAfter = await loAddresses();
    if (loAfter !== loBefore) left.push(`lo addresses ${loAfter}, before up ${loBefore}`);
    if (left.length > 0) throw new Error(`left behind: ${left.join("; ")}`);
    return `nothing left behind (lo: ${loAfter})`;
  });
  return scenario.report();
}

runScenarioProgram(import.meta.url, "host-network-scenario", (flag) =>
  runHostNetworkScenario(resolve(flag("--data-dir") ?? "/var/lib/sandkube-old-e2e")),
);
