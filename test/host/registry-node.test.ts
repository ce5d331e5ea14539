import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { labBinary } from "../../lab/paths.js";
import { DEBIAN_BUSYBOX } from "../../src/images/busybox.js";
import { isStaticElf } from "../../src/images/elf.js";
import { DEBIAN_DOCKER_REGISTRY } from "../../src/registry/local.js";
import { runRegistryScenario } from "../e2e/registry-scenario.js";

/**
 * Issue 10's registry test on a real node on this kernel: test/e2e/registry-scenario.ts, which
 * test/gvisor/registry-node.test.ts runs inside runsc. It brings up a node (port 6443, link
 * sandkube0), so it cannot run beside another node on this machine.
 */

const BINARIES = ["etcd", "kube-apiserver", "kubelet", "containerd", "ctr", "crictl", "kubectl"];

async function skipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "SKIPPED: a node needs root";
  const missing = BINARIES.map((b) => labBinary(b)).filter((b) => !existsSync(b));
  if (missing.length > 0) return `SKIPPED: missing ${missing.join(", ")}; run npm run lab:build`;
  if (!existsSync(DEBIAN_DOCKER_REGISTRY))
    return `SKIPPED: ${DEBIAN_DOCKER_REGISTRY} missing; apt-get install docker-registry`;
  if (!existsSync("/usr/bin/script")) return "SKIPPED: util-linux script missing";
  if (!(await isStaticElf(DEBIAN_BUSYBOX).catch(() => false)))
    return "SKIPPED: no static busybox; apt-get install -y busybox-static";
  return undefined;
}

const reason = await skipReason();
if (reason !== undefined) process.stderr.write(`\n*** registry-node: ${reason}\n`);

test(
  "host kernel: a pod pulls a 3-layer image from a TLS + htpasswd registry behind a CONNECT proxy; a wrong password is named",
  { skip: reason, timeout: 900_000 },
  async () => {
    const report = await runRegistryScenario("/var/lib/sandkube-registry-e2e");
    const failed = report.steps.filter((s) => !s.ok).map((s) => `${s.id}: ${s.detail}`);
    assert.deepEqual(failed, [], "every step passes on the host kernel");
    assert.ok(report.steps.some((s) => s.id === "verify-names-401" && s.ok));
    assert.ok(report.steps.some((s) => s.id === "pod-sees-whiteouts" && s.ok));
  },
);
