/**
 * opencontainers/runtime-tools' validation suite against two runtimes: stock runc from the lab and
 * sandkube-runtime. Each validation program is a standalone binary that drives the runtime named
 * by $RUNTIME and prints TAP; this module builds them, runs each once per runtime and compares the
 * TAP assertion by assertion.
 *
 * `node dist/lab/runtime-tools.js build` builds the suite into labDir()/runtime-tools (idempotent).
 * `node dist/lab/runtime-tools.js run [OUT_DIR]` writes OUT_DIR/comparison.json and prints a summary.
 */
import { spawn } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureSuccess, runCommand } from "../src/common/exec.js";
import { labBinary, labDir } from "./paths.js";

const REPO = resolve(fileURLToPath(import.meta.url), "../../..");

export const RUNTIME_TOOLS_MODULE = "github.com/opencontainers/runtime-tools";
/**
 * The proxy serves only the v0.9.0 tag (2019, no go.mod) and refuses branch queries; this is the
 * master commit of 2025-12-05, which has a go.mod, so the validation builds in module mode.
 */
export const RUNTIME_TOOLS_VERSION = "v0.9.1-0.20251205004911-5e639034dcdc";

/**
 * util.PrepareBundle untars `rootfs-$GOARCH.tar.gz` from the working directory; the module ships
 * that busybox rootfs next to its Makefile, so the lab copies it rather than making its own.
 */
export const ROOTFS_TARBALL = "rootfs-amd64.tar.gz";

/** Programs that are not run, for either runtime, with the reason docs/runtime-tools.md repeats. */
export const SKIPPED_PROGRAMS: readonly { readonly name: string; readonly reason: string }[] = [
  {
    name: "pidfile",
    reason:
      "flaky with runc too (runtime-contract.md); here runc fails its only assertion after 10 s",
  },
];

/** linux_ns_itype is known to hang with runc (runtime-contract.md); none that works needs nearly this long. */
export const PROGRAM_TIMEOUT_MS = 60_000;

export function suiteDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(labDir(env), "runtime-tools");
}

export function suiteBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(suiteDir(env), "bin");
}

const STAMP = "version";

/** The validation programs the built suite holds, sorted; empty when it is not built. */
export function builtPrograms(env: NodeJS.ProcessEnv = process.env): string[] {
  const bin = suiteBinDir(env);
  if (!existsSync(bin)) return [];
  return readdirSync(bin)
    .filter((n) => n !== "runtimetest")
    .sort();
}

/** Whether the suite at RUNTIME_TOOLS_VERSION is built, with runtimetest and the rootfs. */
export function suiteIsBuilt(env: NodeJS.ProcessEnv = process.env): boolean {
  const dir = suiteDir(env);
  const stamp = join(dir, STAMP);
  return (
    existsSync(stamp) &&
    readFileSync(stamp, "utf8").trim() === RUNTIME_TOOLS_VERSION &&
    existsSync(join(suiteBinDir(env), "runtimetest")) &&
    existsSync(join(dir, ROOTFS_TARBALL)) &&
    builtPrograms(env).length > 0
  );
}

function goEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const lab = labDir(env);
  return {
    ...env,
    GOMODCACHE: env["GOMODCACHE"] ?? join(lab, "gomod"),
    GOCACHE: env["GOCACHE"] ?? join(lab, "gocache"),
    GOFLAGS: "-modcacherw",
    GOTOOLCHAIN: "local",
    CGO_ENABLED: "0",
  };
}

/**
 * Builds runtimetest and every validation program into suiteBinDir(). The module cache is
 * read-only and `go build -o` needs the main module's tree, so the module is copied to a scratch
 * folder first; its vendor/ folder is dropped because module zips keep only vendor/modules.txt,
 * which makes go insist on -mod=vendor with nothing to vendor from.
 */
