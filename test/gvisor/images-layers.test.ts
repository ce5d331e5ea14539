import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { EXPECTED_TREE } from "../host/images-layers-fixture.js";
import { inGvisor, requireLab } from "./lab.js";

interface Step {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

test("runsc (new): a 3-layer image with whiteouts builds, imports and unpacks with the native snapshotter", async (t) => {
  if (!(await requireLab(t, ["runsc", "containerd", "containerd-shim-runc-v2", "ctr", "runc"])))
    return;
  const script = join(repoRootOfScript(), "dist/test/gvisor/images-layers-inside.js");
  const result = await inGvisor("new", [process.execPath, script]);
  assert.equal(result.exitCode, 0, result.stderr);
  const seen = JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as Record<
    string,
    unknown
  >;
  const ok = (name: string): Step => {
    const step = seen[name] as Step | undefined;
    assert.notEqual(step, undefined, `${name} did not run: ${result.stderr.slice(-2000)}`);
    assert.equal(step?.exitCode, 0, `${name}: ${step?.stderr}`);
    return step as Step;
  };
  assert.equal(seen["whiteoutDevice"], true, "gVisor's overlay wrote data/a as a 0:0 device");
  assert.deepEqual(seen["opaqueDirs"], ["opt/x"], "and opt/x with trusted.overlay.opaque=y");
  const built = JSON.parse(ok("build").stdout) as { imported: boolean; layers: unknown[] };
  assert.equal(built.imported, true);
  assert.equal(built.layers.length, 3);
  assert.equal(ok("build").stderr, "", "no warnings: the opaque xattr was read");
  const names = (JSON.parse(ok("ls").stdout) as { images: { name: string }[] }).images;
  assert.ok(names.some((i) => i.name === "docker.io/library/layered:sk"));
  ok("builtMount");
  assert.deepEqual(seen["builtTree"], EXPECTED_TREE);
  ok("builtUnmount");
  assert.equal(ok("run").stdout, "/data:\nb\nc\n\n/opt/x:\nnew\nkeep");
  ok("export");
  ok("stripOci");
  ok("rm");
  assert.doesNotMatch(ok("snapshotsAfterRm").stdout, /Committed/, "nothing left to reuse");
  assert.equal((JSON.parse(ok("reimport").stdout) as { format: string }).format, "docker-archive");
  ok("reimportedMount");
  assert.deepEqual(seen["reimportedTree"], EXPECTED_TREE);
});
