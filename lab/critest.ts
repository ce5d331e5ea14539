/**
 * Runs cri-tools' critest twice against one containerd: once with the `runc` handler (stock runc
 * from the lab) and once with `sandkube` (dist/bin/sandkube-runtime), with every image served by
 * a loopback docker-registry, and compares the two Ginkgo JSON reports spec by spec.
 *
 * `node dist/lab/critest.js [OUT_DIR]` writes OUT_DIR/comparison.json and prints a summary.
 */
import { spawn, type ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "../src/common/exec.js";
import { scratchContainerdConfig } from "./scratch-containerd.js";
import {
  compileHelpers,
  critestImages,
  DEFAULT_TEST_IMAGE,
  PAUSE_IMAGE,
  pushImages,
  WEB_SERVER_IMAGE,
  writeImageLayout,
} from "./critest-images.js";
import { labBinary } from "./paths.js";

const REPO = resolve(fileURLToPath(import.meta.url), "../../..");
const REGISTRY = "127.0.0.1:5765";
const BRIDGE = "skcritbr0";
const SUBNET = "10.231.78.0/24";

/**
 * Specs that cannot pass on this machine for either runtime. Each regexp goes to -ginkgo.skip;
 * the reason is what docs/critest.md repeats.
 */
export const SKIPPED_SPECS: readonly { readonly pattern: string; readonly reason: string }[] = [
  {
    pattern: "public image with digest should be pulled and removed",
    reason:
      "pins gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...; a locally built image cannot have that digest and no external registry is reachable",
  },
  {
    pattern: "AppArmor",
    reason: "this kernel has no AppArmor LSM enabled (/sys/kernel/security/apparmor absent)",
  },
  { pattern: "SELinux", reason: "no SELinux on this Debian VM" },
];

export interface SpecResult {
  readonly name: string;
  readonly state: string;
  readonly failure?: string;
}

interface GinkgoSpecReport {
  readonly ContainerHierarchyTexts?: readonly string[] | null;
  readonly LeafNodeText?: string;
  readonly LeafNodeType?: string;
  readonly State?: string;
  readonly Failure?: { readonly Message?: string };
}

/** Flattens a `-ginkgo.json-report` file into one row per It. */
export function parseGinkgoReport(json: string): SpecResult[] {
  const suites = JSON.parse(json) as { SpecReports?: GinkgoSpecReport[] | null }[];
  return suites
    .flatMap((s) => s.SpecReports ?? [])
    .filter((r) => r.LeafNodeType === "It")
    .map((r) => ({
      name: [...(r.ContainerHierarchyTexts ?? []), r.LeafNodeText ?? ""].join(" "),
      state: r.State ?? "unknown",
      ...(r.Failure?.Message ? { failure: r.Failure.Message } : {}),
    }));
}

export interface Comparison {
  readonly passed: Readonly<Record<string, number>>;
  readonly specs: Readonly<Record<string, number>>;
  readonly differing: readonly { name: string; runc: string; sandkube: string; failure?: string }[];
  readonly seconds: Readonly<Record<string, number>>;
}

export function compare(
  runc: readonly SpecResult[],
  sandkube: readonly SpecResult[],
  seconds: Record<string, number>,
): Comparison {
  const bySandkube = new Map(sandkube.map((s) => [s.name, s]));
  const byRunc = new Map(runc.map((s) => [s.name, s]));
  const names = [...new Set([...byRunc.keys(), ...bySandkube.keys()])].sort();
  const differing = names.flatMap((name) => {
    const r = byRunc.get(name);
    const s = bySandkube.get(name);
    if (r?.state === s?.state) return [];
    const failure = s?.state === "passed" ? r?.failure : s?.failure;
    return [
      {
        name,
        runc: r?.state ?? "absent",
        sandkube: s?.state ?? "absent",
        ...(failure ? { failure: failure.slice(0, 2000) } : {}),
      },
    ];
  });
  const passedOf = (l: readonly SpecResult[]): number =>
    l.filter((s) => s.state === "passed").length;
  return {
    passed: { runc: passedOf(runc), sandkube: passedOf(sandkube) },
    specs: { runc: runc.length, sandkube: sandkube.length },
    differing,
    seconds,
  };
}

/**
 * The node's own renderer, fed with this machine's probed facts as `up` feeds it (on this
 * project's VMs that includes restrict_oom_score_adj: root lacks CAP_SYS_RESOURCE), with both
 * handlers and the loopback registry's mirrors.
 */
async function containerdConfig(dir: string, runtime: string): Promise<string> {
  return scratchContainerdConfig(dir, PAUSE_IMAGE, {
    extraRuntimes: { sandkube: runtime },
    registryConfigPath: join(dir, "certs.d"),
  });
}

/** registry.k8s.io and gcr.io resolve to the loopback registry, over plain HTTP. */
function writeMirrors(dir: string): void {
  for (const host of ["registry.k8s.io", "gcr.io"]) {
    mkdirSync(join(dir, "certs.d", host), { recursive: true });
    writeFileSync(
      join(dir, "certs.d", host, "hosts.toml"),
      `server = "http://${REGISTRY}"\n[host."http://${REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
  }
}

const CNI_CONFIG = {
  cniVersion: "1.0.0",
  name: "sandkube-critest",
  plugins: [
    {
      type: "bridge",
      bridge: BRIDGE,
      isGateway: true,
      ipMasq: false,
      ipam: { type: "host-local", ranges: [[{ subnet: SUBNET }]] },
    },
    // critest's "port mapping with host port" spec reaches 127.0.0.1:12000 through portmap.
    { type: "portmap", capabilities: { portMappings: true } },
  ],
};

async function waitFor(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function registryUp(): Promise<boolean> {
  try {
    const r = await fetch(`http://${REGISTRY}/v2/`);
    return r.ok;
  } catch {
    return false;
  }
}

function netnsNames(): Set<string> {
  return new Set(existsSync("/var/run/netns") ? readdirSync("/var/run/netns") : []);
}

/** Everything the run started, so cleanup can end exactly those processes. */
interface Started {
  registry?: ChildProcess;
  containerd?: ChildProcess;
}

export async function runComparison(outDir: string): Promise<Comparison> {
  const runtime = process.env["SANDKUBE_RUNTIME"] ?? join(REPO, "dist/bin/sandkube-runtime");
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((b) => existsSync(b));
  if (busybox === undefined) throw new Error("no busybox; apt-get install -y busybox-static");
  mkdirSync(outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), "skcrit-"));
  const started: Started = {};
  const netnsBefore = netnsNames();
  const dir = join(work, "containerd");
  try {
    const helpers = await compileHelpers(join(work, "helpers"));
    const images = critestImages(helpers);
    const layout = await writeImageLayout(join(work, "images"), busybox, images);

    const registryDir = join(work, "registry");
    mkdirSync(registryDir, { recursive: true });
    writeFileSync(
      join(registryDir, "config.yml"),
      `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${registryDir}/data\nhttp:\n  addr: ${REGISTRY}\n`,
    );
    started.registry = spawn(
      "/usr/bin/docker-registry",
      ["serve", join(registryDir, "config.yml")],
      {
        stdio: ["ignore", "ignore", "ignore"],
      },
    );
    const end = Date.now() + 30_000;
    while (!(await registryUp())) {
      if (Date.now() > end) throw new Error(`docker-registry did not answer on ${REGISTRY}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await pushImages(layout, REGISTRY, images);

    mkdirSync(join(dir, "cni.d"), { recursive: true });
    writeFileSync(join(dir, "cni.d/10-sandkube-critest.conflist"), JSON.stringify(CNI_CONFIG));
    writeMirrors(dir);
    writeFileSync(join(dir, "config.toml"), await containerdConfig(dir, runtime));
    const { openSync } = await import("node:fs");
    const log = openSync(join(outDir, "containerd.log"), "w");
    started.containerd = spawn(labBinary("containerd"), ["--config", join(dir, "config.toml")], {
      stdio: ["ignore", log, log],
      env: {
        ...process.env,
        PATH: `${join(labBinary("containerd"), "..")}:${process.env["PATH"] ?? ""}`,
        SANDKUBE_INIT: join(REPO, "dist/bin/sandkube-init"),
      },
    });
    const sock = join(dir, "containerd.sock");
    await waitFor(() => existsSync(sock), "containerd socket", 30_000);

    const imagesFile = join(work, "test-images.yaml");
    writeFileSync(
      imagesFile,
      `defaultTestContainerImage: ${DEFAULT_TEST_IMAGE}\nwebServerTestImage: ${WEB_SERVER_IMAGE}\n`,
    );
    const results: Record<string, SpecResult[]> = {};
    const seconds: Record<string, number> = {};
    for (const handler of ["runc", "sandkube"]) {
      const report = join(outDir, `critest-${handler}.json`);
      const t0 = Date.now();
      const r = await runCommand(
        [
          labBinary("critest"),
          `--runtime-endpoint=unix://${sock}`,
          `--image-endpoint=unix://${sock}`,
          `--runtime-handler=${handler}`,
          `--test-images-file=${imagesFile}`,
          `--ginkgo.skip=${SKIPPED_SPECS.map((s) => s.pattern).join("|")}`,
          `--ginkgo.json-report=${report}`,
          "--ginkgo.no-color",
          "--ginkgo.timeout=40m",
        ],
        { timeoutMs: 45 * 60_000, cwd: outDir },
      );
      seconds[handler] = Math.round((Date.now() - t0) / 1000);
      writeFileSync(join(outDir, `critest-${handler}.log`), r.stdout + r.stderr);
      if (!existsSync(report))
        throw new Error(`critest (${handler}) wrote no report: ${r.stderr.slice(-2000)}`);
      results[handler] = parseGinkgoReport(readFileSync(report, "utf8"));
    }
    const comparison = compare(results["runc"] ?? [], results["sandkube"] ?? [], seconds);
    writeFileSync(join(outDir, "comparison.json"), JSON.stringify(comparison, null, 2));
    return comparison;
  } finally {
    await cleanup(started, dir, netnsBefore);
  }
}

