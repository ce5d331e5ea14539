import { join } from "node:path";
import { stringify } from "yaml";
import type { NodeLayout } from "../node/layout.js";
import type { Facts } from "../probe/facts.js";
import type { BackendCapabilities } from "../probe/iptables.js";
import type { PlanOptions } from "./adaptations.js";
import { DEFAULT_PLAN_OPTIONS, planAdaptations } from "./adaptations.js";
import type { ClusterConfig } from "./cluster-config.js";
import { pkiFiles } from "./pki-files.js";

/**
 * The resolv.conf kubelet hands to pods (dnsPolicy Default, and the upstream servers of cluster
 * DNS). The node writes it: a sandbox's own /etc/resolv.conf may name a loopback resolver that a
 * pod's network namespace cannot reach.
 */
export function kubeletResolvConfPath(layout: Pick<NodeLayout, "dataDir">): string {
  return join(layout.dataDir, "resolv.conf");
}

/** The kubelet settings that differ from stock only because of a fact; each names it. */
export interface KubeletFactSettings {
  /** failCgroupV1: false. */
  readonly allowCgroupV1: boolean;
  /** cgroupsPerQOS: false and enforceNodeAllocatable: []. */
  readonly noQosCgroups: boolean;
  /** localStorageCapacityIsolation: false. */
  readonly noLocalStorageIsolation: boolean;
  /** makeIPTablesUtilChains: false. */
  readonly noIptablesUtilChains: boolean;
  /** protectKernelDefaults: false, stated although it is kubelet's default. */
  readonly kernelDefaultsWritable: boolean;
  /** cpuCFSQuota: false. */
  readonly noCpuCfsQuota: boolean;
}

/**
 * The iptables backend kubelet will drive: a bare `iptables` on its PATH, which is
 * iptables-legacy when the `iptables-legacy` adaptation puts it first; null when not probed.
 */
function kubeletIptablesBackend(
  facts: Facts,
  adaptationIds: ReadonlySet<string>,
): BackendCapabilities | null {
  // The iptables probes need root; as anyone else they say nothing about the machine.
  if (!facts.identity.isRoot) return null;
  if (adaptationIds.has("iptables-legacy")) return facts.iptables.legacy;
  return facts.iptables.defaultBackend === "legacy"
    ? facts.iptables.legacy
    : facts.iptables.nfTables;
}

/** The v1 controllers this node can use: mounted ones, else the ones sandkube will mount. */
function cgroupControllers(facts: Facts): Set<string> {
  const mounted = facts.cgroups.hierarchies.flatMap((h) => h.controllers);
  const mountable = facts.cgroups.scratchV1Mounts
    .filter((m) => m.mount.result === "yes")
    .flatMap((m) => m.controllers);
  return new Set([...mounted, ...mountable]);
}

