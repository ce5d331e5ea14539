/**
 * The binaries a sandkube node runs: what to build, from which Go module, at which version, and
 * which version each binary must report. Pure data. src/install/build-plan.ts turns each entry into
 * go commands; the lab (lab/components.ts) adds its own components on top of this table.
 */

/** Where a built binary lands: the flat binary folder, or the CNI plugin folder. */
export type BinaryDestination = "bin" | "cni";

export interface GoBinary {
  /** Import path of the main package (or, for a "test" binary, of the package under test). */
  readonly pkg: string;
  /** File name in its destination folder. */
  readonly name: string;
  readonly destination: BinaryDestination;
}

/**
 * How the module becomes binaries.
 * - "install": `go install pkg@version`. Refused by go when the module's go.mod has replace or
 *   exclude lines, so only for modules without them.
 * - "wrapper": a generated module that requires the target, so that the target's replace lines are
 *   ignored and rewritten into ones that point at published versions (src/install/gomod.ts).
 */
export type BuildStrategy =
  | { readonly kind: "install" }
  | {
      readonly kind: "wrapper";
      /** Folder name under the cache's modules/, shared by components built from the same wrapper. */
      readonly wrapper: string;
      /**
       * Published version for a module the target's go.mod replaces with a local folder, or
       * undefined when there is none (allowed only for modules the target does not require).
       */
      readonly localReplacement: (modulePath: string) => string | undefined;
      /** `go test -c` instead of `go build`: critest is the test binary of a package. */
      readonly testBinary?: boolean;
    };

export interface GoComponent {
  readonly kind: "go";
  readonly name: string;
  readonly module: string;
  readonly version: string;
  readonly binaries: readonly GoBinary[];
  readonly strategy: BuildStrategy;
  /** GOTOOLCHAIN: "local" uses the machine's go; "go1.21.13" makes go fetch that toolchain. */
  readonly toolchain: string;
  readonly cgo: boolean;
  readonly tags: readonly string[];
  readonly ldflags: readonly string[];
  /** Debian packages that must be present before building (headers for cgo). */
  readonly needsDebian: readonly string[];
  /** Why this component is built the way it is; copied into the manifest. */
  readonly note?: string;
}

/**
 * When `sandkube up` needs a component:
 * - "node": every node runs it.
 * - "service-proxy": only where the node's plan runs stock kube-proxy for Services (the host
 *   kernel); gVisor's iptables lacks the MASQUERADE, MARK and conntrack it uses (issue 9).
 * - "addon": a cluster add-on that runs in a pod from a local image (src/addons/images.ts).
 * - "tool": for the user only (helm); `up` never needs it.
 */
export type ComponentRole = "node" | "service-proxy" | "addon" | "tool";

export interface InstallComponent extends GoComponent {
  readonly role: ComponentRole;
}

export const KUBERNETES_VERSION = "v1.34.4";
export const CONTAINERD_VERSION = "v2.4.2";
export const RUNC_VERSION = "v1.4.4";
export const CNI_PLUGINS_VERSION = "v1.9.1";
export const CRI_TOOLS_VERSION = "v1.34.0";
export const ETCD_VERSION = "v3.6.16";
export const COREDNS_VERSION = "v1.13.2";
/**
 * Newest that proxy.golang.org serves (probed 2026-12-07): its version list names only v0.0.30, but
 * v0.0.33, v0.0.35 and v0.0.37 are served by exact version; v0.0.31/32/34/36/38+ answer 403.
 */
export const LOCAL_PATH_PROVISIONER_VERSION = "v0.0.37";
export const HELM_VERSION = "v4.3.2";

/**
 * k8s.io/kubernetes v1.X.Y requires its staging modules at v0.0.0 and replaces them with
 * ./staging/src/k8s.io/NAME; each one is published on its own as v0.X.Y.
 */
export function kubernetesStagingVersion(kubernetesVersion: string): string {
  const match = /^v1\.(\d+)\.(\d+)$/.exec(kubernetesVersion);
  if (!match) throw new Error(`not a Kubernetes release version: ${kubernetesVersion}`);
  return `v0.${match[1]}.${match[2]}`;
}

