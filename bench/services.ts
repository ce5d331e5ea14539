/**
 * `npm run bench -- services [--json] [--gvisor[=new|old]] [--seconds=N] [--concurrency=N]`: the
 * Service data path, side by side on the host kernel (stock kube-proxy, iptables DNAT) and inside
 * gVisor (sandkube-proxy, user space). For each side, on one node with one busybox httpd pod:
 * - requests per second and p99 latency through the ClusterIP, and straight to the pod IP, one new
 *   TCP connection per request (busybox httpd closes each), from a client in the node's own network
 *   namespace; reported as the ratio ClusterIP / pod IP;
 * - seconds from a new Service's creation to its first answered request (median of 5);
 * - the resident memory of the Service proxy process.
 *
 * The gVisor side is this same file run with --inner inside a lab runsc sandbox, as the cluster
 * bench does; its figures come back through a file in the sandbox's shared output directory.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AppsV1Api, CoreV1Api, KubeConfig, type V1Service } from "@kubernetes/client-node";
import { runCommand } from "../src/common/exec.js";
import { busyboxRootfs } from "../src/images/busybox.js";
import { adminKubeconfigPath } from "../src/node/components.js";
import { nodeLayout } from "../src/node/layout.js";
import { readSupervisorStatus } from "../src/node/state.js";
import { describeCommand } from "../src/verify/checks.js";
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
const IMAGE = "sandkube.local/busybox:latest";
const APP = "bench-web";
const TARGET_PORT = 8080;
const SERVICE_PORT = 80;
/** A bound on the load, whatever --seconds says: the bench is not a stress test. */
const MAX_REQUESTS = 50_000;
const NEW_SERVICE_ROUNDS = 5;

export interface LoadFigures {
  readonly requests: number;
  readonly failures: number;
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
}

export interface ServiceSide {
  readonly kernel: string;
  readonly proxy: string;
  readonly direct: LoadFigures;
  readonly cluster_ip: LoadFigures;
  /** ClusterIP rps / pod IP rps: the goal in gVisor is 0.8 or better. */
  readonly throughput_ratio: number;
  /** ClusterIP p99 / pod IP p99. */
  readonly p99_ratio: number;
  readonly new_service_first_answer_s: readonly number[];
  /** Median; the goal in gVisor is within 1 s. */
  readonly new_service_median_s: number;
  readonly proxy_rss_mb: number;
  readonly down_ok: boolean;
}

interface Args extends SideBySideArgs {
  readonly seconds: number;
  readonly concurrency: number;
  readonly inner: boolean;
  readonly resultFile: string | undefined;
}

const USAGE =
  "usage: npm run bench -- services [--json] [--gvisor[=new|old]] [--seconds=N] [--concurrency=N]";

function parseArgs(argv: readonly string[]): Args {
  let json = false;
  let gvisor: "new" | "old" | undefined;
  let seconds = 8;
  let concurrency = 8;
  let inner = false;
  let resultFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const positive = (v: string | undefined): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0)
        throw new BenchUsageError(`services: ${flag} takes a positive whole number, not "${v}"`);
      return n;
    };
    if (flag === "--json") json = true;
    else if (flag === "--inner") inner = true;
    else if (flag === "--result") resultFile = inline ?? argv[++i];
    else if (flag === "--seconds") seconds = Math.min(60, positive(inline ?? argv[++i]));
    else if (flag === "--concurrency") concurrency = Math.min(64, positive(inline ?? argv[++i]));
    else if (flag === "--gvisor") {
      const v = inline ?? "new";
      if (v !== "new" && v !== "old")
        throw new BenchUsageError(`services: --gvisor takes new or old, not "${v}"`);
      gvisor = v;
    } else throw new BenchUsageError(`services: unknown option "${arg}"`);
  }
  return { json, gvisor, seconds, concurrency, inner, resultFile };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (line: string): void => void process.stderr.write(`services bench: ${line}\n`);

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

/** Pure: the figures of one load run. */
export function summariseLoad(
  latenciesMs: readonly number[],
  failures: number,
  elapsedMs: number,
): LoadFigures {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return {
    requests: sorted.length,
    failures,
    rps: elapsedMs > 0 ? round((sorted.length / elapsedMs) * 1000, 1) : 0,
    p50_ms: round(percentile(sorted, 50)),
    p99_ms: round(percentile(sorted, 99)),
  };
}

