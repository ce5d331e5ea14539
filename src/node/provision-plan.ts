import type { Adaptation } from "../plan/adaptations.js";
import { iptablesBackend } from "../plan/adaptations.js";
import { isYes } from "../probe/check.js";
import type { ClusterConfig } from "../plan/cluster-config.js";
import type { Facts } from "../probe/facts.js";
import { SYSCTL_CATALOG } from "../probe/sysctls.js";
import type { NodeLayout } from "./layout.js";

/**
 * One change `up` makes to the sandbox before the components start. Each names the adaptation
 * (and so the probed fact) that switched it on; `down` undoes them in reverse order.
 */
export type ProvisionStep =
  | {
      readonly kind: "node-link";
      readonly because: string;
      readonly link: string;
      /** The veth peer `up` creates with the link; null: the link exists (lo) and only gets the address. */
      readonly peer: string | null;
      readonly address: string;
      readonly mtu: number;
    }
  | { readonly kind: "ip-forward"; readonly because: string }
  | { readonly kind: "dev-kmsg"; readonly because: string }
  | {
      readonly kind: "cgroup-v1";
      readonly because: string;
      /** Each group is one hierarchy, mounted at /sys/fs/cgroup/<controllers joined by ','>. */
      readonly hierarchies: readonly (readonly string[])[];
      /** Whether /sys/fs/cgroup itself needs a tmpfs first. */
      readonly mountRoot: boolean;
    }
  | {
      readonly kind: "proc-sys-copy";
      readonly because: string;
      readonly scratch: string;
      /** Entries relative to /proc/sys, written into the copy with these values. */
      readonly entries: Readonly<Record<string, string>>;
      /** Written only where the copy lacks the entry. */
      readonly fallbackEntries: Readonly<Record<string, string>>;
    }
  | { readonly kind: "shared-dir"; readonly because: string; readonly path: string }
  | {
      readonly kind: "iptables-legacy-path";
      readonly because: string;
      readonly dir: string;
      /** iptables name -> the legacy binary it points at. */
      readonly links: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: "egress-nat";
      readonly because: string;
      /** The iptables binary whose backend works here (legacy in gVisor). */
      readonly iptables: string;
      /** A chain of sandkube's own in the nat table, jumped to from POSTROUTING. */
      readonly chain: string;
      /** Each rule's arguments after `-A <chain>`, in order. */
      readonly rules: readonly (readonly string[])[];
    };

/** An interface outside the node's own links and pod links, with the address it reaches out by. */
export interface Uplink {
  readonly name: string;
  readonly address: string;
}

export const EGRESS_CHAIN = "SANDKUBE-EGRESS";

import { NODE_LINK, NODE_LINK_PEER } from "../plan/cluster-config.js";
export { NODE_LINK, NODE_LINK_PEER };

/** The folder put first on the components' PATH when iptables must be the legacy backend. */
export function iptablesLegacyDir(layout: NodeLayout): string {
  return `${layout.dataDir}/run/iptables-legacy`;
}

function adaptation(adaptations: readonly Adaptation[], id: string): Adaptation | undefined {
  return adaptations.find((a) => a.id === id);
}

function tunableEntries(facts: Facts): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const spec of SYSCTL_CATALOG) {
    if (spec.desired === undefined || spec.why !== "setupKernelTunables") continue;
    const fact = facts.sysctls.find((s) => s.name === spec.name);
    const usable =
      fact !== undefined &&
      fact.exists &&
      fact.readable.result !== "no" &&
      fact.writable.result !== "no";
    if (!usable) entries[spec.name] = spec.desired;
  }
  return entries;
}

/**
 * Pure: the provisioning `up` applies, in order. The order matters: ip_forward is written before
 * the /proc/sys copy is laid over /proc/sys, since writes into the copy never reach the kernel.
 */
