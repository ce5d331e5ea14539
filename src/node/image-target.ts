import type { ImportOptions } from "../images/containerd.js";
import type { ClusterConfig } from "../plan/cluster-config.js";
import type { NodeLayout } from "./layout.js";

/** Pure: how images go into this node's containerd (and who unpacks them: config.imageUnpack). */
export function nodeImportTarget(
  config: ClusterConfig,
  layout: NodeLayout,
  ctr: string = config.binaries.ctr,
): Omit<ImportOptions, "file"> {
  return {
    ctr,
    socket: layout.containerdSocket,
    snapshotter: config.snapshotter,
    ...(config.imageUnpack === "without-mounts"
      ? { withoutMounts: { containerdRoot: layout.containerdRoot } }
      : {}),
  };
}
