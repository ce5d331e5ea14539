import { existsSync } from "node:fs";
import { busyboxImageName } from "../addons/images.js";
import { resolve } from "node:path";
import { nodeLayout } from "../node/layout.js";
import { isAlive } from "../node/process-identity.js";
import { readNodeState, readSupervisorStatus, type ComponentStatus } from "../node/state.js";
import {
  ALL_CHECKS,
  OPTIONAL_CHECKS,
  runWorkloadChecks,
  type OptionalCheckId,
  type ServiceProxyHint,
  type WorkloadCheckOptions,
} from "../verify/checks.js";
import { DEFAULT_REQUESTS } from "../verify/network-checks.js";
import { checkLine, formatResult, formatSummary, reportJson } from "../verify/report.js";
import {
  DEFAULT_DNS_IMAGE,
  DEFAULT_VERIFY_IMAGE,
  DEFAULT_WEB_REPLICAS,
} from "../verify/workload.js";
import { dataDirFrom, lastFlag, parseFlags } from "./node-args.js";
import { UsageError } from "./usage-error.js";
import { buildReport, probeOptionsFromEnvironment } from "./doctor.js";
import { systemIO } from "../probe/io.js";
import { remedyFor } from "../node/remedies.js";
import { blockedResults } from "../verify/blocked.js";
import type { CheckResult } from "../verify/cluster.js";

export const VERIFY_USAGE = `usage: sandkube verify [--json] [--data-dir DIR] [--kubeconfig FILE [--context NAME] [--kubectl PATH]]
                       [--timeout SECONDS] [--image REF] [--dns-image REF] [--replicas N] [--requests N]
                       [--outside-name NAME] [--egress-url URL [--egress-expect TEXT]]
                       [--pull-image REF] [--checks ID,...] [--skip ID,...] [--keep]

Runs a small workload in a fresh namespace and checks each capability: pods Running, logs, exec,
port-forward, pod to pod, a ClusterIP Service over ${String(DEFAULT_WEB_REPLICAS)} replicas, an endpoint change, DNS,
NodePort, a UDP Service, egress, a PVC, a Job. Each failure names its blocker and a remedy.
Without --kubeconfig it uses the node's admin kubeconfig and kubectl (from --data-dir).

  --json               one object (schema sandkube.verify/v1) instead of one line per check
  --timeout SECONDS    the most one check may take (default 180)
  --image REF          the busybox image of the workload (default: the busybox image sandkube up imported)
  --dns-image REF      the CoreDNS image of the UDP Service check (default ${DEFAULT_DNS_IMAGE})
  --replicas N         web replicas behind the Services (default ${String(DEFAULT_WEB_REPLICAS)}, at least 2)
  --requests N         requests through the Service, and after the endpoint change (default ${String(DEFAULT_REQUESTS)})
  --outside-name NAME  a name outside the cluster pods must resolve (that lookup is skipped without it)
  --egress-url URL     what a pod fetches for the egress check (default: a server verify starts
                       on this machine's address outside the cluster's ranges)
  --egress-expect TEXT text the body from --egress-url must contain
  --pull-image REF     adds the pull check: a pod with REF and imagePullPolicy Always must start, so
                       the node's registry options (up --registries, docs/registries.md) are used
  --checks ID,...      only these checks; --skip ID,... all but these. IDs: ${ALL_CHECKS.join(", ")}
                       (pull only with --pull-image or in --checks; it is skipped without an image)
  --keep               leave the namespace for a look after a failure

Exit status 0 when no check failed (skipped ones are listed), 1 when one failed, 2 on bad usage.`;

const FLAGS = {
  "--data-dir": { takesValue: true },
  "--kubeconfig": { takesValue: true },
  "--context": { takesValue: true },
  "--kubectl": { takesValue: true },
  "--json": { takesValue: false },
  "--timeout": { takesValue: true },
  "--image": { takesValue: true },
  "--dns-image": { takesValue: true },
  "--replicas": { takesValue: true },
  "--requests": { takesValue: true },
  "--outside-name": { takesValue: true },
  "--egress-url": { takesValue: true },
  "--egress-expect": { takesValue: true },
  "--pull-image": { takesValue: true },
  "--checks": { takesValue: true },
  "--skip": { takesValue: true },
  "--keep": { takesValue: false },
  "--help": { takesValue: false },
  "-h": { takesValue: false },
} as const;

export interface VerifyArgs {
  readonly help: boolean;
  readonly json: boolean;
  readonly dataDir: string;
  /** Absent: the node's admin kubeconfig. */
  readonly kubeconfig?: string;
  readonly context?: string;
  /** Absent: the node's kubectl, else `kubectl` on PATH. */
  readonly kubectl?: string;
  readonly timeoutMs: number;
  /** null: the busybox image `up` imported. */
  readonly image: string | null;
  readonly dnsImage: string;
  readonly replicas: number;
  readonly requests: number;
  readonly outsideName?: string;
  readonly egressUrl?: string;
  readonly egressExpect?: string;
  readonly checks: readonly OptionalCheckId[];
  /** The pull check's image; absent: that check is skipped, or not run unless --checks names it. */
  readonly pullImage?: string;
  readonly keep: boolean;
}

