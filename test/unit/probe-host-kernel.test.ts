import { test } from "node:test";
import assert from "node:assert/strict";
import { planAdaptations } from "../../src/plan/adaptations.js";
import { judge } from "../../src/plan/verdict.js";
import { NAMESPACE_TYPES } from "../../src/probe/namespaces.js";
import { SYSCTL_CATALOG } from "../../src/probe/sysctls.js";
import { loadDoctorFixture, replayCoreFacts, replayFacts } from "../fixtures/doctor-fixtures.js";

// test/fixtures/host-kernel.transcript.json was recorded on the lab VM (Firecracker, Linux 6.18,
// root, cgroup v1 hybrid) with `sandkube doctor --record`. Each expected value below was checked
// against the live machine when recorded (`uname -r`, `mount | grep cgroup`, `cat /proc/sys/...`).

test("host kernel: release and no gVisor signal at all", async () => {
  const facts = await replayCoreFacts("host-kernel");
  assert.equal(facts.kernel.release, "6.18.44-fc-v595");
  assert.match(facts.kernel.version ?? "", /^Linux version 6\.18\.44-fc-v595 /);
  assert.equal(facts.kernel.gvisor.verdict, false);
  assert.deepEqual(
    facts.kernel.gvisor.evidence.filter((e) => e.pointsToGvisor).map((e) => e.id),
    [],
  );
});

test("host kernel: root with CAP_SYS_ADMIN", async () => {
  const { identity } = await replayCoreFacts("host-kernel");
  assert.equal(identity.uid, 0);
  assert.equal(identity.isRoot, true);
  assert.equal(identity.effectiveCapabilities, "000001fffeffffff");
  assert.equal(identity.hasCapSysAdmin, true);
});

test("host kernel: every /proc/sys entry exists, values as read on the machine", async () => {
  const { sysctls } = await replayCoreFacts("host-kernel");
  assert.deepEqual(
    sysctls.map((s) => s.name),
    SYSCTL_CATALOG.map((s) => s.name),
  );
  for (const s of sysctls) {
    assert.equal(s.exists, true, s.name);
    assert.equal(s.readable.result, "yes", s.name);
  }
  const value = (name: string): string | null | undefined =>
    sysctls.find((s) => s.name === name)?.value;
  assert.equal(value("vm/overcommit_memory"), "0");
  assert.equal(value("vm/panic_on_oom"), "0");
  assert.equal(value("kernel/panic"), "1");
  assert.equal(value("kernel/panic_on_oops"), "0");
  assert.equal(value("kernel/keys/root_maxkeys"), "1000000");
  assert.equal(value("kernel/keys/root_maxbytes"), "25000000");
  assert.equal(value("kernel/pid_max"), "32768");
  assert.equal(value("kernel/cap_last_cap"), "40");
  assert.equal(value("net/ipv4/ip_unprivileged_port_start"), "1024");
});

test("host kernel: write-back works except on the read-only cap_last_cap", async () => {
  const { sysctls } = await replayCoreFacts("host-kernel");
  for (const s of sysctls) {
    if (s.name === "kernel/cap_last_cap") {
      assert.deepEqual(
        { result: s.writable.result, code: s.writable.result === "no" ? s.writable.code : "" },
        { result: "no", code: "EACCES" },
      );
    } else {
      assert.equal(s.writable.result, "yes", s.name);
    }
  }
});

test("host kernel: the probe only ever writes back the value it just read", () => {
  const { entries } = loadDoctorFixture("host-kernel");
  const lastRead = new Map<string, string>();
  for (const entry of entries) {
    if (entry.op === "read" && entry.result.ok) lastRead.set(entry.path, entry.result.value);
    if (entry.op === "write" && entry.path.startsWith("/proc/sys/")) {
      assert.equal(entry.data, lastRead.get(entry.path), `write to ${entry.path}`);
    }
  }
});

test("host kernel: /dev/kmsg is a character device", async () => {
  const { devKmsg } = await replayCoreFacts("host-kernel");
  assert.deepEqual(devKmsg, { exists: true, kind: "char-device", code: null });
});

