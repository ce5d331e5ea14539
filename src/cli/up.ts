import { readFile, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { resolve } from "node:path";
import type { Adaptation } from "../plan/adaptations.js";
import { systemIO } from "../probe/io.js";
import { buildReport, makeDirectories, probeOptionsFromEnvironment } from "./doctor.js";
import { dataDirFrom, lastFlag, parseFlags } from "./node-args.js";
import { progressTo } from "./progress.js";
import { UsageError } from "./usage-error.js";
import { nodeLayout } from "../node/layout.js";
import { bringUp, NodeStartError } from "../node/up.js";
import { locateNodeBinaries } from "../node/node-binaries.js";
import { resolveKubeconfigTarget } from "../node/kubeconfig.js";
import { remedyFor } from "../node/remedies.js";
import {
  chooseServiceProxy,
  type RuntimeOption,
  type ServiceProxyOption,
} from "../node/node-config.js";
import type { AddonBinaries } from "../addons/images.js";
import { readRegistryLogins } from "../registry/credentials.js";
import { parseRegistryOptionsText, type RegistryOptions } from "../registry/options.js";

const USAGE = `usage: sandkube up [--data-dir DIR] [--runtime auto|sandkube|runc] [--kubeconfig FILE]
                   [--bind-address ADDR] [--bin-dir DIR] [--service-proxy auto|kube-proxy|sandkube-proxy]
                   [--resolv-conf FILE] [--registries FILE] [--no-addons] [--timeout SECONDS] [--json]

Probes this sandbox, provisions what Kubernetes needs, starts a one-node cluster under a background
supervisor and returns once the node is Ready.

  --data-dir DIR        where the node keeps everything (default /var/lib/sandkube, or $SANDKUBE_DATA_DIR)
  --runtime R           OCI runtime: auto (sandkube-runtime in gVisor, runc elsewhere), sandkube or runc
  --kubeconfig FILE     merge the "sandkube" context into FILE (default: $KUBECONFIG, else ~/.kube/config)
  --bind-address ADDR   where the API server listens (default: the node's own address, 10.244.0.1)
  --bin-dir DIR         look for the node's binaries here first
  --service-proxy P     what carries Service traffic: auto (kube-proxy where its iptables rules can be
                        written, sandkube-proxy where the probe shows they cannot), kube-proxy or sandkube-proxy
  --resolv-conf FILE    the resolver pods and cluster DNS forward outside names to (default /etc/resolv.conf)
  --registries FILE     registry mirrors, CAs and login files for image pulls (YAML; docs/registries.md)
  --no-addons           do not install cluster DNS (CoreDNS) and the default StorageClass (local-path)
  --timeout SECONDS     give up waiting for the node after this long (default 300)
  --json                print one JSON object on stdout; progress goes to stderr`;

const FLAGS = {
  "--data-dir": { takesValue: true },
  "--runtime": { takesValue: true },
  "--kubeconfig": { takesValue: true },
  "--bind-address": { takesValue: true },
  "--bin-dir": { takesValue: true },
  "--service-proxy": { takesValue: true },
  "--resolv-conf": { takesValue: true },
  "--registries": { takesValue: true },
  "--no-addons": { takesValue: false },
  "--timeout": { takesValue: true },
  "--json": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
} as const;

export interface UpArgs {
  readonly help: boolean;
  readonly json: boolean;
  readonly dataDir: string;
  readonly runtime: RuntimeOption;
  readonly kubeconfig: string | undefined;
  readonly bindAddress: string | null;
  readonly binDir: string | undefined;
  readonly serviceProxy: ServiceProxyOption;
  /** --resolv-conf; null means the sandbox's own /etc/resolv.conf, or none if it has none. */
  readonly resolvConf: string | null;
  readonly addons: boolean;
  readonly registries: string | null;
  readonly timeoutMs: number;
}

export function parseUpArgs(args: readonly string[], env: NodeJS.ProcessEnv): UpArgs {
  const { flags, positional } = parseFlags("up", args, FLAGS, USAGE);
  if (positional.length > 0) {
    throw new UsageError(`up: unexpected argument "${positional[0]}".\n${USAGE}`);
  }
  const runtime = lastFlag(flags, "--runtime") ?? "auto";
  if (runtime !== "auto" && runtime !== "sandkube" && runtime !== "runc") {
    throw new UsageError(`up: --runtime must be auto, sandkube or runc, not "${runtime}".`);
  }
  const resolvConfFlag = lastFlag(flags, "--resolv-conf");
  const registriesFlag = lastFlag(flags, "--registries");
  const serviceProxy = lastFlag(flags, "--service-proxy") ?? "auto";
  if (
    serviceProxy !== "auto" &&
    serviceProxy !== "kube-proxy" &&
    serviceProxy !== "sandkube-proxy"
  ) {
    throw new UsageError(
      `up: --service-proxy must be auto, kube-proxy or sandkube-proxy, not "${serviceProxy}".`,
    );
  }
  const timeoutText = lastFlag(flags, "--timeout") ?? "300";
  const timeout = Number(timeoutText);
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(
      `up: --timeout must be a positive number of seconds, not "${timeoutText}".`,
    );
  }
  const bindAddress = lastFlag(flags, "--bind-address") ?? null;
  if (bindAddress !== null && !/^(\d{1,3}\.){3}\d{1,3}$/.test(bindAddress)) {
    throw new UsageError(
      `up: --bind-address must be an IPv4 address such as 127.0.0.1, not "${bindAddress}".`,
    );
  }
  return {
    help: flags.has("--help") || flags.has("-h"),
    json: flags.has("--json"),
    dataDir: dataDirFrom(flags, env),
    runtime,
    kubeconfig: lastFlag(flags, "--kubeconfig"),
    bindAddress,
    binDir: lastFlag(flags, "--bin-dir"),
    serviceProxy,
    resolvConf: resolvConfFlag === undefined ? null : resolve(resolvConfFlag),
    addons: !flags.has("--no-addons"),
    registries: registriesFlag === undefined ? null : resolve(registriesFlag),
    timeoutMs: timeout * 1000,
  };
}

