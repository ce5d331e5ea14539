/**
 * `npm run bench -- pull [--json] [--gvisor[=new|old]] [--rounds=N] [--layer-mb=N]`: seconds to
 * pull and unpack a 3-layer image from a registry on loopback, sandkube's containerd beside a stock
 * one, on the host kernel and, with --gvisor, inside a lab runsc sandbox in the same run.
 *
 * Per side: Debian's docker-registry on loopback with TLS from a CA made here and an htpasswd
 * login; a 3-layer image of pseudo-random files (its top layer deletes a file of the lowest) built
 * by `sandkube images build` and pushed there. Then, cold each round (the image, its content and
 * its snapshots removed in between), taking turns on which goes first, after one untimed warm-up
 * round:
 * - reference: containerd with no config file (defaults, only root, state and socket moved into a
 *   scratch folder) and `ctr images pull` with the fewest flags that reach the registry: a
 *   hosts.toml naming the CA, and --user;
 * - sandkube: containerd with the config.toml `up` renders for this machine's facts, the certs.d
 *   and login the registry options give, pulled the way `sandkube images pull` pulls
 *   (src/registry/transfer.ts: the transfer service, the password typed on a terminal).
 * Reported: the median seconds of each and the ratio sandkube / reference.
 *
 * The gVisor side is this same file run with --inner inside runsc, as the services bench does; its
 * figures come back through a file in the sandbox's shared output directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { labBinary, labBinDir, labCniDir } from "../lab/paths.js";
import { probeOptionsFromEnvironment } from "../src/cli/doctor.js";
import { runCommand, type CommandResult } from "../src/common/exec.js";
import { containerdAnswers, importImage, type ContainerdTarget } from "../src/images/containerd.js";
import { nodeLayout } from "../src/node/layout.js";
import { planAdaptations } from "../src/plan/adaptations.js";
import { SANDBOX_IMAGE } from "../src/plan/cluster-config.js";
import { registryHostsDir, renderContainerdConfig } from "../src/plan/containerd-config.js";
import { collectFacts } from "../src/probe/facts.js";
import { systemIO } from "../src/probe/io.js";
import { parseCredentialsFile, writeRegistryFiles } from "../src/registry/credentials.js";
import {
  DEBIAN_DOCKER_REGISTRY,
  startLocalRegistry,
  writeHtpasswd,
  type LocalRegistry,
} from "../src/registry/local.js";
import { issueRegistryTls } from "../src/registry/tls.js";
import {
  ctrFailureLine,
  pullArgv,
  pushArgv,
  runWithLogin,
  type PullTarget,
} from "../src/registry/transfer.js";
import {
  BenchUsageError,
  measureInsideGvisor,
  runBenchFile,
  runSideBySide,
  type SideBySideArgs,
} from "./node-side.js";
import { freeLoopbackPort } from "../src/common/net.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(REPO, "dist", "src", "cli", "main.js");
const USER = "bench";
/** A throw-away login for a registry that lives on loopback for the length of one run. */
const PASSWORD = "bench: throw-away";
/** The stock side's namespace; the sandkube side pulls into the CRI plugin's, k8s.io. */
const REFERENCE_NAMESPACE = "bench";
const FILES_PER_LAYER = 4;
const PULL_TIMEOUT_MS = 600_000;

export interface PullArgs extends SideBySideArgs {
  readonly rounds: number;
  /** Megabytes of pseudo-random file data in each of the three layers. */
  readonly layerMb: number;
  readonly inner: boolean;
  readonly resultFile: string | undefined;
}

export interface PullConfiguration {
  readonly snapshotter: string;
  /** The pull's command line, the password left out. */
  readonly command: string;
  readonly seconds: readonly number[];
  readonly median_s: number;
}

export interface PullSide {
  readonly kernel: string;
  readonly image: { readonly ref: string; readonly layers: number; readonly bytes: number };
  readonly rounds: number;
  readonly reference: PullConfiguration;
  readonly sandkube: PullConfiguration;
  /** sandkube median / reference median. */
  readonly ratio: number;
}

