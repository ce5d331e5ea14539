import { CoreV1Api, KubeConfig, type V1Node, type V1Pod } from "@kubernetes/client-node";
import type { Progress } from "../cli/progress.js";
import type { ComponentName } from "./components.js";
import type { NodeLayout } from "./layout.js";
import { componentLogPath } from "./layout.js";
import { sleep } from "./process-identity.js";
import type { NodeState } from "./state.js";
import { readSupervisorStatus } from "./state.js";
import { logTail, NodeStartError, runningSupervisor } from "./up.js";

export function adminClient(state: NodeState): CoreV1Api {
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(state.kubeconfig.admin);
  return kubeconfig.makeApiClient(CoreV1Api);
}

export function nodeIsReady(node: V1Node): boolean {
  return (node.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function podIsReady(pod: V1Pod): boolean {
  if (pod.status?.phase === "Succeeded") return true;
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

async function until<T>(
  deadline: number,
  what: string,
  check: () => Promise<T | undefined>,
  explain: () => Promise<string>,
): Promise<T> {
  for (;;) {
    // A NodeStartError is final (the supervisor is gone); anything else is "not yet".
    const value = await check().catch((error: unknown) => {
      if (error instanceof NodeStartError) throw error;
      return undefined;
    });
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new NodeStartError(`timed out waiting for ${what}: ${await explain()}`);
    }
    await sleep(250);
  }
}

/**
 * Waits, one progress line per step, for each component to be ready, then for the node to be
 * Ready and kube-system healthy. On a timeout the error names the component and its log's tail;
 * the node is left running so that `sandkube logs` and `sandkube down` can follow.
 */
export async function waitForCluster(
  state: NodeState,
  layout: NodeLayout,
  progress: Progress,
  timeoutMs: number,
  timings: Record<string, number>,
  startedAt: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const since = () => (Date.now() - startedAt) / 1000;
  for (const spec of state.components) {
    const name: ComponentName = spec.name;
    await progress.step(`Starting ${name}`, () =>
      until(
        deadline,
        name,
        async () => {
          const status = await readSupervisorStatus(layout);
          if (!(await runningSupervisor(layout))) {
            throw new NodeStartError(
              `the node supervisor exited: ${await logTail(componentLogPath(layout, "supervisor"))}`,
            );
          }
          return status?.components.find((c) => c.name === name)?.phase === "ready"
            ? true
            : undefined;
        },
        async () => {
          const status = await readSupervisorStatus(layout);
          const component = status?.components.find((c) => c.name === name);
          return `${name} is ${component?.phase ?? "unknown"}${component?.lastExit ? ` (last exit: ${component.lastExit})` : ""}; its log ends: ${await logTail(spec.logFile)}. See \`sandkube logs ${name}\`.`;
        },
      ),
    );
    timings[`${name}_ready_s`] = since();
  }
  const client = adminClient(state);
  await progress.step(`Waiting for node ${state.config.nodeName} to be Ready`, () =>
    until(
      deadline,
      `node ${state.config.nodeName} to be Ready`,
      async () =>
        nodeIsReady(await client.readNode({ name: state.config.nodeName })) ? true : undefined,
      async () => {
        const node = await client.readNode({ name: state.config.nodeName }).catch(() => undefined);
        const ready = node?.status?.conditions?.find((c) => c.type === "Ready");
        return node === undefined
          ? `kubelet has not registered the node; see \`sandkube logs kubelet\`: ${await logTail(componentLogPath(layout, "kubelet"))}`
          : `Ready is ${ready?.status ?? "unknown"}: ${ready?.message ?? ""}`;
      },
    ),
  );
  timings["node_ready_s"] = since();
  await progress.step("Waiting for kube-system and the default service account", () =>
    until(
      deadline,
      "kube-system",
      async () => {
        await client.readNamespacedServiceAccount({ name: "default", namespace: "default" });
        const pods = await client.listNamespacedPod({ namespace: "kube-system" });
        return pods.items.every(podIsReady) ? true : undefined;
      },
      async () => {
        const pods = await client
          .listNamespacedPod({ namespace: "kube-system" })
          .catch(() => undefined);
        const notReady = (pods?.items ?? [])
          .filter((p) => !podIsReady(p))
          .map((p) => p.metadata?.name);
        return notReady.length > 0
          ? `pods not ready: ${notReady.join(", ")}`
          : "the default service account does not exist yet (kube-controller-manager makes it)";
      },
    ),
  );
  timings["kube_system_ready_s"] = since();
}
