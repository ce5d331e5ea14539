/**
 * The I/O half of building binaries from Go modules (src/install/build-plan.ts plans): go commands
 * streamed into one log per component, atomic moves into the cache, stamps with sha256, and the
 * manifest. Used by `sandkube install` and by the lab's `npm run lab:build`.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { ensureSuccess, runCommand, type CommandResult } from "../common/exec.js";
import type { GoComponent } from "./components.js";
import { wrapperGoMod } from "./gomod.js";
import {
  binaryPath,
  buildCommands,
  commandLine,
  downloadCommand,
  formatDuration,
  installedName,
  lastLines,
  parseDpkgQuery,
  parseStamp,
  recipeOf,
  shellLine,
  staleReason,
  stagingDir,
  wrapperGetCommand,
  type BuildStepName,
  type CacheLayout,
  type DebianPackageState,
  type GoCommand,
  type Stamp,
} from "./build-plan.js";

/** Go builds of Kubernetes take minutes; only a hung proxy connection should hit this. */
const GO_STEP_TIMEOUT_MS = 60 * 60 * 1000;
const APT_TIMEOUT_MS = 15 * 60 * 1000;
export const FAILURE_TAIL_LINES = 25;

export class StepFailedError extends Error {
  constructor(
    readonly component: string,
    readonly step: BuildStepName,
    readonly log: string,
    detail: string,
  ) {
    super(detail);
    this.name = "StepFailedError";
  }
}

export type Outcome =
  | { readonly name: string; readonly status: "skipped"; readonly seconds: number }
  | {
      readonly name: string;
      readonly status: "built";
      readonly seconds: number;
      readonly reason: string;
    }
  | {
      readonly name: string;
      readonly status: "failed";
      readonly seconds: number;
      readonly step: BuildStepName;
      readonly log: string;
      readonly message: string;
      readonly tail: readonly string[];
    };

export type Progress = (line: string) => void;

export async function sha256OfFile(path: string): Promise<string | undefined> {
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return hash.digest("hex");
}

export async function readStamp(layout: CacheLayout, name: string): Promise<Stamp | undefined> {
  try {
    return parseStamp(await readFile(join(layout.stamps, `${name}.json`), "utf8"));
  } catch {
    return undefined;
  }
}

export async function appendLog(log: string, text: string): Promise<void> {
  await writeFile(log, text, { flag: "a" });
}

/**
 * Runs a go command with its output streamed into the component's log, so `tail -f` shows
 * progress. runCommand buffers output in memory and cannot write to a file as it goes.
 */
async function runLogged(command: GoCommand, log: string): Promise<CommandResult> {
  await appendLog(log, `\n$ ${commandLine(command)}\n`);
  const [file, ...args] = command.argv;
  if (file === undefined) throw new Error("empty argv");
  // O_APPEND on both streams: go's interleaved stdout and stderr land in order of writing.
  const result = await execa(file, args, {
    reject: false,
    stdin: "ignore",
    stdout: { file: log, append: true },
    stderr: { file: log, append: true },
    env: { ...command.env },
    extendEnv: true,
    cwd: command.cwd,
    timeout: GO_STEP_TIMEOUT_MS,
    killSignal: "SIGKILL",
  });
  const tail = lastLines(await readFile(log, "utf8"), FAILURE_TAIL_LINES).join("\n");
  const failure = result.timedOut
    ? "TIMEOUT"
    : result.failed && result.exitCode === undefined
      ? ((result.cause as NodeJS.ErrnoException | undefined)?.code ??
        result.signal ??
        "SPAWN_FAILED")
      : undefined;
  return {
    argv: command.argv,
    exitCode: result.exitCode ?? 128,
    stdout: "",
    stderr: tail,
    ...(failure === undefined ? {} : { failure }),
  };
}

/** runCommand for steps whose stdout is data (`go mod download -json`), copied into the log. */
async function runCaptured(command: GoCommand, log: string): Promise<CommandResult> {
  await appendLog(log, `\n$ ${commandLine(command)}\n`);
  const result = await runCommand(command.argv, {
    env: command.env,
    cwd: command.cwd,
    timeoutMs: GO_STEP_TIMEOUT_MS,
  });
  await appendLog(log, result.stdout + result.stderr);
  return result;
}

