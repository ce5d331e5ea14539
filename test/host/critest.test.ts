/**
 * cri-tools' critest against one containerd with two handlers, `runc` (stock runc from the lab)
 * and `sandkube` (dist/bin/sandkube-runtime), on this machine's kernel. sandkube may pass fewer
 * specs than runc only where docs/critest.md lists the spec with its cause; the list is read here,
 * so it cannot drift from what the runtimes really do.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runComparison } from "../../lab/critest.js";
import { labBinary } from "../../lab/paths.js";
import { REPO, skipReason } from "./runtime-support.js";

const RUNTIME = process.env["SANDKUBE_RUNTIME"] ?? join(REPO, "dist/bin/sandkube-runtime");
const DOC = join(REPO, "docs/critest.md");
const EXPLAINED_HEADING = "## Specs runc passes and sandkube does not";

function reason(): string | undefined {
  const missingLab = ["containerd", "containerd-shim-runc-v2", "crictl", "critest", "runc"]
    .map((b) => labBinary(b))
    .find((b) => !existsSync(b));
  if (missingLab) return `SKIPPED: ${missingLab} missing; run npm run lab:build`;
  if (!existsSync(RUNTIME)) return `SKIPPED: ${RUNTIME} missing; run npm run build:runtime`;
  for (const [tool, fix] of [
    ["/usr/bin/docker-registry", "apt-get install -y docker-registry"],
    ["/usr/bin/skopeo", "apt-get install -y skopeo"],
    ["/usr/bin/gcc", "apt-get install -y gcc libc6-dev"],
  ] as const)
    if (!existsSync(tool)) return `SKIPPED: ${tool} missing; ${fix}`;
  return skipReason();
}

/** The spec names under EXPLAINED_HEADING: each bullet starts with the name in backticks. */
export function explainedSpecs(markdown: string): Set<string> {
  const start = markdown.indexOf(EXPLAINED_HEADING);
  if (start < 0) return new Set();
  const section = markdown.slice(start + EXPLAINED_HEADING.length).split(/\n## /)[0] ?? "";
  return new Set([...section.matchAll(/^- `([^`]+)`/gm)].map((m) => m[1] as string));
}

const why = reason();

test(
  "critest: sandkube passes what runc passes, except the specs docs/critest.md explains",
  { skip: why },
  async () => {
    const out = process.env["SANDKUBE_CRITEST_OUT"] ?? mkdtempSync(join(tmpdir(), "skcrit-out-"));
    const c = await runComparison(out);
    console.log(
      `critest passed: runc ${c.passed["runc"]}, sandkube ${c.passed["sandkube"]}; reports in ${out}`,
    );
    const explained = explainedSpecs(readFileSync(DOC, "utf8"));
    const lost = c.differing.filter((d) => d.runc === "passed" && d.sandkube !== "passed");
    const unexplained = lost.filter((d) => !explained.has(d.name));
    assert.deepEqual(
      unexplained.map((d) => `${d.name}: ${d.sandkube}: ${(d.failure ?? "").slice(0, 300)}`),
      [],
      `specs runc passes and sandkube does not, missing from ${DOC}`,
    );
    const stale = [...explained].filter((name) => !lost.some((d) => d.name === name));
    assert.deepEqual(stale, [], `${DOC} explains specs that no longer differ; remove them`);
    assert.ok(
      (c.passed["sandkube"] ?? 0) >= (c.passed["runc"] ?? 0) - explained.size,
      `sandkube passed ${c.passed["sandkube"]}, runc ${c.passed["runc"]}, ${explained.size} explained`,
    );
  },
);
