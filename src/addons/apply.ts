/**
 * Puts the rendered add-ons into a cluster: server-side apply of every object under one field
 * manager, so applying the same objects again changes nothing, then a bounded wait until each
 * add-on's Deployments are available. The explanations on failure are pure functions of what the
 * apiserver reports, so they are unit-tested without a cluster.
 */
import {
  ApiException,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
  type V1Deployment,
  type V1Pod,
} from "@kubernetes/client-node";
import type { Addon } from "./manifests.js";

export const FIELD_MANAGER = "sandkube";

export interface ApplyAddonsOptions {
  /** For the apply and the wait together. */
  readonly timeoutMs: number;
  readonly onProgress?: (line: string) => void;
  /**
   * false: apply only. For an apiserver with no kubelet behind it, where no pod can ever run.
   * Default true.
   */
  readonly waitForAvailable?: boolean;
}

/** What failed, in words that name the object and what the apiserver or kubelet said. */
export class AddonError extends Error {
  override readonly name = "AddonError";
}

/** "Deployment kube-system/coredns", "StorageClass local-path". */
export function describeObject(object: KubernetesObject): string {
  const namespace = object.metadata?.namespace;
  const name = object.metadata?.name ?? "(no name)";
  return `${object.kind ?? "(no kind)"} ${namespace === undefined ? "" : `${namespace}/`}${name}`;
}

