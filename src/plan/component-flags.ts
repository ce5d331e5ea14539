import { join } from "node:path";
import type { NodeLayout } from "../node/layout.js";
import type { ClusterConfig } from "./cluster-config.js";
import { FRONT_PROXY_CLIENT_CN, kubeconfigFiles, pkiFiles } from "./pki-files.js";

/** Each component's command-line arguments (without the binary). */
export interface ComponentArgs {
  readonly etcd: string[];
  readonly kubeApiserver: string[];
  readonly kubeControllerManager: string[];
  readonly kubeScheduler: string[];
  readonly kubelet: string[];
  readonly kubeProxy: string[];
  readonly sandkubeProxy: string[];
}

/** Where either Service proxy answers /healthz: kube-proxy's default port, on loopback only. */
export const SERVICE_PROXY_HEALTHZ = "127.0.0.1:10256";

/**
 * etcd listens on loopback only, whatever --bind-address says: it runs without TLS (as k3s's
 * loopback etcd does), so anything that reached it would own the cluster.
 */
export const ETCD_CLIENT_URL = "http://127.0.0.1:2379";
export const ETCD_PEER_URL = "http://127.0.0.1:2380";
/** /health and /metrics, what the supervisor's readiness check asks. */
export const ETCD_METRICS_URL = "http://127.0.0.1:2381";

/** The node CIDR controller-manager hands out: one /24 per node, as kubeadm's default. */
export const NODE_CIDR_MASK_SIZE = 24;

/** The issuer of service account tokens: the in-cluster name of the API server. */
export function serviceAccountIssuer(config: Pick<ClusterConfig, "clusterDomain">): string {
  return `https://kubernetes.default.svc.${config.clusterDomain}`;
}

function flags(values: Readonly<Record<string, string | number | boolean>>): string[] {
  return Object.entries(values).map(([name, value]) => `--${name}=${String(value)}`);
}

