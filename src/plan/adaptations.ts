import { failureText, isYes, type Check } from "../probe/check.js";
import type { Facts } from "../probe/facts.js";
import type { IptablesCapabilities, BackendCapabilities } from "../probe/iptables.js";
import type { NamespaceType } from "../probe/namespaces.js";
import type { SysctlFact } from "../probe/sysctls.js";
import { SYSCTL_CATALOG } from "../probe/sysctls.js";

/** A change sandkube makes to how Kubernetes runs, and the probed fact that forces it. */
export interface Adaptation {
  readonly id: string;
  readonly title: string;
  /** The fact, stated as observed. */
  readonly because: string;
  /** Paths into Facts that triggered the rule, e.g. `devKmsg.exists`. */
  readonly facts: readonly string[];
  /** What would break in Kubernetes without the adaptation. */
  readonly meaning: string;
  /** What sandkube does about it. */
  readonly action: string;
}

export interface PlanOptions {
  /** kubelet's minor version: from 1.35 kubelet refuses cgroup v1 unless failCgroupV1 is false. */
  readonly kubeletMinor: number;
}

export const DEFAULT_PLAN_OPTIONS: PlanOptions = { kubeletMinor: 34 };

function desiredValue(name: string): string {
  return SYSCTL_CATALOG.find((s) => s.name === name)?.desired ?? "?";
}

const KUBELET_TUNABLES = new Set(
  SYSCTL_CATALOG.filter((s) => s.why === "setupKernelTunables").map((s) => s.name),
);

type Rule = (facts: Facts, options: PlanOptions) => Adaptation | null;

const failed = (check: Check): boolean => check.result === "no";
const describe = (check: Check): string =>
  check.result === "yes" ? "works" : check.result === "no" ? check.code : "not tried";

function sysctl(facts: Facts, name: string): SysctlFact | undefined {
  return facts.sysctls.find((s) => s.name === name);
}

function sysctlState(fact: SysctlFact): string {
  if (!fact.exists) return "missing";
  if (fact.readable.result === "no") return `unreadable (${fact.readable.code})`;
  if (fact.writable.result === "no") return `read-only (${fact.writable.code})`;
  return "present";
}

function namespace(facts: Facts, type: NamespaceType) {
  return facts.namespaces.find((n) => n.type === type);
}

/** 4.11 is where containerd's CRI plugin wants unprivileged ports and ICMP to exist. */
export function releaseAtLeast(release: string | null, major: number, minor: number): boolean {
  const match = /^(\d+)\.(\d+)/.exec(release ?? "");
  if (match === null) return false;
  const [have, haveMinor] = [Number(match[1]), Number(match[2])];
  return have > major || (have === major && haveMinor >= minor);
}

const kubeletTunables: Rule = (facts) => {
  const bad = facts.sysctls.filter(
    (s) => KUBELET_TUNABLES.has(s.name) && (!s.exists || failed(s.readable) || failed(s.writable)),
  );
  if (bad.length === 0) return null;
  return {
    id: "kubelet-tunables",
    title: "Provide the /proc/sys tunables kubelet checks",
    because: bad.map((s) => `/proc/sys/${s.name} is ${sysctlState(s)}`).join("; "),
    facts: bad.map((s) => `sysctls[${s.name}]`),
    meaning:
      "kubelet's setupKernelTunables reads and then writes each of these; an unreadable one makes " +
      "ContainerManager fail to start.",
    // Checked inside runsc: a bind mount over /proc/sys/kernel in a private mount namespace works.
    action:
      "Run kubelet in a private mount namespace where each affected /proc/sys directory is a " +
      "bind-mounted copy that adds the missing files with kubelet's values (" +
      bad.map((s) => `${s.name}=${desiredValue(s.name)}`).join(", ") +
      "); set protectKernelDefaults: false.",
  };
};

