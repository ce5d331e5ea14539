/**
 * What the node benchmarks share: running the same benchmark file inside a lab runsc sandbox,
 * with its figures coming back through a file in the sandbox's shared output directory (so the
 * outer stdout stays one JSON object), and taking a node down after a measurement.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../src/common/exec.js";
import { describeCommand } from "../src/verify/checks.js";
import { runInGvisor } from "../lab/gvisor-run.js";
import { labDir } from "../lab/paths.js";

/** Runs `node <script> --inner --result FILE ...args` inside runsc; returns what it wrote. */
export async function measureInsideGvisor<T>(
  flavour: "new" | "old",
  script: string,
  args: readonly string[],
): Promise<T> {
  const outDir = await mkdtemp(join(labDir(), "bench-"));
  const resultFile = join(outDir, "gvisor.json");
  try {
    const result = await runInGvisor(
      {
        runsc: flavour,
        timeoutSeconds: 1800,
        network: "none",
        outDir,
        debug: false,
        command: ["node", script, "--inner", "--result", resultFile, ...args],
      },
      // Passed through: the inner run writes progress to stderr and nothing to stdout.
      { capture: false },
    );
    const text = await readFile(resultFile, "utf8").catch(() => undefined);
    if (text === undefined) {
      throw new Error(
        `the gVisor run (runsc ${flavour}) ended with status ${String(result.exitCode)} and no figures`,
      );
    }
    return JSON.parse(text) as T;
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** `sandkube down --purge`; false (and a warning) when it did not finish cleanly. */
export async function takeDown(
  cli: string,
  dataDir: string,
  say: (line: string) => void,
): Promise<boolean> {
  const down = await runCommand([process.execPath, cli, "down", "--purge", "--data-dir", dataDir], {
    timeoutMs: 300_000,
  });
  const ok = down.exitCode === 0 && down.failure === undefined;
  if (!ok) say(`WARNING: down did not finish cleanly: ${describeCommand(down)}`);
  return ok;
}
