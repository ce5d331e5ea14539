import { join } from "node:path";
import { installCacheDir } from "../install/cache.js";
import type { CommandResult } from "../common/exec.js";
import { commandError, errnoOf, no, type NotYes } from "./check.js";
import type { ProbeIO } from "./io.js";

/** Programs doctor looks for on the search path and in the well-known directories. */
export const PROGRAMS = [
  "k3s",
  "kubelet",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kube-proxy",
  "kubectl",
  "etcd",
  "containerd",
  "containerd-shim-runc-v2",
  "ctr",
  "runc",
  "crun",
  "crictl",
  "runsc",
  "bun",
  "iptables",
  "ip",
] as const;

/** CNI plugins are looked up only in CNI plugin directories: a `bridge` on PATH is something else. */
export const CNI_PLUGINS = ["bridge", "loopback", "host-local", "portmap"] as const;

export type ProgramName = (typeof PROGRAMS)[number];
export type CniPluginName = (typeof CNI_PLUGINS)[number];

/** A version query as a Check that carries the version when it succeeds. */
export type VersionResult = { readonly result: "yes"; readonly version: string } | NotYes;

export type BinaryFact =
  | {
      readonly found: true;
      /** The first match in search order: the one a caller using the same order would run. */
      readonly path: string;
      /** Later matches, which the first one shadows. */
      readonly shadowed: readonly string[];
      readonly version: VersionResult;
    }
  | { readonly found: false };

export type CniPluginFact =
  | {
      readonly found: true;
      readonly path: string;
      readonly shadowed: readonly string[];
      /** The plugin release from its "about" line, e.g. `CNI bridge plugin v1.9.0`. */
      readonly version: VersionResult;
      /** CNI spec versions it speaks, from `CNI_COMMAND=VERSION`. */
      readonly cniVersions: VersionListResult;
    }
  | { readonly found: false };

export type VersionListResult =
  { readonly result: "yes"; readonly versions: readonly string[] } | NotYes;

export interface BinaryFacts {
  readonly searchedDirs: readonly string[];
  readonly cniDirs: readonly string[];
  readonly programs: Readonly<Record<ProgramName, BinaryFact>>;
  readonly cniPlugins: Readonly<Record<CniPluginName, CniPluginFact>>;
}

export interface BinarySearchOptions {
  /** sandkube's install cache (src/install/cache.ts); the default cache when absent. */
  readonly cacheBinDir?: string;
  readonly cacheCniDir?: string;
  /** Where the lab puts the binaries it builds (lab/paths.ts), when it is not the cache. */
  readonly labBinDir?: string;
  readonly labCniDir?: string;
}

/** Where distributions, installers and k3s put these programs when PATH does not name the dir. */
export const WELL_KNOWN_DIRS = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
  // k3s unpacks its bundled containerd, runc and CNI plugins here.
  "/var/lib/rancher/k3s/data/current/bin",
] as const;

export const WELL_KNOWN_CNI_DIRS = [
  // containerd's and the CNI project's default.
  "/opt/cni/bin",
  // Debian's containernetworking-plugins.
  "/usr/lib/cni",
  // Fedora's containernetworking-plugins.
  "/usr/libexec/cni",
  "/var/lib/rancher/k3s/data/current/bin",
] as const;

/** Each program prints its version its own way; the argv tail that asks, and where to find it. */
interface VersionQuery {
  readonly args: readonly string[];
  readonly parse: (output: string) => string | null;
}

const firstGroup =
  (pattern: RegExp) =>
  (output: string): string | null =>
    pattern.exec(output)?.[1] ?? null;

// `component-base/version` prints "Kubernetes v1.34.1" for every kube-* binary and kubelet.
const kubernetesVersion: VersionQuery = {
  args: ["--version"],
  parse: firstGroup(/^Kubernetes (v\d[\w.+-]*)/m),
};

export function parseKubectlClientVersion(output: string): string | null {
  try {
    const parsed = JSON.parse(output) as { clientVersion?: { gitVersion?: unknown } };
    const version = parsed.clientVersion?.gitVersion;
    return typeof version === "string" && version !== "" ? version : null;
  } catch {
    return null;
  }
}