const devKmsg: Rule = (facts) => {
  if (facts.devKmsg.exists) return null;
  return {
    id: "dev-kmsg",
    title: "Bind /dev/null at /dev/kmsg",
    because: `/dev/kmsg is absent (${facts.devKmsg.code ?? "unknown"})`,
    facts: ["devKmsg.exists"],
    meaning: "kubelet's OOM watcher opens /dev/kmsg at start and kubelet exits when it cannot.",
    action: "Bind-mount /dev/null onto /dev/kmsg in the node's mount namespace.",
  };
};

const snapshotter: Rule = (facts) => {
  const { overlay } = facts;
  if (overlay.kernelSupports && !failed(overlay.onDataDir)) return null;
  const because = overlay.kernelSupports
    ? `overlayfs on ${overlay.dataDir} (${overlay.dataDirFsType ?? "unknown fs"}) fails: ${describe(overlay.onDataDir)}`
    : "/proc/filesystems does not list overlay";
  const tmpfsNote =
    overlay.tmpfsUpper.result === "yes"
      ? " (overlayfs with a tmpfs upper layer does work here, but would keep every image layer in memory)"
      : "";
  return {
    id: "native-snapshotter",
    title: "Use containerd's native snapshotter",
    because,
    facts: ["overlay.kernelSupports", "overlay.onDataDir"],
    meaning: "containerd's default overlayfs snapshotter cannot mount container root filesystems.",
    action: `Set containerd's CRI snapshotter to "native" (plain copies)${tmpfsNote}.`,
  };
};

/** Pure: MS_REC is refused (EINVAL for a recursive change of propagation, as for `rbind`). */
export function refusesRecursiveMounts(facts: Facts): boolean {
  const { makePrivateInNewNamespace } = facts.mountPropagation;
  return makePrivateInNewNamespace.result === "no" && makePrivateInNewNamespace.code === "EINVAL";
}

/** Pure: the overlayfs snapshotter can mount container roots on the data dir. */
export function overlayUsable(facts: Facts): boolean {
  return facts.overlay.kernelSupports && !failed(facts.overlay.onDataDir);
}

// containerd's applier mounts a layer's snapshot unless it is an overlay (core/diff/apply/
// apply_linux.go), and both snapshotters hand the first layer out as `rbind`: such a kernel can
// unpack no image through containerd (docs/gvisor-blockers.md B5). Only with overlayfs: native
// hands every container root out as `rbind` too, which the shim mounts (a blocker, verdict.ts).
const recursiveBind: Rule = (facts) => {
  if (!refusesRecursiveMounts(facts) || !overlayUsable(facts)) return null;
  return {
    id: "no-recursive-bind",
    title: "Unpack images without mounts",
    because: `making / recursively private fails with EINVAL (${failureText(facts.mountPropagation.makePrivateInNewNamespace)}): this kernel refuses MS_REC`,
    facts: ["mountPropagation.makePrivateInNewNamespace", "overlay.onDataDir"],
    meaning:
      "containerd mounts every image's first layer as a recursive bind to unpack it, so no image could be unpacked, imported or pulled.",
    action:
      "sandkube imports images without unpacking them and unpacks each layer itself into the overlayfs " +
      "snapshotter (tar into the snapshot's directory, committed under its chain id); a container's own " +
      "snapshot is an overlay mount, which this kernel accepts. Images pulled from a registry still fail to " +
      "unpack here: save them to a tarball elsewhere and `sandkube images import` it.",
  };
};

const cgroupV1: Rule = (facts, options) => {
  const { mode, scratchV1MountCheck } = facts.cgroups;
  const v1Only =
    mode === "v1" || mode === "hybrid" || (mode === "none" && scratchV1MountCheck.result === "yes");
  if (!v1Only) return null;
  const since =
    options.kubeletMinor >= 35
      ? "kubelet 1.35+ refuses cgroup v1 by default"
      : "kubelet 1.35+ would refuse cgroup v1 by default";
  return {
    id: "cgroup-v1",
    title: "Run kubelet on cgroup v1 with the cgroupfs driver",
    because:
      mode === "none"
        ? facts.cgroups.cgroup2Supported
          ? "no cgroup hierarchy is mounted; sandkube mounts v1 hierarchies, which work here"
          : "no cgroup hierarchy is mounted and /proc/filesystems has no cgroup2: only v1 is possible"
        : `cgroups are ${mode}: /sys/fs/cgroup is not a cgroup2 mount`,
    facts: ["cgroups.mode"],
    meaning: `runc and kubelet will use the v1 hierarchies; ${since}, and there is no systemd to be the cgroup driver.`,
    action:
      "kubelet config: failCgroupV1: false, cgroupDriver: cgroupfs; containerd runtime SystemdCgroup = false.",
  };
};

