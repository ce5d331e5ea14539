import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  logRecords,
  makeLab,
  readIfExists,
  runWithStdio,
  skipReason,
  stateOf,
  waitFor,
  type Lab,
} from "./runtime-support.js";

const reason = skipReason();

/** Processes of this lab other than `except` running the helper or the runtime: there must be none. */
function lingeringRuntimeProcesses(lab: Lab, except: number): string[] {
  const found: string[] = [];
  for (const p of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    if (Number(p) === except || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ");
      // Only this lab's: other runtimes (containerd's, a parallel test's) may be running too.
      if (
        /sandkube-init|sandkube-runtime|src\/runtime\/main\.ts/.test(cmd) &&
        cmd.includes(lab.root)
      )
        found.push(`${p}: ${cmd}`);
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

describe("sandkube-runtime lifecycle on the host kernel", { skip: reason }, () => {
  let lab: Lab;
  before(() => {
    lab = makeLab();
  });
  after(() => lab?.cleanup());

  test("create parks init, start runs it with the caller's stdio, kill and delete clean up", async () => {
    const id = "life1";
    const cgroupsPath = `/sandkube-test/${id}-${process.pid}`;
    lab.writeConfig({
      args: ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exec sleep 60"],
      cgroupsPath,
    });
    const out = join(lab.dir, "container.out");
    const err = join(lab.dir, "container.err");
    const pidFile = join(lab.dir, "init.pid");

    const status = runWithStdio(
      lab,
      ["create", "--bundle", lab.bundle, "--pid-file", pidFile, id],
      out,
      err,
    );
    assert.equal(status, 0, `create failed: ${readIfExists(err)} ${readIfExists(lab.log)}`);
    const pidText = readFileSync(pidFile, "utf8");
    assert.match(pidText, /^\d+$/, "pid file holds digits only, no newline");
    const pid = Number(pidText);

    const created = stateOf(lab, id);
    assert.equal(created["status"], "created");
    assert.equal(created["pid"], pid);
    assert.equal(created["bundle"], lab.bundle);
    assert.match(String(created["created"]), /^\d{4}-\d\d-\d\dT/);
    assert.equal(readIfExists(out), "", "nothing runs before start");
    assert.deepEqual(
      lingeringRuntimeProcesses(lab, pid),
      [],
      "every runtime process has exited after create",
    );
    const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    assert.doesNotMatch(
      readFileSync(`/proc/${ppid}/cmdline`, "utf8"),
      /sandkube/,
      "init was reparented away from the runtime",
    );
    assert.match(
      readFileSync(`/proc/${pid}/cgroup`, "utf8"),
      new RegExp(`pids:${cgroupsPath}`),
      "init is in its cgroup at create",
    );

    const started = lab.run(["start", id]);
    assert.equal(started.status, 0, started.stderr);
    await waitFor(
      () => readIfExists(out) === "to-stdout\n" && readIfExists(err) === "to-stderr\n",
      "container output in the caller's stdio files",
    );
    assert.equal(stateOf(lab, id)["status"], "running");
    assert.notEqual(
      lab.run(["start", id]).status,
      0,
      "a running container cannot be started again",
    );

    const refused = lab.run(["delete", id]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /not stopped: running/);

    assert.equal(lab.run(["kill", id, "9"]).status, 0);
    await waitFor(() => stateOf(lab, id)["status"] === "stopped", "stopped after SIGKILL");
    assert.equal(stateOf(lab, id)["pid"], 0);
    const again = lab.run(["kill", id, "9"]);
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /container not running/);
    assert.equal(logRecords(lab).at(-1)?.msg, "container not running");
    assert.equal(
      lab.run(["kill", "--all", id, "9"]).status,
      0,
      "kill --all of a stopped container succeeds (the shim relies on it)",
    );

    const deleted = lab.run(["delete", id]);
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.equal(existsSync(join(lab.root, id)), false, "state directory removed");
    assert.equal(existsSync(`/sys/fs/cgroup/pids${cgroupsPath}`), false, "cgroup removed");
    const gone = lab.run(["state", id]);
    assert.notEqual(gone.status, 0);
    assert.match(gone.stderr, /does not exist/);
    assert.match(lab.run(["delete", id]).stderr, /does not exist/);
    assert.equal(lab.run(["delete", "--force", id]).status, 0);
  });

  test("delete of a created container kills the parked init; delete --force stops a running one", async () => {
    lab.writeConfig({ args: ["sleep", "60"] });
    const out = join(lab.dir, "c2.out");
    assert.equal(
      runWithStdio(
        lab,
        ["create", "--bundle", lab.bundle, "--pid-file", join(lab.dir, "c2.pid"), "c2"],
        out,
        out,
      ),
      0,
      readIfExists(out),
    );
    const pid = Number(readFileSync(join(lab.dir, "c2.pid"), "utf8"));
    assert.equal(lab.run(["delete", "c2"]).status, 0);
    await waitFor(
      () => !existsSync(`/proc/${pid}`) || /State:\s+Z/.test(readIfExists(`/proc/${pid}/status`)),
      "parked init dead",
    );

    assert.equal(
      runWithStdio(lab, ["create", "--bundle", lab.bundle, "c3"], out, out),
      0,
      readIfExists(out),
    );
    assert.equal(lab.run(["start", "c3"]).status, 0);
    assert.equal(stateOf(lab, "c3")["status"], "running");
    const ps = lab.run(["ps", "--format", "json", "c3"]);
    assert.equal(ps.status, 0);
    assert.deepEqual(JSON.parse(ps.stdout), [stateOf(lab, "c3")["pid"]]);
    const forced = lab.run(["delete", "--force", "c3"]);
    assert.equal(forced.status, 0, forced.stderr);
    assert.equal(existsSync(join(lab.root, "c3")), false);
  });

  test("pause freezes the cgroup, resume thaws it, update writes limits, ps lists the processes", async () => {
    const id = "frz";
    const cgroupsPath = `/sandkube-test/${id}-${process.pid}`;
    lab.writeConfig({
      args: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done"],
      cgroupsPath,
    });
    const out = join(lab.dir, "frz.out");
    assert.equal(
      runWithStdio(
        lab,
        ["create", "--bundle", lab.bundle, "--pid-file", join(lab.dir, "frz.pid"), id],
        out,
        out,
      ),
      0,
      readIfExists(out),
    );
    const pid = Number(readFileSync(join(lab.dir, "frz.pid"), "utf8"));
    assert.equal(lab.run(["start", id]).status, 0);
    const counter = (): string => readIfExists(`/proc/${pid}/root/tmp/n`);
    await waitFor(() => Number(counter()) > 2, "counter running");

    assert.equal(lab.run(["pause", id]).status, 0);
    assert.equal(stateOf(lab, id)["status"], "paused");
    assert.equal(
      readFileSync(`/sys/fs/cgroup/freezer${cgroupsPath}/freezer.state`, "utf8").trim(),
      "FROZEN",
    );
    const frozenAt = counter();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(counter(), frozenAt, "nothing runs while paused");
    assert.match(lab.run(["pause", id]).stderr, /cannot pause a container that is paused/);

    assert.equal(lab.run(["resume", id]).status, 0);
    assert.equal(stateOf(lab, id)["status"], "running");
    await waitFor(() => Number(counter()) > Number(frozenAt) + 2, "counter moving again");

    const updated = lab.run(
      ["update", "--resources=-", id],
      JSON.stringify({ pids: { limit: 42 }, cpu: { shares: 512 } }),
    );
    assert.equal(updated.status, 0, updated.stderr);
    assert.equal(readFileSync(`/sys/fs/cgroup/pids${cgroupsPath}/pids.max`, "utf8").trim(), "42");
    assert.equal(readFileSync(`/sys/fs/cgroup/cpu${cgroupsPath}/cpu.shares`, "utf8").trim(), "512");

    const ps = JSON.parse(lab.run(["ps", "--format", "json", id]).stdout) as number[];
    assert.ok(ps.includes(pid) && ps.length >= 1, `ps: ${ps.join(",")}`);
    assert.equal(lab.run(["kill", "--all", id, "9"]).status, 0);
    await waitFor(() => stateOf(lab, id)["status"] === "stopped", "stopped after kill --all");
    assert.equal(lab.run(["delete", id]).status, 0);
  });

  test("log.json holds only JSON records with level, msg and time", () => {
    assert.notEqual(lab.run(["kill", "no-such-container", "9"]).status, 0);
    const records = logRecords(lab);
    assert.ok(records.length > 0);
    for (const r of records) {
      assert.ok(["debug", "info", "warning", "error"].includes(r.level), r.level);
      assert.equal(typeof r.msg, "string");
      assert.ok(!Number.isNaN(Date.parse(r.time)));
    }
  });
});

if (reason) test("runtime lifecycle", { skip: reason }, () => undefined);
