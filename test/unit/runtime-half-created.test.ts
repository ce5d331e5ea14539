import assert from "node:assert/strict";
import { test } from "node:test";
import { cgroupsInInstructions } from "../../src/runtime/half-created.js";
import { encodeInstructions, ins } from "../../src/runtime/instructions.js";

test("cgroupsInInstructions finds the cgroups create told the helper to join", () => {
  const list = encodeInstructions([
    ins.cgroupJoin("/sys/fs/cgroup/pids/k8s/c1/cgroup.procs"),
    ins.cgroupJoin("/sys/fs/cgroup/unified/k8s/c1/cgroup.procs"),
    ins.fork(false),
  ]);
  assert.deepEqual(cgroupsInInstructions(list, ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]), [
    "/sys/fs/cgroup/pids/k8s/c1",
    "/sys/fs/cgroup/unified/k8s/c1",
  ]);
});

test("cgroupsInInstructions ignores the same words outside a cgroup mount", () => {
  // A container's arguments may spell "cgroup_join" followed by a path; only cgroup mounts count.
  const list =
    "cgroup_join\0/home/u/cgroup.procs\0cgroup_join\0/sys/fs/cgroup/pids/c/cgroup.procs\0";
  assert.deepEqual(cgroupsInInstructions(list, ["/sys/fs/cgroup/pids"]), ["/sys/fs/cgroup/pids/c"]);
});
