import { test } from "node:test";
import assert from "node:assert/strict";
import { planAdaptations } from "../../src/plan/adaptations.js";
import { judge } from "../../src/plan/verdict.js";
import { remedyFor } from "../../src/node/remedies.js";
import { blockedResults } from "../../src/verify/blocked.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// verify where no node can run: the recorded probe of gVisor 2023-07 (runsc old), with its data
// dir moved (in the facts) to a filesystem where overlayfs fails, which leaves no way to mount a
// container root there without MS_REC.

test("on runsc old without overlayfs every check fails naming no-recursive-bind and its remedy", async () => {
  const facts = structuredClone(await replayFacts("gvisor-runsc-old"));
  const onDataDir = { result: "no", code: "EINVAL", detail: "mount: wrong fs type" } as const;
  const verdict = judge({ ...facts, overlay: { ...facts.overlay, onDataDir } });
  assert.equal(verdict.canRun, false);
  const results = blockedResults(
    ["deploymentReady", "service", "pvc"],
    verdict.blockers,
    planAdaptations(facts),
    remedyFor,
  );
  assert.deepEqual(
    results.map((r) => r.status),
    ["failed", "failed", "failed"],
  );
  for (const r of results) {
    assert.match(r.blocker ?? "", /^no-recursive-bind: /);
    assert.equal(r.remedy, remedyFor("no-recursive-bind"));
  }
  assert.match(results[1]?.detail ?? "", /own network namespace \(creating a veth pair fails/);
  assert.doesNotMatch(results[2]?.detail ?? "", /network namespace/);
});

test("a machine that can run a node gets no blocked results", async () => {
  const facts = await replayFacts("host-kernel");
  assert.deepEqual(blockedResults(["service"], judge(facts).blockers, [], remedyFor), []);
});
