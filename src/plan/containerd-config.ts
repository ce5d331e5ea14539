import { dirname, join } from "node:path";
import { stringify } from "smol-toml";
import type { NodeLayout } from "../node/layout.js";
import type { CoreFacts } from "../probe/facts.js";
import { releaseAtLeast } from "./adaptations.js";
import type { BinaryPaths, ClusterConfig } from "./cluster-config.js";

/** What the containerd renderer reads of a ClusterConfig; a whole ClusterConfig fits. */
export type ContainerdConfigInputs = Pick<ClusterConfig, "snapshotter" | "sandboxImage"> & {
  readonly binaries: Pick<BinaryPaths, "ociRuntime" | "cniBinDir">;
};

/** The paths containerd's config names; a NodeLayout fits. */
export type ContainerdLayout = Pick<
  NodeLayout,
  "containerdRoot" | "containerdState" | "containerdSocket" | "cniConfDir"
>;

export interface ContainerdRenderOptions {
  /**
   * CRI runtime handlers besides `runc` (the one kubelet uses): handler name -> the OCI runtime
   * binary containerd's runc shim runs for it. critest compares two runtimes in one containerd.
   */
  readonly extraRuntimes?: Readonly<Record<string, string>>;
  /**
   * The certs.d folder of hosts.toml files (one folder per registry host); default: the node's own,
   * registryHostsDir(layout).
   */
  readonly registryConfigPath?: string;
  /** The platform images are unpacked for, `os/arch` as containerd spells it; default: this machine's. */
  readonly platform?: string;
}

/**
 * Pure: the node's certs.d folder, next to containerd's root (/var/lib/sandkube/containerd/certs.d).
 * src/registry/hosts.ts renders the hosts.toml files that go in it.
 */
export function registryHostsDir(layout: Pick<ContainerdLayout, "containerdRoot">): string {
  return join(dirname(layout.containerdRoot), "certs.d");
}

/** The handler kubelet's pods run with: CRI's default_runtime_name. */
export const DEFAULT_RUNTIME_HANDLER = "runc";

/** The runtime_type every handler uses: containerd's runc shim, which runs `BinaryName`. */
const RUNC_SHIM = "io.containerd.runc.v2";

/** The settings of containerd's config that exist only because of a fact. */
export interface ContainerdFactSettings {
  /** enable_unprivileged_ports and enable_unprivileged_icmp set to false. */
  readonly noUnprivilegedPortsIcmp: boolean;
  /** The runc options' NoNewKeyring = true. */
  readonly noNewKeyring: boolean;
  /** restrict_oom_score_adj = true. */
  readonly restrictOomScoreAdj: boolean;
}

const CAP_SYS_RESOURCE = 24n;

function lacksCapability(capEff: string | null, bit: bigint): boolean {
  if (capEff === null || !/^[0-9a-fA-F]+$/.test(capEff)) return false;
  return ((BigInt(`0x${capEff}`) >> bit) & 1n) === 0n;
}

/**
 * Pure: which fact-driven settings these facts switch on. The conditions are the doctor's rules
 * of the same names in adaptations.ts (`no-unprivileged-ports-icmp`, `no-new-keyring`), restated
 * over CoreFacts so that a test or the lab can render a config from the core probes alone;
 * test/unit/plan-render.test.ts checks that both agree on every recorded machine.
 */
export function containerdFactSettings(facts: CoreFacts): ContainerdFactSettings {
  const unprivilegedSysctlMissing = [
    "net/ipv4/ip_unprivileged_port_start",
    "net/ipv4/ping_group_range",
  ].some((name) => {
    const s = facts.sysctls.find((f) => f.name === name);
    return s !== undefined && (!s.exists || s.writable.result === "no");
  });
  return {
    // Facts: kernel.release < 4.11 (containerd's ValidateEnableUnprivileged refuses to load the
    // CRI plugin, docs/gvisor-blockers.md B3), or sysctls[net/ipv4/ip_unprivileged_port_start] /
    // sysctls[net/ipv4/ping_group_range] missing: runc would write them into every pod sandbox.
    noUnprivilegedPortsIcmp:
      unprivilegedSysctlMissing || !releaseAtLeast(facts.kernel.release, 4, 11),
    // Fact: keyrings.joinSessionKeyring failed; runc's init joins a new session keyring unless
    // NoNewKeyring and tolerates only ENOSYS (B11).
    noNewKeyring: facts.keyrings.joinSessionKeyring.result === "no",
    // Fact: identity.effectiveCapabilities lacks CAP_SYS_RESOURCE (this project's VMs: CapEff
    // 0x1fffeffffff). CRI gives the pause container oom_score_adj -998, and lowering it without
    // CAP_SYS_RESOURCE fails with EPERM in runc's nsexec; restrict clamps it, as kind does.
    restrictOomScoreAdj: lacksCapability(facts.identity.effectiveCapabilities, CAP_SYS_RESOURCE),
  };
}

const GO_ARCH: Readonly<Record<string, string>> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
};

/** containerd's name for the platform this Node runs on, e.g. linux/amd64. */
export function hostPlatform(arch: string = process.arch): string {
  return `linux/${GO_ARCH[arch] ?? arch}`;
}

type RuncOptions = {
  BinaryName: string;
  Root?: string;
  SystemdCgroup: boolean;
  NoNewKeyring?: boolean;
};

