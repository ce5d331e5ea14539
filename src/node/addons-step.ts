import { ensureAddonImages, type AddonBinaries } from "../addons/images.js";
import { applyAddons } from "../addons/apply.js";
import { addonParamsFor, renderAddons } from "../addons/manifests.js";
import type { Progress } from "../cli/progress.js";
import { nodeImportTarget } from "./image-target.js";
import type { NodeLayout } from "./layout.js";
import type { NodeState } from "./state.js";

/**
 * Cluster DNS (CoreDNS) and the default StorageClass (local-path-provisioner), as k3s ships them:
 * their images are built here from the installed binaries and imported into the node's
 * containerd (no registry is needed), then the objects are applied and waited for.
 */
export async function installAddons(
  state: NodeState,
  layout: NodeLayout,
  binaries: AddonBinaries,
  progress: Progress,
  timeoutMs: number,
): Promise<void> {
  const { config } = state;
  const images = await progress.step("Importing the add-ons' images", () =>
    ensureAddonImages(nodeImportTarget(config, layout), binaries),
  );
  const addons = renderAddons(addonParamsFor(config, images.names));
  await progress.step("Starting cluster DNS and the default StorageClass", () =>
    applyAddons(state.kubeconfig.admin, addons, {
      timeoutMs,
      onProgress: (line) => progress.note(`   ${line}`),
    }),
  );
}