const cgroupMount: Rule = (facts) => {
  const { mode, scratchV1MountCheck } = facts.cgroups;
  if (mode !== "none" || scratchV1MountCheck.result !== "yes") return null;
  return {
    id: "mount-cgroups",
    title: "Mount cgroup v1 hierarchies",
    because: `no cgroup filesystem is mounted; v1 mounts of ${facts.cgroups.scratchV1Mounts
      .filter((m) => m.mount.result === "yes")
      .map((m) => m.controllers.join(","))
      .join(" ")} work`,
    facts: ["cgroups.mode", "cgroups.scratchV1MountCheck"],
    meaning:
      "kubelet and runc look up each controller's mount point in /proc/self/mountinfo and fail without one.",
    action:
      "Mount each v1 hierarchy under /sys/fs/cgroup/<controllers> in the node's mount namespace.",
  };
};

const cgroupsUnusable: Rule = (facts) => {
  const hierarchies = [
    ...facts.cgroups.hierarchies,
    ...facts.cgroups.scratchV1Mounts.flatMap((m) => (m.hierarchy === null ? [] : [m.hierarchy])),
  ];
  const broken = hierarchies.filter((h) => failed(h.createChild) || failed(h.moveProcess));
  if (broken.length === 0) return null;
  return {
    id: "cgroups-unenforced",
    title: "Run pods without per-pod cgroups",
    because: broken
      .map(
        (h) =>
          `${h.mountPoint}: create child ${describe(h.createChild)}, move process ${describe(h.moveProcess)}`,
      )
      .join("; "),
    facts: ["cgroups.hierarchies[].createChild", "cgroups.hierarchies[].moveProcess"],
    meaning:
      "kubelet cannot build its QoS cgroup tree and runc cannot place containers in cgroups.",
    action:
      "kubelet config: cgroupsPerQOS: false, enforceNodeAllocatable: []; sandkube-runtime leaves processes in the node's cgroup.",
  };
};

const unprivilegedPorts: Rule = (facts) => {
  const missing = ["net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range"]
    .map((name) => sysctl(facts, name))
    .filter((s): s is SysctlFact => s !== undefined && (!s.exists || failed(s.writable)));
  const oldKernel = !releaseAtLeast(facts.kernel.release, 4, 11);
  if (missing.length === 0 && !oldKernel) return null;
  const reasons = missing.map((s) => `/proc/sys/${s.name} is ${sysctlState(s)}`);
  if (oldKernel) reasons.push(`kernel release ${facts.kernel.release ?? "unknown"} is below 4.11`);
  return {
    id: "no-unprivileged-ports-icmp",
    title: "Turn off containerd's unprivileged ports and ICMP",
    because: reasons.join("; "),
    facts: [...missing.map((s) => `sysctls[${s.name}]`), ...(oldKernel ? ["kernel.release"] : [])],
    meaning:
      "With either option on, containerd's CRI plugin refuses to load on kernels below 4.11 and runc " +
      "fails writing these sysctls into every pod.",
    action:
      "containerd CRI config: enable_unprivileged_ports = false, enable_unprivileged_icmp = false.",
  };
};

const capLastCap: Rule = (facts) => {
  const fact = sysctl(facts, "kernel/cap_last_cap");
  if (fact === undefined || (fact.exists && !failed(fact.readable))) return null;
  return {
    id: "cap-last-cap",
    title: "sandkube-runtime tolerates a missing cap_last_cap",
    because: `/proc/sys/kernel/cap_last_cap is ${sysctlState(fact)}`,
    facts: ["sysctls[kernel/cap_last_cap]"],
    meaning: "runc 1.2+ fails every container init when it cannot read the last capability number.",
    action: "Use sandkube-runtime, which falls back to the highest capability it knows.",
  };
};

