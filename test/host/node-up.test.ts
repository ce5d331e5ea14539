import { test } from "node:test";
import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { labBinary } from "../../lab/paths.js";
import { runScenario, type ScenarioReport } from "../e2e/node-scenario.js";

// `sandkube up` on this machine's kernel with real etcd, kube-apiserver, controller-manager,
// scheduler, containerd and kubelet: the workload of issue 8, faults, then `down`. The same
// scenario runs inside gVisor in test/gvisor/node-up.test.ts.

const NEEDED = [
  "etcd",
  "kube-apiserver",
  "kubelet",
  "kube-proxy",
  "containerd",
  "runc",
  "crictl",
  "coredns",
  "local-path-provisioner",
  "helm",
];

async function missing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: sandkube up needs root";
  for (const name of NEEDED) {
    const ok = await access(labBinary(name)).then(
      () => true,
      () => false,
    );
    if (!ok) return `SKIPPED: ${labBinary(name)} is not built; run \`npm run lab:build\``;
  }
  return undefined;
}

function assertAllOk(report: ScenarioReport): void {
  const failed = report.steps.filter((s) => !s.ok);
  assert.deepEqual(
    failed.map((s) => `${s.id}: ${s.detail}`),
    [],
    "every step of the scenario passes",
  );
  assert.ok(
    report.steps.some((s) => s.id === "verify-deploymentReady"),
    "the workload ran",
  );
}

test(
  "host kernel: up with runc and kube-proxy, the workload, Services, DNS, egress, storage, Helm, faults, down leaves nothing",
  { timeout: 1_500_000 },
  async (t) => {
    const reason = await missing();
    if (reason !== undefined) return t.skip(reason);
    const report = await runScenario({
      dataDir: "/var/lib/sandkube-test-runc",
      runtime: "runc",
      faults: true,
    });
    assertAllOk(report);
    assert.ok(report.steps.some((s) => s.id === "faults-sigkill-etcd" && s.ok));
    assert.ok(report.steps.some((s) => s.id === "service-proxy" && /kube-proxy/.test(s.detail)));
  },
);

test(
  "host kernel: up with sandkube-runtime and sandkube-proxy, the workload, Services, DNS, Helm, down leaves nothing",
  { timeout: 900_000 },
  async (t) => {
    const reason = await missing();
    if (reason !== undefined) return t.skip(reason);
    const report = await runScenario({
      dataDir: "/var/lib/sandkube-test-sk",
      runtime: "sandkube",
      serviceProxy: "sandkube-proxy",
      faults: false,
    });
    assertAllOk(report);
    assert.ok(report.steps.some((s) => s.id === "verify-service" && s.ok));
  },
);