function getOnce(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((done) => {
    const req = request({ host, port, path: "/", agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode === 200));
      res.on("error", () => done(false));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => done(false));
    req.end();
  });
}

async function load(
  host: string,
  port: number,
  seconds: number,
  concurrency: number,
): Promise<LoadFigures> {
  const latencies: number[] = [];
  let failures = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && latencies.length + failures < MAX_REQUESTS) {
      const t0 = performance.now();
      if (await getOnce(host, port, 5_000)) latencies.push(performance.now() - t0);
      else failures++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return summariseLoad(latencies, failures, performance.now() - started);
}

function service(name: string): V1Service {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: NAMESPACE },
    spec: {
      selector: { app: APP },
      ports: [{ name: "http", port: SERVICE_PORT, targetPort: TARGET_PORT, protocol: "TCP" }],
    },
  };
}

async function importBusybox(dataDir: string): Promise<void> {
  const rootfs = await mkdtemp(join(tmpdir(), "sk-bench-busybox-"));
  try {
    await busyboxRootfs(rootfs);
    const built = await runCommand(
      [
        process.execPath,
        CLI,
        "images",
        "build",
        "--from-dir",
        rootfs,
        "--name",
        IMAGE,
        "--data-dir",
        dataDir,
      ],
      { timeoutMs: 300_000 },
    );
    if (built.exitCode !== 0) throw new Error(`images build: ${describeCommand(built)}`);
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? "0");
  return round(kb / 1024, 1);
}

async function measureSide(args: Args, work: string, dataDir: string): Promise<ServiceSide> {
  const kernel = (await runCommand(["uname", "-r"])).stdout.trim();
  say(`${kernel}: sandkube up --data-dir ${dataDir}`);
  // --no-addons: DNS and storage are not on this path; --kubeconfig keeps ~/.kube/config untouched.
  const up = await runCommand(
    [
      process.execPath,
      CLI,
      "up",
      "--data-dir",
      dataDir,
      "--kubeconfig",
      join(work, "kubeconfig"),
      "--no-addons",
      "--json",
    ],
    { timeoutMs: 900_000 },
  );
  if (up.exitCode !== 0) throw new Error(`up failed: ${describeCommand(up)}`);
  await importBusybox(dataDir);
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(adminKubeconfigPath(nodeLayout(dataDir)));
  const core = kubeconfig.makeApiClient(CoreV1Api);
  const apps = kubeconfig.makeApiClient(AppsV1Api);
  await apps.createNamespacedDeployment({
    namespace: NAMESPACE,
    body: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: APP, namespace: NAMESPACE },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: APP } },
        template: {
          metadata: { labels: { app: APP } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: "web",
                image: IMAGE,
                imagePullPolicy: "Never",
                command: [
                  "/bin/sh",
                  "-c",
                  `mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p ${TARGET_PORT} -h /tmp/www`,
                ],
                readinessProbe: {
                  tcpSocket: { port: TARGET_PORT },
                  periodSeconds: 1,
                },
              },
            ],
          },
        },
      },
    },
  });
  const created = await core.createNamespacedService({ namespace: NAMESPACE, body: service(APP) });
  const clusterIP = created.spec?.clusterIP ?? "";
  let podIP = "";
  for (let i = 0; i < 240 && podIP === ""; i++) {
    const pods = await core.listNamespacedPod({
      namespace: NAMESPACE,
      labelSelector: `app=${APP}`,
    });
    const ready = pods.items.find((p) =>
      (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
    );
    podIP = ready?.status?.podIP ?? "";
    if (podIP === "") await sleep(500);
  }
  if (podIP === "") throw new Error("the bench pod did not become Ready within 120 s");
  for (let i = 0; i < 100 && !(await getOnce(clusterIP, SERVICE_PORT, 1_000)); i++)
    await sleep(100);

  say(`load: pod IP ${podIP}:${TARGET_PORT}, ${args.seconds} s x ${args.concurrency} clients`);
  const direct = await load(podIP, TARGET_PORT, args.seconds, args.concurrency);
  say(`load: ClusterIP ${clusterIP}:${SERVICE_PORT}`);
  const throughService = await load(clusterIP, SERVICE_PORT, args.seconds, args.concurrency);

  const firstAnswers: number[] = [];
  for (let round_ = 1; round_ <= NEW_SERVICE_ROUNDS; round_++) {
    const name = `${APP}-new-${String(round_)}`;
    const t0 = performance.now();
    const made = await core.createNamespacedService({ namespace: NAMESPACE, body: service(name) });
    const ip = made.spec?.clusterIP ?? "";
    let answered = false;
    while (!answered && performance.now() - t0 < 30_000) {
      answered = await getOnce(ip, SERVICE_PORT, 500);
      if (!answered) await sleep(20);
    }
    firstAnswers.push(answered ? round((performance.now() - t0) / 1000, 3) : Number.NaN);
  }

  const status = await readSupervisorStatus(nodeLayout(dataDir));
  const proxy = (status?.components ?? []).find(
    (c) => c.name === "kube-proxy" || c.name === "sandkube-proxy",
  );
  const proxyRss = proxy?.process ? await rssMb(proxy.process.pid) : 0;
  const sortedFirst = [...firstAnswers].sort((a, b) => a - b);
  return {
    kernel,
    proxy: proxy?.name ?? "none",
    direct,
    cluster_ip: throughService,
    throughput_ratio: direct.rps > 0 ? round(throughService.rps / direct.rps) : 0,
    p99_ratio: direct.p99_ms > 0 ? round(throughService.p99_ms / direct.p99_ms) : 0,
    new_service_first_answer_s: firstAnswers,
    new_service_median_s: sortedFirst[Math.floor(sortedFirst.length / 2)] ?? Number.NaN,
    proxy_rss_mb: proxyRss,
    down_ok: false,
  };
}

