/**
 * The cluster add-ons sandkube applies once the node is Ready: cluster DNS (CoreDNS behind the
 * `kube-dns` Service) and a default StorageClass (rancher's local-path-provisioner). Pure: plain
 * parameters in, the official client's typed objects out, in the order they must be applied.
 */
import { isAbsolute } from "node:path";
import { isIPv4 } from "node:net";
import type {
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Deployment,
  V1EnvVar,
  V1Service,
  V1ServiceAccount,
} from "@kubernetes/client-node";
import { apiServerUrl } from "../node/kubeconfig.js";
import type { ClusterConfig } from "../plan/cluster-config.js";
import { type CoreDnsPorts, DEFAULT_COREDNS_PORTS, renderCorefile } from "./corefile.js";
import { localPathObjects } from "./local-path.js";

export interface AddonImages {
  /** CoreDNS built from Go modules; its entrypoint is the coredns binary, as upstream's image. */
  readonly coredns: string;
  /** local-path-provisioner, on the image's PATH as upstream's image has it (/usr/bin). */
  readonly localPathProvisioner: string;
  /** The provisioner's helper pods run `/bin/sh /script/setup` in it. */
  readonly busybox: string;
}

/** Where a pod in the sandbox's own network namespace reaches kube-apiserver directly. */
export interface ApiServerEndpoint {
  readonly host: string;
  readonly port: number;
}

export interface AddonParams {
  /** kube-dns's ClusterIP: what kubelet's `clusterDNS` hands every pod. */
  readonly clusterDNS: string;
  readonly clusterDomain: string;
  /** The node's address: CoreDNS (hostNetwork) binds only this. */
  readonly nodeIP: string;
  /** The node's data dir; volumes live under `<dataDir>/storage`. */
  readonly dataDir: string;
  readonly images: AddonImages;
  readonly ports: CoreDnsPorts;
  /**
   * When set, CoreDNS talks to kube-apiserver here rather than through the `kubernetes` Service.
   * CoreDNS runs in the sandbox's root network namespace, and in gVisor DNAT in the root netns's
   * OUTPUT chain did not work (lab, brief of issue 9), so a Service data path built on DNAT may
   * carry pod traffic but not CoreDNS's own.
   */
  readonly apiServer?: ApiServerEndpoint;
  /**
   * False where pods can only share the node's network namespace: local-path-provisioner's helper
   * pods cannot (it refuses host namespaces in their template, util.go validateHelperPodTemplate),
   * so no volume could be provisioned, and the storage add-on is left out.
   */
  readonly storage: boolean;
}

/** One add-on: a name for progress lines and errors, and its objects in apply order. */
export interface Addon {
  readonly name: string;
  readonly objects: readonly KubernetesObject[];
}

export const COREDNS_ADDON = "coredns";
export const STORAGE_ADDON = "local-path-storage";

/** On every object sandkube applies, so the add-ons can be listed and removed by label. */
export const ADDON_LABEL = "sandkube.local/addon";

export const KUBE_SYSTEM = "kube-system";
export const COREDNS_NAME = "coredns";
export const KUBE_DNS_SERVICE = "kube-dns";
/** The label kubeadm, kube-dns before it, and many charts select cluster DNS by. */
export const KUBE_DNS_SELECTOR = { "k8s-app": "kube-dns" } as const;
/** What every client asks: DNS's own port, whatever port CoreDNS listens on behind it. */
export const DNS_SERVICE_PORT = 53;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`addons: port ${name} is ${port}; give an integer from 1 to 65535`);
  }
}

/**
 * The parameters for a node: its addresses and data dir, CoreDNS's default ports, and the API
 * server where local clients reach it (which its serving certificate names).
 */
export function addonParamsFor(config: ClusterConfig, images: AddonImages): AddonParams {
  const url = new URL(apiServerUrl(config));
  return {
    clusterDNS: config.clusterDNS,
    clusterDomain: config.clusterDomain,
    nodeIP: config.nodeIP,
    dataDir: config.dataDir,
    images,
    ports: DEFAULT_COREDNS_PORTS,
    apiServer: { host: url.hostname.replace(/^\[|\]$/g, ""), port: config.apiServerPort },
    storage: !config.hostNetworkOnly,
  };
}