export const VERSION_QUERIES: Readonly<Record<ProgramName, VersionQuery>> = {
  // "k3s version v1.30.2+k3s1 (faaf2f6a)"
  k3s: { args: ["--version"], parse: firstGroup(/^k3s version (v\d[\w.+-]*)/m) },
  kubelet: kubernetesVersion,
  "kube-apiserver": kubernetesVersion,
  "kube-controller-manager": kubernetesVersion,
  "kube-scheduler": kubernetesVersion,
  "kube-proxy": kubernetesVersion,
  // `kubectl version --client` without -o prints a deprecation warning on some releases; JSON is stable.
  kubectl: { args: ["version", "--client", "-o", "json"], parse: parseKubectlClientVersion },
  // "etcd Version: 3.5.21"
  etcd: { args: ["--version"], parse: firstGroup(/^etcd Version: (\d[\w.+-]*)/m) },
  // "containerd github.com/containerd/containerd/v2 v2.2.1 dea7da59..."
  containerd: {
    args: ["--version"],
    parse: firstGroup(/^containerd \S+ (v?\d[\w.+-]*)/m),
  },
  // "containerd-shim-runc-v2:\n  Version:  v2.2.1\n  Revision: ..."
  "containerd-shim-runc-v2": { args: ["-v"], parse: firstGroup(/^\s*Version:\s+(v?\d[\w.+-]*)/m) },
  // "ctr github.com/containerd/containerd/v2 v2.2.1"
  ctr: { args: ["--version"], parse: firstGroup(/^ctr \S+ (v?\d[\w.+-]*)/m) },
  // "runc version 1.4.0"
  runc: { args: ["--version"], parse: firstGroup(/^runc version (\d[\w.+-]*)/m) },
  // "crun version 1.19.1"
  crun: { args: ["--version"], parse: firstGroup(/^crun version (\d[\w.+-]*)/m) },
  // "crictl version v1.34.0"
  crictl: { args: ["--version"], parse: firstGroup(/^crictl version (v?\d[\w.+-]*)/m) },
  // "runsc version release-20250820.0"; a `go install` build prints "VERSION_MISSING" instead.
  runsc: { args: ["--version"], parse: firstGroup(/^runsc version ((?!VERSION_MISSING)\S+)/m) },
  // "1.4.5"
  bun: { args: ["--version"], parse: firstGroup(/^(\d+\.\d+\.\d+[\w.+-]*)\s*$/m) },
  // "iptables v1.8.9 (nf_tables)"
  iptables: { args: ["-V"], parse: firstGroup(/^iptables v(\d[\w.]*)/m) },
  // "ip utility, iproute2-6.1.0, libbpf 1.1.2"; older releases print "iproute2-ss200127".
  ip: { args: ["-V"], parse: firstGroup(/iproute2-(?:ss)?(\d[\w.]*\w)/) },
};

/** "CNI bridge plugin v1.9.0"; Debian's build prints "CNI bridge plugin version unknown". */
export function parseCniAbout(output: string): string | null {
  return /^CNI \S+ plugin (v?\d[\w.+-]*)/m.exec(output)?.[1] ?? null;
}

/** `{"cniVersion":"1.0.0","supportedVersions":["0.1.0",...]}` */
export function parseCniVersionInfo(output: string): string[] | null {
  try {
    const parsed = JSON.parse(output) as { supportedVersions?: unknown };
    const versions = parsed.supportedVersions;
    return Array.isArray(versions) && versions.every((v) => typeof v === "string")
      ? (versions as string[])
      : null;
  } catch {
    return null;
  }
}

/** Plenty for a `--version`; a binary that hangs longer is reported, not waited for. */
export const VERSION_TIMEOUT_MS = 3_000;

function uniqueDirs(dirs: readonly string[]): string[] {
  return [...new Set(dirs.filter((dir) => dir.startsWith("/")))];
}

/** The first lines of an answer, enough to show what a version query printed instead. */
function excerpt(text: string): string {
  const lines = text.trim().split("\n").slice(0, 3).join(" | ");
  return lines.length > 200 ? `${lines.slice(0, 200)}...` : lines;
}

function failed(result: CommandResult): NotYes {
  return { result: "no", code: errnoOf(result), detail: commandError(result) };
}

async function runVersion(
  io: ProbeIO,
  argv: readonly string[],
  parse: (output: string) => string | null,
): Promise<VersionResult> {
  const result = await io.run(argv, { timeoutMs: VERSION_TIMEOUT_MS });
  if (result.failure !== undefined) return failed(result);
  // Some programs print their version on stderr (CNI plugins' about line, older etcd), and older
  // CNI skel versions exit 1 after printing it, so a version found in the output wins.
  const version = parse(result.stdout) ?? parse(result.stderr);
  if (version !== null) return { result: "yes", version };
  if (result.exitCode !== 0) return failed(result);
  const shown = excerpt(result.stdout) || excerpt(result.stderr);
  return no("NO_VERSION", `no version in the output of ${argv.join(" ")}: ${shown}`);
}

