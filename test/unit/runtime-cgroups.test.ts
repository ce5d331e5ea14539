import assert from "node:assert/strict";
import { test } from "node:test";
import {
  cgroupDirs,
  cgroupLocation,
  expandSlice,
  missingControllers,
  parseCgroupMounts,
  parseProcCgroup,
  resourceWrites,
  setupCgroups,
  unappliedResources,
} from "../../src/runtime/cgroups.js";
import { RecordingSyscalls } from "../../src/runtime/recording-syscalls.js";

// Recorded from this project's Firecracker VM (cgroup v1 hybrid), /proc/self/mountinfo and /proc/self/cgroup.
const HYBRID_MOUNTINFO = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;
const PROC_CGROUP = `9:name=systemd:/
4:memory:/process_api/abc
1:cpu:/
0::/`;

test("parseCgroupMounts finds v1 controllers and the unified tree", () => {
  const h = parseCgroupMounts(HYBRID_MOUNTINFO);
  assert.deepEqual(
    h.map((x) => [x.version, x.controllers.join(","), x.mountPoint]),
    [
      [1, "cpu", "/sys/fs/cgroup/cpu"],
      [1, "memory", "/sys/fs/cgroup/memory"],
      [1, "devices", "/sys/fs/cgroup/devices"],
      [1, "name=systemd", "/sys/fs/cgroup/systemd"],
      [2, "", "/sys/fs/cgroup/unified"],
    ],
  );
});

test("cgroupsPath in systemd's slice:prefix:name form becomes systemd's tree", () => {
  assert.equal(
    expandSlice("kubepods-besteffort-pod12.slice"),
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice",
  );
  assert.equal(expandSlice("-.slice"), "");
  const loc = cgroupLocation("kubepods-pod1.slice:cri-containerd:abc", "abc", false);
  assert.deepEqual(loc, {
    path: "/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope",
    systemdForm: true,
  });
  assert.equal(cgroupLocation("/kubepods/pod1/abc", "abc", false).path, "/kubepods/pod1/abc");
  assert.equal(cgroupLocation(undefined, "abc", false).path, "/sandkube/abc");
});

test("a relative cgroupsPath hangs under the runtime's own cgroup in each hierarchy", () => {
  const h = parseCgroupMounts(HYBRID_MOUNTINFO);
  const dirs = cgroupDirs(h, { path: "c1", systemdForm: false }, parseProcCgroup(PROC_CGROUP));
  assert.equal(dirs[0], "/sys/fs/cgroup/cpu/c1");
  assert.equal(dirs[1], "/sys/fs/cgroup/memory/process_api/abc/c1");
  assert.equal(dirs[4], "/sys/fs/cgroup/unified/c1");
});

test("resources become v1 and v2 files, shares converted as runc does", () => {
  const r = {
    memory: { limit: 1048576 },
    cpu: { shares: 1024, quota: 50000, period: 100000 },
    pids: { limit: 10 },
  };
  const v1 = resourceWrites(
    { version: 1, controllers: ["cpu"], mountPoint: "", root: "/" },
    r,
    true,
  );
  assert.deepEqual(v1, [
    { file: "cpu.shares", value: "1024" },
    { file: "cpu.cfs_period_us", value: "100000" },
    { file: "cpu.cfs_quota_us", value: "50000" },
  ]);
  const v2 = resourceWrites({ version: 2, controllers: [], mountPoint: "", root: "/" }, r, true);
  assert.deepEqual(v2, [
    { file: "memory.max", value: "1048576" },
    { file: "cpu.weight", value: "39" },
    { file: "cpu.max", value: "50000 100000" },
    { file: "pids.max", value: "10" },
  ]);
});

test("v1 device rules deny all, then allow the spec's and the default devices", () => {
  const w = resourceWrites(
    { version: 1, controllers: ["devices"], mountPoint: "", root: "/" },
    { devices: [{ allow: false, access: "rwm" }] },
    true,
  );
  assert.deepEqual(w[0], { file: "devices.deny", value: "a *:* rwm" });
  assert.ok(w.some((x) => x.file === "devices.allow" && x.value === "c 1:3 rwm"));
});

test("setupCgroups degrades to a warning where a hierarchy cannot be written", () => {
  const sys = new RecordingSyscalls();
  sys.mkdir = (path: string) => {
    if (path.startsWith("/sys/fs/cgroup/memory"))
      throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    sys.dirs.add(path);
  };
  const h = parseCgroupMounts(HYBRID_MOUNTINFO);
  const dirs = cgroupDirs(h, { path: "/c1", systemdForm: false }, new Map());
  const result = setupCgroups(sys, h, dirs, { memory: { limit: 1 }, cpu: { shares: 2 } });
  assert.equal(result.entries.length, 4);
  assert.ok(
    result.warnings.some((w) => /cgroup \/sys\/fs\/cgroup\/memory\/c1 not created/.test(w)),
  );
  assert.equal(sys.files.get("/sys/fs/cgroup/cpu/c1/cpu.shares"), "2");
});

test("v1 memory, blkio, net_cls, net_prio and hugetlb resources become their files, as runc writes them", () => {
  const v1 = (controllers: string[]) => ({
    version: 1 as const,
    controllers,
    mountPoint: "",
    root: "/",
  });
  const resources = {
    memory: {
      limit: 52428800,
      reservation: 50593792,
      swap: 104857600,
      swappiness: 10,
      disableOOMKiller: true,
    },
    blockIO: {
      weight: 500,
      weightDevice: [{ major: 8, minor: 0, weight: 300 }],
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
    },
    network: { classID: 1048577, priorities: [{ name: "eth0", priority: 5 }] },
    hugepageLimits: [{ pageSize: "2MB", limit: 9223372036854772000 }],
  };
  const files = (controllers: string[]) =>
    resourceWrites(v1(controllers), resources, false).map((w) => `${w.file}=${w.value}`);
  assert.deepEqual(files(["memory"]), [
    "memory.limit_in_bytes=52428800",
    "memory.soft_limit_in_bytes=50593792",
    "memory.memsw.limit_in_bytes=104857600",
    "memory.swappiness=10",
    "memory.oom_control=1",
  ]);
  assert.deepEqual(files(["blkio"]), [
    "blkio.weight=500",
    "blkio.weight_device=8:0 300",
    "blkio.throttle.read_bps_device=8:0 1048576",
  ]);
  assert.deepEqual(files(["net_cls", "net_prio"]), [
    "net_cls.classid=1048577",
    "net_prio.ifpriomap=eth0 5",
  ]);
  assert.deepEqual(files(["hugetlb"]), ["hugetlb.2MB.limit_in_bytes=9223372036854772000"]);
});

test("resources nothing can apply are named, never dropped silently", () => {
  assert.deepEqual(
    missingControllers(
      { memory: { limit: 1 }, blockIO: { weight: 10 }, network: { classID: 1 } },
      new Set(["memory", "cpu"]),
    ),
    [
      ["blkio", "blockIO"],
      ["net_cls", "network.classID"],
    ],
  );
  assert.deepEqual(
    unappliedResources({ memory: { swappiness: 10, kernelTCP: 1 }, blockIO: { weight: 10 } }, 2),
    [
      "memory.kernelTCP",
      "memory.swappiness (no cgroup v2 file)",
      "blockIO (io.* files on cgroup v2)",
    ],
  );
  assert.deepEqual(unappliedResources({ memory: { swappiness: 10 } }, 1), []);
});
