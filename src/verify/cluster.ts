/**
 * What every verify check shares: its result, the cluster it talks to, kubectl through runCommand,
 * and the readers of kubectl's JSON that a failure report is made of. A check never throws for a
 * failure: it returns what it ran and what came back, so a red result can be read without
 * re-running anything, and names the blocker behind it and the remedy where it can tell.
 */
import { runCommand, type CommandResult, type CommandRunner } from "../common/exec.js";
import { WEB_APP } from "./workload.js";

/** The checks a caller may pick; `apply` and `cleanup` always run around them. */
export const OPTIONAL_CHECKS = [
  "deploymentReady",
  "logs",
  "exec",
  "portForward",
  "podToPod",
  "service",
  "dns",
  "nodePort",
  "udpService",
  "egress",
  "pvc",
  "jobCompletes",
  "endpointChange",
] as const;
/**
 * Checks run only when asked for, after the others: `pull` needs an image that only a registry has
 * (verify --pull-image REF), so it is not part of the default set.
 */
export const ON_REQUEST_CHECKS = ["pull"] as const;
export const ALL_CHECKS = [...OPTIONAL_CHECKS, ...ON_REQUEST_CHECKS] as const;
export type OptionalCheckId = (typeof ALL_CHECKS)[number];
export type CheckId = "apply" | OptionalCheckId | "cleanup";

export type CheckStatus = "ok" | "failed" | "skipped";

export interface CheckResult {
  readonly id: CheckId;
  /** True only for status "ok": a skipped check is never reported as passed. */
  readonly ok: boolean;
  readonly status: CheckStatus;
  readonly detail: string;
  /** What stands in the way, when the check could tell (failed checks). */
  readonly blocker?: string;
  /** What to run or do about it. */
  readonly remedy?: string;
  readonly durationMs: number;
}

/**
 * The Service proxy of the node, for remedies: its component name and whether the supervisor runs
 * it; null when the node has none; absent when the caller does not know.
 */
export type ServiceProxyHint = { readonly name: string; readonly running: boolean } | null;

export interface ClusterTarget {
  readonly kubectl: string;
  readonly kubeconfig: string;
  readonly namespace: string;
  /** The most one check may take. */
  readonly timeoutMs: number;
  /** runCommand unless a caller needs to record the commands. */
  readonly run?: CommandRunner;
  /** A context of the kubeconfig; its current context when absent. */
  readonly context?: string;
  readonly serviceProxy?: ServiceProxyHint;
}

export interface Outcome {
  readonly ok: boolean;
  readonly detail: string;
  /** Set with ok false: the check did not run, for the reason in detail. */
  readonly skipped?: boolean;
  readonly blocker?: string;
  readonly remedy?: string;
}

// ---------------------------------------------------------------------------------------------
// Pure helpers (unit-tested)

/** One line that says what ran and how it ended, with the end of stderr: the honest failure detail. */
export function describeCommand(result: CommandResult): string {
  const how =
    result.failure !== undefined ? result.failure : `exit status ${String(result.exitCode)}`;
  const stderr = result.stderr.trim().split("\n").slice(-5).join(" | ");
  const stdout = result.stdout.trim().split("\n").slice(-3).join(" | ");
  return `\`${result.argv.join(" ")}\` ended with ${how}${stderr ? `; stderr: ${stderr}` : ""}${
    stderr === "" && stdout !== "" ? `; stdout: ${stdout}` : ""
  }`;
}

/** `kubectl port-forward` prints "Forwarding from 127.0.0.1:41234 -> 8080" once it listens. */
export function parseForwardedPort(output: string, remotePort: number): number | undefined {
  const re = new RegExp(`Forwarding from 127\\.0\\.0\\.1:(\\d+) -> ${remotePort}\\b`);
  const m = re.exec(output);
  return m === null ? undefined : Number(m[1]);
}

export interface PodSummary {
  readonly name: string;
  readonly phase: string;
  readonly ready: boolean;
  readonly ip: string | undefined;
  /** Conditions that are not True, and containers that are not running, with their reasons. */
  readonly problems: readonly string[];
}

interface RawCondition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}
interface RawContainerStatus {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: Record<string, { reason?: string; message?: string; exitCode?: number } | undefined>;
}
interface RawPod {
  metadata?: { name?: string };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: RawCondition[];
    initContainerStatuses?: RawContainerStatus[];
    containerStatuses?: RawContainerStatus[];
  };
}

function containerProblem(kind: string, s: RawContainerStatus): string | undefined {
  const [state, info] = Object.entries(s.state ?? {})[0] ?? ["unknown", undefined];
  if (state === "running" && (s.ready ?? false)) return undefined;
  if (kind === "init" && state === "terminated" && info?.exitCode === 0) return undefined;
  const why = [
    info?.reason,
    info?.message,
    info?.exitCode === undefined ? undefined : `exit ${info.exitCode}`,
  ]
    .filter((x) => x !== undefined && x !== "")
    .join(", ");
  return `${kind} ${s.name ?? "?"} ${state}${why ? ` (${why})` : ""}${
    (s.restartCount ?? 0) > 0 ? `, ${String(s.restartCount)} restarts` : ""
  }`;
}

