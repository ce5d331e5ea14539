/**
 * The pure half of `npm run lab:build`: arguments, folder layout, go command lines, stamps and the
 * manifest. lab/build.ts does the I/O.
 */
import { join } from "node:path";
import { UsageError } from "../src/cli/usage-error.js";
import type { GoBinary, GoComponent, LabComponent } from "./components.js";

export interface BuildOptions {
  /** Component names to build, in table order; undefined means all. */
  readonly only?: readonly string[];
  readonly json: boolean;
  readonly jobs: 1 | 2;
  /** Ignore stamps and rebuild (the Go caches still make this quick). */
  readonly force: boolean;
}

export const BUILD_USAGE = `usage: npm run lab:build -- [--only NAME,NAME] [--jobs 1|2] [--force] [--json]`;

export function parseBuildArgs(
  argv: readonly string[],
  knownNames: readonly string[],
): BuildOptions {
  let only: string[] | undefined;
  let json = false;
  let force = false;
  let jobs: 1 | 2 = 2;
  const valueOf = (index: number, flag: string): string => {
    const value = argv[index + 1];
    if (value === undefined || value.startsWith("--"))
      throw new UsageError(`${flag} needs a value\n${BUILD_USAGE}`);
    return value;
  };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? "";
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg];
    const take = (): string => inline ?? valueOf(index++, flag ?? arg);
    switch (flag) {
      case "--only": {
        const names = take()
          .split(",")
          .map((name) => name.trim())
          .filter(Boolean);
        const unknown = names.filter((name) => !knownNames.includes(name));
        if (unknown.length > 0)
          throw new UsageError(
            `--only: unknown component ${unknown.join(", ")}; known: ${knownNames.join(", ")}`,
          );
        if (names.length === 0)
          throw new UsageError(`--only needs at least one name; known: ${knownNames.join(", ")}`);
        only = [...(only ?? []), ...names];
        break;
      }
      case "--jobs": {
        const value = take();
        if (value !== "1" && value !== "2")
          throw new UsageError(`--jobs must be 1 or 2 (this machine has 2 cores), not "${value}"`);
        jobs = value === "1" ? 1 : 2;
        break;
      }
      case "--json":
        json = true;
        break;
      case "--force":
        force = true;
        break;
      case "--help":
      case "-h":
        throw new UsageError(BUILD_USAGE, 0);
      default:
        throw new UsageError(`unknown argument "${arg}"\n${BUILD_USAGE}`);
    }
  }
  return { ...(only === undefined ? {} : { only }), json, jobs, force };
}

export function selectComponents<T extends { readonly name: string }>(
  table: readonly T[],
  only: readonly string[] | undefined,
): T[] {
  return only === undefined
    ? [...table]
    : table.filter((component) => only.includes(component.name));
}

/** Every folder the build touches, all under labDir() and none in the repository. */
export interface LabLayout {
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

export function labLayout(root: string, bin: string, cni: string): LabLayout {
  return {
    root,
    bin,
    cni,
    gomodcache: join(root, "gomod"),
    gocache: join(root, "gocache"),
    logs: join(root, "logs"),
    stamps: join(root, "stamps"),
    modules: join(root, "modules"),
    staging: join(root, "staging"),
  };
}

export function binaryPath(layout: LabLayout, binary: GoBinary): string {
  return join(binary.destination === "cni" ? layout.cni : layout.bin, binary.name);
}

export function stagingDir(layout: LabLayout, component: GoComponent): string {
  return join(layout.staging, component.name);
}

export function goEnv(layout: LabLayout, component: GoComponent): Record<string, string> {
  return {
    GOMODCACHE: layout.gomodcache,
    GOCACHE: layout.gocache,
    // Module cache files are read-only by default, which makes `rm -rf labDir()` fail.
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
export function downloadCommand(layout: LabLayout, component: GoComponent): GoCommand {
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
  layout: LabLayout,
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

export function buildCommands(layout: LabLayout, component: GoComponent): GoCommand[] {
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
 * lab/components.ts rebuilds the component on the next run.
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

/** Written to labDir()/stamps/NAME.json after a component's binaries are in place. */
export interface Stamp {
  readonly name: string;
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

/** Why a component must be built, or undefined when its stamp and binaries are current. */
export function staleReason(
  component: GoComponent,
  layout: LabLayout,
  stamp: Stamp | undefined,
  currentSha256: ReadonlyMap<string, string | undefined>,
): string | undefined {
  if (stamp === undefined) return "no stamp";
  if (stamp.recipe !== recipeOf(component)) return "recipe changed";
  for (const binary of component.binaries) {
    const path = binaryPath(layout, binary);
    const stamped = stamp.binaries.find((entry) => entry.path === path);
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

export interface Manifest {
  readonly labDir: string;
  readonly components: readonly {
    readonly name: string;
    readonly module: string;
    readonly version: string;
    readonly goVersion: string;
    readonly toolchain: string;
    readonly cgo: boolean;
    readonly tags: readonly string[];
    readonly builtAt: string;
    readonly buildSeconds: number;
    readonly binaries: readonly StampedBinary[];
    readonly note?: string;
  }[];
  readonly debian: readonly DebianPackageState[];
}

/** The manifest lists every component whose stamp exists, built in this run or an earlier one. */
export function buildManifest(
  layout: LabLayout,
  table: readonly LabComponent[],
  stamps: ReadonlyMap<string, Stamp>,
  debian: readonly DebianPackageState[],
): Manifest {
  const components = table.flatMap((component) => {
    if (component.kind !== "go") return [];
    const stamp = stamps.get(component.name);
    if (stamp === undefined || stamp.recipe !== recipeOf(component)) return [];
    return [
      {
        name: component.name,
        module: component.module,
        version: component.version,
        goVersion: stamp.goVersion,
        toolchain: component.toolchain,
        cgo: component.cgo,
        tags: component.tags,
        builtAt: stamp.builtAt,
        buildSeconds: stamp.buildSeconds,
        binaries: stamp.binaries,
        ...(component.note === undefined ? {} : { note: component.note }),
      },
    ];
  });
  return { labDir: layout.root, components, debian };
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
