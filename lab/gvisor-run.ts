import { access, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { constants as fsConstants } from "node:fs";
import { constants } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { ensureSuccess, runCommand } from "../src/common/exec.js";
import { labBinDir, labDir } from "./paths.js";
import {
  type GvisorRunOptions,
  defaultOutDir,
  makeRunId,
  mountsUnder,
  renderSandboxSpec,
  rootfsLayers,
  rootfsMountArgs,
  runDir,
  runscBinary,
  runscGlobalArgs,
} from "./gvisor-spec.js";

/** What a sandboxed command left behind. */
export interface GvisorRunResult {
  readonly exitCode: number;
  /** Captured only when the caller asked for it (tests); the CLI passes output straight through. */
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly outDir: string;
  readonly runsc: string;
  /** The container id; its bundle and state lived in runDir(runId), removed before returning. */
  readonly runId: string;
}

export interface GvisorRunIO {
  /** Capture stdout/stderr (tests) instead of passing them through (CLI). */
  readonly capture: boolean;
  /** Also echo captured output, so a test log shows what happened inside. */
  readonly echo?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

/** The repository that holds this script: dist/lab/gvisor-run.js sits two levels below it. */
export function repoRootOfScript(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
}

export class LabNotBuiltError extends Error {
  constructor(readonly missing: string) {
    super(`${missing} is missing: build the lab first with \`npm run lab:build\``);
    this.name = "LabNotBuiltError";
  }
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The shell's convention: a command killed by signal N exits 128+N. */
function signalNumber(signal: string | undefined): number {
  const table = constants.signals as Record<string, number | undefined>;
  return signal === undefined ? 0 : (table[signal] ?? 0);
}

const activeCleanups = new Set<() => Promise<void>>();
let signalsHooked = false;

/**
 * A sandbox outlives a killed `runsc run` (the sandbox process is its own session), so SIGINT and
 * SIGTERM must reach `runsc delete --force` before this process exits.
 */
function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.on(signal, () => {
      process.stderr.write(`lab:gvisor: ${signal}, tearing the sandbox down\n`);
      void Promise.allSettled([...activeCleanups].map((c) => c())).then(() => process.exit(code));
    });
  }
}

export async function runInGvisor(
  options: GvisorRunOptions,
  io: GvisorRunIO,
): Promise<GvisorRunResult> {
  const env = io.env ?? process.env;
  const runsc = runscBinary(options.runsc, env);
  if (!(await isExecutable(runsc))) throw new LabNotBuiltError(runsc);

  const runId = makeRunId(new Date(), process.pid, randomBytes(3).toString("hex"));
  const workDir = runDir(runId, env);
  const bundleDir = join(workDir, "bundle");
  const stateDir = join(workDir, "state");
  const outDir = options.outDir ?? defaultOutDir(runId, env);
  const debugLogDir = options.debug ? join(outDir, "runsc-debug") : undefined;
  const layers = rootfsLayers(workDir);
  const tmpfsDir = dirname(layers.upper);
  await mkdir(bundleDir, { recursive: true });
  await mkdir(tmpfsDir, { recursive: true });
  await mkdir(layers.merged, { recursive: true });
  await mkdir(stateDir, { recursive: true });
  await mkdir(outDir, { recursive: true });
  if (debugLogDir !== undefined) await mkdir(debugLogDir, { recursive: true });

  const spec = renderSandboxSpec(options.command, {
    rootfs: layers.merged,
    repoRoot: repoRootOfScript(),
    outDir,
    labBinDir: labBinDir(env),
    labDir: labDir(env),
    nodeBinDir: dirname(process.execPath),
  });
  await writeFile(join(bundleDir, "config.json"), `${JSON.stringify(spec, null, 2)}\n`);

  const globals = runscGlobalArgs({ stateDir, network: options.network, debugLogDir });
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    // Each step tolerates "no such container": `runsc run` deletes the container itself on a clean exit.
    await runCommand([runsc, ...globals, "kill", "--all", runId, "KILL"], { timeoutMs: 15_000 });
    await runCommand([runsc, ...globals, "delete", "--force", runId], { timeoutMs: 30_000 });
    const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
    for (const mountPoint of mountsUnder(mountinfo, workDir)) {
      await runCommand(["umount", "--lazy", mountPoint], { timeoutMs: 15_000 });
    }
    await rm(workDir, { recursive: true, force: true });
  };
  activeCleanups.add(cleanup);
  hookSignals();

  try {
    ensureSuccess(
      await runCommand([
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "mode=0755",
        "sandkube-lab-rootfs",
        tmpfsDir,
      ]),
    );
    await mkdir(layers.upper);
    await mkdir(layers.work);
    ensureSuccess(await runCommand(rootfsMountArgs(layers)));
    const child = execa(runsc, [...globals, "run", "--bundle", bundleDir, runId], {
      reject: false,
      stdin: io.capture ? "ignore" : "inherit",
      stdout: io.capture ? (io.echo ? ["pipe", "inherit"] : "pipe") : "inherit",
      stderr: io.capture ? (io.echo ? ["pipe", "inherit"] : "pipe") : "inherit",
      timeout: options.timeoutSeconds * 1000,
      killSignal: "SIGKILL",
      stripFinalNewline: false,
    });
    const result = await child;
    const timedOut = result.timedOut === true;
    if (timedOut) {
      process.stderr.write(
        `lab:gvisor: ${options.command.join(" ")} timed out after ${options.timeoutSeconds}s\n`,
      );
    }
    return {
      exitCode: timedOut ? 124 : (result.exitCode ?? 128 + signalNumber(result.signal)),
      stdout: typeof result.stdout === "string" ? result.stdout : "",
      stderr: typeof result.stderr === "string" ? result.stderr : "",
      timedOut,
      outDir,
      runsc,
      runId,
    };
  } finally {
    await cleanup();
    activeCleanups.delete(cleanup);
    // A fresh output dir the command never wrote to is noise; one the caller named is theirs.
    if (options.outDir === undefined) await rmdir(outDir).catch(() => undefined);
  }
}
