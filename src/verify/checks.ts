/**
 * Checks that a cluster really runs the verify workload (src/verify/workload.ts), each through
 * kubectl, the client users use, and the runner that applies it, runs the chosen checks in order
 * and always deletes it. The Service, DNS, egress and storage checks live in network-checks.ts and
 * storage-check.ts; what they all share is in cluster.ts.
 */
import { remedyFor } from "../node/remedies.js";
import { spawn } from "node:child_process";
import type { CommandRunner } from "../common/exec.js";
import {
  ALL_CHECKS,
  OPTIONAL_CHECKS,
  apiServerBlocker,
  describeCommand,
  diagnose,
  formatPods,
  jobState,
  kubectl,
  kubectlPrefix,
  kubectlSeconds,
  parseForwardedPort,
  podBlocker,
  readyWebPods,
  sleep,
  succeeded,
  timed,
  webPods,
  type CheckResult,
  type ClusterTarget,
  type OptionalCheckId,
  type PodSummary,
  type ServiceProxyHint,
} from "./cluster.js";
import {
  dns,
  egress,
  endpointChange,
  nodePort,
  service,
  udpService,
  DEFAULT_REQUESTS,
} from "./network-checks.js";
import { pull } from "./pull-check.js";
import { pvc } from "./storage-check.js";
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
  WEB_CONTAINER,
  WEB_DEPLOYMENT,
  WEB_LOG_LINE,
  DEFAULT_WEB_REPLICAS,
  randomSuffix,
  renderWorkload,
  workloadYaml,
  type Workload,
  type WorkloadPart,
} from "./workload.js";

export {
  ALL_CHECKS,
  ON_REQUEST_CHECKS,
  OPTIONAL_CHECKS,
  describeCommand,
  formatPods,
  jobState,
  kubectlSeconds,
  parseForwardedPort,
  summarisePods,
  type CheckId,
  type CheckResult,
  type CheckStatus,
  type ClusterTarget,
  type OptionalCheckId,
  type PodSummary,
  type JobState,
  type ServiceProxyHint,
} from "./cluster.js";

// ---------------------------------------------------------------------------------------------
// Checks

