import { dirname, join } from "node:path";
import { importArgv } from "../images/containerd.js";
import type { ClusterConfig } from "../plan/cluster-config.js";
import { componentArgs, SERVICE_PROXY_HEALTHZ } from "../plan/component-flags.js";
import { pkiFiles } from "../plan/pki-files.js";
import type { NodeLayout } from "./layout.js";
import { componentLogPath } from "./layout.js";

export const COMPONENT_NAMES = [
  "containerd",
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
  "sandkube-proxy",
] as const;
export type ComponentName = (typeof COMPONENT_NAMES)[number];

/** How the supervisor knows a component is serving, not just started. */
export type Readiness =
  | { readonly kind: "unix-socket"; readonly path: string }
  | { readonly kind: "http"; readonly url: string; readonly expect?: string }
  | {
      readonly kind: "https";
      readonly url: string;
      /** Client certificate files; absent for endpoints that allow /healthz without one. */
      readonly client?: { readonly ca: string; readonly cert: string; readonly key: string };
    };

export interface ComponentSpec {
  readonly name: ComponentName;
  readonly argv: readonly string[];
  /** Set on top of the supervisor's own environment. */
  readonly env: Readonly<Record<string, string>>;
  /** Started the first time only once these are ready; restarts do not wait. */
  readonly after: readonly ComponentName[];
  readonly readiness: Readiness;
  /** Commands run once each time the component becomes ready (the pause image import). */
  readonly onReady: readonly (readonly string[])[];
  readonly logFile: string;
  /** How long a stop waits after SIGTERM before SIGKILL. */
  readonly stopGraceMs: number;
}

export interface ComponentPlanInput {
  readonly config: ClusterConfig;
  readonly layout: NodeLayout;
  /** Folders put first on every component's PATH (iptables-legacy, the shim's folder). */
  readonly pathPrefix: readonly string[];
  readonly basePath: string;
  /** The pause image tarball, imported into containerd before kubelet starts. */
  readonly pauseImageTar: string;
  /** How sandkube-proxy is started: this Node and the package's dist/src/proxy/main.js. */
  readonly sandkubeProxyCommand: readonly string[];
  /** This Node and dist/src/images/import-main.js: the pause import where config.imageUnpack says without-mounts. */
  readonly importWithoutMountsCommand: readonly string[];
  /**
   * HTTPS_PROXY and friends for containerd's pulls, with the node's own ranges in NO_PROXY
   * (src/registry/proxy-env.ts); every component gets them. {} for none.
   */
  readonly containerdProxyEnv?: Readonly<Record<string, string>>;
}

/** Pure: what the supervisor runs, in start order. */
export function planComponents(input: ComponentPlanInput): ComponentSpec[] {
  const { config, layout } = input;
  const args = componentArgs(config, layout);
  const pki = pkiFiles(layout);
  const path = [...input.pathPrefix, dirname(config.binaries.containerdShim), input.basePath]
    .filter((p) => p.length > 0)
    .join(":");
  const env = { PATH: path };
  const apiHost =
    config.apiServerBindAddress === "0.0.0.0" ? "127.0.0.1" : config.apiServerBindAddress;
  // /readyz is open to every authenticated user (system:public-info-viewer); the API server's own
  // kubelet-client certificate is a file on disk, unlike the admin credentials in admin.conf.
  const adminClient = {
    ca: pki.caCert,
    cert: pki.apiServerKubeletClientCert,
    key: pki.apiServerKubeletClientKey,
  };
  const spec = (
    name: ComponentName,
    argv: readonly string[],
    after: readonly ComponentName[],
    readiness: Readiness,
    onReady: readonly (readonly string[])[] = [],
    stopGraceMs = 10_000,
  ): ComponentSpec => ({
    name,
    argv,
    // Every component, not containerd alone: each inherits the user's HTTPS_PROXY through the
    // supervisor, and Go then proxies all but loopback, so kube-apiserver's own client to its
    // advertise address 10.244.0.1:6443 went to the proxy and got 403 until the apiserver died
    // (test/e2e/registry-scenario.ts in runsc). The NO_PROXY here lists the node's ranges.
    env: { ...env, ...(input.containerdProxyEnv ?? {}) },
    after,
    readiness,
    onReady,
    logFile: componentLogPath(layout, name),
    stopGraceMs,
  });
  const serviceProxyReadiness: Readiness = {
    kind: "http",
    url: `http://${SERVICE_PROXY_HEALTHZ}/healthz`,
  };
  const serviceProxy =
    config.serviceProxy === "kube-proxy"
      ? spec(
          "kube-proxy",
          [requireKubeProxy(config), ...args.kubeProxy],
          ["kube-apiserver"],
          serviceProxyReadiness,
        )
      : spec(
          "sandkube-proxy",
          [...input.sandkubeProxyCommand, ...args.sandkubeProxy],
          ["kube-apiserver"],
          serviceProxyReadiness,
        );
  return [
    spec(
      "containerd",
      [config.binaries.containerd, "--config", layout.containerdConfig],
      [],
      { kind: "unix-socket", path: layout.containerdSocket },
      [
        config.imageUnpack === "without-mounts"
          ? [
              ...input.importWithoutMountsCommand,
              "--ctr",
              config.binaries.ctr,
              "--socket",
              layout.containerdSocket,
              "--snapshotter",
              config.snapshotter,
              "--containerd-root",
              layout.containerdRoot,
              input.pauseImageTar,
            ]
          : importArgv({
              ctr: config.binaries.ctr,
              socket: layout.containerdSocket,
              snapshotter: config.snapshotter,
              file: input.pauseImageTar,
            }),
      ],
    ),
    spec("etcd", [config.binaries.etcd, ...args.etcd], [], {
      kind: "http",
      url: "http://127.0.0.1:2379/health",
      expect: '"health":"true"',
    }),
    spec("kube-apiserver", [config.binaries.kubeApiserver, ...args.kubeApiserver], ["etcd"], {
      kind: "https",
      url: `https://${hostPort(apiHost, config.apiServerPort)}/readyz`,
      client: adminClient,
    }),
    spec(
      "kube-controller-manager",
      [config.binaries.kubeControllerManager, ...args.kubeControllerManager],
      ["kube-apiserver"],
      { kind: "https", url: "https://127.0.0.1:10257/healthz" },
    ),
    spec(
      "kube-scheduler",
      [config.binaries.kubeScheduler, ...args.kubeScheduler],
      ["kube-apiserver"],
      { kind: "https", url: "https://127.0.0.1:10259/healthz" },
    ),
    serviceProxy,
    spec(
      "kubelet",
      [config.binaries.kubelet, ...args.kubelet],
      ["containerd", "kube-apiserver"],
      { kind: "http", url: "http://127.0.0.1:10248/healthz", expect: "ok" },
      [],
      // kubelet's graceful node shutdown is off; it needs no long grace.
      5_000,
    ),
  ];
}

function requireKubeProxy(config: ClusterConfig): string {
  if (config.binaries.kubeProxy === null) {
    throw new Error("the plan chose kube-proxy, but no kube-proxy binary was found");
  }
  return config.binaries.kubeProxy;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Stop order: the reverse of start order, kubelet first so it stops touching containerd. */
export function stopOrder(specs: readonly ComponentSpec[]): ComponentSpec[] {
  return [...specs].reverse();
}

export function adminKubeconfigPath(layout: NodeLayout): string {
  return join(layout.kubeconfigDir, "admin.conf");
}
