import { existsSync } from "node:fs";
import { GVISOR_USAGE, GvisorUsageError, parseGvisorArgs } from "./gvisor-spec.js";
import { LabNotBuiltError, runInGvisor } from "./gvisor-run.js";

/** `npm run lab:gvisor -- [options] CMD...`: CMD's exit status becomes this process's. */
async function main(argv: readonly string[]): Promise<number> {
  const options = parseGvisorArgs(argv);
  if (options === undefined) {
    process.stdout.write(`${GVISOR_USAGE}\n`);
    return 0;
  }
  const result = await runInGvisor(options, { capture: false });
  if (options.outDir === undefined && existsSync(result.outDir)) {
    process.stderr.write(`lab:gvisor: output directory kept at ${result.outDir}\n`);
  }
  return result.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof GvisorUsageError || error instanceof LabNotBuiltError) {
      process.stderr.write(`lab:gvisor: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`lab:gvisor: internal error: ${message}\n`);
    process.exitCode = 70;
  },
);
