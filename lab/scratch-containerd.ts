import { join } from "node:path";
import {
  renderContainerdConfig,
  type ContainerdRenderOptions,
} from "../src/plan/containerd-config.js";
import { collectCoreFacts } from "../src/probe/facts.js";
import { systemIO } from "../src/probe/io.js";
import { labBinary, labCniDir } from "./paths.js";

/**
 * config.toml for a scratch containerd whose root, state, socket and CNI config all live in `dir`:
 * the node's own renderer, fed with this machine's probed facts as `up` feeds it, with `runc` as
 * the default handler. critest and the runtime's containerd test add their handlers via `options`.
 */
export async function scratchContainerdConfig(
  dir: string,
  sandboxImage: string,
  options: ContainerdRenderOptions,
): Promise<string> {
  const facts = await collectCoreFacts(systemIO(), { dataDir: dir });
  return renderContainerdConfig(
    {
      snapshotter: "overlayfs",
      sandboxImage,
      binaries: { ociRuntime: labBinary("runc"), cniBinDir: labCniDir() },
    },
    facts,
    {
      containerdRoot: join(dir, "root"),
      containerdState: join(dir, "state"),
      containerdSocket: join(dir, "containerd.sock"),
      cniConfDir: join(dir, "cni.d"),
    },
    options,
  );
}