/** Rejects parameters that would render objects the apiserver or CoreDNS refuses later, slowly. */
export function checkAddonParams(params: AddonParams): void {
  for (const [name, address] of [
    ["clusterDNS", params.clusterDNS],
    ["nodeIP", params.nodeIP],
  ] as const) {
    if (!isIPv4(address)) {
      throw new Error(`addons: ${name} "${address}" is not an IPv4 address`);
    }
  }
  const labels = params.clusterDomain.split(".");
  if (params.clusterDomain.length > 253 || !labels.every((label) => DNS_LABEL.test(label))) {
    throw new Error(
      `addons: cluster domain "${params.clusterDomain}" is not a DNS name (lower-case labels joined by dots)`,
    );
  }
  if (!isAbsolute(params.dataDir)) {
    throw new Error(`addons: data dir "${params.dataDir}" is not an absolute path`);
  }
  for (const [name, image] of Object.entries(params.images)) {
    if (image.trim() === "" || /\s/.test(image)) {
      throw new Error(`addons: image ${name} "${image}" is not an image reference`);
    }
  }
  const ports = Object.entries(params.ports);
  for (const [name, port] of ports) checkPort(name, port);
  const taken = new Map<number, string>();
  for (const [name, port] of ports) {
    const other = taken.get(port);
    if (other !== undefined) {
      throw new Error(`addons: ports ${other} and ${name} are both ${port}; give each its own`);
    }
    taken.set(port, name);
  }
  if (params.apiServer !== undefined) checkPort("apiServer", params.apiServer.port);
}

function coreDnsEnv(apiServer: ApiServerEndpoint | undefined): V1EnvVar[] | undefined {
  if (apiServer === undefined) return undefined;
  // client-go's rest.InClusterConfig reads these two; kubelet lets a container's own env win over
  // the Service variables it injects.
  return [
    { name: "KUBERNETES_SERVICE_HOST", value: apiServer.host },
    { name: "KUBERNETES_SERVICE_PORT", value: String(apiServer.port) },
  ];
}

