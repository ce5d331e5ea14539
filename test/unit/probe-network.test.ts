import { test } from "node:test";
import assert from "node:assert/strict";
import { runCommand } from "../../src/common/exec.js";
import { replayIO, type Transcript } from "../../src/probe/io.js";
import { commandError, fromToolCommand, type Check } from "../../src/probe/check.js";
import {
  createScratchNamespace,
  inScratch,
  parseUnsharedSteps,
  probeNetwork,
  shellQuote,
  unsharedStepsScript,
} from "../../src/probe/network.js";
import { loadTranscript } from "./net-fixtures.js";

function errorOf(check: Check): string {
  assert.equal(check.result, "no", "expected a failed check");
  return check.result === "no" ? check.detail : "";
}

test("on the host kernel every CNI device operation works in a named scratch namespace", async () => {
  const facts = await probeNetwork(replayIO(await loadTranscript("net-host-kernel")));
  assert.deepEqual(facts.scratchNamespace, {
    named: { result: "yes" },
    method: "ip-netns",
    cleanup: { result: "yes" },
  });
  for (const key of [
    "loopbackUp",
    "veth",
    "bridge",
    "bridgePromiscuous",
    "vethPromiscuous",
    "vethOnBridge",
    "linkUp",
    "address",
    "routeViaGateway",
    "routeDelete",
    "routeWithSource",
  ] as const) {
    assert.deepEqual(facts[key], { result: "yes" }, key);
  }
  assert.deepEqual(facts.ipForward, { value: "0", writableInScratch: { result: "yes" } });
});

test("in current gVisor, promiscuous mode and routes with a source fail as findings row 10 says", async () => {
  // Recorded inside the lab's runsc (see the transcript's description), not hand-made.
  const facts = await probeNetwork(replayIO(await loadTranscript("net-gvisor")));
  assert.equal(facts.scratchNamespace.method, "ip-netns");
  assert.deepEqual(facts.scratchNamespace.cleanup, { result: "yes" });
  assert.deepEqual(facts.veth, { result: "yes" });
  assert.deepEqual(facts.bridge, { result: "yes" });
  assert.deepEqual(facts.vethOnBridge, { result: "yes" });
  assert.deepEqual(facts.address, { result: "yes" });
  assert.deepEqual(facts.routeViaGateway, { result: "yes" });
  assert.deepEqual(facts.routeDelete, { result: "yes" });
  assert.equal(errorOf(facts.bridgePromiscuous), "RTNETLINK answers: Invalid argument");
  assert.equal(errorOf(facts.vethPromiscuous), "RTNETLINK answers: Invalid argument");
  assert.equal(errorOf(facts.routeWithSource), "RTNETLINK answers: Operation not supported");
  assert.deepEqual(facts.ipForward.writableInScratch, { result: "yes" });
});

test("in 2023 gVisor, ip netns is refused, so the checks run unshared and find no veth", async () => {
  const facts = await probeNetwork(replayIO(await loadTranscript("net-gvisor-2023")));
  assert.equal(
    errorOf(facts.scratchNamespace.named),
    "mount --bind /run/netns /run/netns failed: Invalid argument",
  );
  assert.equal(facts.scratchNamespace.method, "unshare");
  assert.deepEqual(
    facts.scratchNamespace.cleanup,
    { result: "yes" },
    "nothing was left in /run/netns",
  );
  assert.deepEqual(facts.loopbackUp, { result: "yes" });
  assert.equal(errorOf(facts.veth), 'Command "add" is unknown, try "ip link help".');
  assert.equal(errorOf(facts.bridge), 'Command "add" is unknown, try "ip link help".');
  assert.equal(facts.linkUp.result, "not-run");
  assert.equal(facts.routeWithSource.result, "not-run");
  assert.deepEqual(facts.ipForward.writableInScratch, { result: "yes" });
});