export { BenchUsageError };

const USAGE =
  "usage: npm run bench -- pull [--json] [--gvisor[=new|old]] [--rounds=N] [--layer-mb=N]";

/** Pure: the pull bench's argv, or a BenchUsageError naming the bad argument. */
export function parsePullArgs(argv: readonly string[]): PullArgs {
  let json = false;
  let gvisor: "new" | "old" | undefined;
  let rounds = 5;
  let layerMb = 8;
  let inner = false;
  let resultFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const bounded = (v: string | undefined, max: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n <= 0 || n > max)
        throw new BenchUsageError(
          `pull: ${flag} takes a whole number from 1 to ${String(max)}, not "${v ?? ""}"`,
        );
      return n;
    };
    if (flag === "--json") json = true;
    else if (flag === "--inner") inner = true;
    else if (flag === "--result") resultFile = inline ?? argv[++i];
    else if (flag === "--rounds") rounds = bounded(inline ?? argv[++i], 50);
    else if (flag === "--layer-mb") layerMb = bounded(inline ?? argv[++i], 256);
    else if (flag === "--gvisor") {
      const v = inline ?? "new";
      if (v !== "new" && v !== "old")
        throw new BenchUsageError(`pull: --gvisor takes new or old, not "${v}"`);
      gvisor = v;
    } else throw new BenchUsageError(`pull: unknown option "${arg}"`);
  }
  return { json, gvisor, rounds, layerMb, inner, resultFile };
}

/** Pure: the middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Pure: which configuration pulls first in round `i`: they take turns, against drift. */
export function roundOrder(
  i: number,
): readonly ["reference" | "sandkube", "reference" | "sandkube"] {
  return i % 2 === 0 ? ["reference", "sandkube"] : ["sandkube", "reference"];
}

const say = (line: string): void => void process.stderr.write(`pull bench: ${line}\n`);

function brief(result: CommandResult): string {
  return `${result.argv.join(" ")}: ${result.failure ?? `exit ${String(result.exitCode)}`} ${ctrFailureLine(result)}`;
}

/**
 * `bytes` of AES-256-CTR keystream keyed by `seed`: the same files every run (so the same layer
 * digests), and incompressible, so gzip does not shrink a layer to nothing.
 */
function pseudoRandom(seed: string, bytes: number): Buffer {
  const key = createHash("sha256").update(seed).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}

/**
 * Three layer folders, lowest first. Each holds FILES_PER_LAYER files of layerMb / FILES_PER_LAYER
 * MB; the lowest also holds data/doomed, which the top one deletes with a `.wh.` file.
 */
async function writeLayers(dir: string, layerMb: number): Promise<string[]> {
  const fileBytes = Math.ceil((layerMb * 1024 * 1024) / FILES_PER_LAYER);
  const layers: string[] = [];
  for (const name of ["base", "middle", "top"]) {
    const data = join(dir, name, "data");
    await mkdir(data, { recursive: true });
    for (let i = 0; i < FILES_PER_LAYER; i++)
      await writeFile(
        join(data, `${name}-${String(i)}`),
        pseudoRandom(`${name}-${String(i)}`, fileBytes),
      );
    if (name === "base") await writeFile(join(data, "doomed"), pseudoRandom("doomed", fileBytes));
    if (name === "top") await writeFile(join(data, ".wh.doomed"), "");
    layers.push(join(dir, name));
  }
  return layers;
}

async function logTail(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-3).join(" | ");
}

interface Daemon {
  stop(): Promise<void>;
}

