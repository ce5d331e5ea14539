import type { Check } from "./check.js";
import { fromIo, notRun } from "./check.js";
import type { ProbeIO } from "./io.js";

export type SysctlConsumer = "kubelet" | "containerd" | "runc" | "kube-proxy" | "cni";

/** A /proc/sys entry a Kubernetes component reads or writes, and where upstream does so. */
export interface SysctlSpec {
  /** Relative to /proc/sys, slash-separated, e.g. `kernel/panic`. */
  readonly name: string;
  readonly consumers: readonly SysctlConsumer[];
  readonly access: "read" | "read-write";
  readonly why: string;
  /** The value the consumer wants, where it insists on one. */
  readonly desired?: string;
}

export const SYSCTL_CATALOG: readonly SysctlSpec[] = [
  // kubelet pkg/kubelet/cm/container_manager_linux.go setupKernelTunables: reads each, writes the
  // desired value unless protectKernelDefaults; an unreadable one fails ContainerManager start.
  {
    name: "vm/overcommit_memory",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "1",
    why: "setupKernelTunables",
  },
  {
    name: "vm/panic_on_oom",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "0",
    why: "setupKernelTunables",
  },
  {
    name: "kernel/panic",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "10",
    why: "setupKernelTunables",
  },
  {
    name: "kernel/panic_on_oops",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "1",
    why: "setupKernelTunables",
  },
  {
    name: "kernel/keys/root_maxkeys",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "1000000",
    why: "setupKernelTunables",
  },
  {
    name: "kernel/keys/root_maxbytes",
    consumers: ["kubelet"],
    access: "read-write",
    desired: "25000000",
    why: "setupKernelTunables",
  },
  {
    name: "kernel/pid_max",
    consumers: ["kubelet"],
    access: "read",
    why: "pid limits and the PID-pressure eviction signal",
  },
  {
    name: "fs/inotify/max_user_watches",
    consumers: ["kubelet"],
    access: "read",
    why: "cAdvisor and config watches use inotify; kubelet logs the limit",
  },
  {
    name: "fs/inotify/max_user_instances",
    consumers: ["kubelet"],
    access: "read",
    why: "cAdvisor and config watches use inotify",
  },
  // runc (moby/sys/capability since 1.2) reads it to size the capability set at container init.
  {
    name: "kernel/cap_last_cap",
    consumers: ["runc"],
    access: "read",
    why: "capability bounding set at container init",
  },
  // containerd's CRI plugin puts these in every pod spec when enable_unprivileged_ports/icmp are
  // on, and runc writes them inside the pod's network namespace.
  {
    name: "net/ipv4/ip_unprivileged_port_start",
    consumers: ["containerd", "runc"],
    access: "read-write",
    desired: "0",
    why: "enable_unprivileged_ports",
  },
  {
    name: "net/ipv4/ping_group_range",
    consumers: ["containerd", "runc"],
    access: "read-write",
    desired: "0 2147483647",
    why: "enable_unprivileged_icmp",
  },
  // kube-proxy (pkg/proxy/iptables, pkg/proxy/conntrack): localhost NodePorts and conntrack sizing.
  {
    name: "net/ipv4/conf/all/route_localnet",
    consumers: ["kube-proxy"],
    access: "read-write",
    desired: "1",
    why: "NodePorts on 127.0.0.1 in iptables mode",
  },
  {
    name: "net/bridge/bridge-nf-call-iptables",
    consumers: ["kube-proxy", "cni"],
    access: "read-write",
    desired: "1",
    why: "Service traffic between pods on one bridge must pass iptables",
  },
  {
    name: "net/netfilter/nf_conntrack_max",
    consumers: ["kube-proxy"],
    access: "read-write",
    why: "conntrack.maxPerCore sizing",
  },
  {
    name: "net/netfilter/nf_conntrack_tcp_timeout_established",
    consumers: ["kube-proxy"],
    access: "read-write",
    why: "conntrack.tcpEstablishedTimeout",
  },
  {
    name: "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    consumers: ["kube-proxy"],
    access: "read-write",
    why: "conntrack.tcpCloseWaitTimeout",
  },
  // pkg/proxy/iptables/proxier.go: read only, to decide whether to drop ctstate INVALID packets.
  {
    name: "net/netfilter/nf_conntrack_tcp_be_liberal",
    consumers: ["kube-proxy"],
    access: "read",
    why: "whether to install the DROP rule for INVALID packets",
  },
  // The bridge CNI plugin and kube-proxy both need forwarding between pod and node interfaces.
  {
    name: "net/ipv4/ip_forward",
    consumers: ["cni", "kube-proxy"],
    access: "read-write",
    desired: "1",
    why: "forwarding between pod and node interfaces",
  },
];

export interface SysctlFact {
  readonly name: string;
  readonly consumers: readonly SysctlConsumer[];
  /** Whether the consumers only read it or also write it. */
  readonly access: SysctlSpec["access"];
  readonly exists: boolean;
  readonly readable: Check;
  /** The value read, trimmed; null when unreadable. */
  readonly value: string | null;
  /** Writing back the value just read: never a different value. */
  readonly writable: Check;
}

export async function probeSysctl(
  io: ProbeIO,
  spec: SysctlSpec,
  options: { readonly isRoot: boolean },
): Promise<SysctlFact> {
  const path = `/proc/sys/${spec.name}`;
  const base = { name: spec.name, consumers: spec.consumers, access: spec.access };
  const kind = await io.kind(path);
  if (!kind.ok) {
    const missing = notRun(`${path} does not exist (${kind.code})`);
    return { ...base, exists: false, readable: fromIo(kind), value: null, writable: missing };
  }
  const read = await io.read(path);
  if (!read.ok) {
    return {
      ...base,
      exists: true,
      readable: fromIo(read),
      value: null,
      writable: notRun("not readable, so there is no value to write back"),
    };
  }
  const writable = options.isRoot
    ? fromIo(await io.write(path, read.value))
    : notRun("not root: only root may write /proc/sys");
  return { ...base, exists: true, readable: fromIo(read), value: read.value.trim(), writable };
}

export async function probeSysctls(
  io: ProbeIO,
  options: { readonly isRoot: boolean },
  catalog: readonly SysctlSpec[] = SYSCTL_CATALOG,
): Promise<SysctlFact[]> {
  const facts: SysctlFact[] = [];
  for (const spec of catalog) facts.push(await probeSysctl(io, spec, options));
  return facts;
}