function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new UsageError(
      `verify: ${flag} takes a whole number from ${String(min)} to ${String(max)}, not "${text}".`,
    );
  }
  return n;
}

function checkList(flag: string, text: string): OptionalCheckId[] {
  const ids = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const known: readonly string[] = ALL_CHECKS;
  const unknown = ids.filter((id) => !known.includes(id));
  if (ids.length === 0 || unknown.length > 0) {
    throw new UsageError(
      `verify: ${flag} takes check IDs separated by commas; ${unknown.length > 0 ? `unknown: ${unknown.join(", ")}` : "none given"}. IDs: ${ALL_CHECKS.join(", ")}.`,
    );
  }
  return ids as OptionalCheckId[];
}

/** Pure: the command line (and $SANDKUBE_DATA_DIR) into what verify runs. */
export function parseVerifyArgs(args: readonly string[], env: NodeJS.ProcessEnv): VerifyArgs {
  const { flags, positional } = parseFlags("verify", args, FLAGS, VERIFY_USAGE);
  if (positional.length > 0) {
    throw new UsageError(
      `verify: unexpected argument "${positional[0] ?? ""}". ${VERIFY_USAGE.split("\n")[0] ?? ""}`,
    );
  }
  const value = (name: keyof typeof FLAGS): string | undefined => lastFlag(flags, name);
  const timeoutText = value("--timeout");
  let timeoutMs = 180_000;
  if (timeoutText !== undefined) {
    const seconds = Number(timeoutText);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      throw new UsageError(
        `verify: --timeout takes a positive number of seconds, not "${timeoutText}".`,
      );
    }
    timeoutMs = Math.round(seconds * 1000);
  }
  const outsideName = value("--outside-name");
  if (
    outsideName !== undefined &&
    !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?$/.test(outsideName)
  ) {
    throw new UsageError(
      `verify: --outside-name takes a DNS name such as example.com, not "${outsideName}".`,
    );
  }
  const egressUrl = value("--egress-url");
  if (egressUrl !== undefined) {
    let protocol = "";
    try {
      protocol = new URL(egressUrl).protocol;
    } catch {
      protocol = "";
    }
    if (protocol !== "http:" && protocol !== "https:") {
      throw new UsageError(
        `verify: --egress-url takes an http:// or https:// URL, not "${egressUrl}".`,
      );
    }
  }
  const egressExpect = value("--egress-expect");
  if (egressExpect !== undefined && egressUrl === undefined) {
    throw new UsageError(
      "verify: --egress-expect needs --egress-url (verify's own server's body is its own).",
    );
  }
  const only = value("--checks");
  const skip = value("--skip");
  const skipped = new Set(skip === undefined ? [] : checkList("--skip", skip));
  const pullImage = value("--pull-image");
  if (pullImage !== undefined && !/^[^\s/][^\s]*$/.test(pullImage)) {
    throw new UsageError(
      `verify: --pull-image takes an image reference such as registry.example:5000/app:1, not "${pullImage}".`,
    );
  }
  const defaults: OptionalCheckId[] = [
    ...OPTIONAL_CHECKS,
    ...(pullImage === undefined ? [] : (["pull"] as const)),
  ];
  const chosen = (only === undefined ? defaults : checkList("--checks", only)).filter(
    (id) => !skipped.has(id),
  );
  const kubeconfig = value("--kubeconfig");
  const context = value("--context");
  const kubectl = value("--kubectl");
  return {
    help: flags.has("--help") || flags.has("-h"),
    json: flags.has("--json"),
    dataDir: dataDirFrom(flags, env),
    ...(kubeconfig === undefined ? {} : { kubeconfig: resolve(kubeconfig) }),
    ...(context === undefined ? {} : { context }),
    ...(kubectl === undefined ? {} : { kubectl }),
    timeoutMs,
    image: value("--image") ?? null,
    dnsImage: value("--dns-image") ?? DEFAULT_DNS_IMAGE,
    replicas: wholeNumber("--replicas", value("--replicas") ?? String(DEFAULT_WEB_REPLICAS), 2, 20),
    requests: wholeNumber(
      "--requests",
      value("--requests") ?? String(DEFAULT_REQUESTS),
      1,
      100_000,
    ),
    ...(outsideName === undefined ? {} : { outsideName }),
    ...(egressUrl === undefined ? {} : { egressUrl }),
    ...(egressExpect === undefined ? {} : { egressExpect }),
    checks: ALL_CHECKS.filter((id) => chosen.includes(id)),
    ...(pullImage === undefined ? {} : { pullImage }),
    keep: flags.has("--keep"),
  };
}

