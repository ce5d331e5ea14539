import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { labDir } from "../../lab/paths.js";
import { failedSteps, inGvisor, requireLab, scenarioReportOf } from "./lab.js";

/**
 * Issue 10's registry test on a real node inside runsc (new): test/e2e/registry-scenario.ts, the
 * program the host test runs, run inside the sandbox. Everything it talks to is on the sandbox's
 * loopback (its only link before `up` adds sandkube0): docker-registry with TLS and htpasswd, the
 * CONNECT proxy, the node.
 */

const BINARIES = ["runsc", "etcd", "kube-apiserver", "kubelet", "containerd", "ctr", "crictl"];
const STEPS = [
  "registry",
  "proxy",
  "up",
  "image-build-push",
  "pod-pulls",
  "pod-sees-whiteouts",
  "verify-pull",
  "password-rotated",
  "wrong-password-errimagepull",
  "verify-names-401",
  "down",
];

test(
  "gVisor (runsc new): a pod pulls a 3-layer image from a TLS + htpasswd registry behind a CONNECT proxy; a wrong password is named",
  { timeout: 900_000 },
  async (t) => {
    if (!(await requireLab(t, BINARIES))) return;
    const out = join(labDir(), "test-scenarios", "new", "registry-node");
    const result = await inGvisor(
      "new",
      [
        "node",
        "dist/test/e2e/registry-scenario.js",
        "--data-dir",
        // On the sandbox's root filesystem (the host's / through gVisor's overlay) mknod of the
        // 0:0 whiteout device is refused (EPERM), and so is deleting a lower file through an
        // overlay mount whose upper dir is there: the overlayfs snapshotter cannot unpack a layer
        // that deletes a file ("failed to convert whiteout file ... unlinkat ...: operation not
        // permitted", seen in this test). /tmp is the sandbox's own tmpfs, where both work.
        "/tmp/sandkube-registry-e2e",
        "--out",
        "/tmp/report.json",
      ],
      out,
      780,
    );
    const report = scenarioReportOf(result);
    assert.deepEqual(failedSteps(report), [], "every step passes inside gVisor");
    assert.deepEqual(
      report.steps.map((s) => s.id),
      STEPS,
      "every step ran",
    );
    assert.equal(result.exitCode, 0);
  },
);
