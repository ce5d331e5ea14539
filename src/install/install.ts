/**
 * Finds the binaries a node runs and gets the missing ones into sandkube's cache: the API for
 * `sandkube install` and `sandkube up`. Sources, in order: --bin-dir, PATH, the cache; then a
 * pinned release download, else a build from Go modules with the lab's recipes.
 */
import { constants } from "node:fs";
import { access, mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { runCommand } from "../common/exec.js";
import {
  binaryPath,
  buildManifest,
  cacheLayout,
  recipeOf,
  type CacheLayout,
  type DebianPackageState,
  type Stamp,
} from "./build-plan.js";
import { manifestPath } from "./cache.js";
import { INSTALL_COMPONENTS, type GoComponent, type ProductBinary } from "./components.js";
import { installArtifact, type DownloadOptions } from "./download.js";
import {
  RELEASE_DOWNLOADS,
  checkDownload,
  downloadRecipe,
  type ReleaseDownload,
} from "./download-plan.js";
import {
  GoBuilder,
  describeOutcome,
  readAllStamps,
  readStamp,
  runAll,
  sha256OfFile,
  writeStamp,
  type Outcome,
  type Progress,
} from "./go-build.js";
import {
  acceptFound,
  componentsOf,
  judgeVersion,
  searchesPath,
  selectBinaries,
  type BinarySource,
} from "./resolve-plan.js";

export interface ResolveOptions {
  readonly binDir?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly cacheDir: string;
  readonly onProgress?: Progress;
  /** Component or binary names; undefined means every binary a node runs. */
  readonly only?: readonly string[];
}

export interface ResolvedBinary {
  readonly name: string;
  readonly component: string;
  readonly path: string;
  readonly source: BinarySource;
  /** What the binary reported; for the cache, the version its stamp was built or fetched at. */
  readonly version: string | null;
  readonly warning?: string;
}

export interface RejectedBinary {
  readonly name: string;
  readonly path: string;
  readonly reason: string;
}

export interface Resolution {
  /** Binary name -> absolute path, for every binary found. */
  readonly paths: Readonly<Record<string, string>>;
  readonly found: readonly ResolvedBinary[];
  /** Names with no usable binary in any source. */
  readonly missing: readonly string[];
  /** Binaries found but not used, with the reason (a version other than the pin). */
  readonly rejected: readonly RejectedBinary[];
}

/** Version queries are quick; a binary that hangs is reported, not waited for. */
const VERSION_TIMEOUT_MS = 10_000;

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function askVersion(binary: ProductBinary, path: string) {
  const result = await runCommand([path, ...binary.pin.args], {
    timeoutMs: VERSION_TIMEOUT_MS,
    // A CNI plugin given CNI_COMMAND from the caller's environment would act on it.
    env: { CNI_COMMAND: undefined },
  });
  return judgeVersion(binary, result);
}

function pathDirs(env: NodeJS.ProcessEnv): string[] {
  return (env["PATH"] ?? "").split(delimiter).filter((dir) => dir.startsWith("/"));
}

/** The first executable of that name on PATH, as a shell would pick it. */
async function onPath(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const path = join(dir, name);
    if (await executable(path)) return path;
  }
  return undefined;
}

/** A cache binary counts when its component's stamp lists it with the sha256 it has now. */
async function verifiedInCache(
  layout: CacheLayout,
  binary: ProductBinary,
  stamps: Map<string, Promise<Stamp | undefined>>,
): Promise<{ path: string; version: string } | { reason: string } | undefined> {
  const path = binaryPath(layout, { pkg: "", name: binary.name, destination: binary.destination });
  if (!(await executable(path))) return undefined;
  let stamp = stamps.get(binary.component);
  if (stamp === undefined) {
    stamp = readStamp(layout, binary.component);
    stamps.set(binary.component, stamp);
  }
  const stamped = (await stamp)?.binaries.find((entry) => entry.name === binary.name);
  if (stamped === undefined) return { reason: `${path} has no stamp; not used` };
  const sha256 = await sha256OfFile(path);
  if (sha256 !== stamped.sha256)
    return { reason: `${path} changed since it was installed (sha256 differs); not used` };
  const version = (await stamp)?.version ?? binary.pin.expected;
  if (version !== binary.pin.expected)
    return { reason: `${path} was installed at ${version}, sandkube pins ${binary.pin.expected}` };
  return { path, version };
}

