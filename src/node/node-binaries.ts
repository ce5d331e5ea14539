import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { labBinDir, labCniDir } from "../../lab/paths.js";
import type { BinaryPaths } from "../plan/cluster-config.js";
import { UsageError } from "../cli/usage-error.js";
import { packageBinary } from "./package-root.js";

export interface NodeBinaries {
  readonly node: Omit<BinaryPaths, "ociRuntime" | "cniBinDir">;
  readonly runc: string;
  readonly sandkubeRuntime: string;
  readonly sandkubeCni: string;
  readonly loopbackCni: string;
  readonly crictl: string | null;
}

async function executable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

async function find(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (await executable(candidate)) return candidate;
  }
  return undefined;
}

/** Where the node's binaries are looked for, in order: --bin-dir, PATH, then the caches. */
export function searchDirs(binDir: string | undefined, env: NodeJS.ProcessEnv): string[] {
  return [
    ...(binDir === undefined ? [] : [binDir]),
    ...(env["PATH"] ?? "").split(delimiter).filter(Boolean),
    join(env["SANDKUBE_CACHE_DIR"] ?? "/var/cache/sandkube", "bin"),
    labBinDir(env),
  ];
}

export async function locateNodeBinaries(options: {
  readonly binDir: string | undefined;
  readonly env: NodeJS.ProcessEnv;
}): Promise<NodeBinaries> {
  const dirs = searchDirs(options.binDir, options.env);
  const cniDirs = [
    ...(options.binDir === undefined ? [] : [options.binDir]),
    join(options.env["SANDKUBE_CACHE_DIR"] ?? "/var/cache/sandkube", "cni"),
    labCniDir(options.env),
    "/opt/cni/bin",
  ];
  const missing: string[] = [];
  const need = async (name: string, where: readonly string[] = dirs): Promise<string> => {
    const found = await find(name, where);
    if (found === undefined) missing.push(name);
    return found ?? "";
  };
  const node = {
    etcd: await need("etcd"),
    kubeApiserver: await need("kube-apiserver"),
    kubeControllerManager: await need("kube-controller-manager"),
    kubeScheduler: await need("kube-scheduler"),
    kubelet: await need("kubelet"),
    kubectl: await need("kubectl"),
    containerd: await need("containerd"),
    containerdShim: await need("containerd-shim-runc-v2"),
    ctr: await need("ctr"),
  };
  const result: NodeBinaries = {
    node,
    runc: await need("runc"),
    sandkubeRuntime: (await executable(packageBinary("sandkube-runtime")))
      ? packageBinary("sandkube-runtime")
      : await need("sandkube-runtime"),
    sandkubeCni: (await executable(packageBinary("sandkube-cni")))
      ? packageBinary("sandkube-cni")
      : await need("sandkube-cni"),
    loopbackCni: await need("loopback", cniDirs),
    crictl: (await find("crictl", dirs)) ?? null,
  };
  if (missing.length > 0) {
    throw new UsageError(
      `up: missing binaries: ${missing.join(", ")}. Run \`sandkube install\` to build them from Go modules, or pass --bin-dir DIR where they are.`,
      1,
    );
  }
  return result;
}
