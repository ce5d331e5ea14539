import type { Adaptation } from "../plan/adaptations.js";
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
      readonly peer: string;
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
    };

export const NODE_LINK = "sandkube0";
export const NODE_LINK_PEER = "sandkube0p";

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
  current: { readonly ipForward: string | null },
): ProvisionStep[] {
  const steps: ProvisionStep[] = [];
  steps.push({
    kind: "node-link",
    because:
      "the node needs a non-loopback address that exists without any pod (the apiserver refuses a loopback " +
      "advertise address for the `kubernetes` Endpoints, and a gVisor sandbox may have only `lo`)",
    link: NODE_LINK,
    peer: NODE_LINK_PEER,
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
  return steps;
}
