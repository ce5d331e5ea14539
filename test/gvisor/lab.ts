import { access, readFile, rm } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { labBinary, labDir } from "../../lab/paths.js";
import { runInGvisor, repoRootOfScript, type GvisorRunResult } from "../../lab/gvisor-run.js";
import { DEFAULT_TIMEOUT_SECONDS, type RunscFlavour } from "../../lab/gvisor-spec.js";
import { parseObservations, type Observations } from "../../lab/gvisor-observations.js";
import type { ScenarioReport } from "../e2e/scenario.js";

/** Shared by the gVisor tier: every test runs real components inside a real runsc sandbox. */

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why this test cannot run here, or undefined when it can. The reason is printed as a loud skip, so
 * a machine without the lab never passes silently.
 */
export async function labMissing(binaries: readonly string[]): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: the gVisor tier needs root (runsc run, mounts)";
  const missing: string[] = [];
  for (const name of binaries) {
    if (!(await executable(labBinary(name)))) missing.push(labBinary(name));
  }
  if (missing.length > 0) {
    return `SKIPPED: lab not built, missing ${missing.join(", ")}; run \`npm run lab:build\``;
  }
  return undefined;
}

export function runscName(flavour: RunscFlavour): string {
  return flavour === "new" ? "runsc" : "runsc-old";
}

/** Skips `t` loudly unless the binaries exist; returns true when the test may go on. */
export async function requireLab(t: TestContext, binaries: readonly string[]): Promise<boolean> {
  const reason = await labMissing(binaries);
  if (reason === undefined) return true;
  process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
  t.skip(reason);
  return false;
}

export async function inGvisor(
  runsc: RunscFlavour,
  command: readonly string[],
  outDir?: string,
  timeoutSeconds = DEFAULT_TIMEOUT_SECONDS,
): Promise<GvisorRunResult> {
  return runInGvisor(
    { runsc, timeoutSeconds, network: "none", outDir, debug: false, command },
    { capture: true, echo: process.env["SANDKUBE_TEST_ECHO"] === "1" },
  );
}

/** Runs lab/gvisor-scenarios/SCRIPT.sh in runsc and returns what it observed. */
export async function scenario(
  runsc: RunscFlavour,
  script: string,
  mode?: string,
): Promise<{ result: GvisorRunResult; observations: Observations }> {
  const outDir = join(
    labDir(),
    "test-scenarios",
    runsc,
    `${script}${mode === undefined ? "" : `-${mode}`}`,
  );
  const path = join(repoRootOfScript(), "lab", "gvisor-scenarios", `${script}.sh`);
  await rm(join(outDir, "observations.tsv"), { force: true });
  const result = await inGvisor(runsc, ["sh", path, ...(mode === undefined ? [] : [mode])], outDir);
  const text = await readFile(join(outDir, "observations.tsv"), "utf8").catch(() => "");
  return { result, observations: parseObservations(text) };
}

/** The JSON report a scenario program printed inside the sandbox; a clear failure if there is none. */
export function scenarioReportOf(result: GvisorRunResult): ScenarioReport {
  const text = result.stdout.slice(result.stdout.indexOf("{"));
  try {
    return JSON.parse(text) as ScenarioReport;
  } catch {
    throw new Error(
      `no report from inside the sandbox (exit ${String(result.exitCode)}): ${result.stderr.slice(-3000)}`,
    );
  }
}

/** "id: detail" for every step that did not pass. */
export function failedSteps(report: ScenarioReport): string[] {
  return report.steps.filter((s) => !s.ok).map((s) => `${s.id}: ${s.detail}`);
}
