/**
 * Checks that a cluster really runs the verify workload (src/verify/workload.ts), each through
 * kubectl, the client users use. A check never throws for a failure: it returns what it ran and
 * what came back, so a red result can be read without re-running anything.
 */
import { spawn } from "node:child_process";
import { runCommand, type CommandResult, type CommandRunner } from "../common/exec.js";
import {
  CLIENT_POD,
  HTTP_PORT,
  INIT_CONTAINER,
  INIT_LOG_LINE,
  INIT_MARKER,
  INIT_MARKER_FILE,
  JOB_LOG_LINE,
  JOB_NAME,
  SECRET_ENV,
  SERVE_DIR,
  WEB_APP,
  WEB_CONTAINER,
  WEB_DEPLOYMENT,
  WEB_LOG_LINE,
  randomSuffix,
  renderWorkload,
  workloadYaml,
  type Workload,
} from "./workload.js";

export type CheckId =
  | "apply"
  | "deploymentReady"
  | "logs"
  | "exec"
  | "portForward"
  | "podToPod"
  | "jobCompletes"
  | "cleanup";

export interface CheckResult {
  readonly id: CheckId;
  readonly ok: boolean;
  readonly detail: string;
  readonly durationMs: number;
}

export interface ClusterTarget {
  readonly kubectl: string;
  readonly kubeconfig: string;
  readonly namespace: string;
  /** The most one check may take. */
  readonly timeoutMs: number;
  /** runCommand unless a caller needs to record the commands. */
  readonly run?: CommandRunner;
}

