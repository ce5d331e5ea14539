import { test } from "node:test";
import assert from "node:assert/strict";
import { observed, parseObservations } from "../../lab/gvisor-observations.js";

test("parseObservations: keys, repeated keys, and multi-line values", () => {
  const text = [
    "kernel.release\t4.4.0",
    "cgroup:v2-mount\tmount: /run/cg: unknown filesystem type 'cgroup2'.",
    "       dmesg(1) may have more information after failed mount system call.",
    "kubelet.error\tfirst",
    "kubelet.error\tsecond",
    "",
  ].join("\n");
  const obs = parseObservations(text);
  assert.equal(observed(obs, "kernel.release"), "4.4.0");
  assert.equal(
    observed(obs, "cgroup:v2-mount"),
    "mount: /run/cg: unknown filesystem type 'cgroup2'.\n       dmesg(1) may have more information after failed mount system call.",
  );
  assert.deepEqual(obs.get("kubelet.error"), ["first", "second"]);
  assert.equal(observed(obs, "kubelet.error"), "first\nsecond");
  assert.equal(observed(obs, "absent"), undefined);
});

test("parseObservations: a continuation before any key is dropped, not invented", () => {
  assert.equal(parseObservations("orphan line\nk\tv\n").size, 1);
});