export function planProvisioning(
  facts: Facts,
  adaptations: readonly Adaptation[],
  config: ClusterConfig,
  layout: NodeLayout,
  current: { readonly ipForward: string | null; readonly uplinks: readonly Uplink[] },
): ProvisionStep[] {
  const steps: ProvisionStep[] = [];
  const nodeAddressWhy =
    "the node needs a non-loopback address that exists without any pod (the apiserver refuses a loopback " +
    "advertise address for the `kubernetes` Endpoints, and a gVisor sandbox may have only `lo`)";
  const noVeth = adaptation(adaptations, "cni-host-network");
  steps.push({
    kind: "node-link",
    because:
      config.nodeLink === NODE_LINK || noVeth === undefined
        ? nodeAddressWhy
        : `${nodeAddressWhy}; it goes on ${config.nodeLink} because ${noVeth.because}`,
    link: config.nodeLink,
    peer: config.nodeLink === NODE_LINK ? NODE_LINK_PEER : null,
    address: config.nodeIP,
    mtu: config.mtu,
  });
  if (current.ipForward !== "1") {
    steps.push({
      kind: "ip-forward",
      because: `/proc/sys/net/ipv4/ip_forward is ${current.ipForward ?? "unreadable"}; pod traffic is routed through the node`,
    });
  }
  const kmsg = adaptation(adaptations, "dev-kmsg");
  if (kmsg !== undefined) steps.push({ kind: "dev-kmsg", because: kmsg.because });
  const cgroups = adaptation(adaptations, "mount-cgroups");
  if (cgroups !== undefined) {
    steps.push({
      kind: "cgroup-v1",
      because: cgroups.because,
      hierarchies: facts.cgroups.scratchV1Mounts
        .filter((m) => m.mount.result === "yes")
        .map((m) => m.controllers),
      mountRoot: true,
    });
  }
  const tunables = adaptation(adaptations, "kubelet-tunables");
  const entries = tunableEntries(facts);
  if (tunables !== undefined || Object.keys(entries).length > 0) {
    steps.push({
      kind: "proc-sys-copy",
      because: tunables?.because ?? "kernel/osrelease is missing",
      scratch: `${layout.provisionDir}/proc-sys`,
      entries,
      // runsc old has no kernel/osrelease, and kubelet's safe-sysctl check reads it
      // (docs/gvisor-blockers.md B2, "Related, not fatal").
      fallbackEntries:
        facts.kernel.release === null ? {} : { "kernel/osrelease": facts.kernel.release },
    });
  }
  // kubelet makes its root dir rshared (MS_SHARED|MS_REC), which runsc before 2024 refuses with
  // EINVAL; hostutil.DoMakeRShared skips the mount when the dir is already on a shared mount, and
  // a plain bind plus a non-recursive make-shared works on every kernel seen
  // (docs/gvisor-blockers.md B6).
  const propagation = adaptation(adaptations, "mount-propagation");
  if (propagation !== undefined) {
    steps.push({ kind: "shared-dir", because: propagation.because, path: layout.kubeletRoot });
  }
  const legacy = adaptation(adaptations, "iptables-legacy");
  const legacyBinary = facts.iptables.legacy?.binary;
  if (legacy !== undefined && legacyBinary !== undefined) {
    const restore = legacyBinary.replace(/iptables-legacy$/, "iptables-legacy-restore");
    const save = legacyBinary.replace(/iptables-legacy$/, "iptables-legacy-save");
    steps.push({
      kind: "iptables-legacy-path",
      because: legacy.because,
      dir: iptablesLegacyDir(layout),
      links: { iptables: legacyBinary, "iptables-restore": restore, "iptables-save": save },
    });
  }
  const egress = egressStep(facts, adaptations, config, current.uplinks);
  if (egress !== null) steps.push(egress);
  return steps;
}

/**
 * Pods leave the sandbox with the node's address, since nothing outside routes the pod range back.
 * Where MASQUERADE exists one rule does it. gVisor registers no MASQUERADE target (the
 * `no-ip-masq` adaptation), so each uplink gets SNAT to its own address instead; gVisor's SNAT
 * also refuses a rule without a protocol (EINVAL, seen in the lab), hence one rule per protocol.
 * Traffic between pods and to the node is never rewritten.
 */
export function egressStep(
  facts: Facts,
  adaptations: readonly Adaptation[],
  config: ClusterConfig,
  uplinks: readonly Uplink[],
): ProvisionStep | null {
  // Pods that can only share the node's network namespace leave by the node's own address.
  if (adaptation(adaptations, "cni-host-network") !== undefined) return null;
  const backend = iptablesBackend(facts);
  if (backend === null || !isYes(backend.capabilities.nat)) return null;
  const keep = ["-d", config.clusterCIDR, "-j", "RETURN"];
  const noMasquerade = adaptation(adaptations, "no-ip-masq");
  if (noMasquerade === undefined) {
    return {
      kind: "egress-nat",
      because:
        "pod addresses are private to the node; replies must come back to the node's address",
      iptables: backend.binary,
      chain: EGRESS_CHAIN,
      rules: [keep, ["-s", config.clusterCIDR, "-j", "MASQUERADE"]],
    };
  }
  if (uplinks.length === 0) return null;
  const snat = uplinks.flatMap((uplink) =>
    ["tcp", "udp"].map((protocol) => [
      "-s",
      config.clusterCIDR,
      "-o",
      uplink.name,
      "-p",
      protocol,
      "-j",
      "SNAT",
      "--to-source",
      uplink.address,
    ]),
  );
  return {
    kind: "egress-nat",
    because: `${noMasquerade.because}; SNAT to each uplink's address instead`,
    iptables: backend.binary,
    chain: EGRESS_CHAIN,
    rules: [keep, ...snat],
  };
}

/** Links that are the node's own or a pod's (sandkube-cni names them sk + 11 hex digits). */
export function isClusterLink(name: string): boolean {
  return (
    name === "lo" || name === NODE_LINK || name === NODE_LINK_PEER || /^sk[0-9a-f]{11}$/.test(name)
  );
}

/** Pure: uplinks from `ip -j -4 addr show`; addresses inside the cluster's ranges are skipped. */
export function uplinksFromIpJson(
  json: string,
  insideCluster: (address: string) => boolean,
): Uplink[] {
  const links = JSON.parse(json) as {
    ifname?: string;
    addr_info?: { family?: string; local?: string }[];
  }[];
  const uplinks: Uplink[] = [];
  for (const link of links) {
    const name = link.ifname;
    if (name === undefined || isClusterLink(name)) continue;
    const address = (link.addr_info ?? []).find(
      (info) => info.family === "inet" && info.local !== undefined && !insideCluster(info.local),
    )?.local;
    if (address !== undefined) uplinks.push({ name, address });
  }
  return uplinks;
}
