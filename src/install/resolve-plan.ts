/**
 * Pure rules for where a node's binary comes from and whether a found one may be used.
 * Sources, in order: --bin-dir, PATH, the cache; then `sandkube install` builds or downloads.
 */
import type { BinaryPaths } from "../plan/cluster-config.js";
import { PRODUCT_BINARIES, sameVersion, type ProductBinary } from "./components.js";

export type BinarySource = "bin-dir" | "path" | "cache";

export interface VersionOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
  readonly failure?: string;
}

export type VersionVerdict =
  | { readonly matches: true; readonly version: string }
  | { readonly matches: false; readonly version: string | null; readonly detail: string };

/** What `binary --version` (or its own query) says, held against the pinned version. */
export function judgeVersion(binary: ProductBinary, output: VersionOutput): VersionVerdict {
  // CNI plugins print their about line on stderr and exit 1 without CNI_COMMAND; etcd used stderr.
  const version = binary.pin.parse(output.stdout) ?? binary.pin.parse(output.stderr);
  if (version !== null && sameVersion(version, binary.pin.expected))
    return { matches: true, version };
  if (version !== null)
    return {
      matches: false,
      version,
      detail: `reports ${version}, sandkube pins ${binary.pin.expected}`,
    };
  const how = output.failure ?? `exit status ${output.exitCode}`;
  const said = (output.stdout.trim() || output.stderr.trim()).split("\n")[0] ?? "";
  return {
    matches: false,
    version: null,
    detail: `reports no version (${how}${said === "" ? "" : `: ${said.slice(0, 120)}`}), sandkube pins ${binary.pin.expected}`,
  };
}

export type Acceptance =
  | { readonly use: true; readonly warning?: string }
  | { readonly use: false; readonly reason: string };

/**
 * A binary found outside the cache is used only at the pinned version, except from --bin-dir:
 * naming a folder is the user saying "these binaries", so a different version is used with a
 * warning instead of being replaced behind their back (docs/install.md).
 */
export function acceptFound(
  source: Exclude<BinarySource, "cache">,
  path: string,
  verdict: VersionVerdict,
): Acceptance {
  if (verdict.matches) return { use: true };
  if (source === "bin-dir")
    return { use: true, warning: `${path} ${verdict.detail}; used because --bin-dir names it` };
  return { use: false, reason: `${path} ${verdict.detail}; not used` };
}

/** CNI plugins are not looked up on PATH: a `bridge` there is something else (src/probe/binaries.ts). */
export function searchesPath(binary: ProductBinary): boolean {
  return binary.destination === "bin";
}

/** The binaries `only` selects: component names ("containerd") or binary names ("ctr"). */
export function selectBinaries(only: readonly string[] | undefined): {
  readonly binaries: readonly ProductBinary[];
  readonly unknown: readonly string[];
} {
  if (only === undefined) return { binaries: PRODUCT_BINARIES, unknown: [] };
  const unknown = only.filter(
    (name) => !PRODUCT_BINARIES.some((binary) => binary.name === name || binary.component === name),
  );
  const binaries = PRODUCT_BINARIES.filter(
    (binary) => only.includes(binary.name) || only.includes(binary.component),
  );
  return { binaries, unknown };
}

/** Components whose binaries are among `missing`, in table order, each once. */
export function componentsOf(missing: readonly string[]): string[] {
  return [
    ...new Set(
      PRODUCT_BINARIES.filter((binary) => missing.includes(binary.name)).map(
        (binary) => binary.component,
      ),
    ),
  ];
}

/**
 * BinaryPaths for the node from resolved product binaries. sandkube's own programs are not
 * installed here: the caller names the OCI runtime (runc's path, or dist/bin/sandkube-runtime) and
 * the CNI folder (see assembleCniBinDir), because both depend on the node's plan.
 */
export function toBinaryPaths(
  paths: Readonly<Record<string, string>>,
  node: { readonly ociRuntime: string; readonly cniBinDir: string },
): BinaryPaths {
  const need = (name: string): string => {
    const path = paths[name];
    if (path === undefined) throw new Error(`${name} is not resolved; run \`sandkube install\``);
    return path;
  };
  return {
    etcd: need("etcd"),
    kubeApiserver: need("kube-apiserver"),
    kubeControllerManager: need("kube-controller-manager"),
    kubeScheduler: need("kube-scheduler"),
    kubelet: need("kubelet"),
    kubectl: need("kubectl"),
    containerd: need("containerd"),
    containerdShim: need("containerd-shim-runc-v2"),
    ctr: need("ctr"),
    ociRuntime: node.ociRuntime,
    cniBinDir: node.cniBinDir,
    kubeProxy: paths["kube-proxy"] ?? null,
  };
}