test("host kernel: cgroup v1 hybrid, the hierarchies `mount | grep cgroup` lists, all usable", async () => {
  const { cgroups } = await replayCoreFacts("host-kernel");
  assert.equal(cgroups.mode, "hybrid");
  assert.equal(cgroups.cgroup2Supported, true);
  assert.deepEqual(
    cgroups.hierarchies.map((h) => [h.mountPoint, h.version, h.controllers.join(",")]),
    [
      ["/sys/fs/cgroup/cpu", 1, "cpu"],
      ["/sys/fs/cgroup/cpuacct", 1, "cpuacct"],
      ["/sys/fs/cgroup/cpuset", 1, "cpuset"],
      ["/sys/fs/cgroup/memory", 1, "memory"],
      ["/sys/fs/cgroup/devices", 1, "devices"],
      ["/sys/fs/cgroup/freezer", 1, "freezer"],
      ["/sys/fs/cgroup/blkio", 1, "blkio"],
      ["/sys/fs/cgroup/pids", 1, "pids"],
      ["/sys/fs/cgroup/systemd", 1, "name=systemd"],
      // No v2 controller is enabled while the v1 hierarchies hold them; hugetlb is free.
      ["/sys/fs/cgroup/unified", 2, "hugetlb"],
    ],
  );
  for (const h of cgroups.hierarchies) {
    assert.equal(h.createChild.result, "yes", `${h.mountPoint} create`);
    assert.equal(h.moveProcess.result, "yes", `${h.mountPoint} move`);
    assert.equal(h.removeChild.result, "yes", `${h.mountPoint} cleanup`);
  }
  assert.deepEqual(
    cgroups.kernelControllers.map((c) => c.name),
    [
      "cpuset",
      "cpu",
      "cpuacct",
      "blkio",
      "memory",
      "devices",
      "freezer",
      "net_cls",
      "perf_event",
    ].concat(["net_prio", "hugetlb", "pids"]),
  );
  assert.deepEqual(cgroups.scratchV1Mounts, []);
  assert.equal(cgroups.scratchV1MountCheck.result, "not-run");
});

test("host kernel: overlayfs works on the ext4 data dir and with a tmpfs upper", async () => {
  const { overlay } = await replayCoreFacts("host-kernel");
  assert.equal(overlay.dataDir, "/var/lib/sandkube");
  assert.equal(overlay.dataDirFsType, "ext4");
  assert.equal(overlay.kernelSupports, true);
  assert.equal(overlay.onDataDir.result, "yes");
  assert.equal(overlay.tmpfsUpper.result, "yes");
  assert.equal(overlay.cleanedUp.result, "yes");
});

test("host kernel: every namespace type can be created and joined by path", async () => {
  const { namespaces } = await replayCoreFacts("host-kernel");
  assert.deepEqual(
    namespaces.map((n) => n.type),
    [...NAMESPACE_TYPES],
  );
  for (const ns of namespaces) {
    assert.equal(ns.create.result, "yes", `${ns.type} create`);
    assert.equal(ns.joinByPath.result, "yes", `${ns.type} join`);
  }
});

test("host kernel: session keyrings and keys work; / is private", async () => {
  const facts = await replayCoreFacts("host-kernel");
  assert.equal(facts.keyrings.joinSessionKeyring.result, "yes");
  assert.equal(facts.keyrings.addKey.result, "yes");
  assert.equal(facts.mountPropagation.root, "private");
  assert.deepEqual(facts.mountPropagation.rootOptionalFields, []);
  assert.equal(facts.mountPropagation.makePrivateInNewNamespace.result, "yes");
  assert.equal(facts.mountPropagation.makeSharedInNewNamespace.result, "yes");
});

test("host kernel: the plan needs only cgroup v1, propagation and image adaptations", async () => {
  const facts = await replayFacts("host-kernel");
  assert.deepEqual(
    planAdaptations(facts).map((a) => a.id),
    ["cgroup-v1", "mount-propagation", "preloaded-images"],
  );
  assert.deepEqual(judge(facts), {
    canRun: true,
    summary: "Kubernetes can run here with the adaptations below.",
    blockers: [],
  });
});
