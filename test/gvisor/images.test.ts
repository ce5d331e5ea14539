import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { SANDBOX_IMAGE } from "../../src/plan/cluster-config.js";
import { inGvisor, requireLab } from "./lab.js";

interface Step {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

test("runsc (new): images build and import into containerd, and ctr runs busybox and pause", async (t) => {
  if (!(await requireLab(t, ["runsc", "containerd", "containerd-shim-runc-v2", "ctr", "runc"])))
    return;
  const script = join(repoRootOfScript(), "dist/test/gvisor/images-inside.js");
  const result = await inGvisor("new", [process.execPath, script]);
  assert.equal(result.exitCode, 0, result.stderr);
  const last = result.stdout.trim().split("\n").pop() ?? "{}";
  const seen = JSON.parse(last) as Record<string, Step | undefined>;
  const ok = (name: string): Step => {
    const step = seen[name];
    assert.notEqual(step, undefined, `${name} did not run: ${result.stderr.slice(-2000)}`);
    assert.equal(step?.exitCode, 0, `${name}: ${step?.stderr}`);
    return step as Step;
  };
  assert.equal((JSON.parse(ok("build").stdout) as { imported: boolean }).imported, true);
  assert.equal(ok("import").stdout.includes(SANDBOX_IMAGE), true);
  const names = (JSON.parse(ok("ls").stdout) as { images: { name: string }[] }).images.map(
    (i) => i.name,
  );
  assert.ok(
    names.includes("docker.io/library/busybox:sk") && names.includes(SANDBOX_IMAGE),
    names.join(", "),
  );
  assert.equal(ok("run").stdout, "hello-from-gvisor\nuser\n");
  ok("pauseKill");
  ok("pause");
});