/** kubeadm's CoreDNS objects (manifests.go), moved into the sandbox's network namespace. */
export function coreDnsObjects(params: AddonParams): KubernetesObject[] {
  const { nodeIP, ports } = params;
  const serviceAccount: V1ServiceAccount = {
    apiVersion: "v1",
    kind: "ServiceAccount",
    metadata: { name: COREDNS_NAME, namespace: KUBE_SYSTEM },
  };
  const clusterRole: V1ClusterRole = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "system:coredns" },
    rules: [
      {
        apiGroups: [""],
        resources: ["endpoints", "services", "pods", "namespaces"],
        verbs: ["list", "watch"],
      },
      { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
    ],
  };
  const clusterRoleBinding: V1ClusterRoleBinding = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "system:coredns" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:coredns" },
    subjects: [{ kind: "ServiceAccount", name: COREDNS_NAME, namespace: KUBE_SYSTEM }],
  };
  const configMap: V1ConfigMap = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: COREDNS_NAME, namespace: KUBE_SYSTEM },
    data: { Corefile: renderCorefile(params) },
  };
  const env = coreDnsEnv(params.apiServer);
  const deployment: V1Deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: COREDNS_NAME, namespace: KUBE_SYSTEM, labels: { ...KUBE_DNS_SELECTOR } },
    spec: {
      replicas: 1,
      // Two CoreDNS pods on the one node would both bind the node's port 53; the second would
      // crash-loop until the first is gone, so a rollout replaces rather than overlaps.
      strategy: { type: "Recreate" },
      selector: { matchLabels: { ...KUBE_DNS_SELECTOR } },
      template: {
        metadata: { labels: { ...KUBE_DNS_SELECTOR } },
        spec: {
          priorityClassName: "system-cluster-critical",
          serviceAccountName: COREDNS_NAME,
          // Pods reach the cluster through CoreDNS, so CoreDNS must reach the sandbox's resolver
          // the way the sandbox does: kubelet gives a hostNetwork pod with dnsPolicy Default the
          // node's resolv.conf, and a loopback resolver (127.0.0.53) answers only in this netns.
          hostNetwork: true,
          dnsPolicy: "Default",
          tolerations: [
            { key: "CriticalAddonsOnly", operator: "Exists" },
            { key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule" },
            // The one node is also the only place DNS can run; it must not wait out a NotReady.
            { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoSchedule" },
          ],
          nodeSelector: { "kubernetes.io/os": "linux" },
          containers: [
            {
              name: "coredns",
              image: params.images.coredns,
              // Built locally; no registry is reachable from most sandboxes.
              imagePullPolicy: "Never",
              args: ["-conf", "/etc/coredns/Corefile"],
              ...(env === undefined ? {} : { env }),
              resources: {
                limits: { memory: "170Mi" },
                requests: { cpu: "100m", memory: "70Mi" },
              },
              volumeMounts: [{ name: "config-volume", mountPath: "/etc/coredns", readOnly: true }],
              ports: [
                { name: "dns", containerPort: ports.dns, protocol: "UDP" },
                { name: "dns-tcp", containerPort: ports.dns, protocol: "TCP" },
                { name: "metrics", containerPort: ports.metrics, protocol: "TCP" },
                { name: "liveness-probe", containerPort: ports.health, protocol: "TCP" },
                { name: "readiness-probe", containerPort: ports.ready, protocol: "TCP" },
              ],
              // `health` and `ready` listen on the node's address only (see the Corefile), so the
              // probes name it rather than relying on the pod IP being that address.
              livenessProbe: {
                httpGet: { host: nodeIP, path: "/health", port: ports.health, scheme: "HTTP" },
                initialDelaySeconds: 60,
                timeoutSeconds: 5,
                successThreshold: 1,
                failureThreshold: 5,
              },
              readinessProbe: {
                httpGet: { host: nodeIP, path: "/ready", port: ports.ready, scheme: "HTTP" },
                periodSeconds: 2,
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                capabilities: { add: ["NET_BIND_SERVICE"], drop: ["ALL"] },
                readOnlyRootFilesystem: true,
              },
            },
          ],
          volumes: [
            {
              name: "config-volume",
              configMap: { name: COREDNS_NAME, items: [{ key: "Corefile", path: "Corefile" }] },
            },
          ],
        },
      },
    },
  };
  const service: V1Service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: KUBE_DNS_SERVICE,
      namespace: KUBE_SYSTEM,
      labels: {
        ...KUBE_DNS_SELECTOR,
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "CoreDNS",
      },
      annotations: { "prometheus.io/port": String(ports.metrics), "prometheus.io/scrape": "true" },
    },
    spec: {
      clusterIP: params.clusterDNS,
      selector: { ...KUBE_DNS_SELECTOR },
      ports: [
        { name: "dns", port: DNS_SERVICE_PORT, protocol: "UDP", targetPort: ports.dns },
        { name: "dns-tcp", port: DNS_SERVICE_PORT, protocol: "TCP", targetPort: ports.dns },
        { name: "metrics", port: 9153, protocol: "TCP", targetPort: ports.metrics },
      ],
    },
  };
  return [serviceAccount, clusterRole, clusterRoleBinding, configMap, deployment, service];
}

function labelled(object: KubernetesObject, addon: string): KubernetesObject {
  return {
    ...object,
    metadata: {
      ...object.metadata,
      labels: { ...object.metadata?.labels, [ADDON_LABEL]: addon },
    },
  };
}

/** Every add-on, each with its objects in apply order (namespaces and RBAC before workloads). */
export function renderAddons(params: AddonParams): Addon[] {
  checkAddonParams(params);
  return [
    { name: COREDNS_ADDON, objects: coreDnsObjects(params) },
    ...(params.storage ? [{ name: STORAGE_ADDON, objects: localPathObjects(params) }] : []),
  ].map((addon) => ({
    name: addon.name,
    objects: addon.objects.map((object) => labelled(object, addon.name)),
  }));
}
