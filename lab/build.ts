/**
 * `npm run lab:build`: builds the lab's pinned components from Go modules into the shared cache
 * (labDir(), which is sandkube's install cache), skipping those whose stamp still matches, and
 * writes the manifest. The node's own binaries come from src/install's recipes and builder, so
 * `sandkube install` and the lab never build the same thing twice.
 */
import { UsageError } from "../src/cli/usage-error.js";
import {
  cacheLayout,
  buildManifest,
  formatDuration,
  selectComponents,
} from "../src/install/build-plan.js";
import {
  GoBuilder,
  debianState,
  describeOutcome,
  readAllStamps,
  runAll,
  type Outcome,
} from "../src/install/go-build.js";
import type { GoComponent } from "../src/install/components.js";
import { writeFile } from "node:fs/promises";
import { LAB_COMPONENTS } from "./components.js";
import { parseBuildArgs } from "./build-plan.js";
import { labDir, labManifestPath } from "./paths.js";

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(argv: readonly string[]): Promise<number> {
  const table = LAB_COMPONENTS;
  const options = parseBuildArgs(
    argv,
    table.map((component) => component.name),
  );
  const layout = cacheLayout(labDir());
  const goTable = table.filter((component): component is GoComponent => component.kind === "go");
  const builder = new GoBuilder(layout, goTable, { force: options.force, progress });
  await builder.prepare();

  const started = performance.now();
  const selected = selectComponents(table, options.only);
  progress(`lab: ${layout.root}, ${selected.length} components, ${options.jobs} at a time`);
  const outcomes: Outcome[] = await runAll(selected, options.jobs, async (component) => {
    const outcome =
      component.kind === "debian"
        ? await builder.runDebian(component.name, component.packages)
        : await builder.run(component);
    progress(describeOutcome(outcome));
    return outcome;
  });

  const debianPackages = table.flatMap((component) =>
    component.kind === "debian" ? component.packages : [],
  );
  const manifest = buildManifest(
    layout,
    table,
    await readAllStamps(layout),
    await debianState(debianPackages),
  );
  await writeFile(labManifestPath(), `${JSON.stringify(manifest, null, 2)}\n`);

  const failed = outcomes.filter((outcome) => outcome.status === "failed");
  const totalSeconds = Math.round((performance.now() - started) / 100) / 10;
  progress(
    `lab build ${failed.length === 0 ? "complete" : `FAILED (${failed.map((o) => o.name).join(", ")})`} in ` +
      `${formatDuration(totalSeconds)}; manifest: ${labManifestPath()}`,
  );
  if (options.json) {
    process.stdout.write(
      `${JSON.stringify({ ok: failed.length === 0, seconds: totalSeconds, manifest: labManifestPath(), outcomes }, null, 2)}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      (error.exitCode === 0 ? process.stdout : process.stderr).write(`${error.message}\n`);
      process.exitCode = error.exitCode;
      return;
    }
    process.stderr.write(
      `lab build: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