/** Linker flags that make Kubernetes binaries report their version, as hack/lib/version.sh does. */
export function kubernetesVersionLdflags(kubernetesVersion: string): string[] {
  const match = /^v(\d+)\.(\d+)\.\d+$/.exec(kubernetesVersion);
  if (!match) throw new Error(`not a Kubernetes release version: ${kubernetesVersion}`);
  const fields: Record<string, string> = {
    gitVersion: kubernetesVersion,
    gitMajor: match[1] ?? "",
    gitMinor: match[2] ?? "",
    gitTreeState: "clean",
  };
  return ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"].flatMap((pkg) =>
    Object.entries(fields).map(([field, value]) => `-X ${pkg}.${field}=${value}`),
  );
}

function kubernetesComponent(name: string, role: ComponentRole = "node"): InstallComponent {
  const staging = kubernetesStagingVersion(KUBERNETES_VERSION);
  return {
    kind: "go",
    role,
    name,
    module: "k8s.io/kubernetes",
    version: KUBERNETES_VERSION,
    binaries: [{ pkg: `k8s.io/kubernetes/cmd/${name}`, name, destination: "bin" }],
    strategy: {
      kind: "wrapper",
      wrapper: "kubernetes",
      localReplacement: (modulePath) => (modulePath.startsWith("k8s.io/") ? staging : undefined),
    },
    toolchain: "local",
    cgo: false,
    tags: [],
    // -s -w as upstream's release builds (hack/lib/golang.sh strips unless DBG=1).
    ldflags: ["-s", "-w", ...kubernetesVersionLdflags(KUBERNETES_VERSION)],
    needsDebian: [],
    // v1.35+ kubelet refuses cgroup v1 unless failCgroupV1: false; gVisor only has cgroup v1.
    note: "v1.34.x: last minor whose kubelet accepts cgroup v1 by default",
  };
}

const cniPlugin = (path: string): GoBinary => ({
  pkg: `github.com/containernetworking/plugins/plugins/${path}`,
  name: path.split("/").pop() ?? path,
  destination: "cni",
});

const containerdBinary = (name: string): GoBinary => ({
  pkg: `github.com/containerd/containerd/v2/cmd/${name}`,
  name,
  destination: "bin",
});

export const CONTAINERD: InstallComponent = {
  kind: "go",
  role: "node",
  name: "containerd",
  module: "github.com/containerd/containerd/v2",
  version: CONTAINERD_VERSION,
  binaries: ["containerd", "containerd-shim-runc-v2", "ctr"].map(containerdBinary),
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  // As containerd's Makefile does; without it `containerd --version` says "2.4.2+unknown".
  ldflags: [`-X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}`],
  needsDebian: [],
};

export const RUNC: InstallComponent = {
  kind: "go",
  role: "node",
  name: "runc",
  module: "github.com/opencontainers/runc",
  version: RUNC_VERSION,
  binaries: [{ pkg: "github.com/opencontainers/runc", name: "runc", destination: "bin" }],
  strategy: { kind: "install" },
  toolchain: "local",
  // libcontainer's seccomp filter compiler is libseccomp through cgo. Linked statically, as
  // runc's Makefile `static` target does, so it runs in a rootfs without libseccomp.so.2.
  cgo: true,
  tags: ["seccomp", "urfave_cli_no_docs", "netgo", "osusergo"],
  ldflags: ["-extldflags -static"],
  needsDebian: ["libseccomp-dev"],
};

export const CNI_PLUGINS: InstallComponent = {
  kind: "go",
  role: "node",
  name: "cni",
  module: "github.com/containernetworking/plugins",
  version: CNI_PLUGINS_VERSION,
  binaries: ["main/bridge", "main/loopback", "ipam/host-local", "meta/portmap"].map(cniPlugin),
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  ldflags: [
    `-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=${CNI_PLUGINS_VERSION}`,
  ],
  needsDebian: [],
};

export const CRICTL: InstallComponent = {
  kind: "go",
  role: "node",
  name: "crictl",
  module: "sigs.k8s.io/cri-tools",
  version: CRI_TOOLS_VERSION,
  binaries: [{ pkg: "sigs.k8s.io/cri-tools/cmd/crictl", name: "crictl", destination: "bin" }],
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  ldflags: [`-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}`],
  needsDebian: [],
};

