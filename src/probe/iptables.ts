import { commandError, fromToolCommand, notRun, type Check } from "./check.js";
import type { ProbeIO } from "./io.js";
import {
  createScratchNamespace,
  inScratch,
  runNet,
  type ScratchNamespaceFacts,
} from "./network.js";

/** The two kernels interfaces an iptables 1.8 binary can drive; `iptables -V` names one. */
export type IptablesBackend = "legacy" | "nf_tables";

export type ToolFact =
  | {
      readonly found: true;
      readonly version: string | null;
      /** For iptables binaries: the backend named in parentheses by `-V`. */
      readonly backend: IptablesBackend | null;
      /** Set when the version query itself failed, in the tool's words. */
      readonly error?: string;
    }
  | { readonly found: false; readonly error: string };

/**
 * What the rules kube-proxy, kubelet and the bridge/portmap CNI plugins write need. Each is one
 * rule appended in a scratch namespace, so a missing kernel extension shows up exactly as it would.
 */
export interface IptablesCapabilities {
  readonly filter: Check;
  /**
   * The filter table's FORWARD chain, where kube-proxy and the CNI plugins accept pod traffic.
   * gVisor from 2023 refuses any FORWARD rule with EINVAL (net-gvisor-2023 fixture), so the
   * match checks below use INPUT to test the match, not the chain.
   */
  readonly forward: Check;
  readonly nat: Check;
  /** bridge and ptp `ipMasq`; fails in gVisor (findings: no MASQUERADE). */
  readonly masquerade: Check;
  /** kube-proxy Service rules and portmap. */
  readonly dnat: Check;
  /** `-m conntrack --ctstate`, kube-proxy and the CNI plugins' masquerade chains. */
  readonly conntrack: Check;
  /** `-m comment`, on almost every rule kube-proxy and CNI plugins write. */
  readonly comment: Check;
  /** `-m addrtype --dst-type LOCAL`, kube-proxy's NodePort and local-traffic rules. */
  readonly addrtype: Check;
  /** `-j MARK --or-mark`, kube-proxy's KUBE-MARK-MASQ. */
  readonly markSet: Check;
  /** `-m mark --mark`, kube-proxy's KUBE-POSTROUTING. */
  readonly markMatch: Check;
}

export interface BackendCapabilities {
  /** The binary that drove this backend: `iptables-legacy`, `iptables-nft`, or plain `iptables`. */
  readonly binary: string;
  readonly capabilities: IptablesCapabilities;
}

export interface IptablesFacts {
  readonly tools: {
    readonly iptables: ToolFact;
    readonly iptablesLegacy: ToolFact;
    readonly iptablesNft: ToolFact;
    readonly nft: ToolFact;
  };
  /** Which backend a bare `iptables` (what kube-proxy and CNI plugins call) drives. */
  readonly defaultBackend: IptablesBackend | null;
  /** Every rule below is written inside a scratch namespace, never the caller's own. */
  readonly scratchNamespace: ScratchNamespaceFacts;
  /** Per backend, null when no binary on this machine drives it. */
  readonly legacy: BackendCapabilities | null;
  readonly nfTables: BackendCapabilities | null;
  /** `nft add table`: the nftables netlink family itself (gVisor: "Protocol not supported"). */
  readonly nftables: Check;
}