/** Finds where each name lives: one directory listing per dir, then a stat of each match. */
async function locate(
  io: ProbeIO,
  dirs: readonly string[],
  names: readonly string[],
): Promise<Map<string, string[]>> {
  const listings = await Promise.all(dirs.map((dir) => io.list(dir)));
  const found = new Map<string, string[]>(names.map((name) => [name, []]));
  const checks: Promise<void>[] = [];
  dirs.forEach((dir, index) => {
    const listing = listings[index];
    if (listing === undefined || !listing.ok) return;
    for (const name of names) {
      if (!listing.value.includes(name)) continue;
      const path = join(dir, name);
      checks.push(
        // stat follows symlinks, so a dangling link or a directory of that name is not a program.
        io.kind(path).then((kind) => {
          if (kind.ok && kind.value === "file") found.get(name)?.push(path);
        }),
      );
    }
  });
  await Promise.all(checks);
  // Completion order of the stats is arbitrary; search order is what decides which one runs.
  for (const [name, paths] of found) {
    found.set(
      name,
      dirs.flatMap((dir) => paths.filter((path) => path === join(dir, name))),
    );
  }
  return found;
}

/**
 * Finds the Kubernetes, container runtime and network programs, and asks each for its version.
 * `searchPath` comes first (usually PATH split on ':'), then sandkube's install cache (where
 * `sandkube install` and the lab put what they build), the lab's own folder if it differs, and
 * the well-known ones, so the facts show both what a shell would run and what is merely installed.
 */
export async function probeBinaries(
  io: ProbeIO,
  searchPath: readonly string[],
  options: BinarySearchOptions = {},
): Promise<BinaryFacts> {
  const cacheDir = installCacheDir();
  const searchedDirs = uniqueDirs([
    ...searchPath,
    options.cacheBinDir ?? join(cacheDir, "bin"),
    ...(options.labBinDir === undefined ? [] : [options.labBinDir]),
    ...WELL_KNOWN_DIRS,
  ]);
  const cniDirs = uniqueDirs([
    ...WELL_KNOWN_CNI_DIRS,
    options.cacheCniDir ?? join(cacheDir, "cni"),
    ...(options.labCniDir === undefined ? [] : [options.labCniDir]),
  ]);
  const [programPaths, pluginPaths] = await Promise.all([
    locate(io, searchedDirs, PROGRAMS),
    locate(io, cniDirs, CNI_PLUGINS),
  ]);

  const programEntries = await Promise.all(
    PROGRAMS.map(async (name): Promise<[ProgramName, BinaryFact]> => {
      const [path, ...shadowed] = programPaths.get(name) ?? [];
      if (path === undefined) return [name, { found: false }];
      const query = VERSION_QUERIES[name];
      const version = await runVersion(io, [path, ...query.args], query.parse);
      return [name, { found: true, path, shadowed, version }];
    }),
  );

  const pluginEntries = await Promise.all(
    CNI_PLUGINS.map(async (name): Promise<[CniPluginName, CniPluginFact]> => {
      const [path, ...shadowed] = pluginPaths.get(name) ?? [];
      if (path === undefined) return [name, { found: false }];
      // `env` puts CNI_COMMAND into argv, so a recorded transcript tells the two runs apart.
      const [version, cniVersions] = await Promise.all([
        runVersion(io, ["env", "-u", "CNI_COMMAND", path], parseCniAbout),
        runVersion(
          io,
          ["env", "CNI_COMMAND=VERSION", path],
          (output) => parseCniVersionInfo(output)?.join(",") ?? null,
        ),
      ]);
      const versionList: VersionListResult =
        cniVersions.result === "yes"
          ? { result: "yes", versions: cniVersions.version.split(",") }
          : cniVersions;
      return [name, { found: true, path, shadowed, version, cniVersions: versionList }];
    }),
  );

  return {
    searchedDirs,
    cniDirs,
    programs: Object.fromEntries(programEntries) as Record<ProgramName, BinaryFact>,
    cniPlugins: Object.fromEntries(pluginEntries) as Record<CniPluginName, CniPluginFact>,
  };
}
