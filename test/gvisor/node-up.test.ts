import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { labDir } from "../../lab/paths.js";
import { failedSteps, inGvisor, requireLab, scenarioReportOf } from "./lab.js";

// `sandkube up` inside a real runsc sandbox (gVisor 2026-09, root on 9p, gVisor's own network
// stack with only `lo`): the same scenario program as the host test, run inside the sandbox.

const BINARIES = [
  "runsc",
  "etcd",
  "kube-apiserver",
  "kubelet",
  "containerd",
  "crictl",
  "coredns",
  "local-path-provisioner",
  "helm",
];

test(
  "gVisor (runsc new): up, the workload, Services, DNS, egress, storage, Helm, faults, down leaves nothing",
  { timeout: 1_800_000 },
  async (t) => {
    if (!(await requireLab(t, BINARIES))) return;
    const out = join(labDir(), "test-scenarios", "new", "node-up");
    const result = await inGvisor(
      "new",
      [
        "node",
        "dist/test/e2e/node-scenario.js",
        "--data-dir",
        "/var/lib/sandkube-e2e",
        "--faults",
        "--out",
        "/tmp/report.json",
      ],
      out,
      1_500,
    );
    const report = scenarioReportOf(result);
    assert.deepEqual(failedSteps(report), [], "every step passes inside gVisor");
    assert.ok(report.steps.some((s) => s.id === "verify-portForward" && s.ok));
    assert.ok(
      report.steps.some((s) => s.id === "service-proxy" && /sandkube-proxy/.test(s.detail)),
    );
    assert.equal(result.exitCode, 0);
  },
);

test(
  "gVisor (runsc old): up, a hostNetwork Deployment with logs and exec, verify names what cannot work, down leaves nothing",
  { timeout: 1_500_000 },
  async (t) => {
    if (!(await requireLab(t, ["runsc-old", "kubelet", "coredns"]))) return;
    const out = join(labDir(), "test-scenarios", "old", "node-up");
    const result = await inGvisor(
      "old",
      [
        "node",
        "dist/test/e2e/host-network-scenario.js",
        "--data-dir",
        "/var/lib/sandkube-old-e2e",
        "--out",
        "/tmp/report.json",
      ],
      out,
      1_200,
    );
    const report = scenarioReportOf(result);
    assert.deepEqual(failedSteps(report), [], "every step passes inside runsc old");
    assert.deepEqual(
      report.steps.map((s) => s.id),
      ["up", "deployment", "logs", "exec", "own-network-namespace-named", "verify", "down"],
    );
    assert.equal(result.exitCode, 0);
  },
);