export async function buildSuite(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (suiteIsBuilt(env)) {
    console.log(`runtime-tools ${RUNTIME_TOOLS_VERSION}: already built in ${suiteDir(env)}`);
    return;
  }
  const goenv = goEnv(env);
  const download = ensureSuccess(
    await runCommand(
      ["go", "mod", "download", "-json", `${RUNTIME_TOOLS_MODULE}@${RUNTIME_TOOLS_VERSION}`],
      { env: goenv, cwd: tmpdir(), timeoutMs: 600_000 },
    ),
  );
  const moduleDir = (JSON.parse(download.stdout) as { Dir?: string }).Dir;
  if (!moduleDir) throw new Error(`go mod download printed no Dir: ${download.stdout}`);
  const scratch = mkdtempSync(join(tmpdir(), "runtime-tools-src-"));
  try {
    cpSync(moduleDir, scratch, { recursive: true });
    chmodTree(scratch);
    rmSync(join(scratch, "vendor"), { recursive: true, force: true });
    const bin = suiteBinDir(env);
    rmSync(bin, { recursive: true, force: true });
    mkdirSync(bin, { recursive: true });
    ensureSuccess(
      await runCommand(
        ["go", "build", "-mod=mod", "-o", `${bin}/`, "./cmd/runtimetest", "./validation/..."],
        { env: goenv, cwd: scratch, timeoutMs: 1_800_000 },
      ),
    );
    copyFileSync(join(scratch, ROOTFS_TARBALL), join(suiteDir(env), ROOTFS_TARBALL));
    writeFileSync(join(suiteDir(env), STAMP), `${RUNTIME_TOOLS_VERSION}\n`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log(
    `runtime-tools ${RUNTIME_TOOLS_VERSION}: built ${builtPrograms(env).length} programs`,
  );
}

function chmodTree(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) chmodTree(path);
    else if (entry.isFile()) chmodSync(path, 0o644);
  }
}

// ---------------------------------------------------------------------------------------------
// TAP

export type AssertionOutcome = "passed" | "failed" | "skipped" | "todo";

export interface TapAssertion {
  readonly number: number;
  readonly description: string;
  readonly outcome: AssertionOutcome;
}

export interface TapReport {
  readonly assertions: readonly TapAssertion[];
  /** The `1..N` plan, or undefined when the program died before printing it. */
  readonly planned?: number;
  readonly bailedOut: boolean;
}

const TEST_LINE = /^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(\w+)\b\s*(.*))?$/;

/** Parses TAP 13 as tap-go prints it: test lines, a plan, YAML blocks and `#` diagnostics. */
export function parseTap(text: string): TapReport {
  const assertions: TapAssertion[] = [];
  let planned: number | undefined;
  let bailedOut = false;
  for (const line of text.split("\n")) {
    const plan = /^1\.\.(\d+)/.exec(line);
    if (plan) {
      planned = Number(plan[1]);
      continue;
    }
    if (line.startsWith("Bail out!")) bailedOut = true;
    const m = TEST_LINE.exec(line);
    if (!m) continue;
    const directive = (m[4] ?? "").toUpperCase();
    const outcome: AssertionOutcome = directive.startsWith("SKIP")
      ? "skipped"
      : directive === "TODO"
        ? "todo"
        : m[1] === "ok"
          ? "passed"
          : "failed";
    const description = (m[3] ?? "").trim() || (m[5] ?? "").trim();
    assertions.push({
      number: m[2] ? Number(m[2]) : assertions.length + 1,
      description,
      outcome,
    });
  }
  return { assertions, planned, bailedOut };
}

// ---------------------------------------------------------------------------------------------
// Running

export interface ProgramRun {
  readonly program: string;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly tap: TapReport;
  /** The runtime's own log.json errors, for explaining a failure. */
  readonly runtimeErrors: readonly string[];
}

export interface RuntimeUnderTest {
  readonly label: string;
  readonly binary: string;
}

/**
 * The validation calls $RUNTIME with no global flags, so a runtime would keep its state in its
 * default root next to everything else on the machine. A wrapper gives each run its own --root
 * (deleted afterwards, so a hung program leaves no container behind) and a JSON --log to quote.
 */
function writeWrapper(dir: string, runtime: string, root: string, log: string): string {
  const wrapper = join(dir, "runtime");
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec '${runtime}' --root '${root}' --log '${log}' --log-format json "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  return wrapper;
}

