/**
 * The one description of a sandkube node that every renderer in src/plan and every step in
 * src/node reads. Plain data: built once by `up` from the user's options and the probed Facts.
 */

/** Which OCI runtime containerd's runc shim runs as `BinaryName`. */
export type RuntimeChoice = "sandkube" | "runc";

/**
 * What carries Service traffic: stock kube-proxy where its iptables rules can be written, or
 * sandkube's own user-space proxy where the probe shows they cannot (the `service-proxy`
 * adaptation: gVisor has no MASQUERADE, MARK, conntrack, comment, addrtype or statistic).
 */
export type ServiceProxyChoice = "kube-proxy" | "sandkube-proxy";

/** Absolute paths of every binary the node runs. */
export interface BinaryPaths {
  readonly etcd: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  readonly kubeScheduler: string;
  readonly kubelet: string;
  readonly kubectl: string;
  readonly containerd: string;
  /** containerd-shim-runc-v2; containerd finds it on PATH, so its folder goes first on PATH. */
  readonly containerdShim: string;
  readonly ctr: string;
  /** The OCI runtime containerd's shim runs: runc or sandkube-runtime. */
  readonly ociRuntime: string;
  /** Folder holding sandkube-cni and the stock `loopback` plugin. */
  readonly cniBinDir: string;
  /** Stock kube-proxy; null where the node runs sandkube-proxy instead. */
  readonly kubeProxy: string | null;
}

export interface ClusterConfig {
  /** Absolute; everything the node writes lives under it (see src/node/layout.ts). */
  readonly dataDir: string;
  readonly nodeName: string;
  /**
   * The node's address: the pod network's gateway, held by sandkube's own link (`sandkube0`) so
   * the node has a non-loopback address even where the sandbox has only `lo` (the apiserver
   * refuses a loopback advertise address for the `kubernetes` Endpoints).
   */
  readonly nodeIP: string;
  /** This node's pod range, e.g. 10.244.0.0/24; nodeIP is its first address. */
  readonly podCIDR: string;
  /** The cluster's pod range, e.g. 10.244.0.0/16. */
  readonly clusterCIDR: string;
  /** e.g. 10.96.0.0/16 */
  readonly serviceCIDR: string;
  /** The first address of serviceCIDR: the `kubernetes` Service. */
  readonly apiServerServiceIP: string;
  /** The tenth address of serviceCIDR: kube-dns. */
  readonly clusterDNS: string;
  readonly clusterDomain: string;
  /** Where etcd's client port, kubelet, controller-manager and scheduler listen: loopback by default. */
  readonly bindAddress: string;
  /** Where the API server listens; nodeIP unless --bind-address says otherwise. */
  readonly apiServerBindAddress: string;
  readonly apiServerPort: number;
  readonly runtime: RuntimeChoice;
  readonly serviceProxy: ServiceProxyChoice;
  /** MTU of every pod link (gVisor bug #14011: keep it equal to the sandbox's uplink). */
  readonly mtu: number;
  /** containerd snapshotter: overlayfs where the data dir's filesystem takes overlay mounts. */
  readonly snapshotter: "overlayfs" | "native";
  /**
   * Who unpacks image layers: containerd, or sandkube itself without mounts where the kernel
   * refuses MS_REC (adaptation no-recursive-bind, src/images/unpack-without-mounts.ts).
   */
  readonly imageUnpack: "containerd" | "without-mounts";
  /**
   * The link holding the node address (and, with sandkube-proxy, the cluster IPs): NODE_LINK, a
   * veth pair `up` makes, or `lo` where no veth can be made (adaptation cni-host-network).
   */
  readonly nodeLink: string;
  /** Pods cannot have a network namespace of their own here (adaptation cni-host-network). */
  readonly hostNetworkOnly: boolean;
  /** The locally built pause image, pinned as the sandbox image. */
  readonly sandboxImage: string;
  readonly binaries: BinaryPaths;
}

export const DEFAULT_NETWORK = {
  nodeIP: "10.244.0.1",
  podCIDR: "10.244.0.0/24",
  clusterCIDR: "10.244.0.0/16",
  serviceCIDR: "10.96.0.0/16",
  apiServerServiceIP: "10.96.0.1",
  clusterDNS: "10.96.0.10",
  clusterDomain: "cluster.local",
} as const;

export const DEFAULT_API_SERVER_PORT = 6443;

/** The node's own link (a veth pair, since gVisor and some kernels refuse dummy links). */
export const NODE_LINK = "sandkube0";
export const NODE_LINK_PEER = "sandkube0p";
export const SANDBOX_IMAGE = "registry.k8s.io/pause:3.10.2-sandkube";
