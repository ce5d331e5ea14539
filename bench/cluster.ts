/**
 * `npm run bench -- cluster [--json] [--gvisor[=new|old]] [--pods=N] [--image=REF]`: a whole node,
 * side by side on the host kernel and inside gVisor. For each: seconds from `sandkube up` to node
 * Ready and to the first pod Running (binaries already installed), pod start latency (create to
 * Ready, median of N pods one after another), and the resident memory of the stack and of
 * sandkube's own processes, per component, with one pod running.
 *
 * The gVisor side is this same file run with --inner inside a lab runsc sandbox; it writes its
 * figures to a file in the sandbox's shared output directory, so stdout stays one JSON object.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, KubeConfig, Watch, type V1Pod } from "@kubernetes/client-node";
import { runCommand } from "../src/common/exec.js";
import { adminKubeconfigPath } from "../src/node/components.js";
import { nodeLayout, type NodeLayout } from "../src/node/layout.js";
import { readNodeState, readSupervisorStatus } from "../src/node/state.js";
import { runningSupervisor } from "../src/node/up.js";
import { describeCommand } from "../src/verify/checks.js";
import { accountStack, readProcesses } from "../src/verify/stack-memory.js";
import {
  BenchUsageError,
  measureInsideGvisor,
  runBenchFile,
  runSideBySide,
  takeDown,
  type SideBySideArgs,
} from "./node-side.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(REPO, "dist", "src", "cli", "main.js");
const NAMESPACE = "default";
const BENCH_LABEL = "sandkube-bench";
const MAX_PODS = 50;

/** The five figures the issue names, in its order; `ratio` holds gvisor/host for each. */
export const FIGURES = [
  "up_to_node_ready_s",
  "up_to_first_pod_s",
  "pod_start_median_s",
  "stack_rss_mb",
  "sandkube_rss_mb",
] as const;
type Figure = (typeof FIGURES)[number];

export type SideResult = Record<Figure, number> & {
  readonly kernel: string;
  readonly runtime: string;
  readonly pods: number;
  readonly pod_start_s: readonly number[];
  /** With one pod running: supervisor, each component, and "pods" (shims and containers). */
  readonly components_rss_mb: Readonly<Record<string, number>>;
  readonly sandkube_rss_by_process_mb: Readonly<Record<string, number>>;
  readonly stack_processes: number;
  /** `down --purge` left no error; a false here means the machine may need a look. */
  readonly down_ok: boolean;
};

interface BenchArgs extends SideBySideArgs {
  readonly pods: number;
  /** undefined: the node's own pause image, which every node has without a registry. */
  readonly image: string | undefined;
  readonly inner: boolean;
  readonly resultFile: string | undefined;
  readonly dataDir: string | undefined;
}

function parseArgs(args: readonly string[]): BenchArgs {
  let json = false;
  let gvisor: "new" | "old" | undefined;
  let pods = 20;
  let image: string | undefined;
  let inner = false;
  let resultFile: string | undefined;
  let dataDir: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new BenchUsageError(`cluster: ${flag} needs a value`);
      return v;
    };
    if (flag === "--json") json = true;
    else if (flag === "--inner") inner = true;
    else if (flag === "--gvisor") {
      const v = inline ?? "new";
      if (v !== "new" && v !== "old")
        throw new BenchUsageError(`cluster: --gvisor takes new or old, not "${v}"`);
      gvisor = v;
    } else if (flag === "--pods") {
      const v = value();
      pods = Number(v);
      if (!Number.isInteger(pods) || pods < 1 || pods > MAX_PODS) {
        throw new BenchUsageError(
          `cluster: --pods takes a whole number from 1 to ${MAX_PODS}, not "${v}"`,
        );
      }
    } else if (flag === "--image") image = value();
    else if (flag === "--result") resultFile = value();
    else if (flag === "--data-dir") dataDir = resolve(value());
    else throw new BenchUsageError(`cluster: unknown option "${arg}"`);
  }
  return { json, gvisor, pods, image, inner, resultFile, dataDir };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