export const ETCD: InstallComponent = {
  kind: "go",
  role: "node",
  name: "etcd",
  module: "go.etcd.io/etcd/server/v3",
  version: ETCD_VERSION,
  binaries: [{ pkg: "go.etcd.io/etcd/server/v3", name: "etcd", destination: "bin" }],
  strategy: {
    kind: "wrapper",
    wrapper: "etcd",
    // server/v3's go.mod replaces its sibling modules (api, client, pkg) with ../ folders; they
    // are released together under the same tag. Its "./FORBIDDEN_DEPENDENCY" guards are dropped.
    localReplacement: (modulePath) =>
      modulePath.startsWith("go.etcd.io/etcd/") ? ETCD_VERSION : undefined,
  },
  toolchain: "local",
  cgo: false,
  tags: [],
  ldflags: [],
  needsDebian: [],
};

export const COREDNS: InstallComponent = {
  kind: "go",
  role: "addon",
  name: "coredns",
  module: "github.com/coredns/coredns",
  version: COREDNS_VERSION,
  binaries: [{ pkg: "github.com/coredns/coredns", name: "coredns", destination: "bin" }],
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  // As CoreDNS's Makefile; its version string is the constant coremain.CoreVersion, so no -X is
  // needed, and GitCommit stays empty because a module zip has no git history.
  ldflags: ["-s", "-w"],
  needsDebian: [],
  note: "runs in a pod from the local image sandkube.local/coredns (src/addons/images.ts)",
};

export const LOCAL_PATH_PROVISIONER: InstallComponent = {
  kind: "go",
  role: "addon",
  name: "local-path-provisioner",
  module: "github.com/rancher/local-path-provisioner",
  version: LOCAL_PATH_PROVISIONER_VERSION,
  binaries: [
    {
      pkg: "github.com/rancher/local-path-provisioner",
      name: "local-path-provisioner",
      destination: "bin",
    },
  ],
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  // As its scripts/build; without -X the binary reports its source default "0.0.1".
  ldflags: ["-s", "-w", `-X main.VERSION=${LOCAL_PATH_PROVISIONER_VERSION}`],
  needsDebian: [],
  note: "runs in a pod from the local image sandkube.local/local-path-provisioner (src/addons/images.ts)",
};

export const HELM: InstallComponent = {
  kind: "go",
  role: "tool",
  name: "helm",
  module: "helm.sh/helm/v4",
  version: HELM_VERSION,
  binaries: [{ pkg: "helm.sh/helm/v4/cmd/helm", name: "helm", destination: "bin" }],
  strategy: { kind: "install" },
  toolchain: "local",
  cgo: false,
  tags: [],
  // As helm's Makefile for a tagged build: without -X, `helm version` says "v4.3" (the source
  // default); metadata stays empty, as on a tag, so the version carries no "+unreleased".
  ldflags: [
    "-s",
    "-w",
    `-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}`,
    "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
  ],
  needsDebian: [],
};

/**
 * Everything `sandkube install` provides, in build order: containerd, runc and kubelet first,
 * because the lab's users start with those while the rest still builds; the user's tool last.
 */
export const INSTALL_COMPONENTS: readonly InstallComponent[] = [
  CONTAINERD,
  RUNC,
  CNI_PLUGINS,
  CRICTL,
  kubernetesComponent("kubelet"),
  kubernetesComponent("kube-apiserver"),
  kubernetesComponent("kube-controller-manager"),
  kubernetesComponent("kube-scheduler"),
  kubernetesComponent("kubectl"),
  ETCD,
  kubernetesComponent("kube-proxy", "service-proxy"),
  COREDNS,
  LOCAL_PATH_PROVISIONER,
  HELM,
];

/**
 * Names of the components `up` needs, in build order: for `installMissing({ only })`.
 * kube-proxy only when the node's plan runs it.
 */
export function componentsForUp(options: {
  readonly kubeProxy: boolean;
  readonly addons?: boolean;
}): string[] {
  return INSTALL_COMPONENTS.filter(
    (component) =>
      component.role === "node" ||
      (component.role === "addon" && options.addons !== false) ||
      (component.role === "service-proxy" && options.kubeProxy),
  ).map((component) => component.name);
}

/** How a binary is asked for its version, and the version it must report. */
export interface VersionPin {
  readonly args: readonly string[];
  /** The version in the output, or null when the output names none. */
  readonly parse: (output: string) => string | null;
  readonly expected: string;
}

