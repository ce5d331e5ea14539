import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mapPath, recordingIO, replayIO, systemIO, type ProbeIO } from "../../src/probe/io.js";

test("mapPath sends /proc, /sys and /dev to their roots and leaves other paths alone", () => {
  const roots = { proc: "/fx/proc", sys: "/fx/sys", dev: "/fx/dev" };
  assert.equal(mapPath(roots, "/proc/sys/kernel/osrelease"), "/fx/proc/sys/kernel/osrelease");
  assert.equal(mapPath(roots, "/proc"), "/fx/proc");
  assert.equal(mapPath(roots, "/sys/fs/cgroup"), "/fx/sys/fs/cgroup");
  assert.equal(mapPath(roots, "/dev/kmsg"), "/fx/dev/kmsg");
  assert.equal(mapPath(roots, "/procfoo/x"), "/procfoo/x");
  assert.equal(mapPath(roots, "/var/lib/sandkube"), "/var/lib/sandkube");
});

test("systemIO reads through an injected root and reports errno codes as data", async () => {
  const root = await mkdtemp(join(tmpdir(), "sandkube-io-"));
  try {
    await mkdir(join(root, "proc/sys/kernel"), { recursive: true });
    await writeFile(join(root, "proc/sys/kernel/osrelease"), "4.4.0\n");
    const io = systemIO({
      proc: join(root, "proc"),
      sys: join(root, "sys"),
      dev: join(root, "dev"),
    });
    assert.deepEqual(await io.read("/proc/sys/kernel/osrelease"), { ok: true, value: "4.4.0\n" });
    const missing = await io.read("/proc/sys/kernel/cap_last_cap");
    assert.equal(missing.ok, false);
    assert.equal(missing.ok ? "" : missing.code, "ENOENT");
    assert.deepEqual(await io.list("/proc/sys"), { ok: true, value: ["kernel"] });
    assert.deepEqual(await io.kind("/proc/sys/kernel"), { ok: true, value: "directory" });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("a recorded machine replays the same answers, repeated calls in order", async () => {
  let calls = 0;
  const fake: ProbeIO = {
    read: async (path) =>
      path === "/a"
        ? { ok: true, value: `v${++calls}` }
        : { ok: false, code: "EACCES", message: "no" },
    write: async () => ({ ok: false, code: "EIO", message: "input/output error" }),
    list: async () => ({ ok: true, value: ["x"] }),
    kind: async () => ({ ok: true, value: "file" }),
    run: async (argv) => ({ argv, exitCode: 3, stdout: "out", stderr: "err" }),
    scratchName: (label) => `sk${label}1234`,
  };
  const { io, transcript } = recordingIO(fake);
  await io.read("/a");
  await io.read("/a");
  await io.read("/b");
  await io.write("/proc/sys/vm/overcommit_memory", "0");
  await io.run(["unshare", "--pid", "true"]);
  const name = io.scratchName("ns");

  const replay = replayIO(transcript());
  assert.deepEqual(await replay.read("/a"), { ok: true, value: "v1" });
  assert.deepEqual(await replay.read("/a"), { ok: true, value: "v2" });
  assert.deepEqual(await replay.read("/a"), { ok: true, value: "v2" }, "the last answer sticks");
  assert.deepEqual(await replay.read("/b"), { ok: false, code: "EACCES", message: "no" });
  assert.equal((await replay.read("/never")).ok, false, "unrecorded paths read as missing");
  assert.deepEqual(await replay.write("/proc/sys/vm/overcommit_memory", "0"), {
    ok: false,
    code: "EIO",
    message: "input/output error",
  });
  const ran = await replay.run(["unshare", "--pid", "true"]);
  assert.equal(ran.exitCode, 3);
  assert.equal(ran.stderr, "err");
  assert.equal(replay.scratchName("ns"), name);
  await assert.rejects(replay.run(["never", "recorded"]), /command not in transcript/);
});
