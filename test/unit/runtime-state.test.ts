import assert from "node:assert/strict";
import { test } from "node:test";
import { containerId, parseCommandLine } from "../../src/runtime/args.js";
import { makeContext } from "../../src/runtime/context.js";
import { kill, parseSignal } from "../../src/runtime/kill.js";
import { memoryLogger } from "../../src/runtime/log.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import { stateJson } from "../../src/runtime/state.js";
import {
  containerStatus,
  parseProcStat,
  StateStore,
  type ContainerState,
} from "../../src/runtime/state-store.js";
import { parseHelperReport } from "../../src/runtime/syscalls.js";

const state: ContainerState = {
  ociVersion: "1.2.0",
  id: "c1",
  pid: 4242,
  startTime: "777",
  bundle: "/b",
  rootfs: "/b/rootfs",
  created: "2026-01-02T03:04:05.000Z",
  annotations: {},
  owner: "",
  cgroups: [],
  ownPidNamespace: true,
};

test("parseProcStat reads field 22 even when the command name holds spaces and parentheses", () => {
  const stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
  assert.deepEqual(parseProcStat(stat), { state: "S", startTime: "98765" });
});

test("the state file is written through a temp file and a rename", () => {
  const sys = new RecordingSyscalls();
  new StateStore(sys, "/run/r").save(state);
  const writes = sys.calls.filter((c) => c.startsWith("writeFile") || c.startsWith("rename"));
  assert.deepEqual(writes, [
    "writeFile /run/r/c1/state.json.100.tmp",
    "rename /run/r/c1/state.json.100.tmp /run/r/c1/state.json",
  ]);
});

test("a reused pid is not the container: status compares the start time", () => {
  const sys = new RecordingSyscalls();
  sys.addProcess(4242, "777");
  assert.equal(
    containerStatus(sys, state, "/run/r/c1", () => false),
    "running",
  );
  sys.sockets.add("/run/r/c1/start.sock");
  assert.equal(
    containerStatus(sys, state, "/run/r/c1", () => false),
    "created",
  );
  sys.addProcess(4242, "999");
  assert.equal(
    containerStatus(sys, state, "/run/r/c1", () => false),
    "stopped",
  );
  sys.addProcess(4242, "777", "Z");
  assert.equal(
    containerStatus(sys, state, "/run/r/c1", () => false),
    "stopped",
  );
});

test("kill of a stopped container says 'container not running', and kill --all succeeds", async () => {
  const sys = new RecordingSyscalls();
  const ctx = makeContext(
    sys,
    memoryLogger(),
    parseCommandLine(["--root", "/run/r", "kill"]).global,
    "/x",
    () => undefined,
  );
  sys.dirs.add("/run/r");
  sys.dirs.add("/run/r/c1");
  sys.files.set("/run/r/c1/state.json", JSON.stringify(state));
  sys.addProcess(4242, "111"); // the pid now belongs to a stranger
  await assert.rejects(kill(ctx, "c1", "9", false), /container not running/);
  await kill(ctx, "c1", "9", true);
  assert.deepEqual(sys.signals, [], "no signal may reach the stranger that reuses the pid");
  assert.equal(stateJson(ctx, "c1")["pid"], 0);
  assert.equal(sys.files.has("/run/r/.c1.lock"), false, "the lock is released");
});

test("the lock of a dead runtime is taken over", async () => {
  const sys = new RecordingSyscalls();
  sys.files.set("/run/r/.c1.lock", "31337");
  const store = new StateStore(sys, "/run/r");
  assert.equal(await store.withLock("c1", async () => "done"), "done");
});

test("the shim's command lines parse: global flags first, Go-style flags anywhere", () => {
  const c = parseCommandLine([
    "--root",
    "/run/containerd/runc/k8s.io",
    "--log",
    "/b/log.json",
    "--log-format",
    "json",
    "--systemd-cgroup",
    "create",
    "--bundle",
    "/b",
    "--pid-file",
    "/b/init.pid",
    "--no-pivot",
    "abc",
  ]);
  assert.equal(c.global.root, "/run/containerd/runc/k8s.io");
  assert.equal(c.global.systemdCgroup, true);
  assert.equal(c.command, "create");
  assert.equal(c.flags.get("bundle"), "/b");
  assert.equal(c.flags.get("no-pivot"), true);
  assert.deepEqual(c.positionals, ["abc"]);
  const u = parseCommandLine(["update", "--resources=-", "abc"]);
  assert.equal(u.flags.get("resources"), "-");
  const k = parseCommandLine(["kill", "--all", "abc", "9"]);
  assert.deepEqual(k.positionals, ["abc", "9"]);
  assert.throws(() => containerId(["../x"], "state"), /invalid container id/);
  assert.equal(parseSignal("KILL"), 9);
  assert.equal(parseSignal("SIGTERM"), 15);
  assert.throws(() => parseSignal("NOPE"), /unknown signal/);
});

test("the helper's report lines parse", () => {
  const r = parseHelperReport("pid 12\nwarn a b\nready\n", 0);
  assert.deepEqual(r, { pid: 12, warnings: ["a b"], ready: true, exitCode: 0 });
  assert.equal(parseHelperReport("pid 12\nerror mount x: EPERM\n", 1).error, "mount x: EPERM");
});

test("kill --all without a cgroup signals the init's pid namespace, never our own", async () => {
  const sys = new RecordingSyscalls();
  const ctx = makeContext(
    sys,
    memoryLogger(),
    parseCommandLine(["--root", "/run/r", "kill"]).global,
    "/x",
    () => undefined,
  );
  sys.dirs.add("/run/r/c1");
  sys.files.set("/run/r/c1/state.json", JSON.stringify({ ...state, pid: 10 }));
  sys.addProcess(10, "777");
  sys.addProcess(11, "1");
  sys.addProcess(12, "1");
  sys.links.set("/proc/self/ns/pid", "pid:[4026531836]");
  sys.links.set("/proc/10/ns/pid", "pid:[4026532000]");
  sys.links.set("/proc/11/ns/pid", "pid:[4026532000]");
  sys.links.set("/proc/12/ns/pid", "pid:[4026531836]");
  await kill(ctx, "c1", "KILL", true);
  assert.deepEqual(sys.signals, [
    [10, 9],
    [11, 9],
  ]);

  // A container in the host's pid namespace: only init, never a scan of every host process.
  sys.signals.length = 0;
  sys.addProcess(10, "777");
  sys.links.set("/proc/10/ns/pid", "pid:[4026531836]");
  await kill(ctx, "c1", "9", true);
  assert.deepEqual(sys.signals, [[10, 9]]);
});
