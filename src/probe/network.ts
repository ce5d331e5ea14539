import type { CommandResult } from "../common/exec.js";
import { YES, fromToolCommand, isYes, no, notRun, type Check } from "./check.js";
import type { ProbeIO } from "./io.js";

/** Netlink and iptables answer in well under a second; a hang means something is wrong. */
export const NET_COMMAND_TIMEOUT_MS = 5_000;

/**
 * Where a probe tries things. A named namespace (`ip netns add`) is what containerd and CNI use,
 * so it is tried first. gVisor from 2023 refuses it ("mount --bind /run/netns /run/netns failed:
 * Invalid argument", recorded in test/fixtures/net-gvisor-2023.transcript.json) yet still has
 * network namespaces, so the checks then run in `unshare --net` namespaces instead.
 */
export type ScratchNamespace =
  { readonly kind: "named"; readonly name: string } | { readonly kind: "unshared" };

export interface ScratchNamespaceFacts {
  /** `ip netns add`; when it fails, the checks ran under `unshare --net`. */
  readonly named: Check;
  readonly method: "ip-netns" | "unshare";
  /** Nothing left behind: the named namespace is gone (unshared ones die with their process). */
  readonly cleanup: Check;
}

export function runNet(io: ProbeIO, argv: readonly string[]): Promise<CommandResult> {
  return io.run(argv, { timeoutMs: NET_COMMAND_TIMEOUT_MS });
}

export async function createScratchNamespace(
  io: ProbeIO,
  label: string,
): Promise<{ scratch: ScratchNamespace; named: Check; remove: () => Promise<Check> }> {
  const name = io.scratchName(label);
  const named = fromToolCommand(await runNet(io, ["ip", "netns", "add", name]));
  const remove = async (): Promise<Check> => {
    const deleted = fromToolCommand(await runNet(io, ["ip", "netns", "delete", name]));
    // The namespace file is what would leak, so its absence is the proof, whatever `ip netns
    // delete` said: iproute2 removes the file itself when `ip netns add` fails half way.
    const left = await io.kind(`/run/netns/${name}`);
    if (!left.ok && left.code === "ENOENT") return YES;
    return isYes(deleted) ? no("EEXIST", `/run/netns/${name} is still there`) : deleted;
  };
  return { scratch: isYes(named) ? { kind: "named", name } : { kind: "unshared" }, named, remove };
}

/** argv that runs `argv` inside the scratch namespace. Each unshared run gets a fresh one. */
export function inScratch(scratch: ScratchNamespace, argv: readonly string[]): string[] {
  if (scratch.kind === "unshared") return ["unshare", "--net", "--", ...argv];
  // `ip -n` only switches namespace; `ip netns exec` also remounts /sys, which plain ip needn't.
  if (argv[0] === "ip") return ["ip", "-n", scratch.name, ...argv.slice(1)];
  return ["ip", "netns", "exec", scratch.name, ...argv];
}

export interface IpForwardFacts {
  /** `/proc/sys/net/ipv4/ip_forward` of the namespace doctor runs in, or null if unreadable. */
  readonly value: "0" | "1" | null;
  readonly readError?: string;
  /** Writing `1` in the scratch namespace; doctor never changes the caller's own namespace. */
  readonly writableInScratch: Check;
}

export interface NetworkFacts {
  readonly scratchNamespace: ScratchNamespaceFacts;
  readonly loopbackUp: Check;
  readonly veth: Check;
  readonly bridge: Check;
  /** The bridge CNI plugin sets its bridge promiscuous; gVisor answers EINVAL (findings row 10). */
  readonly bridgePromiscuous: Check;
  readonly vethPromiscuous: Check;
  readonly vethOnBridge: Check;
  readonly linkUp: Check;
  readonly address: Check;
  /** A plain route through a gateway, as a CNI plugin without source hints adds it. */
  readonly routeViaGateway: Check;
  readonly routeDelete: Check;
  /** The ptp plugin's routes carry a preferred source; gVisor answers EOPNOTSUPP (findings row 10). */
  readonly routeWithSource: Check;
  readonly ipForward: IpForwardFacts;
}

// Link names live inside the scratch namespace only, so fixed names cannot clash with the host's.
const VETH_A = "skveth0";
const VETH_B = "skveth1";
const BRIDGE = "skbr0";
// 10.254.0.0/16 is not routed anywhere from here; the addresses exist only in the scratch namespace.
const ADDRESS = "10.254.1.1";
const SUBNET = "10.254.1.0/24";
const GATEWAY = "10.254.1.254";
const FAR_SUBNET = "10.254.9.0/24";

type StepName = Exclude<keyof NetworkFacts, "scratchNamespace" | "ipForward"> | "ipForwardWrite";

interface Step {
  readonly name: StepName;
  /** Run only if this earlier step passed. */
  readonly needs?: StepName;
  readonly argv: readonly string[];
}