function runProgram(
  program: string,
  workDir: string,
  wrapper: string,
  out: string,
): Promise<{ exitCode: number | null; timedOut: boolean; stdout: string }> {
  return new Promise((done, fail) => {
    const child = spawn(join(suiteBinDir(), program), [], {
      cwd: workDir,
      // util.PrepareBundle makes each bundle with os.MkdirTemp("", "ocitest") and a failed program
      // leaves it behind; inside the work folder it goes when the folder does.
      env: { ...process.env, RUNTIME: wrapper, TMPDIR: workDir },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a timeout also ends the runtime and `unshare` it started.
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    }, PROGRAM_TIMEOUT_MS);
    child.on("error", fail);
    child.on("close", (code) => {
      clearTimeout(timer);
      writeFileSync(join(out, `${program}.tap`), stdout);
      writeFileSync(join(out, `${program}.stderr`), stderr);
      done({ exitCode: code, timedOut, stdout });
    });
  });
}

async function deleteLeftovers(runtime: string, root: string): Promise<void> {
  if (!existsSync(root)) return;
  for (const id of readdirSync(root).filter((n) => !n.startsWith(".")))
    await runCommand([runtime, "--root", root, "delete", "--force", id], { timeoutMs: 30_000 });
}

/** Mount points at or under dir in this mount namespace, deepest first (field 5 of mountinfo). */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  return mountinfo
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * A container whose bundle asked for shared root propagation can leave its rootfs bind (with
 * proc, sysfs and devpts under it) in this namespace; removing files under a live proc or sysfs
 * mount fails, so they are detached first.
 */
async function removeWorkDir(work: string): Promise<void> {
  for (const m of mountsUnder(readFileSync("/proc/self/mountinfo", "utf8"), work))
    await runCommand(["umount", "-l", m]);
  rmSync(work, { recursive: true, force: true });
}

function logErrors(log: string): string[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        const r = JSON.parse(l) as { level?: string; msg?: string };
        return r.level === "error" && r.msg ? [r.msg] : [];
      } catch {
        return [l];
      }
    });
}