/**
 * The node's Service proxy, named for remedies: the first component whose name says proxy, and
 * whether the supervisor has it running. null when the node runs none. Pure.
 */
export function serviceProxyHint(
  componentNames: readonly string[],
  statuses: readonly { readonly name: string; readonly phase: ComponentStatus["phase"] }[],
  alive: (name: string) => boolean,
): ServiceProxyHint {
  const name = componentNames.find((n) => n.includes("proxy"));
  if (name === undefined) return null;
  const phase = statuses.find((s) => s.name === name)?.phase;
  return { name, running: (phase === "ready" || phase === "starting") && alive(name) };
}

/**
 * With no node to check, the probe says whether one could run here at all: where it cannot (a
 * blocker such as `no-recursive-bind`), every check fails naming that blocker and its remedy,
 * rather than a bare "no node".
 */
async function blockedByProbe(
  dataDir: string,
  checks: readonly OptionalCheckId[],
): Promise<CheckResult[]> {
  const report = await buildReport(systemIO(), probeOptionsFromEnvironment(dataDir, process.env));
  if (report.verdict.canRun) return [];
  return blockedResults(checks, report.verdict.blockers, report.adaptations, remedyFor);
}

/** `sandkube verify`: see VERIFY_USAGE. */
export async function verifyCommand(argv: string[]): Promise<number> {
  const args = parseVerifyArgs(argv, process.env);
  if (args.help) {
    process.stdout.write(`${VERIFY_USAGE}\n`);
    return 0;
  }
  const layout = nodeLayout(args.dataDir);
  const state = await readNodeState(layout);
  if (args.kubeconfig === undefined && state === undefined) {
    const blocked = await blockedByProbe(args.dataDir, args.checks);
    if (blocked.length > 0) {
      const report = { namespace: "", ok: false, results: blocked };
      if (args.json) process.stdout.write(`${JSON.stringify(reportJson(report), null, 2)}\n`);
      else {
        for (const r of blocked) process.stdout.write(formatResult(r));
        process.stdout.write(formatSummary(report));
      }
      return 1;
    }
    throw new UsageError(
      `verify: no node in ${args.dataDir}. Start one with \`sandkube up\`, or pass --kubeconfig FILE.`,
      1,
    );
  }
  const kubeconfig = args.kubeconfig ?? state?.kubeconfig.admin ?? "";
  if (!existsSync(kubeconfig)) {
    throw new UsageError(`verify: kubeconfig ${kubeconfig} does not exist.`, 1);
  }
  let serviceProxy: ServiceProxyHint | undefined;
  if (state !== undefined) {
    const supervisor = await readSupervisorStatus(layout);
    const alive = new Map<string, boolean>();
    for (const c of supervisor?.components ?? []) {
      alive.set(c.name, c.process === null ? false : await isAlive(c.process));
    }
    serviceProxy = serviceProxyHint(
      state.components.map((c) => c.name),
      supervisor?.components ?? [],
      (name) => alive.get(name) === true,
    );
  }
  const options: WorkloadCheckOptions = {
    kubectl: args.kubectl ?? state?.config.binaries.kubectl ?? "kubectl",
    kubeconfig,
    ...(args.context === undefined ? {} : { context: args.context }),
    timeoutMs: args.timeoutMs,
    // `up` imports busybox under its own version's tag (src/addons/images.ts).
    image: args.image ?? (await busyboxImageName().catch(() => DEFAULT_VERIFY_IMAGE)),
    dnsImage: args.dnsImage,
    replicas: args.replicas,
    requests: args.requests,
    checks: args.checks,
    ...(args.pullImage === undefined ? {} : { pullImage: args.pullImage }),
    keepNamespace: args.keep,
    ...(args.outsideName === undefined ? {} : { outsideName: args.outsideName }),
    ...(args.egressUrl === undefined ? {} : { egressUrl: args.egressUrl }),
    ...(args.egressExpect === undefined ? {} : { egressExpect: args.egressExpect }),
    ...(state === undefined
      ? {}
      : {
          clusterRanges: [state.config.clusterCIDR, state.config.podCIDR, state.config.serviceCIDR],
        }),
    ...(serviceProxy === undefined ? {} : { serviceProxy }),
    ...(state?.config.hostNetworkOnly === true
      ? {
          hostNetworkOnly:
            "no veth pair can be made here, so pods cannot have a network namespace of their own (up's probe: cni-host-network)",
        }
      : {}),
    // Checks take seconds to minutes each: every result is printed as it comes.
    onResult: (r) => {
      if (args.json) process.stderr.write(`verify: ${checkLine(r)}\n`);
      else process.stdout.write(formatResult(r));
    },
  };
  const report = await runWorkloadChecks(options);
  process.stdout.write(
    args.json ? `${JSON.stringify(reportJson(report), null, 2)}\n` : formatSummary(report),
  );
  return report.ok ? 0 : 1;
}