/** Where each of the node's binaries is, without installing anything. */
export async function resolveBinaries(options: ResolveOptions): Promise<Resolution> {
  const layout = cacheLayout(options.cacheDir);
  const { binaries, unknown } = selectBinaries(options.only);
  if (unknown.length > 0) throw new Error(`unknown binaries or components: ${unknown.join(", ")}`);
  // The cache's own bin/ on PATH (as in the lab sandbox) is the cache, checked by sha256 below.
  const searchPath = pathDirs(options.env).filter((dir) => dir !== layout.bin);
  const stamps = new Map<string, Promise<Stamp | undefined>>();

  const results = await Promise.all(
    binaries.map(async (binary) => {
      const rejected: RejectedBinary[] = [];
      const outside: [Exclude<BinarySource, "cache">, string | undefined][] = [
        ["bin-dir", options.binDir === undefined ? undefined : join(options.binDir, binary.name)],
        ["path", searchesPath(binary) ? await onPath(binary.name, searchPath) : undefined],
      ];
      for (const [source, path] of outside) {
        if (path === undefined || !(await executable(path))) continue;
        const verdict = await askVersion(binary, path);
        const acceptance = acceptFound(source, path, verdict);
        if (acceptance.use) {
          const found: ResolvedBinary = {
            name: binary.name,
            component: binary.component,
            path,
            source,
            version: verdict.version,
            ...(acceptance.warning === undefined ? {} : { warning: acceptance.warning }),
          };
          return { found, rejected };
        }
        rejected.push({ name: binary.name, path, reason: acceptance.reason });
      }
      const cached = await verifiedInCache(layout, binary, stamps);
      if (cached !== undefined && "path" in cached) {
        const found: ResolvedBinary = {
          name: binary.name,
          component: binary.component,
          path: cached.path,
          source: "cache",
          version: cached.version,
        };
        return { found, rejected };
      }
      if (cached !== undefined)
        rejected.push({ name: binary.name, path: "", reason: cached.reason });
      return { found: undefined, rejected };
    }),
  );

  const found = results.flatMap((result) => (result.found === undefined ? [] : [result.found]));
  const rejected = results.flatMap((result) => result.rejected);
  for (const entry of rejected) options.onProgress?.(`not using ${entry.name}: ${entry.reason}`);
  for (const entry of found)
    if (entry.warning !== undefined) options.onProgress?.(`warning: ${entry.warning}`);
  return {
    paths: Object.fromEntries(found.map((entry) => [entry.name, entry.path])),
    found,
    missing: binaries
      .filter((binary) => !found.some((entry) => entry.name === binary.name))
      .map((binary) => binary.name),
    rejected,
  };
}

export interface InstallOptions extends ResolveOptions {
  /** Pinned release downloads tried before a Go build; RELEASE_DOWNLOADS by default. */
  readonly downloads?: readonly ReleaseDownload[];
  /** Build from Go modules when no download is pinned or it failed (default true). */
  readonly build?: boolean;
  /** Extra CA for downloads (the tests' loopback release server). */
  readonly ca?: string;
  /** Go builds at once; 2 on this project's 2-core machines. */
  readonly jobs?: number;
}

export interface InstallResult {
  readonly resolution: Resolution;
  readonly outcomes: readonly Outcome[];
}

/** What the lab's build last recorded about Debian packages; `install` does not query dpkg. */
async function previousDebian(cacheDir: string): Promise<DebianPackageState[]> {
  try {
    const parsed = JSON.parse(await readFile(manifestPath(cacheDir), "utf8")) as {
      debian?: unknown;
    };
    return Array.isArray(parsed.debian) ? (parsed.debian as DebianPackageState[]) : [];
  } catch {
    return [];
  }
}