/** Pods first (their shims outlive containerd), then containerd, mounts, netns, bridge, registry. */
async function cleanup(started: Started, dir: string, netnsBefore: Set<string>): Promise<void> {
  const sock = join(dir, "containerd.sock");
  if (existsSync(sock)) {
    const crictl = [
      labBinary("crictl"),
      `--runtime-endpoint=unix://${sock}`,
      `--image-endpoint=unix://${sock}`,
    ];
    await runCommand([...crictl, "rmp", "-a", "-f"], { timeoutMs: 120_000 });
  }
  for (const p of [started.containerd, started.registry])
    if (p?.pid !== undefined && p.exitCode === null) {
      p.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 1000));
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  // Shims of this containerd only: their -address names this run's socket.
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmd.includes("containerd-shim") && cmd.includes(sock))
        process.kill(Number(pid), "SIGKILL");
    } catch {
      // The process ended while we looked.
    }
  }
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(dir))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await runCommand(["umount", "-l", m]);
  for (const ns of netnsNames())
    if (!netnsBefore.has(ns)) {
      await runCommand(["umount", `/var/run/netns/${ns}`]);
      await runCommand(["rm", "-f", `/var/run/netns/${ns}`]);
    }
  await runCommand(["ip", "link", "del", BRIDGE]);
  await removeIdlePortmapChains();
  await runCommand(["rm", "-rf", join(dir, "..")], { timeoutMs: 120_000 });
}

/**
 * portmap leaves its shared nat chains behind after the last pod goes (they are shared by every
 * portmap user). Removed only when no pod's rule remains in CNI-HOSTPORT-DNAT.
 */
async function removeIdlePortmapChains(): Promise<void> {
  const dnat = await runCommand(["iptables", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"]);
  if (dnat.exitCode !== 0 || dnat.stdout.trim() !== "-N CNI-HOSTPORT-DNAT") return;
  const nat = (...args: string[]): Promise<unknown> =>
    runCommand(["iptables", "-t", "nat", ...args]);
  await nat("-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT");
  await nat("-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT");
  await nat(
    "-D",
    "POSTROUTING",
    "-m",
    "comment",
    "--comment",
    "CNI portfwd requiring masquerade",
    "-j",
    "CNI-HOSTPORT-MASQ",
  );
  for (const chain of ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"]) {
    await nat("-F", chain);
    await nat("-X", chain);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? join(tmpdir(), "sandkube-critest"));
  const c = await runComparison(out);
  console.log(JSON.stringify({ passed: c.passed, specs: c.specs, seconds: c.seconds }, null, 2));
  for (const d of c.differing)
    console.log(`${d.runc} (runc) vs ${d.sandkube} (sandkube): ${d.name}`);
}