const cgroupNamespace: Rule = (facts) => {
  const ns = namespace(facts, "cgroup");
  if (ns === undefined || !failed(ns.create)) return null;
  return {
    id: "no-cgroup-namespace",
    title: "Skip the cgroup namespace",
    because: `unshare(CLONE_NEWCGROUP) fails: ${describe(ns.create)}`,
    facts: ["namespaces[cgroup].create"],
    meaning: "A runtime that honours a cgroup namespace in the spec fails container creation.",
    action: "sandkube-runtime drops the cgroup namespace from every spec it runs.",
  };
};

// CRI starts a pod's app containers in the pause container's ipc, uts and net namespaces, named by
// path (/proc/<sandboxPid>/ns/*), and exec joins all of a container's namespaces the same way.
const JOINED_NAMESPACES: readonly NamespaceType[] = ["mnt", "pid", "net", "uts", "ipc"];

const namespacesWithoutSetns: Rule = (facts) => {
  const unjoinable = JOINED_NAMESPACES.flatMap((type) => {
    const ns = namespace(facts, type);
    return ns?.create.result === "yes" && failed(ns.joinByPath)
      ? [{ type, code: describe(ns.joinByPath) }]
      : [];
  });
  if (unjoinable.length === 0) return null;
  return {
    id: "no-setns",
    title: "Fork into a container's namespaces instead of joining them",
    because: unjoinable.map((n) => `setns(${n.type}) by path fails: ${n.code}`).join("; "),
    facts: unjoinable.map((n) => `namespaces[${n.type}].joinByPath`),
    meaning:
      "runc cannot start a pod's app containers (they join the sandbox's namespaces) or exec into any container.",
    action:
      "sandkube-runtime forks each exec'd process from an agent inside the container, and each app container from a keeper of the pod sandbox's namespaces; pods that share a pid namespace, or have a network namespace of their own, cannot run.",
  };
};

const sharedMountTable: Rule = (facts) => {
  const mnt = namespace(facts, "mnt");
  if (mnt === undefined || mnt.inProc || mnt.create.result !== "yes") return null;
  return {
    id: "no-mount-namespace",
    title: "Root each container in a chroot and take its mounts down at delete",
    because:
      "unshare(CLONE_NEWNS) succeeds, but /proc/self/ns/mnt does not exist: nothing shows a mount namespace of its own (gVisor before Aug 2023 ignores CLONE_NEWNS)",
    facts: ["namespaces[mnt].inProc", "namespaces[mnt].create"],
    meaning:
      "Every container's mounts land in one mount table and outlive it, and pivot_root cannot give a container a root of its own.",
    action:
      "sandkube-runtime roots each container in a chroot and withholds CAP_SYS_CHROOT from it, and unmounts the container's mounts at delete.",
  };
};

const keyring: Rule = (facts) => {
  if (!failed(facts.keyrings.joinSessionKeyring)) return null;
  return {
    id: "no-new-keyring",
    title: "Do not create a session keyring per container",
    because: `joining a new session keyring fails: ${describe(facts.keyrings.joinSessionKeyring)}`,
    facts: ["keyrings.joinSessionKeyring"],
    meaning: 'runc fails container init with "unable to join session keyring".',
    action:
      "sandkube-runtime behaves as runc with NoNewKeyring: containers share the caller's keyring.",
  };
};

