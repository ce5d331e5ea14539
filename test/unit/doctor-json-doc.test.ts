import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { planAdaptations } from "../../src/plan/adaptations.js";
import { judge } from "../../src/plan/verdict.js";
import type { DoctorFixture } from "../fixtures/doctor-fixtures.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// docs/doctor-json.md is the --json contract: whatever doctor emits on a recorded machine must be
// described there.
const doc = readFileSync(
  fileURLToPath(new URL("../../../docs/doctor-json.md", import.meta.url)),
  "utf8",
);

const MACHINES: readonly DoctorFixture[] = ["host-kernel", "gvisor-runsc-new", "gvisor-runsc-old"];

for (const name of MACHINES) {
  test(`${name}: every facts section, adaptation id and blocker id is in docs/doctor-json.md`, async () => {
    const facts = await replayFacts(name);
    for (const key of Object.keys(facts)) {
      assert.ok(doc.includes(`| \`${key}`), `facts.${key} is not documented`);
    }
    for (const a of planAdaptations(facts)) {
      assert.ok(doc.includes(`\`${a.id}\``), `adaptation ${a.id} is not documented`);
    }
    for (const b of judge(facts).blockers) {
      assert.ok(doc.includes(`\`${b.id}\``), `blocker ${b.id} is not documented`);
    }
  });
}