/** The apiserver's own message out of a failed request, whatever shape the client gave it. */
export function apiErrorMessage(error: unknown): string {
  if (error instanceof ApiException) {
    const body: unknown = error.body;
    let parsed: unknown = body;
    if (typeof body === "string") {
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = body;
      }
    }
    if (typeof parsed === "object" && parsed !== null && "message" in parsed) {
      return `HTTP ${error.code}: ${String(parsed.message)}`;
    }
    return `HTTP ${error.code}: ${typeof parsed === "string" ? parsed.trim() : error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Server-side apply, object by object in the order given; `force` takes back fields a user edited. */
export async function applyObjects(
  client: KubernetesObjectApi,
  objects: readonly KubernetesObject[],
): Promise<void> {
  for (const object of objects) {
    try {
      await client.patch(
        object,
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        PatchStrategy.ServerSideApply,
      );
    } catch (error) {
      throw new AddonError(`applying ${describeObject(object)}: ${apiErrorMessage(error)}`);
    }
  }
}

/**
 * Available as `kubectl rollout status` sees it: the controller has seen the latest spec, every
 * replica runs it, and enough are available.
 */
export function deploymentAvailable(deployment: V1Deployment): boolean {
  const wanted = deployment.spec?.replicas ?? 1;
  const status = deployment.status;
  if (status === undefined) return false;
  if ((status.observedGeneration ?? 0) < (deployment.metadata?.generation ?? 1)) return false;
  const available = (status.conditions ?? []).some(
    (c) => c.type === "Available" && c.status === "True",
  );
  return (
    available &&
    (status.updatedReplicas ?? 0) >= wanted &&
    (status.availableReplicas ?? 0) >= wanted &&
    (status.replicas ?? 0) <= wanted
  );
}

/** Why one pod is not ready: scheduling, then each container's waiting or last termination. */
export function explainPod(pod: V1Pod): string {
  const name = pod.metadata?.name ?? "(no name)";
  const reasons: string[] = [];
  const unscheduled = (pod.status?.conditions ?? []).find(
    (c) => c.type === "PodScheduled" && c.status === "False",
  );
  if (unscheduled !== undefined) {
    reasons.push(`not scheduled: ${unscheduled.reason ?? ""} ${unscheduled.message ?? ""}`.trim());
  }
  const statuses = [
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.containerStatuses ?? []),
  ];
  for (const status of statuses) {
    const waiting = status.state?.waiting;
    const terminated = status.lastState?.terminated ?? status.state?.terminated;
    if (waiting !== undefined) {
      const message = waiting.message === undefined ? "" : `: ${waiting.message}`;
      reasons.push(`container ${status.name} waiting (${waiting.reason ?? "no reason"})${message}`);
    } else if (status.state?.running !== undefined && !status.ready) {
      reasons.push(`container ${status.name} running, not ready (its readiness probe fails)`);
    }
    if (terminated !== undefined && (terminated.exitCode !== 0 || waiting !== undefined)) {
      const detail = terminated.message ?? terminated.reason ?? "";
      reasons.push(
        `container ${status.name} last exited with status ${terminated.exitCode}${detail === "" ? "" : ` (${detail.trim()})`}`,
      );
    }
  }
  const phase = pod.status?.phase ?? "Unknown";
  return `pod ${name} ${phase}${reasons.length === 0 ? "" : `: ${reasons.join("; ")}`}`;
}

/** One line for a Deployment that did not become available: its conditions and its pods. */
export function explainDeployment(
  name: string,
  deployment: V1Deployment | undefined,
  pods: readonly V1Pod[],
): string {
  if (deployment === undefined) return `Deployment ${name} does not exist`;
  const wanted = deployment.spec?.replicas ?? 1;
  const parts = [
    `Deployment ${name} has ${deployment.status?.availableReplicas ?? 0}/${wanted} available`,
  ];
  for (const condition of deployment.status?.conditions ?? []) {
    if (condition.status !== "True" || condition.type === "ReplicaFailure") {
      parts.push(`${condition.type}: ${condition.message ?? condition.reason ?? condition.status}`);
    }
  }
  if (pods.length === 0) parts.push("no pods");
  for (const pod of pods) parts.push(explainPod(pod));
  return parts.join("; ");
}

function selectorOf(deployment: V1Deployment): string {
  const labels = deployment.spec?.selector.matchLabels ?? {};
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}

function isNotFound(error: unknown): boolean {
  return error instanceof ApiException && error.code === 404;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForDeployment(
  apps: AppsV1Api,
  core: CoreV1Api,
  target: KubernetesObject,
  deadline: number,
): Promise<void> {
  const name = target.metadata?.name ?? "";
  const namespace = target.metadata?.namespace ?? "default";
  let last: V1Deployment | undefined;
  for (;;) {
    try {
      last = await apps.readNamespacedDeployment({ name, namespace });
      if (deploymentAvailable(last)) return;
    } catch (error) {
      // Any other failure is the apiserver's, and worth more than a timeout.
      if (!isNotFound(error)) {
        throw new AddonError(`reading Deployment ${namespace}/${name}: ${apiErrorMessage(error)}`);
      }
      last = undefined;
    }
    if (Date.now() >= deadline) break;
    await sleep(500);
  }
  const pods =
    last === undefined
      ? []
      : await core
          .listNamespacedPod({ namespace, labelSelector: selectorOf(last) })
          .then((list) => list.items)
          .catch(() => []);
  throw new AddonError(
    `timed out waiting for ${explainDeployment(`${namespace}/${name}`, last, pods)}`,
  );
}

/**
 * Applies every add-on's objects in order, then waits for their Deployments to be available.
 * A second call with the same add-ons changes nothing in the cluster.
 */
export async function applyAddons(
  kubeconfigPath: string,
  addons: readonly Addon[],
  options: ApplyAddonsOptions,
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const progress = options.onProgress ?? (() => undefined);
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(kubeconfigPath);
  const objects = KubernetesObjectApi.makeApiClient(kubeconfig);
  for (const addon of addons) {
    await applyObjects(objects, addon.objects);
    progress(`applied ${addon.name} (${addon.objects.length} objects)`);
  }
  if (options.waitForAvailable === false) return;
  const apps = kubeconfig.makeApiClient(AppsV1Api);
  const core = kubeconfig.makeApiClient(CoreV1Api);
  for (const addon of addons) {
    for (const object of addon.objects.filter((o) => o.kind === "Deployment")) {
      await waitForDeployment(apps, core, object, deadline);
      progress(`${addon.name}: ${describeObject(object)} is available`);
    }
  }
}