const propagation: Rule = (facts) => {
  const { root, makePrivateInNewNamespace, makeSharedInNewNamespace } = facts.mountPropagation;
  const cannotChange = failed(makePrivateInNewNamespace) || failed(makeSharedInNewNamespace);
  if (root === "shared" && !cannotChange) return null;
  const parts: string[] = [];
  if (root !== "shared") parts.push(`/ is mounted ${root}`);
  if (failed(makePrivateInNewNamespace)) {
    parts.push(
      `making / private in a new mount namespace fails: ${describe(makePrivateInNewNamespace)}`,
    );
  }
  if (failed(makeSharedInNewNamespace)) {
    parts.push(
      `making / shared in a new mount namespace fails: ${describe(makeSharedInNewNamespace)}`,
    );
  }
  return {
    id: "mount-propagation",
    title: cannotChange
      ? "Live with fixed mount propagation"
      : "Make kubelet's root a shared mount",
    because: parts.join("; "),
    facts: [
      "mountPropagation.root",
      "mountPropagation.makePrivateInNewNamespace",
      "mountPropagation.makeSharedInNewNamespace",
    ],
    meaning:
      'kubelet\'s volume mounts must propagate into containers; with a private / they never arrive ("failed to setup bind mounts").',
    action: cannotChange
      ? "Propagation cannot be changed here: sandkube-runtime leaves rootfs propagation unchanged and makes each " +
        "container's bind mounts inside its own mount namespace; volumes asking for Bidirectional or " +
        "HostToContainer propagation are refused with this reason."
      : "Bind kubelet's root dir onto itself and make it shared (non-recursively, which every kernel seen " +
        "accepts), so the volume mounts kubelet makes under it reach the containers.",
  };
};

/**
 * The network and iptables probes need root for their scratch namespace; as anyone else they fail
 * for lack of privilege, which says nothing about the machine, so no rule reads them then.
 */
function networkProbed(facts: Facts): boolean {
  return facts.identity.isRoot;
}

/**
 * What the probes prove about the nf_tables backend. A check that did not run (nft not installed,
 * no iptables-nft binary) proves nothing either way, so only a "no" counts as failing: on a host
 * without the nft tool, iptables-nft writing every rule kind is proof enough that nf_tables works.
 */
type NfTablesEvidence =
  | { readonly verdict: "works" }
  | { readonly verdict: "fails"; readonly because: string; readonly facts: readonly string[] }
  | { readonly verdict: "unknown" };

function nfTablesEvidence(facts: Facts): NfTablesEvidence {
  const { nfTables, nftables } = facts.iptables;
  if (nftables.result === "no")
    return {
      verdict: "fails",
      because: `nftables fails: ${failureText(nftables)}`,
      facts: ["iptables.nftables"],
    };
  const filter = nfTables?.capabilities.filter;
  if (nfTables !== null && filter !== undefined && filter.result === "no")
    return {
      verdict: "fails",
      because: `${nfTables.binary} cannot write a filter rule: ${failureText(filter)}`,
      facts: ["iptables.nfTables.capabilities.filter"],
    };
  if (filter !== undefined && isYes(filter)) return { verdict: "works" };
  return { verdict: "unknown" };
}

/** The iptables backend the node's rules go through: nf_tables where it works, else legacy. */
export function iptablesBackend(facts: Facts): BackendCapabilities | null {
  return chosenBackend(facts);
}

function chosenBackend(facts: Facts): BackendCapabilities | null {
  const { legacy, nfTables } = facts.iptables;
  if (nfTables !== null && nfTablesEvidence(facts).verdict === "works") return nfTables;
  return legacy ?? nfTables;
}

const iptablesLegacy: Rule = (facts) => {
  if (!networkProbed(facts)) return null;
  const { defaultBackend, legacy } = facts.iptables;
  const evidence = nfTablesEvidence(facts);
  if (
    defaultBackend !== "nf_tables" ||
    evidence.verdict !== "fails" ||
    legacy === null ||
    !isYes(legacy.capabilities.filter)
  )
    return null;
  return {
    id: "iptables-legacy",
    title: "Use iptables-legacy",
    because: `iptables defaults to nf_tables, but ${evidence.because}`,
    facts: ["iptables.defaultBackend", ...evidence.facts, "iptables.legacy"],
    meaning: "kubelet, kube-proxy and CNI plugins that call iptables would fail on every rule.",
    action: `Put a directory first on the node components' PATH where iptables is ${legacy.binary}.`,
  };
};