/** Starts a containerd child and returns once `ctr version` answers on its socket. */
async function startContainerd(
  argv: readonly string[],
  logFile: string,
  target: ContainerdTarget,
): Promise<Daemon> {
  const log = await open(logFile, "a");
  // Proxy variables are dropped: every pull here goes to loopback.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(https?|all|no)_proxy$/i.test(k)),
  );
  const child: ChildProcess = spawn(argv[0] as string, argv.slice(1), {
    stdio: ["ignore", log.fd, log.fd],
    env: { ...env, PATH: `${labBinDir()}:${process.env["PATH"] ?? ""}` },
  });
  await log.close();
  let exit: string | null = null;
  const exited = new Promise<void>((done) => {
    child.once("exit", (code, signal) => {
      exit = signal ?? `exit status ${String(code ?? "?")}`;
      done();
    });
    child.once("error", (error) => {
      exit = error.message;
      done();
    });
  });
  const stop = async (): Promise<void> => {
    if (exit !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exit !== null)
      throw new Error(
        `containerd exited (${String(exit)}) before answering: ${await logTail(logFile)}`,
      );
    if (await containerdAnswers(target)) return { stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`containerd did not answer within 60 s: ${await logTail(logFile)}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** The lines of `ctr ... ls`-style output after its header (or all of them for `-q`). */
function rows(text: string, header: boolean): string[] {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  return header ? lines.slice(1) : lines;
}

interface Puller {
  readonly name: "reference" | "sandkube";
  readonly target: ContainerdTarget;
  readonly namespace: string;
  readonly snapshotter: string;
  readonly command: string;
  pull(): Promise<CommandResult>;
}

function ctr(
  p: Pick<Puller, "target" | "namespace">,
  args: readonly string[],
): Promise<CommandResult> {
  return runCommand(
    [p.target.ctr, "--address", p.target.socket, "--namespace", p.namespace, ...args],
    {
      timeoutMs: 120_000,
    },
  );
}

/** What a pulled image left in a containerd: its image record, content blobs and snapshots. */
async function holdings(
  p: Puller,
  ref: string,
): Promise<{ image: boolean; blobs: number; snapshots: number }> {
  const images = await ctr(p, ["images", "ls", "-q"]);
  const content = await ctr(p, ["content", "ls", "-q"]);
  const snapshots = await ctr(p, ["snapshots", "--snapshotter", p.snapshotter, "ls"]);
  for (const r of [images, content, snapshots]) if (r.exitCode !== 0) throw new Error(brief(r));
  return {
    image: rows(images.stdout, false).includes(ref),
    blobs: rows(content.stdout, false).length,
    snapshots: rows(snapshots.stdout, true).length,
  };
}

/**
 * Removes the image and, through --sync's garbage collection, its blobs and snapshots; then checks
 * nothing is left, so the next pull fetches and unpacks everything again.
 */
async function makeCold(p: Puller, ref: string): Promise<void> {
  // Every name in the namespace, not only REF: in k8s.io the CRI plugin adds one of its own for
  // the image ID (sha256:...), which keeps the blobs and snapshots alive.
  const names = rows((await ctr(p, ["images", "ls", "-q"])).stdout, false);
  if (names.length > 0) {
    const removed = await ctr(p, ["images", "rm", "--sync", ...names]);
    if (removed.exitCode !== 0) throw new Error(brief(removed));
  }
  const left = await holdings(p, ref);
  if (left.image || left.blobs > 0 || left.snapshots > 0)
    throw new Error(
      `${p.name}: not cold after images rm --sync: ${JSON.stringify(left)} in namespace ${p.namespace}`,
    );
}

/** Unmounts what a pull that failed halfway may have left mounted under `dir`, deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const points = mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point.startsWith(`${dir}/`))
    .reverse();
  for (const point of points) await runCommand(["umount", "-l", point]);
}

function requirements(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (containerd)");
  for (const b of ["containerd", "ctr"]) if (!existsSync(labBinary(b))) missing.push(labBinary(b));
  if (!existsSync(DEBIAN_DOCKER_REGISTRY))
    missing.push(`${DEBIAN_DOCKER_REGISTRY} (apt-get install docker-registry)`);
  if (!existsSync("/usr/bin/script")) missing.push("/usr/bin/script (util-linux)");
  if (!existsSync(CLI)) missing.push(`${CLI} (npm run build)`);
  return missing;
}

/** One side: everything on this kernel, from the registry to the last cold pull. */
export async function measurePull(args: PullArgs): Promise<PullSide> {
  const missing = requirements();
  if (missing.length > 0) throw new Error(`the pull bench needs ${missing.join(", ")}`);
  const kernel = (await runCommand(["uname", "-r"])).stdout.trim();
  const work = await mkdtemp(join(tmpdir(), "sandkube-bench-pull-"));
  const cleanups: (() => Promise<void>)[] = [];
  try {
    // The registry, as the registry scenario makes it: TLS from a CA made here, one bcrypt login.
    const port = await freeLoopbackPort();
    const host = `127.0.0.1:${String(port)}`;
    const ref = `${host}/bench/layered:1`;
    const regDir = join(work, "registry");
    await mkdir(regDir, { recursive: true });
    const tls = await issueRegistryTls({ dnsNames: [], ipAddresses: ["127.0.0.1"] });
    const ca = join(work, "ca.pem");
    await writeFile(ca, tls.caPem);
    await writeFile(join(regDir, "cert.pem"), tls.certPem);
    await writeFile(join(regDir, "key.pem"), tls.keyPem, { mode: 0o600 });
    await writeHtpasswd(join(regDir, "htpasswd"), [{ username: USER, password: PASSWORD }]);
    const registry: LocalRegistry = await startLocalRegistry({
      dir: regDir,
      address: host,
      tls: { cert: join(regDir, "cert.pem"), key: join(regDir, "key.pem") },
      htpasswd: join(regDir, "htpasswd"),
    });
    cleanups.push(() => registry.stop());
    say(`${kernel}: docker-registry on ${registry.url} (TLS, htpasswd)`);

    const layers = await writeLayers(join(work, "layers"), args.layerMb);
    const tarball = join(work, "image.tar");
    const built = await runCommand(
      [
        process.execPath,
        CLI,
        "images",
        "build",
        ...layers.flatMap((dir) => ["--from-dir", dir]),
        "--name",
        ref,
        "--output",
        tarball,
        // No node lives here, so the image is only written to --output.
        "--data-dir",
        join(work, "no-node"),
        "--json",
      ],
      { timeoutMs: 600_000 },
    );
    if (built.exitCode !== 0) throw new Error(`images build: ${brief(built)} ${built.stderr}`);
    const image = JSON.parse(built.stdout) as { layers: { size: number }[] };
    if (image.layers.length !== 3)
      throw new Error(`built ${String(image.layers.length)} layers, not 3`);
    const bytes = image.layers.reduce((sum, l) => sum + l.size, 0);
    await rm(join(work, "layers"), { recursive: true, force: true });

    // sandkube's containerd: config.toml rendered as `up` renders it, from this machine's facts.
    const layout = nodeLayout(join(work, "sandkube"));
    await mkdir(dirname(layout.containerdConfig), { recursive: true });
    await mkdir(layout.cniConfDir, { recursive: true });
    const facts = await collectFacts(
      systemIO(),
      probeOptionsFromEnvironment(layout.dataDir, process.env),
    );
    const snapshotter = planAdaptations(facts).some((a) => a.id === "native-snapshotter")
      ? "native"
      : "overlayfs";
    await writeFile(
      layout.containerdConfig,
      renderContainerdConfig(
        {
          snapshotter,
          sandboxImage: SANDBOX_IMAGE,
          // No container runs here: the runtime handler plays no part in a pull.
          binaries: { ociRuntime: labBinary("runc"), cniBinDir: labCniDir() },
        },
        facts,
        layout,
      ),
    );
    const credentials = join(work, "registry-auth.json");
    const auth = Buffer.from(`${USER}:${PASSWORD}`).toString("base64");
    await writeFile(credentials, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
    const written = await writeRegistryFiles(
      { hostsDir: registryHostsDir(layout), kubeletRoot: layout.kubeletRoot },
      {
        registries: [
          { host, mirrors: [], ca, insecureSkipVerify: false, credentialsFile: credentials },
        ],
      },
    );
    // `sandkube images pull` without --credentials takes the node's own login, kubelet's file.
    const nodeAuth = written.kubeletDockerConfig ?? "";
    const login = parseCredentialsFile(await readFile(nodeAuth, "utf8"), nodeAuth, host);
    const skTarget: PullTarget = {
      ctr: labBinary("ctr"),
      socket: layout.containerdSocket,
      hostsDir: registryHostsDir(layout),
      snapshotter,
    };
    const sk = await startContainerd(
      [labBinary("containerd"), "--config", layout.containerdConfig],
      join(work, "containerd-sandkube.log"),
      skTarget,
    );
    cleanups.push(() => sk.stop());

    // The reference: no config file of sandkube's, containerd's built-in defaults but for what
    // writes outside the scratch folder and plays no part in a pull (each seen after a stock run):
    // the `opt` plugin creates /opt/containerd, NRI leaves /var/run/nri/nri.sock, and the CRI
    // plugin creates its CNI conf_dir, /etc/cni/net.d. A file is written rather than none: an
    // absent --config is an error when named (cmd/containerd/command/main.go), and without --config
    // an /etc/containerd/config.toml would be read.
    const stockDir = join(work, "stock");
    await mkdir(stockDir, { recursive: true });
    const stockConfig = join(stockDir, "config.toml");
    await writeFile(
      stockConfig,
      [
        "version = 3",
        'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]',
        '[plugins."io.containerd.cri.v1.runtime".cni]',
        `conf_dir = "${join(stockDir, "cni.d")}"`,
        "",
      ].join("\n"),
    );
    const stockTarget: ContainerdTarget = {
      ctr: labBinary("ctr"),
      socket: join(stockDir, "containerd.sock"),
    };
    // Its CRI plugin listens on 127.0.0.1:10010, a fixed port: one stock containerd at a time.
    const stock = await startContainerd(
      [
        labBinary("containerd"),
        "--config",
        stockConfig,
        "--root",
        join(stockDir, "root"),
        "--state",
        join(stockDir, "state"),
        "--address",
        stockTarget.socket,
      ],
      join(work, "containerd-stock.log"),
      stockTarget,
    );
    cleanups.push(() => stock.stop());
    // With no hosts.toml, containerd skips verification for a loopback registry
    // (core/remotes/docker/config/hosts.go, IsLocalhost); naming the CA makes both sides verify it.
    // --tlscacert would need --local (cmd/ctr/commands/images/pull.go), so a hosts.toml is fewer
    // changes to ctr's defaults.
    const stockHosts = join(work, "stock-certs.d");
    await mkdir(join(stockHosts, host), { recursive: true });
    await writeFile(
      join(stockHosts, host, "hosts.toml"),
      `server = "https://${host}"\nca = "${ca}"\n`,
    );

    const referenceArgv = (user: string): string[] => [
      stockTarget.ctr,
      "-a",
      stockTarget.socket,
      "-n",
      REFERENCE_NAMESPACE,
      "images",
      "pull",
      "--hosts-dir",
      stockHosts,
      "--user",
      user,
      ref,
    ];
    const reference: Puller = {
      name: "reference",
      target: stockTarget,
      namespace: REFERENCE_NAMESPACE,
      // containerd's default on Linux, and the only one its transfer service unpacks into.
      snapshotter: "overlayfs",
      command: referenceArgv(`${USER}:***`).join(" "),
      // The password on ctr's command line, as a user of plain ctr types it; the bench's registry
      // is on loopback and its login is thrown away with it.
      pull: () => runCommand(referenceArgv(`${USER}:${PASSWORD}`), { timeoutMs: PULL_TIMEOUT_MS }),
    };
    const sandkube: Puller = {
      name: "sandkube",
      target: skTarget,
      namespace: "k8s.io",
      snapshotter,
      command: pullArgv(skTarget, ref, login.username).join(" "),
      pull: () =>
        runWithLogin(pullArgv(skTarget, ref, login.username), login, runCommand, PULL_TIMEOUT_MS),
    };

    say(`push ${ref}: 3 layers, ${(bytes / 1024 / 1024).toFixed(1)} MiB compressed`);
    await importImage({ ...skTarget, file: tarball });
    const pushed = await runWithLogin(pushArgv(skTarget, ref, login.username), login);
    if (pushed.exitCode !== 0) throw new Error(`push: ${brief(pushed)}`);
    await rm(tarball, { force: true });
    for (const p of [reference, sandkube]) await makeCold(p, ref);

    const seconds: Record<Puller["name"], number[]> = { reference: [], sandkube: [] };
    // Round 0 is a warm-up, not counted: the first pull of a run also pays for loading ctr and
    // the daemons' pull code, and for reading the registry's blobs into the page cache.
    for (let i = 0; i <= args.rounds; i++) {
      for (const name of roundOrder(i)) {
        const p = name === "reference" ? reference : sandkube;
        const t0 = performance.now();
        const result = await p.pull();
        const elapsed = (performance.now() - t0) / 1000;
        if (result.exitCode !== 0 || result.failure !== undefined)
          throw new Error(`${name} pull, round ${String(i)}: ${brief(result)}`);
        const held = await holdings(p, ref);
        // One committed snapshot per layer: the image was unpacked, not only fetched.
        if (!held.image || held.snapshots !== 3)
          throw new Error(
            `${name} pull, round ${String(i)}: left ${JSON.stringify(held)}, not an image with 3 snapshots`,
          );
        if (i > 0) seconds[name].push(round(elapsed));
        say(`round ${i === 0 ? "0 (warm-up)" : String(i)}: ${name} ${elapsed.toFixed(2)} s`);
        await makeCold(p, ref);
      }
    }
    const configuration = (p: Puller): PullConfiguration => ({
      snapshotter: p.snapshotter,
      command: p.command,
      seconds: seconds[p.name],
      median_s: round(median(seconds[p.name])),
    });
    const ref_ = configuration(reference);
    const sk_ = configuration(sandkube);
    return {
      kernel,
      image: { ref, layers: image.layers.length, bytes },
      rounds: args.rounds,
      reference: ref_,
      sandkube: sk_,
      ratio: ref_.median_s > 0 ? round(sk_.median_s / ref_.median_s, 2) : Number.NaN,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((e: unknown) =>
        say(`WARNING: cleanup: ${e instanceof Error ? e.message : String(e)}`),
      );
    }
    await unmountUnder(work);
    await rm(work, { recursive: true, force: true });
  }
}

function printTable(host: PullSide, gvisor: PullSide | null): void {
  const row = (label: string, pick: (s: PullSide) => number | string): string =>
    `${label.padEnd(36)}${String(pick(host)).padStart(20)}${gvisor === null ? "" : String(pick(gvisor)).padStart(20)}`;
  const lines = [
    `${"".padEnd(36)}${"host".padStart(20)}${gvisor === null ? "" : "gvisor".padStart(20)}`,
    row("image, MiB compressed (3 layers)", (s) => (s.image.bytes / 1024 / 1024).toFixed(1)),
    row(
      "snapshotter, stock / sandkube",
      (s) => `${s.reference.snapshotter} / ${s.sandkube.snapshotter}`,
    ),
    row(`stock ctr pull, s (median)`, (s) => s.reference.median_s),
    row(`sandkube pull, s (median)`, (s) => s.sandkube.median_s),
    row("ratio sandkube / stock", (s) => s.ratio),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

export function pullBench(argv: readonly string[]): Promise<number> {
  return runSideBySide(argv, {
    usage: USAGE,
    parse: parsePullArgs,
    measure: measurePull,
    measureInGvisor: (flavour, args) =>
      measureInsideGvisor<PullSide>(flavour, "dist/bench/pull.js", [
        `--rounds=${String(args.rounds)}`,
        `--layer-mb=${String(args.layerMb)}`,
      ]),
    printTable,
  });
}

runBenchFile(import.meta.url, "pull", pullBench);