const mb = (kb: number): number => round(kb / 1024, 1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (line: string): void => void process.stderr.write(`cluster bench: ${line}\n`);

function podIsReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/**
 * Records when each bench pod is first seen Running and first seen Ready, from a watch: exact to
 * the event, and no polling load on the API server while it is being timed.
 */
class PodClock {
  private readonly running = new Map<string, number>();
  private readonly ready = new Map<string, number>();
  private controller: AbortController | undefined;
  private stopped = false;

  constructor(private readonly kubeconfig: KubeConfig) {}

  async start(): Promise<void> {
    const watch = new Watch(this.kubeconfig);
    this.controller = await watch.watch(
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      { labelSelector: `app=${BENCH_LABEL}` },
      (_phase: string, pod: V1Pod) => {
        const name = pod.metadata?.name;
        if (name === undefined) return;
        const now = performance.now();
        if (pod.status?.phase === "Running" && !this.running.has(name)) this.running.set(name, now);
        if (podIsReady(pod) && !this.ready.has(name)) this.ready.set(name, now);
      },
      () => {
        // A watch the server closes is reopened; the maps keep what was already seen.
        if (!this.stopped) void sleep(200).then(() => this.restart());
      },
    );
  }

  /** Keeps trying while the bench runs: a lost watch would otherwise read as a pod that never started. */
  private async restart(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.start();
        return;
      } catch {
        await sleep(500);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  async until(which: "running" | "ready", name: string, timeoutMs: number): Promise<number> {
    const map = which === "running" ? this.running : this.ready;
    const deadline = Date.now() + timeoutMs;
    while (!map.has(name)) {
      if (Date.now() > deadline)
        throw new Error(`pod ${name} not ${which} within ${timeoutMs / 1000} s`);
      await sleep(10);
    }
    return map.get(name) as number;
  }
}

function benchPod(name: string, image: string): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: NAMESPACE, labels: { app: BENCH_LABEL } },
    spec: {
      containers: [{ name: "main", image, imagePullPolicy: "Never" }],
      terminationGracePeriodSeconds: 1,
    },
  };
}