/** Applies the workload: the namespace, its `default` ServiceAccount, then everything else. */
export function applyWorkload(target: ClusterTarget, workload: Workload): Promise<CheckResult> {
  return timed("apply", async () => {
    const deadline = Date.now() + target.timeoutMs;
    const yaml = workloadYaml(workload);
    const ns = await kubectl(target, ["apply", "--filename", "-"], { input: yaml.namespace });
    if (!succeeded(ns)) return { ok: false, detail: describeCommand(ns), ...apiServerBlocker(ns) };
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

export function deploymentReady(
  target: ClusterTarget,
  replicas: number = DEFAULT_WEB_REPLICAS,
): Promise<CheckResult> {
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
    const pods = await webPods(target);
    const n = `${String(readyReplicas)}/${String(replicas)}`;
    if (succeeded(rollout) && readyReplicas === replicas) {
      return {
        ok: true,
        detail: `${n} replicas Ready: ${typeof pods === "string" ? pods : formatPods(pods)}`,
      };
    }
    return {
      ok: false,
      detail: `${n} replicas Ready; ${describeCommand(rollout)}\n  ${await diagnose(target)}`,
      ...(typeof pods === "string" ? {} : podBlocker(pods, target.namespace)),
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

/**
 * Runs a shell in a web pod: its hostname (the pod's name, or the node's for a hostNetwork pod),
 * the Secret from the environment, the initContainer's file.
 */
export function exec(
  target: ClusterTarget,
  expectedSecret: string,
  hostNetwork = false,
): Promise<CheckResult> {
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
      hostname === pod || (hostNetwork && (hostname ?? "") !== "")
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
      ...kubectlPrefix(target),
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
  readonly context?: string;
  /** Per check (the namespace deletion included). */
  readonly timeoutMs: number;
  readonly image?: string;
  readonly suffix?: string;
  readonly run?: CommandRunner;
  /** Called as each result arrives, for progress lines. */
  readonly onResult?: (result: CheckResult) => void;
  /** Which checks to run, in ALL_CHECKS' order; all of OPTIONAL_CHECKS unless given. */
  readonly checks?: readonly OptionalCheckId[];
  /** Web replicas behind the Services (default 3). */
  readonly replicas?: number;
  /** Requests through the Service (service) and after the endpoint update (endpointChange). */
  readonly requests?: number;
  /** The CoreDNS image the UDP Service check runs. */
  readonly dnsImage?: string;
  /** A name outside the cluster that pods must resolve; the lookup is skipped without it. */
  readonly outsideName?: string;
  /** What the egress check fetches; without it, a server verify starts on the node's address. */
  readonly egressUrl?: string;
  /** Text the egress body must contain (with egressUrl). */
  readonly egressExpect?: string;
  /** The cluster's pod and Service ranges, which the egress server's address must lie outside. */
  readonly clusterRanges?: readonly string[];
  readonly serviceProxy?: ServiceProxyHint;
  /** The image the `pull` check pulls (imagePullPolicy Always); it is skipped without one. */
  readonly pullImage?: string;
  /** Leave the namespace for a look after a failure; cleanup is then reported skipped. */
  readonly keepNamespace?: boolean;
  /**
   * Set on nodes where pods can only share the node's network namespace (adaptation
   * cni-host-network): the fact, in words. The workload runs as hostNetwork pods, and the checks
   * that need pods of their own addresses or storage fail naming it without running.
   */
  readonly hostNetworkOnly?: string;
}

/**
 * What cannot be checked where every pod shares the node's address: two pods reaching each other
 * by pod IP, the endpoint change (two replicas would want one port), and a PVC (the provisioner's
 * helper pods cannot share the node's network, so `up` installs no StorageClass there).
 */
const HOST_NETWORK_REMEDY = remedyFor("cni-host-network");

export const NEEDS_POD_NETWORK: ReadonlySet<OptionalCheckId> = new Set([
  "podToPod",
  "endpointChange",
  "pvc",
]);

export interface WorkloadCheckReport {
  readonly namespace: string;
  /** No check failed (skipped ones do not count against it). */
  readonly ok: boolean;
  readonly results: readonly CheckResult[];
}

/** The objects a set of checks needs beyond the base workload. */
export function partsFor(checks: readonly OptionalCheckId[]): WorkloadPart[] {
  const wanted = new Set(checks);
  const parts: WorkloadPart[] = [];
  if (
    ["service", "dns", "nodePort", "endpointChange"].some((c) => wanted.has(c as OptionalCheckId))
  )
    parts.push("services");
  if (wanted.has("udpService")) parts.push("udpService");
  if (wanted.has("pvc")) parts.push("pvc");
  return parts;
}

/**
 * Applies the workload, runs the chosen checks in order and always deletes the namespace, waiting
 * until it is gone. Checks after a failure still run: each says for itself what it could not find.
 * endpointChange deletes a web pod, so it runs last.
 */
const WEB_CHECKS: readonly OptionalCheckId[] = [
  "logs",
  "exec",
  "portForward",
  "podToPod",
  "service",
  "nodePort",
  "endpointChange",
];

export async function runWorkloadChecks(
  options: WorkloadCheckOptions,
): Promise<WorkloadCheckReport> {
  const chosen = new Set<OptionalCheckId>(options.checks ?? OPTIONAL_CHECKS);
  // These talk to the web pods and expect them Ready; deploymentReady is what waits for the
  // rollout, so it runs (and reports) whenever one of them is chosen on its own.
  if (WEB_CHECKS.some((id) => chosen.has(id))) chosen.add("deploymentReady");
  const hostOnly = options.hostNetworkOnly;
  const workload = renderWorkload({
    suffix: options.suffix ?? randomSuffix(),
    parts: partsFor(
      [...chosen].filter((id) => hostOnly === undefined || !NEEDS_POD_NETWORK.has(id)),
    ),
    ...(hostOnly === undefined ? {} : { hostNetwork: true }),
    ...(options.image === undefined ? {} : { image: options.image }),
    ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
    ...(options.dnsImage === undefined ? {} : { dnsImage: options.dnsImage }),
  });
  const target: ClusterTarget = {
    kubectl: options.kubectl,
    kubeconfig: options.kubeconfig,
    namespace: workload.namespace,
    timeoutMs: options.timeoutMs,
    ...(options.run === undefined ? {} : { run: options.run }),
    ...(options.context === undefined ? {} : { context: options.context }),
    ...(options.serviceProxy === undefined ? {} : { serviceProxy: options.serviceProxy }),
  };
  const requests = options.requests ?? DEFAULT_REQUESTS;
  const results: CheckResult[] = [];
  const record = (r: CheckResult): void => {
    results.push(r);
    options.onResult?.(r);
  };
  const runners: Record<OptionalCheckId, () => Promise<CheckResult>> = {
    deploymentReady: () => deploymentReady(target, workload.replicas),
    logs: () => logs(target),
    exec: () => exec(target, workload.secretValue, workload.hostNetwork),
    portForward: () => portForward(target, workload.indexHtml),
    podToPod: () => podToPod(target, workload.indexHtml),
    service: () => service(target, { replicas: workload.replicas, requests }),
    dns: () =>
      dns(target, options.outsideName === undefined ? {} : { outsideName: options.outsideName }),
    nodePort: () => nodePort(target),
    udpService: () => udpService(target),
    egress: () =>
      egress(target, {
        ...(options.egressUrl === undefined ? {} : { url: options.egressUrl }),
        ...(options.egressExpect === undefined ? {} : { expect: options.egressExpect }),
        ...(options.clusterRanges === undefined ? {} : { clusterRanges: options.clusterRanges }),
      }),
    pvc: () => pvc(target, workload, options.image === undefined ? {} : { image: options.image }),
    jobCompletes: () => jobCompletes(target),
    endpointChange: () => endpointChange(target, { replicas: workload.replicas, requests }),
    pull: () => pull(target, options.pullImage),
  };
  try {
    const applied = await applyWorkload(target, workload);
    record(applied);
    if (applied.ok) {
      for (const id of ALL_CHECKS) {
        if (!chosen.has(id)) continue;
        if (hostOnly !== undefined && NEEDS_POD_NETWORK.has(id)) {
          record({
            id,
            ok: false,
            status: "failed",
            detail: "not run: every pod on this node shares the node's network namespace",
            blocker: `cni-host-network: ${hostOnly}`,
            remedy: HOST_NETWORK_REMEDY,
            durationMs: 0,
          });
        } else record(await runners[id]());
      }
    }
  } finally {
    if (options.keepNamespace === true) {
      record(
        await timed("cleanup", () =>
          Promise.resolve({
            ok: false,
            skipped: true,
            detail: `namespace ${target.namespace} kept (--keep); delete it with \`sandkube kubectl delete namespace ${target.namespace}\``,
          }),
        ),
      );
    } else record(await deleteNamespace(target));
  }
  return {
    namespace: workload.namespace,
    ok: results.every((r) => r.status !== "failed"),
    results,
  };
}

export { formatReport } from "./report.js";