const SERVICE_PROXY_NEEDS: readonly (keyof IptablesCapabilities)[] = [
  "nat",
  "dnat",
  "masquerade",
  "conntrack",
  "comment",
  "addrtype",
  "markSet",
  "markMatch",
];

const SERVICE_PROXY_ACTION =
  "Do not run kube-proxy; sandkube's user-space Service proxy forwards ClusterIP and NodePort traffic.";

/** The Facts path of the backend chosenBackend picked. */
function backendPath(facts: Facts, backend: BackendCapabilities): string {
  return backend === facts.iptables.legacy ? "iptables.legacy" : "iptables.nfTables";
}

const serviceProxy: Rule = (facts) => {
  if (!networkProbed(facts)) return null;
  const backend = chosenBackend(facts);
  if (backend === null) {
    return {
      id: "service-proxy",
      title: "Use sandkube's own Service proxy instead of kube-proxy",
      because: "no iptables binary drives any backend",
      facts: ["iptables.legacy", "iptables.nfTables"],
      meaning: "kube-proxy's iptables mode cannot write a single rule; Services would get none.",
      action: SERVICE_PROXY_ACTION,
    };
  }
  const missing = SERVICE_PROXY_NEEDS.filter((k) => !isYes(backend.capabilities[k]));
  if (missing.length === 0) return null;
  return {
    id: "service-proxy",
    title: "Use sandkube's own Service proxy instead of kube-proxy",
    because: `${backend.binary} cannot write: ${missing.join(", ")}`,
    facts: missing.map((k) => `${backendPath(facts, backend)}.capabilities.${k}`),
    meaning: "kube-proxy's iptables mode needs every one of these; Services would get no rules.",
    action: SERVICE_PROXY_ACTION,
  };
};

const noMasquerade: Rule = (facts) => {
  if (!networkProbed(facts)) return null;
  const backend = chosenBackend(facts);
  const masquerade = backend?.capabilities.masquerade;
  if (backend === null || masquerade === undefined || isYes(masquerade)) return null;
  return {
    id: "no-ip-masq",
    title: "CNI without IP masquerading",
    because: `${backend.binary} -j MASQUERADE fails: ${failureText(masquerade).split("\n")[0] ?? ""}`,
    facts: [`${backendPath(facts, backend)}.capabilities.masquerade`],
    meaning: "The bridge plugin's ipMasq rule fails, and with it every pod's network setup.",
    action:
      "sandkube-cni sets no masquerade rule; `up` SNATs pod traffic (tcp and udp) to each uplink's own address instead.",
  };
};

const cniDevices: Rule = (facts) => {
  if (!networkProbed(facts)) return null;
  const { bridgePromiscuous, veth, bridge, routeWithSource } = facts.network;
  if (failed(veth)) {
    return {
      id: "cni-host-network",
      title: "Pods share the node's network namespace",
      because: `creating a veth pair fails: ${failureText(veth)}`,
      facts: ["network.veth"],
      meaning: "No CNI plugin can give a pod its own interface: only hostNetwork pods can run.",
      action:
        "None possible: sandkube-cni's ADD fails naming this fact, so a pod with its own network namespace " +
        "never starts; `up` says so, and hostNetwork pods still run.",
    };
  }
  const reasons: string[] = [];
  const paths: string[] = [];
  if (failed(bridgePromiscuous)) {
    reasons.push(`promiscuous mode on a bridge fails: ${failureText(bridgePromiscuous)}`);
    paths.push("network.bridgePromiscuous");
  }
  if (failed(bridge)) {
    reasons.push(`creating a bridge fails: ${failureText(bridge)}`);
    paths.push("network.bridge");
  }
  if (failed(routeWithSource)) {
    reasons.push(`a route with a preferred source fails: ${failureText(routeWithSource)}`);
    paths.push("network.routeWithSource");
  }
  if (reasons.length === 0) return null;
  return {
    id: "cni-veth-routes",
    title: "sandkube-cni with veth pairs and plain routes",
    because: reasons.join("; "),
    facts: paths,
    meaning: "The upstream bridge and ptp plugins fail pod network setup here.",
    action:
      "sandkube-cni wires each pod with a veth pair and gateway routes without source hints, no promiscuous bridge.",
  };
};