/** Reads `kubectl get pods -o json` into what a failure report needs. */
export function summarisePods(podListJson: string): PodSummary[] {
  const list = JSON.parse(podListJson) as { items?: RawPod[] };
  return (list.items ?? []).map((pod) => {
    const conditions = pod.status?.conditions ?? [];
    const problems: string[] = [];
    for (const c of conditions) {
      if (c.status !== "True") {
        problems.push(
          `${c.type ?? "?"}=${c.status ?? "?"}${c.reason ? ` (${c.reason}${c.message ? `: ${c.message}` : ""})` : ""}`,
        );
      }
    }
    for (const s of pod.status?.initContainerStatuses ?? []) {
      const p = containerProblem("init", s);
      if (p !== undefined) problems.push(p);
    }
    for (const s of pod.status?.containerStatuses ?? []) {
      const p = containerProblem("container", s);
      if (p !== undefined) problems.push(p);
    }
    return {
      name: pod.metadata?.name ?? "?",
      phase: pod.status?.phase ?? "Unknown",
      ready: conditions.some((c) => c.type === "Ready" && c.status === "True"),
      ip: pod.status?.podIP,
      problems,
    };
  });
}

export function formatPods(pods: readonly PodSummary[]): string {
  if (pods.length === 0) return "no pods";
  return pods
    .map(
      (p) =>
        `${p.name} ${p.phase}${p.ready ? " Ready" : ""}${p.ip ? ` ${p.ip}` : ""}${
          p.problems.length > 0 ? ` [${p.problems.join("; ")}]` : ""
        }`,
    )
    .join("; ");
}

export interface JobState {
  readonly succeeded: number;
  readonly failed: number;
  /** Set once the Job can no longer complete (condition Failed=True). */
  readonly failedReason: string | undefined;
  readonly complete: boolean;
}

export function jobState(jobJson: string): JobState {
  const job = JSON.parse(jobJson) as {
    status?: { succeeded?: number; failed?: number; conditions?: RawCondition[] };
  };
  const conditions = job.status?.conditions ?? [];
  const failedCondition = conditions.find((c) => c.type === "Failed" && c.status === "True");
  return {
    succeeded: job.status?.succeeded ?? 0,
    failed: job.status?.failed ?? 0,
    failedReason:
      failedCondition === undefined
        ? undefined
        : `${failedCondition.reason ?? "Failed"}${failedCondition.message ? `: ${failedCondition.message}` : ""}`,
    complete: conditions.some((c) => c.type === "Complete" && c.status === "True"),
  };
}

/** kubectl's --timeout takes whole seconds; never 0, which means "forever" for some verbs. */
export function kubectlSeconds(ms: number): string {
  return `${String(Math.max(1, Math.ceil(ms / 1000)))}s`;
}

// ---------------------------------------------------------------------------------------------
// kubectl

/** kubectl's argv up to the verb: the kubeconfig, the context, the namespace. */
export function kubectlPrefix(target: ClusterTarget, namespace = target.namespace): string[] {
  return [
    target.kubectl,
    "--kubeconfig",
    target.kubeconfig,
    ...(target.context === undefined ? [] : ["--context", target.context]),
    "--namespace",
    namespace,
  ];
}

export function kubectl(
  target: ClusterTarget,
  args: readonly string[],
  options: { timeoutMs?: number; input?: string; namespace?: string } = {},
): Promise<CommandResult> {
  const run = target.run ?? runCommand;
  return run([...kubectlPrefix(target, options.namespace), ...args], {
    timeoutMs: options.timeoutMs ?? 30_000,
    ...(options.input === undefined ? {} : { input: options.input }),
  });
}

