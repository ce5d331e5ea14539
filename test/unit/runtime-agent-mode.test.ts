import assert from "node:assert/strict";
import { test } from "node:test";
import { planAgentNamespaces, type JoinTarget } from "../../src/runtime/agent-mode.js";
import { planCreate, type CreateInputs } from "../../src/runtime/create.js";
import { planExec } from "../../src/runtime/exec.js";
import { CLONE_FLAGS, type Instruction } from "../../src/runtime/instructions.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";
import {
  mountDepth,
  mountPoints,
  planReleaseSharedMounts,
} from "../../src/runtime/rootfs/shared-mounts.js";
import { parseSpec, type OciNamespace, type OciSpec } from "../../src/runtime/spec.js";
import type { ContainerState } from "../../src/runtime/state-store.js";
import { parseHelperReport } from "../../src/runtime/syscalls.js";

const pause: JoinTarget = { id: "pause", dir: "/run/sk/pause", hasKeeper: true };
const lookup = (pid: number): JoinTarget | undefined => (pid === 42 ? pause : undefined);

test("without setns, a sandbox container makes its pod-level namespaces, then a keeper, then its own", () => {
  const ns: OciNamespace[] = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  const plan = planAgentNamespaces(ns, "/run/sk/pause", 0, lookup);
  assert.deepEqual(plan.handover, []);
  assert.deepEqual(plan.podLevel, [
    ["unshare", CLONE_FLAGS.ipc | CLONE_FLAGS.uts, 0],
    ["keeper", "/run/sk/pause", "keeper.sock"],
  ]);
  assert.deepEqual(plan.own, [["unshare", CLONE_FLAGS.pid | CLONE_FLAGS.mount, 0]]);
});

test("without setns, an app container joining its sandbox's IPC namespace is handed to that keeper", () => {
  const ns: OciNamespace[] = [
    { type: "pid" },
    { type: "ipc", path: "/proc/42/ns/ipc" },
    { type: "mount" },
  ];
  const plan = planAgentNamespaces(ns, "/run/sk/app", 2, lookup);
  assert.deepEqual(plan.handover, [["handover", "/run/sk/pause/keeper.sock", 2]]);
  assert.deepEqual(plan.podLevel, [], "no pod-level namespace of its own, so no keeper");
  assert.deepEqual(plan.own, [["unshare", CLONE_FLAGS.pid | CLONE_FLAGS.mount, 0]]);
});

test("without setns, what cannot be joined is refused with the reason and the way out", () => {
  const refuse = (ns: OciNamespace[], message: RegExp): void =>
    assert.throws(() => planAgentNamespaces(ns, "/run/sk/app", 0, lookup), message);
  refuse(
    [{ type: "pid", path: "/proc/42/ns/pid" }, { type: "mount" }],
    /cannot join the pid namespace at \/proc\/42\/ns\/pid: this kernel has no setns\(2\).*shareProcessNamespace/,
  );
  refuse(
    [{ type: "network", path: "/var/run/netns/cni-1" }, { type: "mount" }],
    /cannot join the network namespace at \/var\/run\/netns\/cni-1/,
  );
  refuse(
    [{ type: "ipc", path: "/proc/7/ns/ipc" }, { type: "mount" }],
    /no sandkube-runtime container with init 7 keeps namespaces/,
  );
  refuse(
    [{ type: "user" }, { type: "mount" }],
    /user namespaces are not supported on a kernel without setns/,
  );
});

function spec(namespaces: OciNamespace[]): OciSpec {
  return parseSpec(
    JSON.stringify({
      ociVersion: "1.2.0",
      root: { path: "rootfs" },
      process: { user: { uid: 0, gid: 0 }, args: ["sleep", "1"], cwd: "/", env: [] },
      mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
      linux: { namespaces },
    }),
  );
}

function inputs(s: OciSpec): CreateInputs {
  return {
    spec: s,
    rootfs: "/b/rootfs",
    bundle: "/b",
    stateDir: "/run/sk/app",
    cgroups: [{ dir: "/sys/fs/cgroup/pids/app", version: 1, controllers: ["pids"] }],
    options: { id: "app", bundle: "/b", noPivot: false, preserveFds: 0 },
    capLastCapPresent: true,
    withoutSetns: { findByInitPid: lookup },
  };
}

const ops = (list: readonly Instruction[]): string[] => list.map((i) => i[0]);

