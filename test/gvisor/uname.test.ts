import { test } from "node:test";
import assert from "node:assert/strict";
import { access, readFile } from "node:fs/promises";
import { runDir } from "../../lab/gvisor-spec.js";
import { inGvisor, requireLab } from "./lab.js";

test("runsc (new) reports gVisor's 4.19.0-gvisor release and has cap_last_cap", async (t) => {
  if (!(await requireLab(t, ["runsc"]))) return;
  const result = await inGvisor("new", ["sh", "-c", "uname -r; cat /proc/sys/kernel/cap_last_cap"]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(result.stdout, "4.19.0-gvisor\n40\n");
});

test("runsc-old (July 2023) reports 4.4.0 and lacks /proc/sys/kernel/cap_last_cap", async (t) => {
  if (!(await requireLab(t, ["runsc-old"]))) return;
  const result = await inGvisor("old", [
    "sh",
    "-c",
    "uname -r; test -e /proc/sys/kernel/cap_last_cap || echo absent",
  ]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(result.stdout, "4.4.0\nabsent\n");
});

test("the lab sandbox: root with full capabilities, a 9p root, the output dir writable to the host", async (t) => {
  if (!(await requireLab(t, ["runsc"]))) return;
  const result = await inGvisor("new", [
    "sh",
    "-c",
    'id -u; grep CapEff /proc/self/status; awk \'$2=="/" {print $3}\' /proc/mounts; echo x > "$SANDKUBE_GVISOR_OUT/probe" && echo wrote',
  ]);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(result.stdout, "0\nCapEff:\t000001ffffffffff\n9p\nwrote\n");
});

test("a failing command's exit status comes back unchanged", async (t) => {
  if (!(await requireLab(t, ["runsc"]))) return;
  const result = await inGvisor("new", ["sh", "-c", "echo to-stderr >&2; exit 7"]);
  assert.equal(result.exitCode, 7);
  assert.match(result.stderr, /to-stderr/);
});

test("a hanging command is stopped at the timeout and its sandbox removed", async (t) => {
  if (!(await requireLab(t, ["runsc"]))) return;
  const result = await inGvisor("new", ["sleep", "1000"], undefined, 3);
  assert.equal(result.timedOut, true);
  assert.equal(result.exitCode, 124);
  await assert.rejects(access(runDir(result.runId)), { code: "ENOENT" });
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  assert.ok(!mountinfo.includes(result.runId), "no mount of the run is left behind");
});