/** Pure: which fact-driven kubelet settings these facts switch on. */
export function kubeletFactSettings(
  facts: Facts,
  planOptions: PlanOptions = DEFAULT_PLAN_OPTIONS,
): KubeletFactSettings {
  const ids = new Set(planAdaptations(facts, planOptions).map((a) => a.id));
  const backend = kubeletIptablesBackend(facts, ids);
  return {
    // Adaptation `cgroup-v1` (fact cgroups.mode: v1, hybrid, or none with v1 mounts that work):
    // kubelet 1.35+ refuses cgroup v1 unless failCgroupV1 is false.
    allowCgroupV1: ids.has("cgroup-v1"),
    // Adaptation `cgroups-unenforced` (cgroups.hierarchies[].createChild / moveProcess failed), or
    // fact kernel.gvisor.verdict: gVisor's cgroupfs is v1 only with few controllers and files
    // (B12: the memory controller has 7 files), and the one kubelet configuration seen running
    // pods inside gVisor (B12, kubelet.sh provisioned) has no per-QoS cgroups.
    noQosCgroups: ids.has("cgroups-unenforced") || facts.kernel.gvisor.verdict,
    // Adaptation `no-local-storage-isolation` (kernel.gvisor.verdict, overlay.dataDirFsType):
    // cAdvisor cannot find the root filesystem's device and kubelet's eviction manager fails.
    noLocalStorageIsolation: ids.has("no-local-storage-isolation"),
    // Facts iptables.<backend>.capabilities.conntrack / comment: kubelet's KUBE-FIREWALL rule is
    // `-m comment ... -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`, next to canary
    // chains in mangle, nat and filter. gVisor's iptables has neither match (B13), so kubelet
    // would leave the chains half written and log the failure on every sync. The rule drops
    // martian packets to 127.0.0.0/8 that only exist where route_localnet is 1.
    noIptablesUtilChains:
      backend !== null &&
      !(["filter", "nat", "conntrack", "comment"] as const).every(
        (k) => backend.capabilities[k].result === "yes",
      ),
    // Adaptation `kubelet-tunables` (sysctls[...] missing or read-only): kubelet must write its
    // values into the node's copy of /proc/sys, which protectKernelDefaults: true forbids (B2).
    kernelDefaultsWritable: ids.has("kubelet-tunables"),
    // Fact cgroups: no cpu controller is mounted or mountable, so the CFS quota files kubelet
    // and the runtime would write do not exist.
    noCpuCfsQuota: !cgroupControllers(facts).has("cpu"),
  };
}

/** Pure: the KubeletConfiguration (v1beta1) for this node, as YAML. */
export function renderKubeletConfig(
  config: ClusterConfig,
  facts: Facts,
  layout: NodeLayout,
  planOptions: PlanOptions = DEFAULT_PLAN_OPTIONS,
): string {
  const settings = kubeletFactSettings(facts, planOptions);
  const pki = pkiFiles(layout);
  const kubelet = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // Secure defaults as kubeadm writes them: no anonymous requests, every request authenticated
    // by client certificate or token review and authorized by the API server (Webhook).
    // The API server reaches kubelet at the node's InternalIP for logs, exec and port-forward; the
    // node address exists only inside the sandbox, and every request is authenticated.
    address: config.nodeIP,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true, cacheTTL: "0s" },
      x509: { clientCAFile: pki.caCert },
    },
    authorization: {
      mode: "Webhook",
      webhook: { cacheAuthorizedTTL: "0s", cacheUnauthorizedTTL: "0s" },
    },
    tlsCertFile: pki.kubeletServingCert,
    tlsPrivateKeyFile: pki.kubeletServingKey,
    clusterDNS: [config.clusterDNS],
    clusterDomain: config.clusterDomain,
    resolvConf: kubeletResolvConfPath(layout),
    containerRuntimeEndpoint: `unix://${layout.containerdSocket}`,
    // sandkube's components are its supervisor's children, not systemd units.
    cgroupDriver: "cgroupfs",
    // A node inside someone else's machine or sandbox does not own its swap or its disk: as kind
    // runs kubelet in a container, do not refuse swap, never garbage-collect images for disk
    // pressure (they are imported locally and cannot be pulled back) and never evict for it.
    failSwapOn: false,
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      "imagefs.available": "0%",
      "nodefs.available": "0%",
      "nodefs.inodesFree": "0%",
    },
    serializeImagePulls: false,
    ...(settings.allowCgroupV1 ? { failCgroupV1: false } : {}),
    ...(settings.noQosCgroups ? { cgroupsPerQOS: false, enforceNodeAllocatable: [] } : {}),
    ...(settings.noLocalStorageIsolation ? { localStorageCapacityIsolation: false } : {}),
    ...(settings.noIptablesUtilChains ? { makeIPTablesUtilChains: false } : {}),
    ...(settings.kernelDefaultsWritable ? { protectKernelDefaults: false } : {}),
    ...(settings.noCpuCfsQuota ? { cpuCFSQuota: false } : {}),
  };
  return stringify(kubelet);
}