/** A rule per capability; addresses are in 10.254.0.0/16, which exists only in the scratch namespace. */
export const CAPABILITY_RULES: Readonly<Record<keyof IptablesCapabilities, readonly string[]>> = {
  filter: ["-t", "filter", "-A", "INPUT", "-s", "10.254.0.0/16", "-j", "ACCEPT"],
  forward: ["-t", "filter", "-A", "FORWARD", "-s", "10.254.0.0/16", "-j", "ACCEPT"],
  nat: ["-t", "nat", "-A", "POSTROUTING", "-s", "10.254.0.0/16", "-j", "RETURN"],
  masquerade: [
    ...["-t", "nat", "-A", "POSTROUTING", "-s", "10.254.0.0/16"],
    ...["!", "-d", "10.254.0.0/16", "-j", "MASQUERADE"],
  ],
  dnat: [
    ...["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-d", "10.254.96.1", "--dport", "443"],
    ...["-j", "DNAT", "--to-destination", "10.254.1.2:6443"],
  ],
  conntrack: [
    ...["-t", "filter", "-A", "INPUT", "-m", "conntrack"],
    ...["--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
  ],
  comment: [
    ...["-t", "filter", "-A", "INPUT", "-m", "comment"],
    ...["--comment", "sandkube doctor probe", "-j", "ACCEPT"],
  ],
  addrtype: [
    ...["-t", "nat", "-A", "PREROUTING", "-m", "addrtype"],
    ...["--dst-type", "LOCAL", "-j", "RETURN"],
  ],
  markSet: ["-t", "nat", "-A", "POSTROUTING", "-j", "MARK", "--or-mark", "0x4000"],
  markMatch: [
    ...["-t", "filter", "-A", "INPUT", "-m", "mark"],
    ...["--mark", "0x4000/0x4000", "-j", "ACCEPT"],
  ],
};

export function parseIptablesVersion(output: string): {
  version: string | null;
  backend: IptablesBackend | null;
} {
  const match = /iptables v(\d[\w.]*)(?:\s+\((legacy|nf_tables)\))?/.exec(output);
  const named = match?.[2] as IptablesBackend | undefined;
  // An nft-backed binary with no nf_tables in the kernel (gVisor) cannot even print its version:
  // "iptables: Failed to initialize nft: Protocol not supported". The message still names its backend.
  const nftFailed = /Failed to initialize nft/.test(output);
  return { version: match?.[1] ?? null, backend: named ?? (nftFailed ? "nf_tables" : null) };
}

export function parseNftVersion(output: string): string | null {
  return /nftables v(\d[\w.]*)/.exec(output)?.[1] ?? null;
}

async function probeTool(io: ProbeIO, argv: readonly string[]): Promise<ToolFact> {
  const result = await runNet(io, argv);
  if (result.failure !== undefined) return { found: false, error: commandError(result) };
  const output = `${result.stdout}\n${result.stderr}`;
  const error = result.exitCode === 0 ? {} : { error: commandError(result) };
  if (argv[0] === "nft") {
    return { found: true, version: parseNftVersion(output), backend: null, ...error };
  }
  return { found: true, ...parseIptablesVersion(output), ...error };
}

/** The binary that drives `backend`: its own variant first, else plain iptables if it drives it. */
function driverOf(
  backend: IptablesBackend,
  variant: ToolFact,
  variantName: string,
  plain: ToolFact,
): string | null {
  if (variant.found) return variantName;
  if (plain.found && plain.backend === backend) return "iptables";
  return null;
}

export async function probeIptables(io: ProbeIO): Promise<IptablesFacts> {
  const [iptables, iptablesLegacy, iptablesNft, nft] = await Promise.all([
    probeTool(io, ["iptables", "-V"]),
    probeTool(io, ["iptables-legacy", "-V"]),
    probeTool(io, ["iptables-nft", "-V"]),
    probeTool(io, ["nft", "--version"]),
  ]);
  const tools = { iptables, iptablesLegacy, iptablesNft, nft };
  const defaultBackend = iptables.found ? iptables.backend : null;
  const legacyDriver = driverOf("legacy", iptablesLegacy, "iptables-legacy", iptables);
  const nftDriver = driverOf("nf_tables", iptablesNft, "iptables-nft", iptables);

  const { scratch, named, remove } = await createScratchNamespace(io, "ipt");
  const tryInScratch = async (argv: readonly string[]): Promise<Check> =>
    fromToolCommand(await runNet(io, inScratch(scratch, argv)));

  const capabilitiesOf = async (binary: string | null): Promise<BackendCapabilities | null> => {
    if (binary === null) return null;
    const entries: [keyof IptablesCapabilities, Check][] = [];
    // One rule at a time: legacy iptables serialises on /run/xtables.lock anyway, and `-w`
    // makes a concurrent writer on the host wait instead of failing the probe.
    for (const [name, rule] of Object.entries(CAPABILITY_RULES)) {
      entries.push([
        name as keyof IptablesCapabilities,
        await tryInScratch([binary, "-w", "2", ...rule]),
      ]);
    }
    return {
      binary,
      capabilities: Object.fromEntries(entries) as Record<keyof IptablesCapabilities, Check>,
    };
  };

  let legacy: BackendCapabilities | null;
  let nfTables: BackendCapabilities | null;
  let nftables: Check;
  let cleanup: Check;
  try {
    legacy = await capabilitiesOf(legacyDriver);
    nfTables = await capabilitiesOf(nftDriver);
    nftables = nft.found
      ? await tryInScratch(["nft", "add", "table", "ip", "sandkube_probe"])
      : notRun("nft is not installed");
  } finally {
    // Deleting the namespace drops every table and rule written in it, legacy and nf_tables alike.
    cleanup = await remove();
  }
  return {
    tools,
    defaultBackend,
    scratchNamespace: { named, method: scratch.kind === "named" ? "ip-netns" : "unshare", cleanup },
    legacy,
    nfTables,
    nftables,
  };
}