test("a step runs in the named namespace through ip -n, other programs through ip netns exec", () => {
  const named = { kind: "named", name: "sknet1" } as const;
  assert.deepEqual(inScratch(named, ["ip", "link", "set", "lo", "up"]), [
    ...["ip", "-n", "sknet1", "link", "set", "lo", "up"],
  ]);
  assert.deepEqual(inScratch(named, ["iptables", "-L"]), [
    ...["ip", "netns", "exec", "sknet1", "iptables", "-L"],
  ]);
  assert.deepEqual(inScratch({ kind: "unshared" }, ["iptables", "-L"]), [
    ...["unshare", "--net", "--", "iptables", "-L"],
  ]);
});

test("the unshared step script reports each step's status and stderr, run by a real sh", async () => {
  // Runs in the test's own namespace: the steps touch nothing, only the reporting is under test.
  const script = unsharedStepsScript([
    { name: "loopbackUp", argv: ["true"] },
    { name: "veth", argv: ["sh", "-c", "echo 'it''s broken' >&2; echo ignored; exit 3"] },
    { name: "bridge", argv: ["printf", "%s\\n", "a b"] },
  ]);
  const run = await runCommand(["sh", "-c", script]);
  assert.equal(run.exitCode, 0, run.stderr);
  const steps = parseUnsharedSteps(run.stdout);
  assert.deepEqual(steps.get("loopbackUp"), { exitCode: 0, stderr: "" });
  assert.deepEqual(steps.get("veth"), { exitCode: 3, stderr: "its broken" });
  assert.deepEqual(steps.get("bridge"), { exitCode: 0, stderr: "" });
});

test("shellQuote keeps plain words and survives single quotes", () => {
  assert.equal(shellQuote("10.254.1.1/24"), "10.254.1.1/24");
  assert.equal(shellQuote("echo 1 > /x"), "'echo 1 > /x'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
});

test("a failed command's error is its own words, without iptables' usage hint", () => {
  const base = { argv: ["iptables-legacy", "-A"], stdout: "" };
  assert.equal(
    commandError({
      ...base,
      exitCode: 2,
      stderr:
        "iptables v1.8.9 (legacy): MARK target: kernel too old for --or-mark\nTry `iptables -h' or 'iptables --help' for more information.\n",
    }),
    "iptables v1.8.9 (legacy): MARK target: kernel too old for --or-mark",
  );
  assert.equal(
    commandError({ ...base, exitCode: 127, stderr: "", failure: "ENOENT" }),
    "iptables-legacy: command not found (ENOENT)",
  );
  assert.equal(commandError({ ...base, exitCode: 4, stderr: "" }), "exit status 4");
  assert.deepEqual(fromToolCommand({ ...base, exitCode: 0, stderr: "" }), { result: "yes" });
});

test("cleanup is judged by the namespace file, not by what ip netns delete says", async () => {
  // Hand-made: a delete that claims success while /run/netns/NAME stays, and one that fails on a
  // file iproute2 already removed after a half-done `ip netns add` (as in net-gvisor-2023).
  const machine = (deleteExit: number, fileLeft: boolean): Transcript => ({
    schema: "sandkube.transcript/v1",
    description: "hand-made scratch namespace cleanup",
    entries: [
      { op: "scratch", label: "net", result: "sknet00000001" },
      {
        op: "run",
        argv: ["ip", "netns", "add", "sknet00000001"],
        result: { exitCode: 0, stdout: "", stderr: "" },
      },
      {
        op: "run",
        argv: ["ip", "netns", "delete", "sknet00000001"],
        result: {
          exitCode: deleteExit,
          stdout: "",
          stderr: deleteExit ? "Cannot remove namespace file" : "",
        },
      },
      {
        op: "kind",
        path: "/run/netns/sknet00000001",
        result: fileLeft
          ? { ok: true, value: "other" }
          : { ok: false, code: "ENOENT", message: "no such file or directory" },
      },
    ],
  });
  const leaked = await createScratchNamespace(replayIO(machine(0, true)), "net");
  assert.deepEqual(await leaked.remove(), {
    result: "no",
    code: "EEXIST",
    detail: "/run/netns/sknet00000001 is still there",
  });
  const gone = await createScratchNamespace(replayIO(machine(1, false)), "net");
  assert.deepEqual(await gone.remove(), { result: "yes" });
});
