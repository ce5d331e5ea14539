import { constants } from "node:fs";
import { access } from "node:fs/promises";
import type { AddonBinaries } from "../addons/images.js";
import { installCacheDir } from "../install/cache.js";
import { installMissing } from "../install/install.js";
import { componentsForUp } from "../install/components.js";
import { toBinaryPaths } from "../install/resolve-plan.js";
import { UsageError } from "../cli/usage-error.js";
import type { BinaryPaths } from "../plan/cluster-config.js";
import { packageBinary } from "./package-root.js";

export interface NodeBinaries {
  readonly node: Omit<BinaryPaths, "ociRuntime" | "cniBinDir">;
  readonly runc: string;
  readonly sandkubeRuntime: string;
  readonly sandkubeCni: string;
  readonly loopbackCni: string;
  readonly crictl: string | null;
  /** CoreDNS and local-path-provisioner, for `up`'s add-ons; null when either is missing. */
  readonly addons: AddonBinaries | null;
}

async function executable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/**
 * The node's binaries, as `sandkube install` finds them (--bin-dir, PATH, the cache, each
 * version-checked against its pin), installing what is missing with one progress line each.
 * sandkube's own runtime and CNI plugin ship in the package's dist/bin.
 */
export async function locateNodeBinaries(options: {
  readonly binDir: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  readonly onProgress: (line: string) => void;
  /** Only what this node will run: kube-proxy where the plan picks it, the add-ons unless off. */
  readonly needs: { readonly kubeProxy: boolean; readonly addons: boolean };
}): Promise<NodeBinaries> {
  const own = ["sandkube-runtime", "sandkube-cni"].map(packageBinary);
  for (const path of own) {
    if (!(await executable(path))) {
      throw new UsageError(
        `up: ${path} is missing: build the package with \`npm run build\` (it needs Bun, installed by npm ci).`,
        1,
      );
    }
  }
  const { resolution } = await installMissing({
    ...(options.binDir === undefined ? {} : { binDir: options.binDir }),
    env: options.env,
    cacheDir: installCacheDir(options.env),
    onProgress: options.onProgress,
    only: componentsForUp(options.needs),
  });
  const paths = resolution.paths;
  if (resolution.missing.length > 0) {
    const rejected = resolution.rejected.map((r) => `${r.path} (${r.reason})`);
    throw new UsageError(
      `up: missing binaries: ${resolution.missing.join(", ")}${rejected.length > 0 ? `; not used: ${rejected.join(", ")}` : ""}. ` +
        "They could not be built or downloaded here (see the lines above); install Go 1.26 and run `sandkube install`, or pass --bin-dir DIR where they are.",
      1,
    );
  }
  const need = (name: string): string => paths[name] ?? "";
  // ociRuntime and cniBinDir depend on the node's plan; bringUp fills them in.
  const {
    ociRuntime: _ociRuntime,
    cniBinDir: _cniBinDir,
    ...node
  } = toBinaryPaths(paths, {
    ociRuntime: "",
    cniBinDir: "",
  });
  return {
    node,
    runc: need("runc"),
    sandkubeRuntime: own[0] ?? "",
    sandkubeCni: own[1] ?? "",
    loopbackCni: need("loopback"),
    crictl: paths["crictl"] ?? null,
    addons:
      paths["coredns"] !== undefined && paths["local-path-provisioner"] !== undefined
        ? { coredns: paths["coredns"], localPathProvisioner: paths["local-path-provisioner"] }
        : null,
  };
}
