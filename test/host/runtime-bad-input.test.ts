import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { config, logRecords, makeLab, skipReason, type Lab } from "./runtime-support.js";

const reason = skipReason();

/** Helpers and parked inits of this lab's containers (their instruction list lives under `root`). */
function helperProcesses(root: string): string[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8");
        return cmd.includes("sandkube-init") && cmd.includes(root);
      } catch {
        return false;
      }
    });
}

describe(
  "bad input fails create clearly and leaves nothing behind (host kernel)",
  { skip: reason },
  () => {
    let lab: Lab;
    before(() => {
      lab = makeLab();
      // A link inside the rootfs that climbs out of it.
      symlinkSync("../../../../../../etc", join(lab.bundle, "rootfs/escape"));
    });
    after(() => lab?.cleanup());

    function expectCreateFailure(
      id: string,
      cfg: Record<string, unknown>,
      message: RegExp,
      extra: string[] = [],
    ): void {
      writeFileSync(join(lab.bundle, "config.json"), JSON.stringify(cfg));
      const cgroup = `/sys/fs/cgroup/pids/sandkube-bad/${id}`;
      (cfg["linux"] as Record<string, unknown>)["cgroupsPath"] = `/sandkube-bad/${id}`;
      writeFileSync(join(lab.bundle, "config.json"), JSON.stringify(cfg));
      const before = helperProcesses(lab.root).length;
      const r = lab.run(["create", "--bundle", lab.bundle, ...extra, id]);
      assert.notEqual(r.status, 0, "create must fail");
      assert.match(r.stderr, message, "stderr names the problem");
      const last = logRecords(lab)
        .filter((x) => x.level === "error")
        .at(-1);
      assert.match(last?.msg ?? "", message, "the last error record in log.json names the problem");
      assert.equal(existsSync(join(lab.root, id)), false, "no state directory is left");
      assert.equal(existsSync(cgroup), false, "no cgroup is left");
      assert.equal(helperProcesses(lab.root).length, before, "no helper or parked init is left");
      assert.match(lab.run(["state", id]).stderr, /does not exist/);
    }

    const base = (): Record<string, unknown> => config({ args: ["sh"] });

    test("missing rootfs", () => {
      expectCreateFailure(
        "norootfs",
        { ...base(), root: { path: "no-such-rootfs" } },
        /rootfs .*no-such-rootfs .*does not exist/,
      );
    });

    test("mount destination escaping through ..", () => {
      const cfg = base();
      cfg["mounts"] = [
        ...(cfg["mounts"] as object[]),
        { destination: "/../../etc/evil", type: "tmpfs", source: "tmpfs" },
      ];
      expectCreateFailure(
        "dotdot",
        cfg,
        /destination "\/\.\.\/\.\.\/etc\/evil" escapes the container's root filesystem through "\.\."/,
      );
    });

    test("mount destination escaping through a symlink", () => {
      const cfg = base();
      cfg["mounts"] = [
        ...(cfg["mounts"] as object[]),
        { destination: "/escape/evil", type: "tmpfs", source: "tmpfs" },
      ];
      expectCreateFailure(
        "symlink",
        cfg,
        /escapes the container's root filesystem through the symlink \/escape/,
      );
      assert.equal(existsSync("/etc/evil"), false, "nothing was created on the host");
    });

    test("unknown namespace type", () => {
      const cfg = base();
      (cfg["linux"] as Record<string, unknown>)["namespaces"] = [
        { type: "mount" },
        { type: "pidd" },
      ];
      expectCreateFailure("badns", cfg, /"pidd" is not a namespace type/);
    });

    test("pid file in a directory that does not exist", () => {
      expectCreateFailure(
        "badpid",
        base(),
        /pid file \/nonexistent-dir\/x\/init\.pid: directory \/nonexistent-dir\/x does not exist/,
        ["--pid-file", "/nonexistent-dir/x/init.pid"],
      );
    });

    test("a program that is not in the rootfs fails at create, as runc does", () => {
      expectCreateFailure(
        "noexec",
        config({ args: ["no-such-program"] }),
        /exec: "no-such-program": executable file not found in \$PATH/,
      );
    });
  },
);

if (reason) test("runtime bad input", { skip: reason }, () => undefined);
