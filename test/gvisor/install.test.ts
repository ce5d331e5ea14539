/**
 * What `sandkube install` puts in its cache is what the lab's runsc sandbox runs: the sandbox's
 * root is an overlay of the host's /, and its PATH holds the cache's bin/ (lab/gvisor-spec.ts), so
 * `up` inside the lab needs no copying by hand.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { labBinary, labDir } from "../../lab/paths.js";
import { PRODUCT_BINARIES } from "../../src/install/components.js";
import { inGvisor, requireLab } from "./lab.js";

test("inside runsc (new), kubelet on PATH is the install cache's, at the pinned version", async (t) => {
  if (!(await requireLab(t, ["runsc", "kubelet"]))) return;
  const result = await inGvisor("new", ["sh", "-c", "command -v kubelet && kubelet --version"]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(result.stdout, `${labBinary("kubelet")}\nKubernetes v1.34.4\n`);
});

test("inside runsc (new), `sandkube install` finds every binary already in the cache", async (t) => {
  const bins = PRODUCT_BINARIES.filter((binary) => binary.destination === "bin").map(
    (binary) => binary.name,
  );
  if (!(await requireLab(t, ["runsc", ...bins]))) return;
  const result = await inGvisor("new", ["node", "dist/src/cli/main.js", "install", "--json"]);
  assert.equal(result.exitCode, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as {
    ok: boolean;
    missing: string[];
    binaries: { name: string; source: string; path: string }[];
  };
  assert.equal(summary.ok, true);
  assert.deepEqual(summary.missing, []);
  assert.equal(summary.binaries.length, PRODUCT_BINARIES.length);
  for (const binary of summary.binaries)
    assert.ok(
      binary.path.startsWith(`${labDir()}/`),
      `${binary.name} came from ${binary.path} (${binary.source})`,
    );
  assert.match(result.stderr, /install: all \d+ binaries present/);
});
