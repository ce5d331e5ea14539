import assert from "node:assert/strict";
import { test } from "node:test";
import { compareRuns, mountsUnder, parseTap, type ProgramRun } from "../../lab/runtime-tools.js";

// Lines as tap-go prints them in runtime-tools' validation (copied from a run with runc).
const TAP = `TAP version 13
ok 1 - has expected hostname
  ---
  {
    "actual": "hostname-specific"
  }
  ...
not ok 2 - attempting to \`delete\` a container that is not \`stopped\` MUST generate an error
ok 3 # SKIP linux.readonlyPaths not set
ok 4 # TODO not yet
1..4
`;

test("parseTap reads outcomes, descriptions, skips and the plan", () => {
  const r = parseTap(TAP);
  assert.equal(r.planned, 4);
  assert.equal(r.bailedOut, false);
  assert.deepEqual(r.assertions, [
    { number: 1, description: "has expected hostname", outcome: "passed" },
    {
      number: 2,
      description:
        "attempting to `delete` a container that is not `stopped` MUST generate an error",
      outcome: "failed",
    },
    { number: 3, description: "linux.readonlyPaths not set", outcome: "skipped" },
    { number: 4, description: "not yet", outcome: "todo" },
  ]);
});

test("parseTap has no plan when a program dies before printing it", () => {
  const r = parseTap("TAP version 13\nok 1 - a\n");
  assert.equal(r.planned, undefined);
  assert.equal(r.assertions.length, 1);
});

function run(program: string, tap: string, runtimeErrors: string[] = []): ProgramRun {
  return { program, exitCode: 0, timedOut: false, tap: parseTap(tap), runtimeErrors };
}

test("compareRuns lists assertions whose outcome differs, and missing ones", () => {
  const c = compareRuns(
    [run("kill", "ok 1 - a\nok 2 - b\n1..2\n"), run("state", "ok 1 - s\n1..1\n")],
    [run("kill", "ok 1 - a\nnot ok 2 - b\n1..2\n", ["kill failed"]), run("state", "")],
  );
  assert.deepEqual(c.passed, { runc: 3, sandkube: 1 });
  assert.deepEqual(c.passList["sandkube"], ["kill#1"]);
  assert.deepEqual(
    c.differing.map((d) => [d.id, d.runc, d.sandkube, d.runtimeErrors]),
    [
      ["kill#2", "passed", "failed", ["kill failed"]],
      ["state#1", "passed", "missing", []],
    ],
  );
});

test("compareRuns orders assertions by program, then number", () => {
  const c = compareRuns([run("a", "ok 10 - x\nok 9 - y\n"), run("b", "ok 1 - z\n")], []);
  assert.deepEqual(c.passList["runc"], ["a#9", "a#10", "b#1"]);
});

test("mountsUnder finds mounts at or under a folder, deepest first, and not its namesakes", () => {
  const mountinfo = [
    "64 27 254:0 /tmp/w/ocitest1 /tmp/w/ocitest1 rw,relatime - ext4 /dev/vda rw",
    "66 64 0:59 / /tmp/w/ocitest1/proc rw,nosuid - proc proc rw",
    "70 27 254:0 /tmp/w2 /tmp/w2 rw - ext4 /dev/vda rw",
    "",
  ].join("\n");
  assert.deepEqual(mountsUnder(mountinfo, "/tmp/w"), ["/tmp/w/ocitest1/proc", "/tmp/w/ocitest1"]);
});