interface Outcome {
  readonly ok: boolean;
  readonly detail: string;
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

function kubectl(
  target: ClusterTarget,
  args: readonly string[],
  options: { timeoutMs?: number; input?: string } = {},
): Promise<CommandResult> {
  const run = target.run ?? runCommand;
  return run(
    [target.kubectl, "--kubeconfig", target.kubeconfig, "--namespace", target.namespace, ...args],
    {
      timeoutMs: options.timeoutMs ?? 30_000,
      ...(options.input === undefined ? {} : { input: options.input }),
    },
  );
}

function succeeded(result: CommandResult): boolean {
  return result.exitCode === 0 && result.failure === undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function timed(id: CheckId, body: () => Promise<Outcome>): Promise<CheckResult> {
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
  return { id, ...outcome, durationMs: Math.round(performance.now() - t0) };
}

/** Pods and the namespace's latest events: what a failed wait is reported with. */
async function diagnose(target: ClusterTarget, selector?: string): Promise<string> {
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

async function webPods(target: ClusterTarget): Promise<PodSummary[] | string> {
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

async function readyWebPods(target: ClusterTarget): Promise<PodSummary[] | string> {
  const pods = await webPods(target);
  if (typeof pods === "string") return pods;
  const ready = pods.filter((p) => p.ready);
  return ready.length > 0 ? ready : `no Ready web pod: ${formatPods(pods)}`;
}

// ---------------------------------------------------------------------------------------------
// Checks

/** Applies the workload: the namespace, its `default` ServiceAccount, then everything else. */
export function applyWorkload(target: ClusterTarget, workload: Workload): Promise<CheckResult> {
  return timed("apply", async () => {
    const deadline = Date.now() + target.timeoutMs;
    const yaml = workloadYaml(workload);
    const ns = await kubectl(target, ["apply", "--filename", "-"], { input: yaml.namespace });
    if (!succeeded(ns)) return { ok: false, detail: describeCommand(ns) };
    let sa = await kubectl(target, ["get", "serviceaccount", "default", "--output", "name"]);
    while (!succeeded(sa) && Date.now() < deadline) {
      await sleep(500);
      sa = await kubectl(target, ["get", "serviceaccount", "default", "--output", "name"]);
    }
    if (!succeeded(sa)) {
      return {
        ok: false,
        detail: `the namespace's default ServiceAccount never appeared (is the controller-manager running?): ${describeCommand(sa)}`,
      };
    }
    const rest = await kubectl(target, ["apply", "--filename", "-"], { input: yaml.rest });
    if (!succeeded(rest)) return { ok: false, detail: describeCommand(rest) };
    return { ok: true, detail: rest.stdout.trim().split("\n").join("; ") };
  });
}

export function deploymentReady(target: ClusterTarget): Promise<CheckResult> {
  return timed("deploymentReady", async () => {
    const rollout = await kubectl(
      target,
      [
        "rollout",
        "status",
        `deployment/${WEB_DEPLOYMENT}`,
        `--timeout=${kubectlSeconds(target.timeoutMs)}`,
      ],
      { timeoutMs: target.timeoutMs + 15_000 },
    );
    const dep = await kubectl(target, ["get", "deployment", WEB_DEPLOYMENT, "--output", "json"]);
    const readyReplicas = succeeded(dep)
      ? ((JSON.parse(dep.stdout) as { status?: { readyReplicas?: number } }).status
          ?.readyReplicas ?? 0)
      : 0;
    if (succeeded(rollout) && readyReplicas === 2) {
      const pods = await webPods(target);
      return {
        ok: true,
        detail: `2/2 replicas Ready: ${typeof pods === "string" ? pods : formatPods(pods)}`,
      };
    }
    return {
      ok: false,
      detail: `${String(readyReplicas)}/2 replicas Ready; ${describeCommand(rollout)}\n  ${await diagnose(target)}`,
    };
  });
}

export function logs(target: ClusterTarget): Promise<CheckResult> {
  return timed("logs", async () => {
    const pods = await readyWebPods(target);
    if (typeof pods === "string") return { ok: false, detail: pods };
    const pod = (pods[0] as PodSummary).name;
    const deadline = Date.now() + target.timeoutMs;
    // The line reaches the log file through containerd's shim a moment after the container printed it.
    for (;;) {
      const web = await kubectl(target, ["logs", `pod/${pod}`, "--container", WEB_CONTAINER]);
      const init = await kubectl(target, ["logs", `pod/${pod}`, "--container", INIT_CONTAINER]);
      const webOk = succeeded(web) && web.stdout.includes(WEB_LOG_LINE);
      const initOk = succeeded(init) && init.stdout.includes(INIT_LOG_LINE);
      if (webOk && initOk) {
        return { ok: true, detail: `${pod}: "${WEB_LOG_LINE}" and init "${INIT_LOG_LINE}"` };
      }
      if (Date.now() >= deadline) {
        const missing = [
          webOk
            ? undefined
            : `container ${WEB_CONTAINER} lacks "${WEB_LOG_LINE}": ${describeCommand(web)}`,
          initOk
            ? undefined
            : `initContainer ${INIT_CONTAINER} lacks "${INIT_LOG_LINE}": ${describeCommand(init)}`,
        ].filter((x) => x !== undefined);
        return { ok: false, detail: `${pod}: ${missing.join("; ")}` };
      }
      await sleep(1000);
    }
  });
}

/** Runs a shell in a web pod: its hostname, the Secret from the environment, the initContainer's file. */
export function exec(target: ClusterTarget, expectedSecret: string): Promise<CheckResult> {
  return timed("exec", async () => {
    const pods = await readyWebPods(target);
    if (typeof pods === "string") return { ok: false, detail: pods };
    const pod = (pods[0] as PodSummary).name;
    const result = await kubectl(
      target,
      [
        "exec",
        `pod/${pod}`,
        "--container",
        WEB_CONTAINER,
        "--",
        "sh",
        "-c",
        // Debian's busybox-static has no printenv applet; the shell expands the variable itself.
        `cat /etc/hostname; echo "$${SECRET_ENV}"; cat ${SERVE_DIR}/${INIT_MARKER_FILE}`,
      ],
      { timeoutMs: target.timeoutMs },
    );
    if (!succeeded(result)) return { ok: false, detail: describeCommand(result) };
    const [hostname, secret, marker] = result.stdout
      .trim()
      .split("\n")
      .map((l) => l.trim());
    const wrong = [
      hostname === pod
        ? undefined
        : `/etc/hostname is "${hostname ?? ""}", not the pod name ${pod}`,
      secret === expectedSecret
        ? undefined
        : `$${SECRET_ENV} is "${secret ?? ""}", not the Secret's value`,
      marker === INIT_MARKER
        ? undefined
        : `${SERVE_DIR}/${INIT_MARKER_FILE} is "${marker ?? ""}", not "${INIT_MARKER}"`,
    ].filter((x) => x !== undefined);
    return wrong.length === 0
      ? {
          ok: true,
          detail: `${pod}: hostname, $${SECRET_ENV} from the Secret, the initContainer's file`,
        }
      : { ok: false, detail: `${pod}: ${wrong.join("; ")}` };
  });
}

/**
 * `kubectl port-forward` runs until killed, which runCommand (it waits for the exit) cannot
 * express, so this one child is spawned directly and always killed before the check returns.
 */
export function portForward(target: ClusterTarget, expectedBody: string): Promise<CheckResult> {
  return timed("portForward", async () => {
    const pods = await readyWebPods(target);
    if (typeof pods === "string") return { ok: false, detail: pods };
    const pod = (pods[0] as PodSummary).name;
    const argv = [
      target.kubectl,
      "--kubeconfig",
      target.kubeconfig,
      "--namespace",
      target.namespace,
      "port-forward",
      "--address",
      "127.0.0.1",
      `pod/${pod}`,
      `:${String(HTTP_PORT)}`,
    ];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let spawnError: string | undefined;
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    child.once("error", (e: Error) => (spawnError = e.message));
    const deadline = Date.now() + target.timeoutMs;
    const story = (): string =>
      `\`${argv.join(" ")}\`${spawnError ? ` could not start: ${spawnError}` : ""}${
        child.exitCode !== null ? ` exited ${String(child.exitCode)}` : ""
      }${stderr.trim() ? `; stderr: ${stderr.trim().split("\n").slice(-5).join(" | ")}` : ""}`;
    try {
      let port = parseForwardedPort(stdout, HTTP_PORT);
      while (
        port === undefined &&
        child.exitCode === null &&
        spawnError === undefined &&
        Date.now() < deadline
      ) {
        await sleep(100);
        port = parseForwardedPort(stdout, HTTP_PORT);
      }
      if (port === undefined) return { ok: false, detail: `no forwarded port: ${story()}` };
      const url = `http://127.0.0.1:${String(port)}/`;
      let lastError = "";
      // The first connection through a fresh forward can race the stream setup; a few tries.
      for (let attempt = 1; attempt <= 3 && Date.now() < deadline; attempt++) {
        try {
          const response = await fetch(url, {
            signal: AbortSignal.timeout(Math.max(1000, Math.min(15_000, deadline - Date.now()))),
          });
          const body = await response.text();
          if (response.status === 200 && body === expectedBody) {
            return {
              ok: true,
              detail: `${url} -> ${pod}:${String(HTTP_PORT)} served the ConfigMap's index.html`,
            };
          }
          lastError = `HTTP ${String(response.status)}, body ${JSON.stringify(body.slice(0, 200))} is not the ConfigMap's index.html`;
        } catch (error: unknown) {
          lastError = `fetch ${url}: ${error instanceof Error ? `${error.message}${error.cause instanceof Error ? ` (${error.cause.message})` : ""}` : String(error)}`;
        }
        await sleep(500);
      }
      return { ok: false, detail: `${lastError}; ${story()}` };
    } finally {
      child.kill("SIGTERM");
      const killed = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
      if (!killed) {
        child.kill("SIGKILL");
        await exited;
      }
    }
  });
}

/** From the client pod, each web pod by its IP, with busybox wget. */
export function podToPod(target: ClusterTarget, expectedBody: string): Promise<CheckResult> {
  return timed("podToPod", async () => {
    const wait = await kubectl(
      target,
      [
        "wait",
        "--for=condition=Ready",
        `pod/${CLIENT_POD}`,
        `--timeout=${kubectlSeconds(target.timeoutMs)}`,
      ],
      { timeoutMs: target.timeoutMs + 15_000 },
    );
    if (!succeeded(wait)) {
      return {
        ok: false,
        detail: `client pod not Ready: ${describeCommand(wait)}\n  ${await diagnose(target, "app=client")}`,
      };
    }
    const pods = await readyWebPods(target);
    if (typeof pods === "string") return { ok: false, detail: pods };
    const seen: string[] = [];
    const failed: string[] = [];
    for (const pod of pods) {
      if (pod.ip === undefined) {
        failed.push(`${pod.name} has no pod IP`);
        continue;
      }
      const url = `http://${pod.ip}:${String(HTTP_PORT)}/`;
      // No `wget -T`: Debian's busybox-static 1.35 wget dies with SIGSEGV inside gVisor when given a
      // timeout (seen in the lab: Debian's busybox-static 1.35 `wget -T` dies with SIGSEGV inside gVisor); runCommand's timeout bounds it.
      const result = await kubectl(
        target,
        ["exec", `pod/${CLIENT_POD}`, "--", "sh", "-c", `wget -q -O - ${url}`],
        { timeoutMs: Math.min(target.timeoutMs, 30_000) },
      );
      if (!succeeded(result)) failed.push(`${pod.name}: ${describeCommand(result)}`);
      else if (result.stdout !== expectedBody) {
        failed.push(
          `${pod.name}: ${url} answered ${JSON.stringify(result.stdout.slice(0, 200))}, not the ConfigMap's index.html`,
        );
      } else seen.push(`${pod.name} (${pod.ip})`);
    }
    if (pods.length < 2) failed.push(`only ${String(pods.length)} Ready web pod(s) to reach`);
    return failed.length === 0
      ? { ok: true, detail: `${CLIENT_POD} fetched the page from ${seen.join(" and ")}` }
      : { ok: false, detail: failed.join("; ") };
  });
}

export function jobCompletes(target: ClusterTarget): Promise<CheckResult> {
  return timed("jobCompletes", async () => {
    const deadline = Date.now() + target.timeoutMs;
    let last = "";
    for (;;) {
      const got = await kubectl(target, ["get", "job", JOB_NAME, "--output", "json"]);
      if (succeeded(got)) {
        const state = jobState(got.stdout);
        if (state.complete && state.succeeded >= 1) {
          const out = await kubectl(target, ["logs", `job/${JOB_NAME}`]);
          if (succeeded(out) && out.stdout.trim() === JOB_LOG_LINE) {
            return {
              ok: true,
              detail: `job/${JOB_NAME} Complete (${String(state.succeeded)} succeeded, ${String(state.failed)} failed), logs "${JOB_LOG_LINE}"`,
            };
          }
          return {
            ok: false,
            detail: `job/${JOB_NAME} Complete but its logs are not "${JOB_LOG_LINE}": ${describeCommand(out)}`,
          };
        }
        if (state.failedReason !== undefined) {
          return {
            ok: false,
            detail: `job/${JOB_NAME} failed: ${state.failedReason}\n  ${await diagnose(target, `job-name=${JOB_NAME}`)}`,
          };
        }
        last = `${String(state.succeeded)} succeeded, ${String(state.failed)} failed`;
      } else last = describeCommand(got);
      if (Date.now() >= deadline) {
        return {
          ok: false,
          detail: `job/${JOB_NAME} not Complete within ${kubectlSeconds(target.timeoutMs)} (${last})\n  ${await diagnose(target, `job-name=${JOB_NAME}`)}`,
        };
      }
      await sleep(1000);
    }
  });
}

/** Deletes the namespace and waits until the API server no longer knows it. */
export function deleteNamespace(target: ClusterTarget): Promise<CheckResult> {
  return timed("cleanup", async () => {
    const deadline = Date.now() + target.timeoutMs;
    const del = await kubectl(
      target,
      [
        "delete",
        "namespace",
        target.namespace,
        "--ignore-not-found",
        "--wait=true",
        `--timeout=${kubectlSeconds(target.timeoutMs)}`,
      ],
      { timeoutMs: target.timeoutMs + 15_000 },
    );
    for (;;) {
      const get = await kubectl(target, [
        "get",
        "namespace",
        target.namespace,
        "--ignore-not-found",
        "--output",
        "name",
      ]);
      if (succeeded(get) && get.stdout.trim() === "") {
        return { ok: true, detail: `namespace ${target.namespace} deleted` };
      }
      if (Date.now() >= deadline) {
        return {
          ok: false,
          detail: `${succeeded(get) ? `namespace ${target.namespace} still exists` : `could not confirm that namespace ${target.namespace} is gone`}: ${describeCommand(del)}; ${describeCommand(get)}`,
        };
      }
      await sleep(1000);
    }
  });
}

// ---------------------------------------------------------------------------------------------

export interface WorkloadCheckOptions {
  readonly kubectl: string;
  readonly kubeconfig: string;
  /** Per check (the namespace deletion included). */
  readonly timeoutMs: number;
  readonly image?: string;
  readonly suffix?: string;
  readonly run?: CommandRunner;
  /** Called as each result arrives, for progress lines. */
  readonly onResult?: (result: CheckResult) => void;
}

export interface WorkloadCheckReport {
  readonly namespace: string;
  readonly ok: boolean;
  readonly results: readonly CheckResult[];
}

/**
 * Applies the workload, runs every check in order and always deletes the namespace, waiting until
 * it is gone. Checks after a failure still run: each says for itself what it could not find.
 */
export async function runWorkloadChecks(
  options: WorkloadCheckOptions,
): Promise<WorkloadCheckReport> {
  const workload = renderWorkload({
    suffix: options.suffix ?? randomSuffix(),
    ...(options.image === undefined ? {} : { image: options.image }),
  });
  const target: ClusterTarget = {
    kubectl: options.kubectl,
    kubeconfig: options.kubeconfig,
    namespace: workload.namespace,
    timeoutMs: options.timeoutMs,
    ...(options.run === undefined ? {} : { run: options.run }),
  };
  const results: CheckResult[] = [];
  const record = (r: CheckResult): void => {
    results.push(r);
    options.onResult?.(r);
  };
  try {
    const applied = await applyWorkload(target, workload);
    record(applied);
    if (applied.ok) {
      record(await deploymentReady(target));
      record(await logs(target));
      record(await exec(target, workload.secretValue));
      record(await portForward(target, workload.indexHtml));
      record(await podToPod(target, workload.indexHtml));
      record(await jobCompletes(target));
    }
  } finally {
    record(await deleteNamespace(target));
  }
  return { namespace: workload.namespace, ok: results.every((r) => r.ok), results };
}

export function formatReport(report: WorkloadCheckReport): string {
  const lines = report.results.map(
    (r) =>
      `${r.ok ? "ok  " : "FAIL"} ${r.id.padEnd(16)} ${(r.durationMs / 1000).toFixed(1).padStart(6)}s  ${r.detail}`,
  );
  return `${lines.join("\n")}\n${report.ok ? "all checks passed" : "some checks failed"} (namespace ${report.namespace})\n`;
}
