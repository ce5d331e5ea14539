import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runCommand } from "../../src/common/exec.js";
import { leftoversOf } from "../e2e/node-scenario.js";

// Bad input to the node commands: one clear line on stderr, a non-zero exit, and nothing
// provisioned or written.

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

function sandkube(args: readonly string[], env: Record<string, string | undefined> = {}) {
  return runCommand([process.execPath, CLI, ...args], { timeoutMs: 120_000, env });
}

function skipUnlessRoot(t: { skip: (reason: string) => void }): boolean {
  if (process.getuid?.() === 0) return false;
  t.skip("SKIPPED: the node commands need root");
  return true;
}

test("an unknown flag is named, exit 2", async () => {
  const result = await sandkube(["up", "--frobnicate"]);
  assert.equal(result.exitCode, 2);
  assert.match(result.stderr, /^sandkube: up: unknown flag --frobnicate\./);
});

test("a bad --runtime is named with the accepted values", async () => {
  const result = await sandkube(["up", "--runtime", "crun"]);
  assert.equal(result.exitCode, 2);
  assert.match(result.stderr, /--runtime must be auto, sandkube or runc, not "crun"/);
});

test("an unwritable data dir is named before any probing", async (t) => {
  if (skipUnlessRoot(t)) return;
  const result = await sandkube(["up", "--data-dir", "/proc/sandkube-cannot-be-here"]);
  assert.equal(result.exitCode, 2);
  assert.match(result.stderr, /data dir \/proc\/sandkube-cannot-be-here is not writable/);
  assert.doesNotMatch(result.stderr, /Probing/);
});

test("port 6443 taken: up names the port and its owner, and provisions nothing", async (t) => {
  if (skipUnlessRoot(t)) return;
  const dataDir = await mkdtemp(join(tmpdir(), "sk-port-"));
  const blocker: Server = createServer();
  const listening = await new Promise<boolean>((resolve) => {
    blocker.once("error", () => resolve(false));
    blocker.listen({ port: 6443, host: "127.0.0.1" }, () => resolve(true));
  });
  if (!listening) {
    await rm(dataDir, { recursive: true, force: true });
    return t.skip(
      "SKIPPED: port 6443 is already in use on this machine, so the test cannot take it",
    );
  }
  try {
    const result = await sandkube(["up", "--data-dir", dataDir]);
    assert.equal(result.exitCode, 1, result.stderr);
    assert.match(result.stderr, /port 6443, which kube-apiserver needs, is already in use/);
    assert.deepEqual(await leftoversOf(dataDir), []);
    const written = await readdir(dataDir);
    assert.ok(!written.includes("node.json"), `nothing is written: ${written.join(", ")}`);
  } finally {
    blocker.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test("missing binaries with no way to get them: named, nothing provisioned", async (t) => {
  if (skipUnlessRoot(t)) return;
  const dataDir = await mkdtemp(join(tmpdir(), "sk-nobin-"));
  const empty = await mkdtemp(join(tmpdir(), "sk-empty-"));
  try {
    // PATH without Go, no pinned download, and the cache pointed at an empty folder: nothing can
    // be found, built or fetched.
    const result = await sandkube(["up", "--data-dir", dataDir, "--bin-dir", empty], {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      SANDKUBE_LAB_DIR: empty,
      SANDKUBE_CACHE_DIR: empty,
    });
    assert.equal(result.exitCode, 1, result.stderr);
    assert.match(result.stderr, /missing binaries: .*etcd/);
    assert.deepEqual(await leftoversOf(dataDir), []);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await rm(empty, { recursive: true, force: true });
  }
});

test("down with no node is not an error; status says there is none", async (t) => {
  if (skipUnlessRoot(t)) return;
  const dataDir = await mkdtemp(join(tmpdir(), "sk-none-"));
  try {
    const down = await sandkube(["down", "--data-dir", dataDir]);
    assert.equal(down.exitCode, 0, down.stderr);
    assert.match(down.stderr, /No node in/);
    const status = await sandkube(["status", "--data-dir", dataDir]);
    assert.equal(status.exitCode, 3);
    assert.match(status.stdout, /No node in .*sandkube up/);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