export async function measureServices(args: Args): Promise<ServiceSide> {
  if (process.getuid?.() !== 0)
    throw new Error("the services bench runs `sandkube up`: run as root");
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  const work = await mkdtemp(join(tmpdir(), "sandkube-bench-services-"));
  const dataDir = join(work, "data");
  await mkdir(dataDir, { recursive: true });
  try {
    const side = await measureSide(args, work, dataDir);
    return { ...side, down_ok: await takeDown(CLI, dataDir, say) };
  } catch (error) {
    await takeDown(CLI, dataDir, say);
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function measureInGvisor(flavour: "new" | "old", args: Args): Promise<ServiceSide> {
  return measureInsideGvisor<ServiceSide>(flavour, "dist/bench/services.js", [
    `--seconds=${String(args.seconds)}`,
    `--concurrency=${String(args.concurrency)}`,
  ]);
}

function printTable(host: ServiceSide, gvisor: ServiceSide | null): void {
  const row = (label: string, pick: (s: ServiceSide) => number | string): string =>
    `${label.padEnd(34)}${String(pick(host)).padStart(12)}${gvisor === null ? "" : String(pick(gvisor)).padStart(12)}`;
  const lines = [
    `${"".padEnd(34)}${"host".padStart(12)}${gvisor === null ? "" : "gvisor".padStart(12)}`,
    row("Service proxy", (s) => s.proxy),
    row("pod IP: requests/s", (s) => s.direct.rps),
    row("ClusterIP: requests/s", (s) => s.cluster_ip.rps),
    row("throughput ClusterIP / pod IP", (s) => s.throughput_ratio),
    row("pod IP: p99 ms", (s) => s.direct.p99_ms),
    row("ClusterIP: p99 ms", (s) => s.cluster_ip.p99_ms),
    row("p99 ClusterIP / pod IP", (s) => s.p99_ratio),
    row(
      "failed requests (pod IP, ClusterIP)",
      (s) => `${s.direct.failures},${s.cluster_ip.failures}`,
    ),
    row("new Service to first answer, s", (s) => s.new_service_median_s),
    row("proxy RSS, MB", (s) => s.proxy_rss_mb),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

export function servicesBench(argv: readonly string[]): Promise<number> {
  return runSideBySide(argv, {
    usage: USAGE,
    parse: parseArgs,
    measure: measureServices,
    measureInGvisor,
    clean: (side) => side.down_ok,
    printTable,
  });
}

runBenchFile(import.meta.url, "services", servicesBench);