test("create without setns: handover first, the agent forked with the init, the root handed to it after pivot", () => {
  const sys = new RecordingSyscalls();
  for (const d of ["/b", "/b/rootfs"]) sys.dirs.add(d);
  const { instructions } = planCreate(
    sys,
    inputs(spec([{ type: "pid" }, { type: "ipc", path: "/proc/42/ns/ipc" }, { type: "mount" }])),
  );
  const order = ops(instructions);
  const at = (op: string): number => order.indexOf(op);
  assert.equal(at("handover"), 0, "the keeper's child does everything, the cgroup join included");
  assert.ok(at("handover") < at("cgroup_join"));
  assert.ok(!order.includes("setns") && !order.includes("fork"));
  assert.ok(at("listen") < at("agent_listen") && at("agent_listen") < at("fork_with_agent"));
  assert.ok(at("pivot_root") < at("agent_root") && at("agent_root") < at("ready"));
});

test("exec in a container with an exec agent hands over to it instead of joining namespaces", () => {
  const s = spec([{ type: "pid" }, { type: "mount" }]);
  const state: ContainerState = {
    ociVersion: "1.2.0",
    id: "app",
    pid: 99,
    startTime: "1",
    bundle: "/b",
    rootfs: "/b/rootfs",
    created: "",
    annotations: {},
    owner: "",
    cgroups: [{ dir: "/sys/fs/cgroup/pids/app", version: 1, controllers: ["pids"] }],
    ownPidNamespace: true,
    helpers: [{ role: "agent", pid: 100, startTime: "2" }],
  };
  const process = { user: { uid: 0, gid: 0 }, args: ["true"], cwd: "/", env: [] };
  const { instructions } = planExec(state, "/run/sk/app", s, process, {
    args: [],
    detach: true,
    tty: false,
    preserveFds: 1,
  });
  assert.deepEqual(instructions[0], ["handover", "/run/sk/app/agent.sock", 1]);
  assert.ok(!ops(instructions).includes("setns") && !ops(instructions).includes("cgroup_join"));
  assert.deepEqual(instructions[1], ["fork", 0]);
});

test("the helper's report names the keeper, the agent and a handed-over exit status", () => {
  const r = parseHelperReport("keeper 11\npid 12\nagent 13\nexit 3\n", 0);
  assert.equal(r.keeperPid, 11);
  assert.equal(r.pid, 12);
  assert.equal(r.agentPid, 13);
  assert.equal(r.exitStatus, 3);
});

const MOUNTINFO = [
  "22 1 0:21 / / rw - 9p none rw",
  "40 22 0:30 / /run/c/rootfs rw - overlay overlay rw",
  "41 40 0:30 / /run/c/rootfs rw - overlay overlay rw",
  "42 41 0:31 / /run/c/rootfs rw - overlay overlay ro",
  "43 42 0:32 / /run/c/rootfs/proc rw - proc proc rw",
  "44 42 0:33 / /run/c/rootfs/dev rw - tmpfs tmpfs rw",
  "45 44 0:34 / /run/c/rootfs/dev/pts rw - devpts devpts rw",
  "46 22 0:35 / /run/sk/c/views/3 ro - overlay overlay ro",
  "47 42 0:36 / /run/c/rootfs/etc/my\\040hosts rw - 9p none rw",
  "48 22 0:37 / /run/other/rootfs/proc rw - proc proc rw",
].join("\n");

test("mountinfo mount points are decoded", () => {
  assert.equal(mountPoints(MOUNTINFO)[8], "/run/c/rootfs/etc/my hosts");
  assert.equal(mountDepth(MOUNTINFO, "/run/c/rootfs"), 3);
});

test("releasing shared mounts takes down the container's, deepest first, and only its own", () => {
  const plan = planReleaseSharedMounts(MOUNTINFO, "/run/c/rootfs", "/run/sk/c", 1);
  assert.deepEqual(plan, [
    ["umount", "/run/c/rootfs/etc/my hosts"],
    ["umount", "/run/sk/c/views/3"],
    ["umount", "/run/c/rootfs/dev/pts"],
    ["umount", "/run/c/rootfs/dev"],
    ["umount", "/run/c/rootfs/proc"],
    ["umount", "/run/c/rootfs"],
    ["umount", "/run/c/rootfs"],
    ["exit"],
  ]);
});
