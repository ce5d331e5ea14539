/**
 * The pure half of building the node's binaries from Go modules: the cache layout, go command
 * lines, stamps and the sha256 manifest. src/install/go-build.ts does the I/O; `sandkube install`
 * and the lab's `npm run lab:build` both plan with it, so they share one cache and one set of stamps.
 */
import { join } from "node:path";
import type { GoBinary, GoComponent } from "./components.js";

export function selectComponents<T extends { readonly name: string }>(
  table: readonly T[],
  only: readonly string[] | undefined,
): T[] {
  return only === undefined
    ? [...table]
    : table.filter((component) => only.includes(component.name));
}

/**
 * Every folder a build touches, all under the cache dir (src/install/cache.ts) and none in the
 * repository. The lab uses the same layout in the same folder: one module cache, one build cache.
 */
export interface CacheLayout {
  readonly root: string;
  readonly bin: string;
  readonly cni: string;
  readonly gomodcache: string;
  readonly gocache: string;
  readonly logs: string;
  readonly stamps: string;
  /** Generated wrapper modules, one folder each. */
  readonly modules: string;
  /** go writes here first; a binary moves into bin/ or cni/ only once it is complete. */
  readonly staging: string;
}

export function cacheLayout(root: string): CacheLayout {
  return {
    root,
    bin: join(root, "bin"),
    cni: join(root, "cni"),
    gomodcache: join(root, "gomod"),
    gocache: join(root, "gocache"),
    logs: join(root, "logs"),
    stamps: join(root, "stamps"),
    modules: join(root, "modules"),
    staging: join(root, "staging"),
  };
}

export function binaryPath(layout: CacheLayout, binary: GoBinary): string {
  return join(binary.destination === "cni" ? layout.cni : layout.bin, binary.name);
}

export function stagingDir(layout: CacheLayout, component: GoComponent): string {
  return join(layout.staging, component.name);
}

export function goEnv(layout: CacheLayout, component: GoComponent): Record<string, string> {
  return {
    GOMODCACHE: layout.gomodcache,
    GOCACHE: layout.gocache,
    // Module cache files are read-only by default, which makes `rm -rf` of the cache fail.
    GOFLAGS: "-modcacherw",
    GOTOOLCHAIN: component.toolchain,
    CGO_ENABLED: component.cgo ? "1" : "0",
    // A go.work above the lab folder must not leak into the build.
    GOWORK: "off",
  };
}

export type BuildStepName = "download" | "build" | "install";

export interface GoCommand {
  readonly step: BuildStepName;
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
}

function buildFlags(component: GoComponent): string[] {
  return [
    ...(component.tags.length > 0 ? ["-tags", component.tags.join(",")] : []),
    ...(component.ldflags.length > 0 ? ["-ldflags", component.ldflags.join(" ")] : []),
  ];
}

/** `go mod download -json module@version`: fetches the target and reports where its go.mod is. */
export function downloadCommand(layout: CacheLayout, component: GoComponent): GoCommand {
  return {
    step: "download",
    argv: ["go", "mod", "download", "-json", `${component.module}@${component.version}`],
    // Outside any module, so that go resolves module@version on its own.
    cwd: layout.staging,
    env: goEnv(layout, component),
  };
}

/** `go get -t` of every package a wrapper builds, so go.mod and go.sum list all of them at once. */
export function wrapperGetCommand(
  layout: CacheLayout,
  components: readonly GoComponent[],
): GoCommand {
  const first = components[0];
  if (first === undefined || first.strategy.kind !== "wrapper")
    throw new Error("wrapperGetCommand needs components built from a wrapper");
  const packages = components.flatMap((component) =>
    component.binaries.map((binary) => `${binary.pkg}@${component.version}`),
  );
  return {
    step: "download",
    // -t: critest's package is all _test.go files; without -t its imports stay unresolved.
    argv: ["go", "get", "-t", ...new Set(packages)],
    cwd: join(layout.modules, first.strategy.wrapper),
    env: goEnv(layout, first),
  };
}