async function writeManifestFile(
  layout: CacheLayout,
  downloads: readonly ReleaseDownload[],
): Promise<void> {
  const manifest = buildManifest(
    layout,
    INSTALL_COMPONENTS,
    await readAllStamps(layout),
    await previousDebian(layout.root),
    (component) => [
      recipeOf(component),
      ...downloads.filter((d) => d.component === component.name).map(downloadRecipe),
    ],
  );
  const path = manifestPath(layout.root);
  await writeFile(`${path}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

async function download(
  layout: CacheLayout,
  component: GoComponent,
  entry: ReleaseDownload,
  options: DownloadOptions,
): Promise<Outcome> {
  const started = performance.now();
  const seconds = (): number => Math.round((performance.now() - started) / 100) / 10;
  const log = join(layout.logs, `${component.name}.log`);
  const fail = (message: string): Outcome => ({
    name: component.name,
    status: "failed",
    seconds: seconds(),
    step: "download",
    log,
    message,
    tail: [],
  });
  const problems = checkDownload(
    entry,
    component.binaries.map((binary) => binary.name),
  );
  if (problems.length > 0) return fail(`download entry unusable: ${problems.join("; ")}`);
  const targets = Object.fromEntries(
    component.binaries.map((binary) => [binary.name, binaryPath(layout, binary)]),
  );
  try {
    for (const [index, artifact] of entry.artifacts.entries())
      await installArtifact(
        artifact,
        targets,
        join(layout.staging, `${component.name}-download-${index}`),
        options,
      );
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  const binaries = [];
  for (const binary of component.binaries) {
    const path = binaryPath(layout, binary);
    const sha256 = await sha256OfFile(path);
    if (sha256 === undefined) return fail(`${path} vanished after the download`);
    binaries.push({ name: binary.name, path, sha256 });
  }
  await writeStamp(layout, {
    name: component.name,
    source: "download",
    module: component.module,
    version: component.version,
    recipe: downloadRecipe(entry),
    goVersion: "none (release download)",
    builtAt: new Date().toISOString(),
    buildSeconds: seconds(),
    binaries,
  });
  return { name: component.name, status: "built", seconds: seconds(), reason: "downloaded" };
}

async function goAvailable(): Promise<boolean> {
  const result = await runCommand(["go", "version"], { timeoutMs: 30_000 });
  return result.exitCode === 0 && result.failure === undefined;
}

/**
 * Installs into the cache every selected binary that no source has, one progress line per
 * component, and resolves again. A component fails with the step and log that failed; the rest
 * still install.
 */
export async function installMissing(options: InstallOptions): Promise<InstallResult> {
  const progress: Progress = options.onProgress ?? (() => undefined);
  const layout = cacheLayout(options.cacheDir);
  const before = await resolveBinaries(options);
  const downloads = options.downloads ?? RELEASE_DOWNLOADS;
  const allowBuild = options.build ?? true;
  const wanted = componentsOf(before.missing);
  const outcomes: Outcome[] = [];
  for (const name of new Set(before.found.map((entry) => entry.component)))
    if (!wanted.includes(name)) {
      const entries = before.found.filter((entry) => entry.component === name);
      progress(
        `have ${name}: ${entries.map((entry) => `${entry.path} (${entry.source})`).join(", ")}`,
      );
    }
  if (wanted.length === 0) return { resolution: before, outcomes };

  const builder = new GoBuilder(layout, INSTALL_COMPONENTS, {
    force: false,
    progress,
    otherRecipes: (component) =>
      downloads.filter((entry) => entry.component === component.name).map(downloadRecipe),
  });
  await builder.prepare();
  let goChecked: Promise<boolean> | undefined;
  const components = INSTALL_COMPONENTS.filter((component) => wanted.includes(component.name));
  const results = await runAll(components, options.jobs ?? 2, async (component) => {
    let outcome: Outcome | undefined;
    const entry = downloads.find((candidate) => candidate.component === component.name);
    if (entry !== undefined) {
      progress(
        `downloading ${component.name} ${component.version} (${entry.artifacts.length} files)`,
      );
      outcome = await download(layout, component, entry, {
        env: options.env,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      });
      if (outcome.status === "failed" && allowBuild)
        progress(`${describeOutcome(outcome)}; building from Go modules instead`);
    }
    if ((outcome === undefined || outcome.status === "failed") && allowBuild) {
      goChecked ??= goAvailable();
      outcome = (await goChecked)
        ? await builder.run(component)
        : {
            name: component.name,
            status: "failed",
            seconds: 0,
            step: "build",
            log: builder.logOf(component.name),
            message:
              "no release download is pinned and `go` is not on PATH: install Go " +
              "(README: Debian 12 with Go 1.26), or pass --bin-dir with the binaries",
            tail: [],
          };
    }
    outcome ??= {
      name: component.name,
      status: "failed",
      seconds: 0,
      step: "download",
      log: builder.logOf(component.name),
      message: "no release download is pinned for it and Go builds are off",
      tail: [],
    };
    progress(describeOutcome(outcome));
    return outcome;
  });
  outcomes.push(...results);
  await writeManifestFile(layout, downloads);
  return {
    resolution: await resolveBinaries({ ...options, onProgress: () => undefined }),
    outcomes,
  };
}

/**
 * Makes `dir` a CNI plugin folder holding `plugins` (name -> path) as symlinks, each replaced
 * atomically. The node's CNI folder must hold sandkube-cni and the stock loopback plugin side by
 * side (containerd passes one bin dir to libcni), and the two come from different places.
 */
export async function assembleCniBinDir(
  dir: string,
  plugins: Readonly<Record<string, string>>,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [name, target] of Object.entries(plugins)) {
    const link = join(dir, name);
    const temporary = `${link}.new-${process.pid}`;
    await rm(temporary, { force: true });
    await symlink(target, temporary);
    await rename(temporary, link);
  }
  return dir;
}