export function failIfUnsuccessful(
  component: string,
  step: BuildStepName,
  log: string,
  result: CommandResult,
): void {
  if (result.exitCode === 0 && result.failure === undefined) return;
  const status = result.failure ?? `exit status ${result.exitCode}`;
  // go mod download -json reports a bad version or module as an "Error" field on stdout.
  const goError = /"Error": "(.*)"/.exec(result.stdout)?.[1];
  const detail = `${shellLine(result.argv)} (${status})${goError === undefined ? "" : `: ${goError}`}`;
  throw new StepFailedError(component, step, log, detail);
}

/** `go mod download -json` prints one JSON object; GoMod is the path of the module's go.mod. */
function goModPathFrom(stdout: string, module: string): string {
  const parsed = JSON.parse(stdout) as { GoMod?: unknown; Error?: unknown };
  if (typeof parsed.Error === "string") throw new Error(parsed.Error);
  if (typeof parsed.GoMod !== "string")
    throw new Error(`go mod download printed no GoMod for ${module}`);
  return parsed.GoMod;
}

/**
 * Builds Go components into the cache: one per call of run(), wrappers shared between the
 * components that use them, Debian build dependencies installed once and one at a time.
 */
export class GoBuilder {
  private readonly wrappers = new Map<string, Promise<void>>();
  private readonly goVersions = new Map<string, Promise<string>>();
  /** dpkg takes a lock: the debian component and runc's libseccomp-dev must not apt-get at once. */
  private aptQueue: Promise<unknown> = Promise.resolve();
  private aptUpdated = false;

  constructor(
    private readonly layout: CacheLayout,
    /** Every Go component that may share a wrapper module with the ones built. */
    private readonly table: readonly GoComponent[],
    private readonly options: {
      readonly force: boolean;
      readonly progress: Progress;
      /** Recipes besides the Go build that produced acceptable binaries (pinned downloads). */
      readonly otherRecipes?: (component: GoComponent) => readonly string[];
    },
  ) {}

  /** Creates every folder a build writes to. */
  async prepare(): Promise<void> {
    const { bin, cni, logs, stamps, modules, staging } = this.layout;
    for (const dir of [bin, cni, logs, stamps, modules, staging])
      await mkdir(dir, { recursive: true });
  }

  logOf(name: string): string {
    return join(this.layout.logs, `${name}.log`);
  }

  /** Installs missing Debian packages as a component of its own (the lab's scenario packages). */
  async runDebian(name: string, packages: readonly string[]): Promise<Outcome> {
    const started = performance.now();
    const seconds = (): number => Math.round((performance.now() - started) / 100) / 10;
    const log = this.logOf(name);
    try {
      const missing = await this.ensureDebian(packages, name, log);
      return missing === 0
        ? { name, status: "skipped", seconds: seconds() }
        : { name, status: "built", seconds: seconds(), reason: `${missing} packages missing` };
    } catch (error) {
      return failedOutcome(name, seconds(), log, error);
    }
  }

  async run(component: GoComponent): Promise<Outcome> {
    const started = performance.now();
    const seconds = (): number => Math.round((performance.now() - started) / 100) / 10;
    const log = this.logOf(component.name);
    try {
      const reason = await this.staleReason(component);
      if (reason === undefined)
        return { name: component.name, status: "skipped", seconds: seconds() };
      this.options.progress(
        `building ${component.name} ${component.version} (${reason}); log: ${log}`,
      );
      await writeFile(
        log,
        `# ${component.name} ${component.module}@${component.version}: ${reason}\n`,
      );
      await this.buildGo(component, log, started);
      return { name: component.name, status: "built", seconds: seconds(), reason };
    } catch (error) {
      return failedOutcome(component.name, seconds(), log, error);
    }
  }

  /** Why `component` must be built, or undefined when the cache holds its stamped binaries. */
  async staleReason(component: GoComponent): Promise<string | undefined> {
    if (this.options.force) return "--force";
    const otherRecipes = this.options.otherRecipes?.(component) ?? [];
    const stamp = await readStamp(this.layout, component.name);
    const shas = new Map<string, string | undefined>();
    if (
      stamp !== undefined &&
      (stamp.recipe === recipeOf(component) || otherRecipes.includes(stamp.recipe))
    ) {
      for (const binary of component.binaries) {
        const path = binaryPath(this.layout, binary);
        shas.set(path, await sha256OfFile(path));
      }
    }
    return staleReason(component, this.layout, stamp, shas, otherRecipes);
  }