/** Each step builds on the ones before it, as a CNI plugin's ADD does. */
const STEPS: readonly Step[] = [
  { name: "loopbackUp", argv: ["ip", "link", "set", "lo", "up"] },
  { name: "veth", argv: ["ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B] },
  { name: "bridge", argv: ["ip", "link", "add", BRIDGE, "type", "bridge"] },
  {
    name: "bridgePromiscuous",
    needs: "bridge",
    argv: ["ip", "link", "set", BRIDGE, "promisc", "on"],
  },
  { name: "vethPromiscuous", needs: "veth", argv: ["ip", "link", "set", VETH_A, "promisc", "on"] },
  { name: "vethOnBridge", needs: "bridge", argv: ["ip", "link", "set", VETH_A, "master", BRIDGE] },
  { name: "linkUp", needs: "veth", argv: ["ip", "link", "set", VETH_B, "up"] },
  { name: "address", needs: "linkUp", argv: ["ip", "addr", "add", `${ADDRESS}/24`, "dev", VETH_B] },
  {
    name: "routeViaGateway",
    needs: "address",
    argv: ["ip", "route", "add", FAR_SUBNET, "via", GATEWAY, "dev", VETH_B],
  },
  // The ptp plugin's sequence (containernetworking/plugins plugins/main/ptp/ptp.go
  // setupContainerVeth): drop the subnet route the address brought, then route the gateway /32
  // on-link with the pod address as preferred source.
  { name: "routeDelete", needs: "address", argv: ["ip", "route", "del", SUBNET, "dev", VETH_B] },
  {
    name: "routeWithSource",
    needs: "address",
    argv: ["ip", "route", "add", `${GATEWAY}/32`, "dev", VETH_B, "scope", "link", "src", ADDRESS],
  },
  // procps sysctl reports a refused write on stderr yet exits 0; a shell redirect fails honestly.
  { name: "ipForwardWrite", argv: ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"] },
];

/** Quotes a word for sh: everything inside single quotes is literal except the quote itself. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

const STEP_MARK = "@@sandkube-step";

/**
 * All steps in one `unshare --net` shell, since an unshared namespace lives only as long as its
 * process. Each step's exit status and stderr come back after a marker line.
 */
export function unsharedStepsScript(steps: readonly Step[]): string {
  const lines = steps.map((step) => `step ${step.name} ${step.argv.map(shellQuote).join(" ")}`);
  return [
    `step() { name=$1; shift; err=$("$@" 2>&1 >/dev/null); printf '${STEP_MARK} %s %s\\n%s\\n' "$name" "$?" "$err"; }`,
    ...lines,
  ].join("\n");
}

export function parseUnsharedSteps(
  stdout: string,
): Map<string, { exitCode: number; stderr: string }> {
  const results = new Map<string, { exitCode: number; stderr: string }>();
  const blocks = stdout.split(`${STEP_MARK} `).slice(1);
  for (const block of blocks) {
    const newline = block.indexOf("\n");
    const [name, status] = block.slice(0, newline < 0 ? undefined : newline).split(" ");
    if (name === undefined || status === undefined) continue;
    results.set(name, {
      exitCode: Number(status),
      // The script ends each block with one newline of its own; $(...) already dropped the step's.
      stderr: newline < 0 ? "" : block.slice(newline + 1).replace(/\n$/, ""),
    });
  }
  return results;
}

/** Creates a scratch network namespace, tries each device operation a CNI plugin needs, removes it. */
export async function probeNetwork(io: ProbeIO): Promise<NetworkFacts> {
  const forwardRead = await io.read("/proc/sys/net/ipv4/ip_forward");
  const forwardValue = forwardRead.ok ? forwardRead.value.trim() : "";
  const forward = {
    value: forwardValue === "0" || forwardValue === "1" ? forwardValue : null,
    ...(forwardRead.ok ? {} : { readError: `${forwardRead.code}: ${forwardRead.message}` }),
  } as const;

  const { scratch, named, remove } = await createScratchNamespace(io, "net");
  let results: Map<StepName, Check>;
  let cleanup: Check;
  try {
    results = await runSteps(io, scratch);
  } finally {
    cleanup = await remove();
  }
  const result = (name: StepName): Check => results.get(name) ?? notRun("step missing");
  return {
    scratchNamespace: { named, method: scratch.kind === "named" ? "ip-netns" : "unshare", cleanup },
    loopbackUp: result("loopbackUp"),
    veth: result("veth"),
    bridge: result("bridge"),
    bridgePromiscuous: result("bridgePromiscuous"),
    vethPromiscuous: result("vethPromiscuous"),
    vethOnBridge: result("vethOnBridge"),
    linkUp: result("linkUp"),
    address: result("address"),
    routeViaGateway: result("routeViaGateway"),
    routeDelete: result("routeDelete"),
    routeWithSource: result("routeWithSource"),
    ipForward: { ...forward, writableInScratch: result("ipForwardWrite") },
  };
}

async function runSteps(io: ProbeIO, scratch: ScratchNamespace): Promise<Map<StepName, Check>> {
  let unshared: Map<string, { exitCode: number; stderr: string }> | null = null;
  let unsharedFailure: Check | null = null;
  if (scratch.kind === "unshared") {
    const run = await runNet(io, inScratch(scratch, ["sh", "-c", unsharedStepsScript(STEPS)]));
    unshared = parseUnsharedSteps(run.stdout);
    if (unshared.size === 0) unsharedFailure = fromToolCommand(run);
  }
  const results = new Map<StepName, Check>();
  // Sequential on purpose: each step builds on the one before, and replays stay in order.
  for (const step of STEPS) {
    const needed = step.needs === undefined ? YES : results.get(step.needs);
    if (needed !== undefined && !isYes(needed)) {
      results.set(step.name, notRun(`${step.needs ?? ""} failed`));
      continue;
    }
    if (unshared === null) {
      results.set(step.name, fromToolCommand(await runNet(io, inScratch(scratch, step.argv))));
      continue;
    }
    const outcome = unshared.get(step.name);
    results.set(
      step.name,
      outcome === undefined
        ? (unsharedFailure ?? notRun("the unshared shell stopped before this step"))
        : fromToolCommand({
            argv: step.argv,
            exitCode: outcome.exitCode,
            stdout: "",
            stderr: outcome.stderr,
          }),
    );
  }
  return results;
}