export interface ProductBinary {
  readonly name: string;
  readonly component: string;
  readonly destination: BinaryDestination;
  readonly pin: VersionPin;
}

const firstGroup =
  (pattern: RegExp) =>
  (output: string): string | null =>
    pattern.exec(output)?.[1] ?? null;

export function parseKubectlClientVersion(output: string): string | null {
  try {
    const parsed = JSON.parse(output) as { clientVersion?: { gitVersion?: unknown } };
    const version = parsed.clientVersion?.gitVersion;
    return typeof version === "string" && version !== "" ? version : null;
  } catch {
    return null;
  }
}

/** Each upstream prints its version its own way; these are the lines the pinned builds print. */
function pinFor(name: string, component: GoComponent): VersionPin {
  const expected = component.version;
  if (component.module === "k8s.io/kubernetes") {
    return name === "kubectl"
      ? // Plain `kubectl version --client` prints a deprecation warning on some releases; JSON is stable.
        { args: ["version", "--client", "-o", "json"], parse: parseKubectlClientVersion, expected }
      : // component-base/version: "Kubernetes v1.34.4"
        { args: ["--version"], parse: firstGroup(/^Kubernetes (v\d[\w.+-]*)/m), expected };
  }
  switch (name) {
    case "etcd":
      // "etcd Version: 3.6.16"
      return { args: ["--version"], parse: firstGroup(/^etcd Version: (\d[\w.+-]*)/m), expected };
    case "containerd":
      // "containerd github.com/containerd/containerd/v2 v2.4.2 <revision>"
      return {
        args: ["--version"],
        parse: firstGroup(/^containerd \S+ (v?\d[\w.+-]*)/m),
        expected,
      };
    case "containerd-shim-runc-v2":
      // "containerd-shim-runc-v2:\n  Version:  v2.4.2"
      return { args: ["-v"], parse: firstGroup(/^\s*Version:\s+(v?\d[\w.+-]*)/m), expected };
    case "ctr":
      return { args: ["--version"], parse: firstGroup(/^ctr \S+ (v?\d[\w.+-]*)/m), expected };
    case "runc":
      // "runc version 1.4.4"
      return { args: ["--version"], parse: firstGroup(/^runc version (\d[\w.+-]*)/m), expected };
    case "crictl":
      return {
        args: ["--version"],
        parse: firstGroup(/^crictl version (v?\d[\w.+-]*)/m),
        expected,
      };
    case "coredns":
      // "CoreDNS-1.13.2\nlinux/amd64, go1.26.8, "
      return { args: ["-version"], parse: firstGroup(/^CoreDNS-(\d[\w.+-]*)/m), expected };
    case "local-path-provisioner":
      // urfave/cli's "NAME version VERSION", NAME being the file name it was started as.
      return {
        args: ["--version"],
        parse: firstGroup(/^\S+ version (v?\d[\w.+-]*)/m),
        expected,
      };
    case "helm":
      // `helm version` prints a Go struct; the template prints the bare version ("v4.3.2"), and
      // a build with metadata ("v4.3.2+unreleased") does not match the pin.
      return {
        args: ["version", "--template", "{{.Version}}"],
        parse: firstGroup(/^(v\d[\w.+-]*)/m),
        expected,
      };
    default:
      if (component === CNI_PLUGINS)
        // A CNI plugin run without CNI_COMMAND prints its about line: "CNI loopback plugin v1.9.1".
        return { args: [], parse: firstGroup(/^CNI \S+ plugin (v?\d[\w.+-]*)/m), expected };
      throw new Error(`no version query for ${name}`);
  }
}

export const PRODUCT_BINARIES: readonly ProductBinary[] = INSTALL_COMPONENTS.flatMap((component) =>
  component.binaries.map((binary) => ({
    name: binary.name,
    component: component.name,
    destination: binary.destination,
    pin: pinFor(binary.name, component),
  })),
);

export function productBinary(name: string): ProductBinary | undefined {
  return PRODUCT_BINARIES.find((binary) => binary.name === name);
}

/** "v3.6.16" and "3.6.16" name the same release: etcd and runc print theirs without the v. */
export function sameVersion(found: string, expected: string): boolean {
  const bare = (version: string): string => version.replace(/^v/, "");
  return bare(found) === bare(expected);
}
