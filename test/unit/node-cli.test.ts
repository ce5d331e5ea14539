import { test } from "node:test";
import assert from "node:assert/strict";
import { parseUpArgs, podNetworkProblem } from "../../src/cli/up.js";
import { parseFlags } from "../../src/cli/node-args.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { planAdaptations } from "../../src/plan/adaptations.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// The node commands' argument handling and the plain words `up` prints: pure, no root.

test("up's defaults: /var/lib/sandkube, auto runtime, 300 s, the node address for the API server", () => {
  const args = parseUpArgs([], {});
  assert.equal(args.dataDir, "/var/lib/sandkube");
  assert.equal(args.runtime, "auto");
  assert.equal(args.timeoutMs, 300_000);
  assert.equal(args.bindAddress, null);
  assert.equal(parseUpArgs([], { SANDKUBE_DATA_DIR: "/srv/k" }).dataDir, "/srv/k");
});

test("up takes --flag VALUE and --flag=VALUE, the last one winning", () => {
  const args = parseUpArgs(
    ["--runtime", "runc", "--runtime=sandkube", "--data-dir=/d", "--json"],
    {},
  );
  assert.equal(args.runtime, "sandkube");
  assert.equal(args.dataDir, "/d");
  assert.equal(args.json, true);
});

test("each bad input names itself", () => {
  const cases: [string[], RegExp][] = [
    [["--frobnicate"], /unknown flag --frobnicate/],
    [["--runtime", "crun"], /--runtime must be auto, sandkube or runc, not "crun"/],
    [["--timeout", "-3"], /--timeout must be a positive number of seconds, not "-3"/],
    [["--bind-address", "localhost"], /--bind-address must be an IPv4 address/],
    [["--data-dir"], /--data-dir needs a value/],
    [["--json=yes"], /--json takes no value/],
    [["extra"], /unexpected argument "extra"/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseUpArgs(argv, {}),
      (error: unknown) =>
        error instanceof UsageError && error.exitCode === 2 && message.test(error.message),
      argv.join(" "),
    );
  }
});

test("a value that looks like a flag is not taken as a value", () => {
  assert.throws(
    () =>
      parseFlags(
        "x",
        ["--a", "--b"],
        { "--a": { takesValue: true }, "--b": { takesValue: false } },
        "",
      ),
    /--a needs a value/,
  );
});

test("up says plainly when pods cannot have a network namespace: runsc old yes, runsc new no", async () => {
  const old = podNetworkProblem(planAdaptations(await replayFacts("gvisor-runsc-old")));
  assert.match(
    old ?? "",
    /pods cannot have their own network namespace here \(creating a veth pair fails/,
  );
  assert.equal(
    podNetworkProblem(planAdaptations(await replayFacts("gvisor-runsc-new"))),
    undefined,
  );
});
