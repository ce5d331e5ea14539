/**
 * opencontainers/runtime-tools' validation suite, once with stock runc from the lab and once with
 * dist/bin/sandkube-runtime, on this machine's kernel. sandkube must pass every TAP assertion runc
 * passes, except those docs/runtime-tools.md lists with their cause; the list is read here, so it
 * cannot drift from what the runtimes really do.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runComparison, suiteDir, suiteIsBuilt } from "../../lab/runtime-tools.js";
import { labBinary } from "../../lab/paths.js";
import { REPO } from "./runtime-support.js";

const RUNTIME = process.env["SANDKUBE_RUNTIME"] ?? join(REPO, "dist/bin/sandkube-runtime");
const DOC = join(REPO, "docs/runtime-tools.md");
const EXPLAINED_HEADING = "## Assertions runc passes and sandkube does not";

function reason(): string | undefined {
  if (process.getuid?.() !== 0)
    return "SKIPPED: the validation suite creates containers, which needs root";
  if (!existsSync(labBinary("runc")))
    return `SKIPPED: ${labBinary("runc")} missing; run npm run lab:build`;
  if (!suiteIsBuilt())
    return `SKIPPED: runtime-tools is not built in ${suiteDir()}; run npm run build && node dist/lab/runtime-tools.js build`;
  if (!existsSync(RUNTIME)) return `SKIPPED: ${RUNTIME} missing; run npm run build:runtime`;
  return undefined;
}

/**
 * The entries under EXPLAINED_HEADING: each bullet starts with one or more comma-separated
 * backticked ids, `program#N` (one assertion) or `program` (every assertion of that program).
 */
export function explainedAssertions(markdown: string): Set<string> {
  const start = markdown.indexOf(EXPLAINED_HEADING);
  if (start < 0) return new Set();
  const section = markdown.slice(start + EXPLAINED_HEADING.length).split(/\n## /)[0] ?? "";
  return new Set(
    [...section.matchAll(/^- ((?:`[^`]+`,?\s*)+)/gm)].flatMap((m) =>
      [...(m[1] ?? "").matchAll(/`([^`]+)`/g)].map((id) => id[1] as string),
    ),
  );
}

function explainedBy(id: string, explained: ReadonlySet<string>): string | undefined {
  const program = id.split("#")[0] ?? "";
  if (explained.has(id)) return id;
  return explained.has(program) ? program : undefined;
}

const why = reason();
if (why) console.log(why);

test(
  "runtime-tools validation: sandkube passes what runc passes, except what docs/runtime-tools.md explains",
  { skip: why },
  async () => {
    const out =
      process.env["SANDKUBE_RUNTIME_TOOLS_OUT"] ?? mkdtempSync(join(tmpdir(), "rtval-out-"));
    const c = await runComparison(out, RUNTIME);
    console.log(
      `runtime-tools passed: runc ${c.passed["runc"]}, sandkube ${c.passed["sandkube"]}; TAP in ${out}`,
    );
    const explained = explainedAssertions(readFileSync(DOC, "utf8"));
    const lost = c.differing.filter((d) => d.runc === "passed" && d.sandkube !== "passed");
    const unexplained = lost.filter((d) => explainedBy(d.id, explained) === undefined);
    assert.deepEqual(
      unexplained.map(
        (d) =>
          `${d.id} ${d.description}: sandkube ${d.sandkube}; log.json: ${d.runtimeErrors.join(" | ").slice(0, 300)}`,
      ),
      [],
      `assertions runc passes and sandkube does not, missing from ${DOC}`,
    );
    const used = new Set(lost.map((d) => explainedBy(d.id, explained)));
    const stale = [...explained].filter((e) => !used.has(e));
    assert.deepEqual(stale, [], `${DOC} explains assertions that no longer differ; remove them`);
  },
);