/**
 * Said plainly before anything starts: where no veth can be made (gVisor before 2024), no pod gets
 * a network namespace of its own; sandkube-cni refuses each one, naming the same fact.
 */
export function podNetworkProblem(adaptations: readonly Adaptation[]): string | undefined {
  const hostOnly = adaptations.find((a) => a.id === "cni-host-network");
  if (hostOnly === undefined) return undefined;
  return `pods cannot have their own network namespace here (${hostOnly.because}); only hostNetwork pods can run (docs/gvisor-blockers.md B9, B10).`;
}

async function ensureWritableDataDir(dataDir: string): Promise<void> {
  const probe = `${dataDir}/.sandkube-write-test`;
  try {
    await makeDirectories(dataDir);
    await writeFile(probe, "");
    await rm(probe, { force: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new UsageError(
      `up: data dir ${dataDir} is not writable (${code}). Run as root, or pass a writable directory with --data-dir DIR.`,
    );
  }
}

function requireAddonBinaries(addons: AddonBinaries | null): AddonBinaries {
  if (addons === null) {
    throw new UsageError(
      "up: CoreDNS or local-path-provisioner is missing, so cluster DNS and storage cannot be installed; run `sandkube install`, or pass --no-addons to start without them.",
      1,
    );
  }
  return addons;
}

async function readRegistries(path: string | null): Promise<RegistryOptions> {
  if (path === null) return { registries: [] };
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new UsageError(`up: --registries ${path} cannot be read (${code}).`);
  }
  const options = parseRegistryOptionsText(text, path);
  // Checks that every CA and login file named there can be read, before anything starts.
  await readRegistryLogins(options);
  return options;
}

async function ensureReadable(resolvConf: string): Promise<void> {
  try {
    await readFile(resolvConf, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new UsageError(
      `up: --resolv-conf ${resolvConf} cannot be read (${code}); name an existing resolv.conf, or leave the flag out to use /etc/resolv.conf.`,
    );
  }
}

export async function up(args: string[]): Promise<number> {
  const parsed = parseUpArgs(args, process.env);
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    throw new UsageError(
      "up: the node needs root (mounts, namespaces, cgroups). Run it as root.",
      1,
    );
  }
  await ensureWritableDataDir(parsed.dataDir);
  if (parsed.resolvConf !== null) await ensureReadable(parsed.resolvConf);
  const registries = await readRegistries(parsed.registries);
  const layout = nodeLayout(parsed.dataDir);
  const progress = progressTo(process.stderr);
  const started = Date.now();

  const report = await progress.step("Probing the sandbox", () =>
    buildReport(systemIO(), probeOptionsFromEnvironment(parsed.dataDir, process.env)),
  );
  if (!report.verdict.canRun) {
    // The same words doctor prints, so doctor's verdict and up's refusal never disagree.
    for (const blocker of report.verdict.blockers) {
      process.stderr.write(`sandkube: blocker ${blocker.id}: ${blocker.because}\n`);
      process.stderr.write(`  remedy: ${remedyFor(blocker.id)}\n`);
    }
    const isolated = podNetworkProblem(report.adaptations);
    if (isolated !== undefined) process.stderr.write(`sandkube: also: ${isolated}\n`);
    process.stderr.write(`sandkube: ${report.verdict.summary}\n`);
    return 1;
  }
  const isolated = podNetworkProblem(report.adaptations);
  if (isolated !== undefined) progress.note(`warning: ${isolated}`);
  for (const adaptation of report.adaptations) {
    progress.note(` · ${adaptation.title} (because ${adaptation.because})`);
  }
  const binaries = await progress.step("Finding the node's binaries", () =>
    locateNodeBinaries({
      binDir: parsed.binDir,
      env: process.env,
      needs: {
        kubeProxy:
          chooseServiceProxy(parsed.serviceProxy, report.adaptations).serviceProxy === "kube-proxy",
        addons: parsed.addons,
      },
      // "have X" for every binary already present is noise on every up; the rest is news.
      onProgress: (line) => {
        if (!line.startsWith("have ")) progress.note(`   ${line}`);
      },
    }),
  );
  const userKubeconfig = resolveKubeconfigTarget({
    flag: parsed.kubeconfig,
    env: process.env["KUBECONFIG"],
    home: homedir(),
  });
  try {
    const result = await bringUp({
      options: {
        dataDir: parsed.dataDir,
        runtime: parsed.runtime,
        bindAddress: parsed.bindAddress,
        serviceProxy: parsed.serviceProxy,
      },
      resolvConf: parsed.resolvConf,
      registries,
      addons: parsed.addons ? requireAddonBinaries(binaries.addons) : null,
      layout,
      report,
      binaries: binaries.node,
      runc: binaries.runc,
      sandkubeRuntime: binaries.sandkubeRuntime,
      sandkubeCni: binaries.sandkubeCni,
      loopbackCni: binaries.loopbackCni,
      crictl: binaries.crictl,
      userKubeconfig,
      timeoutMs: parsed.timeoutMs,
      progress,
    });
    const { state } = result;
    if (result.alreadyRunning) {
      progress.note(`The node in ${parsed.dataDir} is already running; nothing changed.`);
    }
    const summary = {
      schema: "sandkube.up/v1",
      node: state.config.nodeName,
      dataDir: parsed.dataDir,
      runtime: state.config.runtime,
      snapshotter: state.config.snapshotter,
      kubeconfig: state.kubeconfig.user ?? state.kubeconfig.admin,
      adminKubeconfig: state.kubeconfig.admin,
      context: state.kubeconfig.context,
      alreadyRunning: result.alreadyRunning,
      recovered: result.recovered,
      seconds: (Date.now() - started) / 1000,
      timings: result.timings,
    };
    if (parsed.json) {
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    } else if (!result.alreadyRunning) {
      progress.note("");
      progress.note(
        `Set kubectl context to "${state.kubeconfig.context}" in ${summary.kubeconfig}`,
      );
      progress.note("You can now use your cluster with:");
      progress.note("");
      progress.note(
        `  sandkube kubectl get nodes        # or: kubectl --context ${state.kubeconfig.context} get nodes`,
      );
    }
    return 0;
  } catch (error) {
    if (error instanceof NodeStartError) {
      process.stderr.write(`sandkube: up: ${error.message}\n`);
      process.stderr.write(
        "  The node is left as it is for inspection: `sandkube status`, `sandkube logs COMPONENT`; `sandkube down` removes it.\n",
      );
      return error.exitCode;
    }
    throw error;
  }
}