type RuntimeHandler = { runtime_type: string; options: RuncOptions };

type CriImagesPlugin = {
  snapshotter: string;
  pinned_images: { sandbox: string };
  registry: { config_path: string };
};

type CriRuntimePlugin = {
  enable_unprivileged_ports?: boolean;
  enable_unprivileged_icmp?: boolean;
  restrict_oom_score_adj?: boolean;
  netns_mounts_under_state_dir: boolean;
  containerd: { default_runtime_name: string; runtimes: Record<string, RuntimeHandler> };
  cni: { bin_dirs: string[]; conf_dir: string };
};

/** containerd 2.x's config, version 3: only the keys sandkube sets. */
type ContainerdToml = {
  version: 3;
  root: string;
  state: string;
  disabled_plugins: string[];
  grpc: { address: string };
  plugins: {
    "io.containerd.cri.v1.images": CriImagesPlugin;
    "io.containerd.cri.v1.runtime": CriRuntimePlugin;
    "io.containerd.grpc.v1.cri": { stream_server_address: string; stream_server_port: string };
    "io.containerd.transfer.v1.local": {
      unpack_config: { platform: string; snapshotter: string }[];
    };
    "io.containerd.nri.v1.nri": { disable: boolean };
  };
};

/** Pure: containerd's config.toml for this node. */
export function renderContainerdConfig(
  config: ContainerdConfigInputs,
  facts: CoreFacts,
  layout: ContainerdLayout,
  options: ContainerdRenderOptions = {},
): string {
  const settings = containerdFactSettings(facts);
  const runcOptions = (binary: string): RuncOptions => ({
    BinaryName: binary,
    // kubelet runs with the cgroupfs driver: sandkube's components are no systemd units, and the
    // sandboxes sandkube targets have no systemd (kubelet-config.ts).
    SystemdCgroup: false,
    // The runtime's container state lives under the node's state dir, not /run/containerd/runc,
    // so `down` can delete what a dead shim left, and a host containerd's containers stay apart.
    Root: `${layout.containerdState}/runc`,
    ...(settings.noNewKeyring ? { NoNewKeyring: true } : {}),
  });
  const runtimes: Record<string, RuntimeHandler> = {
    [DEFAULT_RUNTIME_HANDLER]: {
      runtime_type: RUNC_SHIM,
      options: runcOptions(config.binaries.ociRuntime),
    },
  };
  for (const [handler, binary] of Object.entries(options.extraRuntimes ?? {}))
    runtimes[handler] = { runtime_type: RUNC_SHIM, options: runcOptions(binary) };

  const toml: ContainerdToml = {
    version: 3,
    root: layout.containerdRoot,
    state: layout.containerdState,
    // /opt/containerd is the opt plugin's folder for managed binaries, created at every start;
    // sandkube installs none, and a node writes nothing outside its data dir.
    disabled_plugins: ["io.containerd.internal.v1.opt"],
    grpc: { address: layout.containerdSocket },
    plugins: {
      "io.containerd.cri.v1.images": {
        snapshotter: config.snapshotter,
        // The sandbox image is built and imported locally (`preloaded-images`: no registry is
        // reachable from the sandboxes sandkube targets); pinning keeps GC from removing it.
        pinned_images: { sandbox: config.sandboxImage },
        // Always the node's own folder: left unset, the CRI plugin reads the host's
        // /etc/containerd/certs.d:/etc/docker/certs.d (plugins/cri/images/plugin.go in 2.4.2), and
        // a node reads nothing outside its data dir. Registry credentials are not here: kubelet
        // sends them with each pull (docs/registries.md).
        registry: { config_path: options.registryConfigPath ?? registryHostsDir(layout) },
      },
      "io.containerd.cri.v1.runtime": {
        ...(settings.noUnprivilegedPortsIcmp
          ? { enable_unprivileged_ports: false, enable_unprivileged_icmp: false }
          : {}),
        ...(settings.restrictOomScoreAdj ? { restrict_oom_score_adj: true } : {}),
        // Pod network namespaces are pinned under the node's state dir rather than /var/run/netns,
        // so a node never touches another containerd's and `down` finds every one of its own.
        netns_mounts_under_state_dir: true,
        containerd: { default_runtime_name: DEFAULT_RUNTIME_HANDLER, runtimes },
        cni: { bin_dirs: [config.binaries.cniBinDir], conf_dir: layout.cniConfDir },
      },
      // exec, attach and port-forward streams: only the API server, on this node, reaches them.
      "io.containerd.grpc.v1.cri": { stream_server_address: "127.0.0.1", stream_server_port: "0" },
      // `ctr images import` (how sandkube loads images) unpacks through the transfer service, which
      // unpacks only into the snapshotters listed here; the default lists overlayfs alone, so a
      // native import fails with "no unpack platforms defined" (docs/gvisor-blockers.md B7).
      "io.containerd.transfer.v1.local": {
        unpack_config: [
          { platform: options.platform ?? hostPlatform(), snapshotter: config.snapshotter },
        ],
      },
      // No NRI plugins run on a sandkube node, and NRI would listen on /var/run/nri/nri.sock,
      // outside the data dir, where a host containerd's NRI listens too.
      "io.containerd.nri.v1.nri": { disable: true },
    },
  };
  return stringify(toml);
}