export function buildCommands(layout: CacheLayout, component: GoComponent): GoCommand[] {
  const out = stagingDir(layout, component);
  const env = goEnv(layout, component);
  if (component.strategy.kind === "install") {
    return [
      {
        step: "build",
        argv: [
          "go",
          "install",
          ...buildFlags(component),
          ...component.binaries.map((binary) => `${binary.pkg}@${component.version}`),
        ],
        cwd: layout.staging,
        env: { ...env, GOBIN: out },
      },
    ];
  }
  const cwd = join(layout.modules, component.strategy.wrapper);
  const verb = component.strategy.testBinary === true ? ["test", "-c"] : ["build"];
  return component.binaries.map((binary) => ({
    step: "build",
    argv: [
      "go",
      ...verb,
      ...buildFlags(component),
      "-o",
      join(out, installedName(binary)),
      binary.pkg,
    ],
    cwd,
    env,
  }));
}

/** The file go install writes: the last element of the package path, which may differ from name. */
export function installedName(binary: GoBinary): string {
  const last = binary.pkg.split("/").pop() ?? binary.pkg;
  // go install names a binary after its module's last element when that is a major version (/v3).
  return /^v\d+$/.test(last) ? (binary.pkg.split("/").slice(-2, -1)[0] ?? last) : last;
}

/**
 * What decides whether a stamp still describes the wanted build. Changing any of these in
 * src/install/components.ts or lab/components.ts rebuilds the component on the next run.
 */
export function recipeOf(component: GoComponent): string {
  return JSON.stringify({
    module: component.module,
    version: component.version,
    strategy: component.strategy.kind,
    binaries: component.binaries.map((binary) => [binary.pkg, binary.name, binary.destination]),
    toolchain: component.toolchain,
    cgo: component.cgo,
    tags: component.tags,
    ldflags: component.ldflags,
  });
}

export interface StampedBinary {
  readonly name: string;
  readonly path: string;
  readonly sha256: string;
}

/** Written to stamps/NAME.json in the cache after a component's binaries are in place. */
export interface Stamp {
  readonly name: string;
  /** Absent in stamps written before downloads existed: those were all Go builds. */
  readonly source?: "go" | "download";
  readonly module: string;
  readonly version: string;
  readonly recipe: string;
  /** `go env GOVERSION` under the component's GOTOOLCHAIN, e.g. "go1.21.13". */
  readonly goVersion: string;
  readonly builtAt: string;
  readonly buildSeconds: number;
  readonly binaries: readonly StampedBinary[];
  readonly note?: string;
}

export function parseStamp(text: string): Stamp | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null) return undefined;
    const stamp = value as Partial<Stamp>;
    if (
      typeof stamp.name !== "string" ||
      typeof stamp.recipe !== "string" ||
      !Array.isArray(stamp.binaries)
    )
      return undefined;
    return stamp as Stamp;
  } catch {
    return undefined;
  }
}

/**
 * Why a component must be built, or undefined when its stamp and binaries are current.
 * `otherRecipes` are further recipes that yield the same binaries (a pinned release download).
 */
export function staleReason(
  component: GoComponent,
  layout: CacheLayout,
  stamp: Stamp | undefined,
  currentSha256: ReadonlyMap<string, string | undefined>,
  otherRecipes: readonly string[] = [],
): string | undefined {
  if (stamp === undefined) return "no stamp";
  if (stamp.recipe !== recipeOf(component) && !otherRecipes.includes(stamp.recipe))
    return "recipe changed";
  for (const binary of component.binaries) {
    const path = binaryPath(layout, binary);
    // By name, not path: the sha256 is what proves the file, and a cache moved or reached through
    // a symlink (the lab's old /var/cache/sandkube-lab) keeps its stamps valid.
    const stamped = stamp.binaries.find((entry) => entry.name === binary.name);
    if (stamped === undefined) return `${binary.name} not in stamp`;
    const actual = currentSha256.get(path);
    if (actual === undefined) return `${path} missing`;
    if (actual !== stamped.sha256) return `${path} changed since it was built`;
  }
  return undefined;
}

