import { test } from "node:test";
import assert from "node:assert/strict";
import { errnoOf, fromCommand } from "../../src/probe/check.js";
import { cgroupMode, controllerGroups, parseProcCgroups } from "../../src/probe/cgroups.js";
import { parseStatusField } from "../../src/probe/identity.js";
import type { GvisorEvidence } from "../../src/probe/kernel.js";
import { judgeGvisor } from "../../src/probe/kernel.js";
import { mountContaining, parseMountinfo } from "../../src/probe/mountinfo.js";
import { joinArgv, unshareArgv } from "../../src/probe/namespaces.js";
import { propagationOf } from "../../src/probe/propagation.js";

test("parseMountinfo reads optional fields, escapes and the part after the separator", () => {
  const [root, spaced] = parseMountinfo(
    "27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw,discard\n" +
      "40 27 0:37 / /mnt/with\\040space rw - tmpfs none rw\n",
  );
  assert.deepEqual(root, {
    mountId: 27,
    parentId: 1,
    root: "/",
    mountPoint: "/",
    options: "rw,relatime",
    optionalFields: ["shared:1", "master:2"],
    fsType: "ext4",
    source: "/dev/vda",
    superOptions: "rw,discard",
  });
  assert.equal(spaced?.mountPoint, "/mnt/with space");
  assert.deepEqual(spaced?.optionalFields, []);
});

test("parseMountinfo tolerates older gVisor's double space before the separator", () => {
  const [root] = parseMountinfo("10 10 0:11 / / rw  - overlay none rw\n");
  assert.deepEqual(root?.optionalFields, []);
  assert.equal(root?.fsType, "overlay");
});

test("mountContaining picks the deepest mount, never a sibling with a common prefix", () => {
  const mounts = parseMountinfo(
    "1 0 0:1 / / rw - ext4 /dev/vda rw\n" +
      "2 1 0:2 / /var/lib rw - tmpfs none rw\n" +
      "3 1 0:3 / /var/lib2 rw - xfs /dev/vdb rw\n",
  );
  assert.equal(mountContaining(mounts, "/var/lib/sandkube")?.fsType, "tmpfs");
  assert.equal(mountContaining(mounts, "/var/lib2/x")?.fsType, "xfs");
  assert.equal(mountContaining(mounts, "/var/libx")?.fsType, "ext4");
});

test("propagationOf follows proc(5)", () => {
  assert.equal(propagationOf(["shared:1"]), "shared");
  assert.equal(propagationOf(["master:3"]), "slave");
  assert.equal(propagationOf(["shared:4", "master:3"]), "shared");
  assert.equal(propagationOf(["unbindable"]), "unbindable");
  assert.equal(propagationOf([]), "private");
});

test("cgroupMode: unified only when /sys/fs/cgroup itself is cgroup2", () => {
  const mode = (lines: string[]): string =>
    cgroupMode(parseMountinfo(lines.map((l, i) => `${i + 2} 1 0:${i} / ${l}`).join("\n")));
  assert.equal(mode(["/sys/fs/cgroup rw - cgroup2 cgroup2 rw"]), "v2");
  assert.equal(
    mode([
      "/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
      "/sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
    ]),
    "hybrid",
  );
  assert.equal(mode(["/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory"]), "v1");
  assert.equal(mode([]), "none");
});

test("controllerGroups mounts co-mounted controllers together, unbound ones alone", () => {
  const controllers = parseProcCgroups(
    "#subsys_name\thierarchy\tnum_cgroups\tenabled\n" +
      "cpu\t2\t1\t1\ncpuacct\t2\t1\t1\nmemory\t4\t45\t1\nnet_cls\t0\t1\t1\nrdma\t0\t1\t0\n",
  );
  assert.deepEqual(controllers[2], { name: "memory", hierarchy: 4, enabled: true });
  assert.deepEqual(controllerGroups(controllers), [["cpu", "cpuacct"], ["memory"], ["net_cls"]]);
});

test("parseStatusField reads /proc/self/status lines", () => {
  const status = "Name:\tnode\nUid:\t1000\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
  assert.equal(parseStatusField(status, "Uid"), "1000\t0\t0\t0");
  assert.equal(parseStatusField(status, "CapEff"), "000001ffffffffff");
  assert.equal(parseStatusField(status, "Gid"), undefined);
});

test("judgeGvisor: one strong signal, or three weak ones", () => {
  const e = (weight: "strong" | "weak", pointsToGvisor: boolean): GvisorEvidence => ({
    id: "x",
    weight,
    pointsToGvisor,
    observed: "",
  });
  assert.equal(judgeGvisor([e("strong", true)]), true);
  assert.equal(judgeGvisor([e("weak", true), e("weak", true)]), false);
  assert.equal(judgeGvisor([e("weak", true), e("weak", true), e("weak", true)]), true);
  assert.equal(judgeGvisor([e("strong", false), e("weak", true)]), false);
});

test("errnoOf names the errno in glibc's and util-linux's words", () => {
  const r = (
    stderr: string,
    exitCode = 1,
  ): { exitCode: number; stdout: string; stderr: string } => ({
    exitCode,
    stdout: "",
    stderr,
  });
  assert.equal(errnoOf(r("unshare: unshare failed: Invalid argument")), "EINVAL");
  assert.equal(errnoOf(r("add_key: Permission denied")), "EACCES");
  assert.equal(
    errnoOf(r("nsenter: reassociate to namespace 'ns/net' failed: Operation not supported")),
    "EOPNOTSUPP",
  );
  assert.equal(errnoOf(r("mount: /x: cgroup already mounted or mount point busy.")), "EBUSY");
  assert.equal(errnoOf(r("something else", 3)), "EXIT_3");
  assert.equal(errnoOf({ ...r(""), failure: "ENOENT" }), "ENOENT");
});

test("fromCommand drops mount(8)'s dmesg hint and keeps the real error line", () => {
  const check = fromCommand(
    {
      argv: ["mount", "-t", "overlay"],
      exitCode: 32,
      stdout: "",
      stderr:
        "mount: /m: wrong fs type, bad option, bad superblock on overlay, missing codepage or helper program, or other error.\n       dmesg(1) may have more information after failed mount system call.\n",
    },
    "mount overlay",
  );
  assert.equal(check.result, "no");
  assert.equal(check.result === "no" ? check.code : "", "EINVAL");
  assert.match(
    check.result === "no" ? check.detail : "",
    /^mount overlay: mount: \/m: wrong fs type/,
  );
});

test("namespace argv: pid and time fork; mount leaves propagation alone", () => {
  assert.deepEqual(unshareArgv("pid"), ["unshare", "--pid", "--fork", "--kill-child", "true"]);
  assert.deepEqual(unshareArgv("time"), ["unshare", "--time", "--fork", "--kill-child", "true"]);
  assert.deepEqual(unshareArgv("mnt"), [
    "unshare",
    "--mount",
    "--propagation",
    "unchanged",
    "true",
  ]);
  assert.deepEqual(unshareArgv("net"), ["unshare", "--net", "true"]);
  assert.deepEqual(joinArgv("mnt").slice(3), ["sandkube-ns-join", "--mount", "mnt", "nofork"]);
});