const KUBE_PROXY_SYSCTLS = [
  "net/ipv4/conf/all/route_localnet",
  "net/netfilter/nf_conntrack_max",
  "net/netfilter/nf_conntrack_tcp_timeout_established",
  "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];

const kubeProxySysctls: Rule = (facts) => {
  const bad = KUBE_PROXY_SYSCTLS.map((name) => sysctl(facts, name)).filter(
    (s): s is SysctlFact => s !== undefined && (!s.exists || failed(s.writable)),
  );
  if (bad.length === 0) return null;
  return {
    id: "kube-proxy-sysctls",
    title: "kube-proxy (if used) must not touch conntrack and route_localnet",
    because: bad.map((s) => `/proc/sys/${s.name} is ${sysctlState(s)}`).join("; "),
    facts: bad.map((s) => `sysctls[${s.name}]`),
    meaning: "kube-proxy writes these at start and exits when it cannot.",
    action:
      "If kube-proxy runs: conntrack.maxPerCore: 0, conntrack.tcpEstablishedTimeout: 0s, conntrack.tcpCloseWaitTimeout: 0s, iptables.localhostNodePorts: false.",
  };
};

const CADVISOR_FILESYSTEMS = new Set(["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs"]);

const localStorage: Rule = (facts) => {
  const fsType = facts.overlay.dataDirFsType;
  if (!facts.kernel.gvisor.verdict && fsType !== null && CADVISOR_FILESYSTEMS.has(fsType))
    return null;
  return {
    id: "no-local-storage-isolation",
    title: "Turn off local storage capacity isolation",
    because: facts.kernel.gvisor.verdict
      ? `this is gVisor and ${facts.overlay.dataDir} is on ${fsType ?? "an unknown filesystem"}`
      : `${facts.overlay.dataDir} is on ${fsType ?? "an unknown filesystem"}, which cAdvisor does not measure`,
    facts: ["kernel.gvisor.verdict", "overlay.dataDirFsType"],
    meaning:
      'cAdvisor cannot find the root filesystem\'s device ("unable to find data in memory cache").',
    action: "kubelet config: localStorageCapacityIsolation: false.",
  };
};

const registries: Rule = (facts) => {
  const defaults = facts.registries.registries.filter((r) => !r.mirror);
  if (defaults.length === 0 || defaults.some((r) => r.result.reachable)) return null;
  return {
    id: "preloaded-images",
    title: "Preload images instead of pulling",
    because: defaults
      .map((r) => `${r.name}: ${r.result.reachable ? "reachable" : r.result.kind}`)
      .join("; "),
    facts: ["registries.registries[].result"],
    meaning:
      "Pods stay in ErrImagePull, system pods included, and the pause image cannot be fetched.",
    action:
      "Import images into containerd's k8s.io namespace (or a registry on loopback) before pods start; pin the sandbox image to a local one.",
  };
};

export const RULES: readonly Rule[] = [
  kubeletTunables,
  devKmsg,
  snapshotter,
  recursiveBind,
  cgroupV1,
  cgroupMount,
  cgroupsUnusable,
  unprivilegedPorts,
  capLastCap,
  cgroupNamespace,
  namespacesWithoutSetns,
  sharedMountTable,
  keyring,
  propagation,
  iptablesLegacy,
  serviceProxy,
  noMasquerade,
  cniDevices,
  kubeProxySysctls,
  localStorage,
  registries,
];

/** Pure: the adaptations these facts switch on, in a stable order. */
export function planAdaptations(
  facts: Facts,
  options: PlanOptions = DEFAULT_PLAN_OPTIONS,
): Adaptation[] {
  return RULES.map((rule) => rule(facts, options)).filter((a): a is Adaptation => a !== null);
}
