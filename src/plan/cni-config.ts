import { join } from "node:path";
import type { NodeLayout } from "../node/layout.js";
import type { ClusterConfig } from "./cluster-config.js";

/** The network name CRI and the plugin see (CNI_ARGS, the result's cache key). */
export const CNI_NETWORK_NAME = "sandkube";
export const CNI_VERSION = "1.0.0";

/**
 * The `sandkube-cni` entry of the conflist: what the plugin reads from stdin, besides the fields
 * every CNI network configuration has (`cniVersion`, `name`, `type`).
 */
export interface SandkubeCniNetConf {
  readonly type: "sandkube-cni";
  /** The node's pod range; each pod gets one address of it. */
  readonly subnet: string;
  /** The node's address on sandkube's link: each pod's default gateway. */
  readonly gateway: string;
  /** MTU of each pod's link (gVisor bug #14011: equal to the sandbox's uplink). */
  readonly mtu: number;
  /** The plugin's address allocations (layout.cniIpamDir). */
  readonly ipamDir: string;
}

export interface SandkubeConflist {
  readonly cniVersion: typeof CNI_VERSION;
  readonly name: typeof CNI_NETWORK_NAME;
  readonly plugins: readonly [SandkubeCniNetConf];
}

/** Where the node writes the conflist; the only file in layout.cniConfDir. */
export function cniConflistPath(layout: Pick<NodeLayout, "cniConfDir">): string {
  return join(layout.cniConfDir, `10-${CNI_NETWORK_NAME}.conflist`);
}

/**
 * Pure: the CNI network configuration list for this node, as JSON.
 *
 * No `loopback` entry: containerd's CRI brings up every pod's `lo` itself (its CNI setup loads a
 * loopback network before the conflist, go-cni `WithLoNetwork`), so a second one adds a plugin run
 * per pod and changes nothing.
 */
export function renderCniConflist(
  config: Pick<ClusterConfig, "podCIDR" | "nodeIP" | "mtu">,
  layout: Pick<NodeLayout, "cniIpamDir">,
): string {
  const conflist: SandkubeConflist = {
    cniVersion: CNI_VERSION,
    name: CNI_NETWORK_NAME,
    plugins: [
      {
        type: "sandkube-cni",
        subnet: config.podCIDR,
        gateway: config.nodeIP,
        mtu: config.mtu,
        ipamDir: layout.cniIpamDir,
      },
    ],
  };
  return `${JSON.stringify(conflist, null, 2)}\n`;
}