/** Runs every built validation program but SKIPPED_PROGRAMS against one runtime. */
export async function runSuite(rt: RuntimeUnderTest, outDir: string): Promise<ProgramRun[]> {
  const out = join(outDir, rt.label);
  mkdirSync(out, { recursive: true });
  const skipped = new Set(SKIPPED_PROGRAMS.map((s) => s.name));
  const runs: ProgramRun[] = [];
  for (const program of builtPrograms().filter((p) => !skipped.has(p))) {
    const work = mkdtempSync(join(tmpdir(), `rtval-${rt.label}-`));
    // The bundles go in here (TMPDIR), and linux_uid_mappings' container root is host uid 1000,
    // which must be able to reach its rootfs: mkdtemp's 0700 makes runc's remount fail with EACCES.
    chmodSync(work, 0o755);
    try {
      copyFileSync(join(suiteBinDir(), "runtimetest"), join(work, "runtimetest"));
      chmodSync(join(work, "runtimetest"), 0o755);
      copyFileSync(join(suiteDir(), ROOTFS_TARBALL), join(work, ROOTFS_TARBALL));
      const root = join(work, "state");
      const log = join(out, `${program}.log.json`);
      rmSync(log, { force: true });
      const wrapper = writeWrapper(work, rt.binary, root, log);
      const r = await runProgram(program, work, wrapper, out);
      await deleteLeftovers(rt.binary, root);
      runs.push({
        program,
        exitCode: r.exitCode,
        timedOut: r.timedOut,
        tap: parseTap(r.stdout),
        runtimeErrors: logErrors(log),
      });
    } finally {
      await removeWorkDir(work);
    }
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Comparison

/** `program#N`: TAP numbers are stable per program because each runs a fixed list of checks. */
export function assertionId(program: string, number: number): string {
  return `${program}#${number}`;
}

export interface AssertionDifference {
  readonly id: string;
  readonly description: string;
  readonly runc: AssertionOutcome | "missing";
  readonly sandkube: AssertionOutcome | "missing";
  /** sandkube's log.json errors during that program, to say why. */
  readonly runtimeErrors: readonly string[];
}

export interface Comparison {
  readonly version: string;
  readonly skippedPrograms: typeof SKIPPED_PROGRAMS;
  /** Assertions passed, per runtime label. */
  readonly passed: Record<string, number>;
  /** Ids of the assertions each runtime passed, sorted. */
  readonly passList: Record<string, readonly string[]>;
  readonly programs: Record<string, readonly ProgramRun[]>;
  /** Every assertion whose outcome differs between the runtimes. */
  readonly differing: readonly AssertionDifference[];
}

function outcomes(runs: readonly ProgramRun[]): Map<string, TapAssertion> {
  const m = new Map<string, TapAssertion>();
  for (const r of runs)
    for (const a of r.tap.assertions) m.set(assertionId(r.program, a.number), a);
  return m;
}

/** Pure: compares two runs of the suite assertion by assertion. */
export function compareRuns(
  runc: readonly ProgramRun[],
  sandkube: readonly ProgramRun[],
): Comparison {
  const a = outcomes(runc);
  const b = outcomes(sandkube);
  const errorsOf = new Map(sandkube.map((r) => [r.program, r.runtimeErrors]));
  const ids = [...new Set([...a.keys(), ...b.keys()])].sort(byProgramThenNumber);
  const differing: AssertionDifference[] = [];
  for (const id of ids) {
    const x = a.get(id);
    const y = b.get(id);
    const ox = x?.outcome ?? "missing";
    const oy = y?.outcome ?? "missing";
    if (ox === oy) continue;
    differing.push({
      id,
      description: x?.description || y?.description || "",
      runc: ox,
      sandkube: oy,
      runtimeErrors: errorsOf.get(id.split("#")[0] ?? "") ?? [],
    });
  }
  const passList = (m: Map<string, TapAssertion>): string[] =>
    [...m.entries()]
      .filter(([, t]) => t.outcome === "passed")
      .map(([id]) => id)
      .sort(byProgramThenNumber);
  return {
    version: RUNTIME_TOOLS_VERSION,
    skippedPrograms: SKIPPED_PROGRAMS,
    passed: { runc: passList(a).length, sandkube: passList(b).length },
    passList: { runc: passList(a), sandkube: passList(b) },
    programs: { runc, sandkube },
    differing,
  };
}

function byProgramThenNumber(x: string, y: string): number {
  const [px = "", nx = "0"] = x.split("#");
  const [py = "", ny = "0"] = y.split("#");
  return px === py ? Number(nx) - Number(ny) : px < py ? -1 : 1;
}

/** Runs the suite with runc, then with sandkube-runtime, and writes OUT_DIR/comparison.json. */
export async function runComparison(
  outDir: string,
  sandkubeRuntime: string = process.env["SANDKUBE_RUNTIME"] ??
    join(REPO, "dist/bin/sandkube-runtime"),
): Promise<Comparison> {
  if (!suiteIsBuilt())
    throw new Error(
      `runtime-tools ${RUNTIME_TOOLS_VERSION} is not built in ${suiteDir()}; run node dist/lab/runtime-tools.js build`,
    );
  const runc = await runSuite({ label: "runc", binary: labBinary("runc") }, outDir);
  const sandkube = await runSuite({ label: "sandkube", binary: sandkubeRuntime }, outDir);
  const c = compareRuns(runc, sandkube);
  writeFileSync(join(outDir, "comparison.json"), JSON.stringify(c, null, 2));
  return c;
}

async function main(argv: readonly string[]): Promise<void> {
  const [command, outArg] = argv;
  if (command === "build") return buildSuite();
  if (command === "run") {
    const out = outArg ?? mkdtempSync(join(tmpdir(), "rtval-out-"));
    mkdirSync(out, { recursive: true });
    const c = await runComparison(out);
    console.log(
      `runtime-tools ${c.version}: passed runc ${c.passed["runc"]}, sandkube ${c.passed["sandkube"]}`,
    );
    for (const d of c.differing.filter((x) => x.runc === "passed"))
      console.log(`  lost ${d.id} ${d.description}: sandkube ${d.sandkube}`);
    console.log(`comparison: ${join(out, "comparison.json")}`);
    return;
  }
  throw new Error(`usage: node dist/lab/runtime-tools.js build | run [OUT_DIR] (got ${command})`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
