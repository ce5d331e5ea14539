import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { CommandResult } from "../../src/common/exec.js";

/**
 * The step recorder the scenario programs share (node-scenario.ts, registry-scenario.ts): each
 * step runs, is timed, and ends as one line on stderr and one entry in the JSON report, so a
 * failure says which step and why without stopping the steps that can still run.
 */

export interface ScenarioStep {
  readonly id: string;
  readonly ok: boolean;
  readonly detail: string;
  readonly seconds: number;
}

export interface ScenarioReport {
  readonly ok: boolean;
  readonly steps: readonly ScenarioStep[];
}

export class Scenario {
  readonly steps: ScenarioStep[] = [];
  async step(id: string, work: () => Promise<string>): Promise<boolean> {
    const started = Date.now();
    let ok = true;
    let detail: string;
    try {
      detail = await work();
    } catch (error) {
      ok = false;
      detail = error instanceof Error ? error.message : String(error);
    }
    const step = { id, ok, detail, seconds: (Date.now() - started) / 1000 };
    this.steps.push(step);
    process.stderr.write(
      `${ok ? "ok  " : "FAIL"} ${id} (${step.seconds.toFixed(1)}s): ${detail}\n`,
    );
    return ok;
  }

  report(): ScenarioReport {
    return { ok: this.steps.every((step) => step.ok), steps: this.steps };
  }
}

/** A command's outcome in one line: its arguments after the program, status, last output lines. */
export function brief(result: CommandResult): string {
  const tail = `${result.stderr}\n${result.stdout}`.trim().split("\n").slice(-6).join(" | ");
  return `${result.argv.slice(2).join(" ")} -> ${result.failure ?? result.exitCode}: ${tail}`;
}

/** The command's stdout, or an error naming `what` and the command's outcome. */
export function must(result: CommandResult, what: string): string {
  if (result.exitCode !== 0) throw new Error(`${what}: ${brief(result)}`);
  return result.stdout;
}

/**
 * The command-line end of a scenario program: when `moduleUrl` is the file node was started with,
 * runs the scenario with a reader of its flags, prints the report (and writes it to --out FILE),
 * and exits 0 when every step passed, 1 when one failed, 70 when the program itself broke.
 */
export function runScenarioProgram(
  moduleUrl: string,
  name: string,
  run: (
    flag: (name: string) => string | undefined,
    argv: readonly string[],
  ) => Promise<ScenarioReport>,
): void {
  const entry = process.argv[1];
  if (entry === undefined || resolve(entry) !== fileURLToPath(moduleUrl)) return;
  const argv = process.argv.slice(2);
  const flag = (flagName: string): string | undefined => {
    const index = argv.indexOf(flagName);
    return index === -1 ? undefined : argv[index + 1];
  };
  run(flag, argv).then(
    async (report) => {
      const text = `${JSON.stringify(report, null, 2)}\n`;
      const out = flag("--out");
      if (out !== undefined) await writeFile(out, text);
      process.stdout.write(text);
      process.exitCode = report.ok ? 0 : 1;
    },
    (error: unknown) => {
      process.stderr.write(
        `${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exitCode = 70;
    },
  );
}