export function succeeded(result: CommandResult): boolean {
  return result.exitCode === 0 && result.failure === undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function statusOf(outcome: Outcome): CheckStatus {
  if (outcome.skipped === true) return "skipped";
  return outcome.ok ? "ok" : "failed";
}

export async function timed(id: CheckId, body: () => Promise<Outcome>): Promise<CheckResult> {
  const t0 = performance.now();
  let outcome: Outcome;
  try {
    outcome = await body();
  } catch (error: unknown) {
    // A bug in the check itself is still reported as this check's failure, not thrown at the caller.
    outcome = {
      ok: false,
      detail: `the check itself failed: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
  const status = statusOf(outcome);
  return {
    id,
    ok: status === "ok",
    status,
    detail: outcome.detail,
    ...(outcome.blocker === undefined ? {} : { blocker: outcome.blocker }),
    ...(outcome.remedy === undefined ? {} : { remedy: outcome.remedy }),
    durationMs: Math.round(performance.now() - t0),
  };
}

/** Pods and the namespace's latest events: what a failed wait is reported with. */
export async function diagnose(target: ClusterTarget, selector?: string): Promise<string> {
  const pods = await kubectl(target, [
    "get",
    "pods",
    ...(selector === undefined ? [] : ["--selector", selector]),
    "--output",
    "json",
  ]);
  const podText = succeeded(pods) ? formatPods(summarisePods(pods.stdout)) : describeCommand(pods);
  const events = await kubectl(target, [
    "get",
    "events",
    "--sort-by",
    ".metadata.creationTimestamp",
  ]);
  const eventText = succeeded(events)
    ? events.stdout.trim().split("\n").slice(-15).join("\n    ")
    : describeCommand(events);
  return `pods: ${podText}\n  events (latest):\n    ${eventText}`;
}

export async function webPods(target: ClusterTarget): Promise<PodSummary[] | string> {
  const result = await kubectl(target, [
    "get",
    "pods",
    "--selector",
    `app=${WEB_APP}`,
    "--output",
    "json",
  ]);
  if (!succeeded(result)) return describeCommand(result);
  return summarisePods(result.stdout);
}

export async function readyWebPods(target: ClusterTarget): Promise<PodSummary[] | string> {
  const pods = await webPods(target);
  if (typeof pods === "string") return pods;
  const ready = pods.filter((p) => p.ready);
  return ready.length > 0 ? ready : `no Ready web pod: ${formatPods(pods)}`;
}

/** The first pod that is not Ready, as the blocker, with what to run about its state. */
export function podBlocker(
  pods: readonly PodSummary[],
  namespace: string,
): { blocker?: string; remedy?: string } {
  if (pods.length === 0) {
    return {
      blocker: "no pods were created",
      remedy: `\`sandkube kubectl -n ${namespace} get events\` and \`sandkube logs kube-controller-manager\``,
    };
  }
  const stuck = pods.find((p) => !p.ready && p.phase !== "Succeeded");
  if (stuck === undefined) return {};
  const problem = stuck.problems.find(
    (p) => !p.startsWith("Ready=") && !p.startsWith("ContainersReady="),
  );
  const blocker = `pod ${stuck.name} ${stuck.phase}, not Ready${problem === undefined ? "" : `: ${problem}`}`;
  const text = stuck.problems.join("; ");
  const describe = `\`sandkube kubectl -n ${namespace} describe pod ${stuck.name}\``;
  if (/ErrImageNeverPull|ImagePullBackOff|ErrImagePull|InvalidImageName/.test(text)) {
    return {
      blocker: `${blocker} (the image is not in the node's containerd, and sandkube pulls nothing)`,
      remedy: "`sandkube images ls`, then `sandkube images build` or `sandkube images import` it",
    };
  }
  if (/CrashLoopBackOff|exit [1-9]|Error/.test(text)) {
    return {
      blocker,
      remedy: `\`sandkube kubectl -n ${namespace} logs ${stuck.name} --all-containers --previous\` and ${describe}`,
    };
  }
  if (/Unschedulable/.test(text)) {
    return { blocker, remedy: `${describe} and \`sandkube kubectl describe node\`` };
  }
  return { blocker, remedy: `${describe} (events) and \`sandkube logs kubelet\`` };
}

/** Reads one `kubectl get pod NAME -o json` with the list reader. */
export function summarisePod(podJson: string): PodSummary | undefined {
  return summarisePods(`{"items":[${podJson}]}`)[0];
}

/** "reason: message" of each event, oldest first, from `kubectl get events -o json`. */
export function eventMessages(eventListJson: string): string[] {
  const list = JSON.parse(eventListJson) as {
    items?: { reason?: string; message?: string; type?: string }[];
  };
  return (list.items ?? []).map(
    (e) =>
      `${e.type === "Warning" ? "Warning " : ""}${e.reason ?? "?"}: ${(e.message ?? "").trim()}`,
  );
}

/** How to find out about the node's Service proxy, for a remedy. */
export function proxyRemedy(proxy: ServiceProxyHint | undefined): string {
  if (proxy === undefined) {
    return "`sandkube status`, then the Service proxy's log (`sandkube logs kube-proxy` or `sandkube logs sandkube-proxy`)";
  }
  if (proxy === null) return "`sandkube doctor` says which Service data path this sandbox gets";
  return `\`sandkube logs ${proxy.name}\``;
}

/** What is missing when a Service's ClusterIP or NodePort does not answer but its pods do. */
export function dataPathBlocker(proxy: ServiceProxyHint | undefined): string {
  if (proxy === undefined) return "no Service data path: the Service proxy does not forward";
  if (proxy === null) return "no Service data path: this node runs no Service proxy";
  return proxy.running
    ? `no Service data path: ${proxy.name} runs but does not forward`
    : `no Service data path: ${proxy.name} is not running`;
}

/** When kubectl could not talk to the API server at all, that is the blocker of everything. */
export function apiServerBlocker(result: CommandResult): { blocker?: string; remedy?: string } {
  const text = `${result.stderr}\n${result.stdout}`;
  if (
    !/connection refused|was refused|Unable to connect to the server|i\/o timeout|no route to host/i.test(
      text,
    )
  ) {
    return {};
  }
  return {
    blocker: "kubectl cannot reach the API server",
    remedy: "`sandkube status` and `sandkube logs kube-apiserver`",
  };
}