  private async buildGo(component: GoComponent, log: string, started: number): Promise<void> {
    if (component.needsDebian.length > 0)
      await this.ensureDebian(component.needsDebian, component.name, log);
    const out = stagingDir(this.layout, component);
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });

    if (component.strategy.kind === "wrapper") {
      await this.prepareWrapper(component, log);
    } else {
      const download = downloadCommand(this.layout, component);
      failIfUnsuccessful(component.name, "download", log, await runCaptured(download, log));
    }
    for (const command of buildCommands(this.layout, component)) {
      failIfUnsuccessful(component.name, "build", log, await runLogged(command, log));
    }
    const goVersion = await this.goVersion(component, log);

    const binaries = [];
    for (const binary of component.binaries) {
      const from = join(out, installedName(binary));
      const to = binaryPath(this.layout, binary);
      try {
        await mkdir(join(to, ".."), { recursive: true });
        // Same filesystem, so rename is atomic: a reader never sees half a binary.
        await rename(from, to);
      } catch (error) {
        throw new StepFailedError(
          component.name,
          "install",
          log,
          `moving ${from} to ${to}: ${String(error)}`,
        );
      }
      const sha256 = await sha256OfFile(to);
      if (sha256 === undefined)
        throw new StepFailedError(component.name, "install", log, `${to} vanished`);
      binaries.push({ name: binary.name, path: to, sha256 });
    }
    const stamp: Stamp = {
      name: component.name,
      source: "go",
      module: component.module,
      version: component.version,
      recipe: recipeOf(component),
      goVersion,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      binaries,
      ...(component.note === undefined ? {} : { note: component.note }),
    };
    await writeStamp(this.layout, stamp);
  }

  /** Components sharing a wrapper wait for one `go get` of all their packages. */
  private prepareWrapper(component: GoComponent, log: string): Promise<void> {
    if (component.strategy.kind !== "wrapper")
      throw new Error(`${component.name} is not a wrapper build`);
    const name = component.strategy.wrapper;
    let ready = this.wrappers.get(name);
    if (ready === undefined) {
      ready = this.writeWrapper(component, name, log);
      this.wrappers.set(name, ready);
    }
    return ready.catch((error: unknown) => {
      if (error instanceof StepFailedError && error.component === component.name) throw error;
      throw new StepFailedError(
        component.name,
        "download",
        log,
        `wrapper module ${name}: ${String(error)}`,
      );
    });
  }

  private async writeWrapper(component: GoComponent, name: string, log: string): Promise<void> {
    if (component.strategy.kind !== "wrapper")
      throw new Error(`${component.name} is not a wrapper build`);
    const download = await runCaptured(downloadCommand(this.layout, component), log);
    failIfUnsuccessful(component.name, "download", log, download);
    let text: string;
    try {
      const targetGoMod = await readFile(goModPathFrom(download.stdout, component.module), "utf8");
      const wrapper = wrapperGoMod({
        wrapperModule: `sandkube.local/lab/${name}`,
        target: component.module,
        version: component.version,
        targetGoMod,
        localReplacement: component.strategy.localReplacement,
      });
      text = wrapper.text;
      if (wrapper.dropped.length > 0)
        await appendLog(
          log,
          `wrapper: dropped local replaces of modules not required: ${wrapper.dropped.join(", ")}\n`,
        );
    } catch (error) {
      throw new StepFailedError(
        component.name,
        "download",
        log,
        `generating wrapper go.mod: ${String(error)}`,
      );
    }
    const dir = join(this.layout.modules, name);
    await mkdir(dir, { recursive: true });
    // go get appends requirements; go.sum is kept, so a rewrite costs no downloads.
    await writeFile(join(dir, "go.mod"), text);
    const members = this.table.filter(
      (entry) => entry.strategy.kind === "wrapper" && entry.strategy.wrapper === name,
    );
    const get = wrapperGetCommand(this.layout, members);
    failIfUnsuccessful(component.name, "download", log, await runLogged(get, log));
  }

  private goVersion(component: GoComponent, log: string): Promise<string> {
    let version = this.goVersions.get(component.toolchain);
    if (version === undefined) {
      const env = { ...downloadCommand(this.layout, component).env };
      version = runCommand(["go", "env", "GOVERSION"], {
        env,
        cwd: this.layout.staging,
        timeoutMs: 5 * 60_000,
      }).then((result) => ensureSuccess(result).stdout.trim());
      this.goVersions.set(component.toolchain, version);
    }
    return version.catch((error: unknown) => {
      throw new StepFailedError(component.name, "build", log, `go env GOVERSION: ${String(error)}`);
    });
  }

  /** Installs the missing ones among `packages`, one apt-get at a time; returns how many were missing. */
  ensureDebian(packages: readonly string[], component: string, log: string): Promise<number> {
    const result = this.aptQueue.then(() => this.installMissing(packages, component, log));
    this.aptQueue = result.catch(() => undefined);
    return result;
  }

  private async installMissing(
    packages: readonly string[],
    component: string,
    log: string,
  ): Promise<number> {
    const before = await this.debianState(packages);
    const missing = before
      .filter((entry) => entry.version === undefined)
      .map((entry) => entry.name);
    if (missing.length === 0) return 0;
    if (process.getuid?.() !== 0)
      throw new StepFailedError(
        component,
        "install",
        log,
        `Debian packages missing and not root: apt-get install ${missing.join(" ")}`,
      );
    this.options.progress(`installing Debian packages ${missing.join(" ")}; log: ${log}`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    if (!this.aptUpdated) {
      const update = await runCommand(["apt-get", "update"], { env, timeoutMs: APT_TIMEOUT_MS });
      await appendLog(log, update.stdout + update.stderr);
      failIfUnsuccessful(component, "download", log, update);
      this.aptUpdated = true;
    }
    const install = await runCommand(
      ["apt-get", "install", "-y", "--no-install-recommends", ...missing],
      {
        env,
        timeoutMs: APT_TIMEOUT_MS,
      },
    );
    await appendLog(log, install.stdout + install.stderr);
    failIfUnsuccessful(component, "install", log, install);
    return missing.length;
  }

  debianState(packages: readonly string[]): Promise<DebianPackageState[]> {
    return debianState(packages);
  }
}