async function nodeReady(api: CoreV1Api): Promise<boolean> {
  const nodes = await api.listNode();
  return nodes.items.some((n) =>
    (n.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
  );
}

async function stackMemory(layout: NodeLayout): Promise<ReturnType<typeof accountStack>> {
  const supervisor = await runningSupervisor(layout);
  if (supervisor === undefined)
    throw new Error(`no running supervisor in ${layout.supervisorPidFile}`);
  const status = await readSupervisorStatus(layout);
  const components = (status?.components ?? [])
    .filter((c) => c.process !== null)
    .map((c) => ({ name: c.name, pid: (c.process as { pid: number }).pid }));
  return accountStack(await readProcesses(), {
    supervisorPid: supervisor.pid,
    components,
    containerdSocket: layout.containerdSocket,
  });
}

/** One node, measured on whatever kernel this process runs on; always taken down again. */
export async function measureCluster(options: MeasureOptions): Promise<SideResult> {
  if (process.getuid?.() !== 0)
    throw new Error("the cluster bench runs `sandkube up`, which needs root");
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  const work = await mkdtemp(join(tmpdir(), "sandkube-bench-"));
  const dataDir = options.dataDir ?? join(work, "data");
  try {
    const figures = await measureNode(options, work, dataDir);
    const downOk = await takeDown(CLI, dataDir, say);
    return { ...figures, down_ok: downOk };
  } catch (error) {
    await takeDown(CLI, dataDir, say);
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

interface MeasureOptions {
  readonly pods: number;
  /** undefined: the node's own pause image, which every node has without a registry. */
  readonly image: string | undefined;
  readonly dataDir: string | undefined;
}

async function measureNode(
  options: MeasureOptions,
  work: string,
  dataDir: string,
): Promise<Omit<SideResult, "down_ok">> {
  await mkdir(dataDir, { recursive: true });
  const layout = nodeLayout(dataDir);
  const admin = adminKubeconfigPath(layout);
  const kernel = (await runCommand(["uname", "-r"])).stdout.trim();
  let clock: PodClock | undefined;
  try {
    say(`${kernel}: sandkube up --data-dir ${dataDir}`);
    const t0 = performance.now();
    // --kubeconfig: the bench must not add a context to the user's ~/.kube/config.
    const upRun = runCommand(
      [
        process.execPath,
        CLI,
        "up",
        "--data-dir",
        dataDir,
        "--kubeconfig",
        join(work, "kubeconfig"),
        "--json",
      ],
      { timeoutMs: 600_000 },
    );
    let upDone = false;
    void upRun.then(() => (upDone = true));
    let api: CoreV1Api | undefined;
    let kubeconfig: KubeConfig | undefined;
    let readyAt: number | undefined;
    while (readyAt === undefined) {
      if (api === undefined && existsSync(admin)) {
        try {
          kubeconfig = new KubeConfig();
          kubeconfig.loadFromFile(admin);
          api = kubeconfig.makeApiClient(CoreV1Api);
        } catch {
          // Not complete yet (up writes it while this loop runs); read it again next round.
          kubeconfig = undefined;
        }
      }
      if (api !== undefined && (await nodeReady(api).catch(() => false)))
        readyAt = performance.now() - t0;
      else if (upDone) break;
      else await sleep(250);
    }
    const up = await upRun;
    if (up.exitCode !== 0 || up.failure !== undefined)
      throw new Error(`up failed: ${describeCommand(up)}`);
    const summary = JSON.parse(up.stdout) as { runtime?: string };
    const state = await readNodeState(layout);
    const image = options.image ?? state?.config.sandboxImage;
    if (image === undefined) throw new Error(`no node state in ${layout.stateFile} after up`);
    if (api === undefined || kubeconfig === undefined) {
      kubeconfig = new KubeConfig();
      kubeconfig.loadFromFile(admin);
      api = kubeconfig.makeApiClient(CoreV1Api);
    }
    // up returns only once the node is Ready; a poll that lost the race reads "now".
    readyAt ??= performance.now() - t0;
    say(
      `node Ready after ${(readyAt / 1000).toFixed(1)} s; up returned after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    clock = new PodClock(kubeconfig);
    await clock.start();
    await api.createNamespacedPod({
      namespace: NAMESPACE,
      body: benchPod("bench-first", image),
    });
    const firstPodAt = (await clock.until("running", "bench-first", 180_000)) - t0;
    say(`first pod Running after ${(firstPodAt / 1000).toFixed(1)} s`);

    const memory = await stackMemory(layout);
    say(
      `stack ${mb(memory.stackKb)} MB in ${memory.processCount} processes, sandkube's own ${mb(memory.sandkubeTotalKb)} MB`,
    );

    const latencies: number[] = [];
    for (let i = 1; i <= options.pods; i++) {
      const name = `bench-${String(i)}`;
      const created = performance.now();
      await api.createNamespacedPod({ namespace: NAMESPACE, body: benchPod(name, image) });
      latencies.push(((await clock.until("ready", name, 120_000)) - created) / 1000);
    }
    say(`pod start median ${median(latencies).toFixed(2)} s over ${options.pods} pods`);

    return {
      up_to_node_ready_s: round(readyAt / 1000),
      up_to_first_pod_s: round(firstPodAt / 1000),
      pod_start_median_s: round(median(latencies), 3),
      stack_rss_mb: mb(memory.stackKb),
      sandkube_rss_mb: mb(memory.sandkubeTotalKb),
      kernel,
      runtime: summary.runtime ?? "unknown",
      pods: options.pods,
      pod_start_s: latencies.map((l) => round(l, 3)),
      components_rss_mb: Object.fromEntries(
        Object.entries(memory.bucketsKb).map(([k, v]) => [k, mb(v)]),
      ),
      sandkube_rss_by_process_mb: Object.fromEntries(
        Object.entries(memory.sandkubeKb).map(([k, v]) => [k, mb(v)]),
      ),
      stack_processes: memory.processCount,
    };
  } finally {
    clock?.stop();
  }
}

/** The same measurement inside a lab runsc sandbox; its figures come back through a shared file. */
function measureInGvisor(flavour: "new" | "old", args: BenchArgs): Promise<SideResult> {
  return measureInsideGvisor<SideResult>(flavour, "dist/bench/cluster.js", [
    `--pods=${String(args.pods)}`,
    ...(args.image === undefined ? [] : [`--image=${args.image}`]),
  ]);
}

export function ratios(host: SideResult, gvisor: SideResult): Record<Figure, number | null> {
  return Object.fromEntries(
    FIGURES.map((f) => [f, host[f] > 0 ? round(gvisor[f] / host[f]) : null]),
  ) as Record<Figure, number | null>;
}

function printTable(host: SideResult, gvisor: SideResult | null): void {
  const ratio = gvisor === null ? null : ratios(host, gvisor);
  const w = 22;
  const out: string[] = [];
  out.push(
    `cluster: up, first pod, ${String(host.pods)} pods one after another, memory with one pod running`,
  );
  out.push(
    `${"".padEnd(w)}${"host".padStart(12)}${gvisor === null ? "" : "gvisor".padStart(12) + "ratio".padStart(8)}`,
  );
  for (const f of FIGURES) {
    out.push(
      `${f.padEnd(w)}${String(host[f]).padStart(12)}${
        gvisor === null || ratio === null
          ? ""
          : String(gvisor[f]).padStart(12) + String(ratio[f] ?? "-").padStart(8)
      }`,
    );
  }
  out.push("memory per component (MB):");
  const names = [
    ...new Set([
      ...Object.keys(host.components_rss_mb),
      ...Object.keys(gvisor?.components_rss_mb ?? {}),
    ]),
  ];
  for (const n of names) {
    out.push(
      `  ${n.padEnd(w - 2)}${String(host.components_rss_mb[n] ?? "-").padStart(12)}${
        gvisor === null ? "" : String(gvisor.components_rss_mb[n] ?? "-").padStart(12)
      }`,
    );
  }
  out.push(
    `runtime: host ${host.runtime}${gvisor === null ? "" : `, gvisor ${gvisor.runtime}`}; kernel: host ${host.kernel}${gvisor === null ? "" : `, gvisor ${gvisor.kernel}`}`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
}

export function clusterBench(argv: readonly string[]): Promise<number> {
  return runSideBySide<BenchArgs, SideResult>(argv, {
    usage: "usage: npm run bench -- cluster [--json] [--gvisor[=new|old]] [--pods=N] [--image=REF]",
    parse: parseArgs,
    measure: measureCluster,
    measureInGvisor,
    clean: (side) => side.down_ok,
    extraJson: (host, gvisor) => ({ ratio: gvisor === null ? null : ratios(host, gvisor) }),
    printTable,
  });
}

// Run directly (the --inner side inside runsc): `node dist/bench/cluster.js --inner ...`.
runBenchFile(import.meta.url, "cluster", clusterBench);
