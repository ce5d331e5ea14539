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
  "gVisor (runsc old): up stops at once, naming the blocker and its remedy",
  { timeout: 300_000 },
  async (t) => {
    if (!(await requireLab(t, ["runsc-old", "kubelet"]))) return;
    const out = join(labDir(), "test-scenarios", "old", "node-up");
    // 120 s is the hang guard: up must refuse after its probe, not wait for anything.
    const result = await inGvisor(
      "old",
      ["node", "dist/src/cli/main.js", "up", "--data-dir", "/var/lib/sandkube-old"],
      out,
      120,
    );
    assert.equal(result.timedOut, false, "up never hangs");
    assert.equal(result.exitCode, 1, result.stderr);
    assert.match(result.stderr, /blocker no-recursive-bind: .*MS_REC/);
    assert.match(result.stderr, /remedy: .*gVisor release from 2024 or later/);
    assert.match(
      result.stderr,
      /pods cannot have their own network namespace here \(creating a veth pair fails/,
    );

    // verify on the same sandbox: every check fails naming the blocker and its remedy.
    const verify = await inGvisor(
      "old",
      ["node", "dist/src/cli/main.js", "verify", "--data-dir", "/var/lib/sandkube-old", "--json"],
      out,
      120,
    );
    assert.equal(verify.exitCode, 1, verify.stderr);
    const report = JSON.parse(verify.stdout.slice(verify.stdout.indexOf("{"))) as {
      checks: { id: string; status: string; blocker?: string; remedy?: string }[];
    };
    assert.ok(report.checks.length >= 10, `${report.checks.length} checks`);
    for (const check of report.checks) {
      assert.equal(check.status, "failed", check.id);
      assert.match(check.blocker ?? "", /^no-recursive-bind: /, check.id);
      assert.match(check.remedy ?? "", /gVisor release from 2024 or later/, check.id);
    }
  },
);
