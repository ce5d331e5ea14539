import { hostname } from "node:os";
import type { Adaptation } from "../plan/adaptations.js";
import type {
  BinaryPaths,
  ClusterConfig,
  RuntimeChoice,
  ServiceProxyChoice,
} from "../plan/cluster-config.js";
import {
  DEFAULT_API_SERVER_PORT,
  DEFAULT_NETWORK,
  NODE_LINK,
  SANDBOX_IMAGE,
} from "../plan/cluster-config.js";
import type { Facts } from "../probe/facts.js";

export type RuntimeOption = RuntimeChoice | "auto";
export type ServiceProxyOption = ServiceProxyChoice | "auto";

export interface NodeOptions {
  readonly dataDir: string;
  readonly runtime: RuntimeOption;
  /** --bind-address: where the API server listens; other components stay on loopback. */
  readonly bindAddress: string | null;
  readonly serviceProxy: ServiceProxyOption;
}

/**
 * Pure: sandkube-runtime where the facts need it or where it is faster, runc elsewhere. Inside
 * gVisor sandkube-runtime's create-to-delete cycle is 0.79-0.90x runc's (docs/runtime-engine.md),
 * and on kernels without setns or mount namespaces stock runc cannot run a pod at all.
 */
export function chooseRuntime(
  option: RuntimeOption,
  facts: Facts,
  adaptations: readonly Adaptation[],
): { runtime: RuntimeChoice; because: string } {
  if (option !== "auto") return { runtime: option, because: "--runtime" };
  const needs = adaptations.find((a) => a.id === "no-setns" || a.id === "no-mount-namespace");
  if (needs !== undefined) return { runtime: "sandkube", because: needs.because };
  if (facts.kernel.gvisor.verdict) {
    return {
      runtime: "sandkube",
      because: "this is gVisor, where sandkube-runtime starts containers faster than runc",
    };
  }
  return { runtime: "runc", because: "a normal Linux kernel: stock runc runs pods here" };
}

/**
 * Pure: stock kube-proxy unless the probe showed its iptables rules cannot be written (the
 * `service-proxy` adaptation names the missing extensions), or --service-proxy says otherwise.
 */
export function chooseServiceProxy(
  option: ServiceProxyOption,
  adaptations: readonly Adaptation[],
): { serviceProxy: ServiceProxyChoice; because: string } {
  if (option !== "auto") return { serviceProxy: option, because: "--service-proxy" };
  const missing = adaptations.find((a) => a.id === "service-proxy");
  if (missing !== undefined) return { serviceProxy: "sandkube-proxy", because: missing.because };
  return {
    serviceProxy: "kube-proxy",
    because: "iptables here has every extension kube-proxy's iptables mode writes",
  };
}

/** Kubernetes node names are DNS-1123 subdomains: lower case, digits, '-' and '.'. */
export function nodeNameFrom(host: string): string {
  const cleaned = host
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  return cleaned.length > 0 ? cleaned.slice(0, 63) : "sandkube";
}

export function buildClusterConfig(
  options: NodeOptions,
  facts: Facts,
  adaptations: readonly Adaptation[],
  binaries: BinaryPaths,
  mtu: number,
  host: string = hostname(),
): ClusterConfig {
  const { runtime } = chooseRuntime(options.runtime, facts, adaptations);
  const native = adaptations.some((a) => a.id === "native-snapshotter");
  const hostNetworkOnly = adaptations.some((a) => a.id === "cni-host-network");
  return {
    dataDir: options.dataDir,
    nodeName: nodeNameFrom(host),
    ...DEFAULT_NETWORK,
    bindAddress: "127.0.0.1",
    apiServerBindAddress: options.bindAddress ?? DEFAULT_NETWORK.nodeIP,
    apiServerPort: DEFAULT_API_SERVER_PORT,
    runtime,
    serviceProxy: chooseServiceProxy(options.serviceProxy, adaptations).serviceProxy,
    mtu,
    snapshotter: native ? "native" : "overlayfs",
    imageUnpack: adaptations.some((a) => a.id === "no-recursive-bind")
      ? "without-mounts"
      : "containerd",
    nodeLink: hostNetworkOnly ? "lo" : NODE_LINK,
    hostNetworkOnly,
    sandboxImage: SANDBOX_IMAGE,
    binaries,
  };
}