/** Pure: every component's flags. Secure by default as kubeadm's: see docs/configuration.md. */
export function componentArgs(config: ClusterConfig, layout: NodeLayout): ComponentArgs {
  const pki = pkiFiles(layout);
  const kubeconfigs = kubeconfigFiles(layout);

  const etcd = flags({
    name: config.nodeName,
    "data-dir": layout.etcdDataDir,
    "listen-client-urls": ETCD_CLIENT_URL,
    "advertise-client-urls": ETCD_CLIENT_URL,
    "listen-peer-urls": ETCD_PEER_URL,
    "initial-advertise-peer-urls": ETCD_PEER_URL,
    "initial-cluster": `${config.nodeName}=${ETCD_PEER_URL}`,
    "listen-metrics-urls": ETCD_METRICS_URL,
    // kubeadm's value; etcd 3.5's default (100000) keeps ten times more entries in memory.
    "snapshot-count": 10000,
  });

  const kubeApiserver = flags({
    "advertise-address": config.nodeIP,
    "bind-address": config.apiServerBindAddress,
    "secure-port": config.apiServerPort,
    "etcd-servers": ETCD_CLIENT_URL,
    "authorization-mode": "Node,RBAC",
    "anonymous-auth": false,
    "enable-admission-plugins": "NodeRestriction",
    "allow-privileged": true,
    "client-ca-file": pki.caCert,
    "tls-cert-file": pki.apiServerCert,
    "tls-private-key-file": pki.apiServerKey,
    "kubelet-client-certificate": pki.apiServerKubeletClientCert,
    "kubelet-client-key": pki.apiServerKubeletClientKey,
    // kubeadm leaves the kubelet unverified (its serving certificate is self-signed); sandkube
    // signs kubelet.crt with the cluster CA, so the API server checks whom it talks to.
    "kubelet-certificate-authority": pki.caCert,
    "kubelet-preferred-address-types": "InternalIP",
    "service-cluster-ip-range": config.serviceCIDR,
    "service-account-issuer": serviceAccountIssuer(config),
    "service-account-key-file": pki.serviceAccountPub,
    "service-account-signing-key-file": pki.serviceAccountKey,
    "proxy-client-cert-file": pki.frontProxyClientCert,
    "proxy-client-key-file": pki.frontProxyClientKey,
    "requestheader-client-ca-file": pki.frontProxyCaCert,
    "requestheader-allowed-names": FRONT_PROXY_CLIENT_CN,
    "requestheader-extra-headers-prefix": "X-Remote-Extra-",
    "requestheader-group-headers": "X-Remote-Group",
    "requestheader-username-headers": "X-Remote-User",
  });

  // One instance of each on one node: leader election only delays a restarted controller until
  // the previous instance's lease expires (15 s).
  const kubeControllerManager = flags({
    "bind-address": config.bindAddress,
    kubeconfig: kubeconfigs.controllerManager,
    "authentication-kubeconfig": kubeconfigs.controllerManager,
    "authorization-kubeconfig": kubeconfigs.controllerManager,
    "client-ca-file": pki.caCert,
    "requestheader-client-ca-file": pki.frontProxyCaCert,
    "use-service-account-credentials": true,
    "cluster-signing-cert-file": pki.caCert,
    "cluster-signing-key-file": pki.caKey,
    "root-ca-file": pki.caCert,
    "service-account-private-key-file": pki.serviceAccountKey,
    "service-cluster-ip-range": config.serviceCIDR,
    "allocate-node-cidrs": true,
    "cluster-cidr": config.clusterCIDR,
    "node-cidr-mask-size": NODE_CIDR_MASK_SIZE,
    "leader-elect": false,
  });

  const kubeScheduler = flags({
    "bind-address": config.bindAddress,
    kubeconfig: kubeconfigs.scheduler,
    "authentication-kubeconfig": kubeconfigs.scheduler,
    "authorization-kubeconfig": kubeconfigs.scheduler,
    "leader-elect": false,
  });

  const kubelet = flags({
    config: layout.kubeletConfig,
    kubeconfig: kubeconfigs.kubelet,
    "root-dir": layout.kubeletRoot,
    // The address the API server reaches the kubelet at (InternalIP); without it kubelet looks
    // for a default route, which a loopback-only sandbox lacks (B13).
    "node-ip": config.nodeIP,
    "hostname-override": config.nodeName,
    // kubeadm's /var/lib/kubelet/pki; used only if kubelet ever rotates its own certificates.
    "cert-dir": join(layout.kubeletRoot, "pki"),
  });

  const kubeProxy = flags({
    kubeconfig: kubeconfigs.kubeProxy,
    "hostname-override": config.nodeName,
    "proxy-mode": "iptables",
    // Traffic from outside the pod range to a ClusterIP is masqueraded (kube-proxy's
    // ClusterCIDR local-detection mode), so replies from a pod find their way back.
    "cluster-cidr": config.clusterCIDR,
    "healthz-bind-address": SERVICE_PROXY_HEALTHZ,
    "metrics-bind-address": "127.0.0.1:10249",
    // 0 leaves the kernel's conntrack table size and timeouts as they are: they are the
    // sandbox's, and inside a container /proc/sys/net/netfilter is often read-only.
    "conntrack-max-per-core": 0,
    "conntrack-tcp-timeout-established": "0s",
    "conntrack-tcp-timeout-close-wait": "0s",
  });

  const sandkubeProxy = [
    "--kubeconfig",
    kubeconfigs.kubeProxy,
    "--link",
    config.nodeLink,
    "--service-cidr",
    config.serviceCIDR,
    "--healthz",
    SERVICE_PROXY_HEALTHZ,
  ];

  return {
    etcd,
    kubeApiserver,
    kubeControllerManager,
    kubeScheduler,
    kubelet,
    kubeProxy,
    sandkubeProxy,
  };
}