export interface DebianPackageState {
  readonly name: string;
  readonly version?: string;
}

export interface ManifestEntry {
  readonly name: string;
  readonly source: "go" | "download";
  readonly module: string;
  readonly version: string;
  readonly goVersion: string;
  readonly toolchain?: string;
  readonly cgo?: boolean;
  readonly tags?: readonly string[];
  readonly builtAt: string;
  readonly buildSeconds: number;
  readonly binaries: readonly StampedBinary[];
  readonly note?: string;
}

export interface Manifest {
  readonly cacheDir: string;
  readonly components: readonly ManifestEntry[];
  readonly debian: readonly DebianPackageState[];
}

function manifestEntry(stamp: Stamp, component: GoComponent | undefined): ManifestEntry {
  const note = component?.note ?? stamp.note;
  return {
    name: stamp.name,
    source: stamp.source ?? "go",
    module: stamp.module,
    version: stamp.version,
    goVersion: stamp.goVersion,
    ...(component === undefined
      ? {}
      : { toolchain: component.toolchain, cgo: component.cgo, tags: component.tags }),
    builtAt: stamp.builtAt,
    buildSeconds: stamp.buildSeconds,
    binaries: stamp.binaries,
    ...(note === undefined ? {} : { note }),
  };
}

/**
 * The manifest lists every component whose stamp exists, built in this run or an earlier one.
 * Components of `table` come first, in table order, and only when their stamp matches one of
 * `recipes(component)`; stamps of components this table does not know (the lab's runsc when
 * `sandkube install` writes the manifest) are kept as they are, so neither writer drops the other's.
 */
export function buildManifest(
  layout: CacheLayout,
  table: readonly { readonly kind: string; readonly name: string }[],
  stamps: ReadonlyMap<string, Stamp>,
  debian: readonly DebianPackageState[],
  recipes: (component: GoComponent) => readonly string[] = (component) => [recipeOf(component)],
): Manifest {
  const known = new Set(table.map((component) => component.name));
  const components = table.flatMap((component) => {
    if (component.kind !== "go") return [];
    const go = component as GoComponent;
    const stamp = stamps.get(go.name);
    if (stamp === undefined || !recipes(go).includes(stamp.recipe)) return [];
    return [manifestEntry(stamp, go)];
  });
  const others = [...stamps.values()]
    .filter((stamp) => !known.has(stamp.name))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((stamp) => manifestEntry(stamp, undefined));
  return { cacheDir: layout.root, components: [...components, ...others], debian };
}

/** Reads `dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n'` output. */
export function parseDpkgQuery(output: string, wanted: readonly string[]): DebianPackageState[] {
  const installed = new Map<string, string>();
  for (const line of output.split("\n")) {
    const [name, version, status] = line.trim().split(/\s+/);
    // "ii" = desired install, actually installed; anything else (rc, un) is not usable.
    if (name && version && status === "ii") installed.set(name.split(":")[0] ?? name, version);
  }
  return wanted.map((name) => {
    const version = installed.get(name);
    return version === undefined ? { name } : { name, version };
  });
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${String(Math.round(seconds - minutes * 60)).padStart(2, "0")}s`;
}

/** The last lines of a log, for a failure message that can be read without opening the file. */
export function lastLines(text: string, count: number): string[] {
  return text.trimEnd().split("\n").slice(-count);
}

/** argv as a line a developer can paste into a shell to rerun the step. */
export function shellLine(argv: readonly string[]): string {
  return argv
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`))
    .join(" ");
}

/** A go command with its environment, as logged: pasting it reruns the step by hand. */
export function commandLine(command: GoCommand): string {
  const env = Object.entries(command.env).map(([key, value]) => `${key}=${value}`);
  return `(cd ${shellLine([command.cwd])} && ${shellLine([...env, ...command.argv])})`;
}