/** Runs components in table order, at most `jobs` at a time. */
export async function runAll<C extends { readonly name: string }>(
  components: readonly C[],
  jobs: number,
  build: (component: C) => Promise<Outcome>,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < components.length) {
      const component = components[next++];
      if (component !== undefined) outcomes.push(await build(component));
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  const order = components.map((component) => component.name);
  return outcomes.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}

export function describeOutcome(outcome: Outcome): string {
  const time = formatDuration(outcome.seconds);
  switch (outcome.status) {
    case "skipped":
      return `skipped ${outcome.name} (up to date, ${time})`;
    case "built":
      return `done ${outcome.name} in ${time}`;
    case "failed":
      return [
        `FAILED ${outcome.name} at the ${outcome.step} step after ${time}: ${outcome.message}`,
        `  log: ${outcome.log}`,
        ...outcome.tail.map((line) => `  | ${line}`),
      ].join("\n");
  }
}

async function failedOutcome(
  name: string,
  seconds: number,
  log: string,
  error: unknown,
): Promise<Outcome> {
  const step = error instanceof StepFailedError ? error.step : "build";
  let tail: string[] = [];
  try {
    tail = lastLines(await readFile(log, "utf8"), FAILURE_TAIL_LINES);
  } catch {
    // No log yet: the failure happened before the first command.
  }
  return {
    name,
    status: "failed",
    seconds,
    step,
    log,
    message: error instanceof Error ? error.message : String(error),
    tail,
  };
}

export async function writeStamp(layout: CacheLayout, stamp: Stamp): Promise<void> {
  await mkdir(layout.stamps, { recursive: true });
  const path = join(layout.stamps, `${stamp.name}.json`);
  // Written beside and renamed, so a reader never sees half a stamp.
  await writeFile(`${path}.tmp`, `${JSON.stringify(stamp, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
}

/** Every stamp in the cache, whoever wrote it (the lab or `sandkube install`). */
export async function readAllStamps(layout: CacheLayout): Promise<Map<string, Stamp>> {
  const stamps = new Map<string, Stamp>();
  let names: string[] = [];
  try {
    names = await readdir(layout.stamps);
  } catch {
    return stamps;
  }
  for (const file of names.filter((name) => name.endsWith(".json")).sort()) {
    const stamp = await readStamp(layout, file.slice(0, -".json".length));
    if (stamp !== undefined) stamps.set(stamp.name, stamp);
  }
  return stamps;
}

/** The Debian packages' state as the manifest shows it; dpkg-query exits 1 for unknown ones. */
export async function debianState(packages: readonly string[]): Promise<DebianPackageState[]> {
  if (packages.length === 0) return [];
  const query = await runCommand([
    "dpkg-query",
    "-W",
    "-f",
    "${Package} ${Version} ${db:Status-Abbrev}\n",
    ...packages,
  ]);
  return parseDpkgQuery(query.stdout, packages);
}

export { formatDuration };
