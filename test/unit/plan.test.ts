import { test } from "node:test";
import assert from "node:assert/strict";
import type { Adaptation } from "../../src/plan/adaptations.js";
import { planAdaptations, releaseAtLeast } from "../../src/plan/adaptations.js";
import { judge } from "../../src/plan/verdict.js";
import type { Facts } from "../../src/probe/facts.js";
import type { DoctorFixture } from "../fixtures/doctor-fixtures.js";
import { replayFacts } from "../fixtures/doctor-fixtures.js";

// Each rule is tested by changing one fact of a real machine (the host-kernel recording) and
// checking that exactly that rule answers, naming the fact.

type DeepMutable<T> = T extends (infer U)[]
  ? DeepMutable<U>[]
  : T extends readonly (infer U)[]
    ? DeepMutable<U>[]
    : T extends object
      ? { -readonly [K in keyof T]: DeepMutable<T[K]> }
      : T;

let cached: Facts | undefined;
async function hostFacts(): Promise<DeepMutable<Facts>> {
  cached ??= await replayFacts("host-kernel");
  return structuredClone(cached) as DeepMutable<Facts>;
}

const BASELINE = ["cgroup-v1", "mount-propagation", "preloaded-images"];

/** The adaptations the change added to the host's own. */
function added(facts: DeepMutable<Facts>): Adaptation[] {
  return planAdaptations(facts as Facts).filter((a) => !BASELINE.includes(a.id));
}

function only(facts: DeepMutable<Facts>, id: string): Adaptation {
  const extra = added(facts);
  assert.deepEqual(
    extra.map((a) => a.id),
    [id],
  );
  const adaptation = extra[0];
  assert.ok(adaptation);
  return adaptation;
}

function isYesCheck(check: { readonly result: string } | undefined): boolean {
  return check?.result === "yes";
}

function sysctl(facts: DeepMutable<Facts>, name: string): DeepMutable<Facts>["sysctls"][number] {
  const found = facts.sysctls.find((s) => s.name === name);
  assert.ok(found, name);
  return found;
}

function markMissing(facts: DeepMutable<Facts>, name: string): void {
  const s = sysctl(facts, name);
  s.exists = false;
  s.readable = { result: "no", code: "ENOENT", detail: "" };
  s.value = null;
  s.writable = { result: "not-run", detail: "missing" };
}

test("the host needs only the baseline adaptations", async () => {
  assert.deepEqual(
    planAdaptations((await hostFacts()) as Facts).map((a) => a.id),
    BASELINE,
  );
});

test("kubelet-tunables: a missing or read-only setupKernelTunables entry", async () => {
  const facts = await hostFacts();
  markMissing(facts, "kernel/panic");
  sysctl(facts, "vm/overcommit_memory").writable = { result: "no", code: "EIO", detail: "" };
  const a = only(facts, "kubelet-tunables");
  assert.equal(
    a.because,
    "/proc/sys/vm/overcommit_memory is read-only (EIO); /proc/sys/kernel/panic is missing",
  );
  assert.deepEqual(a.facts, ["sysctls[vm/overcommit_memory]", "sysctls[kernel/panic]"]);
  assert.match(a.action, /protectKernelDefaults: false/);
});

test("kubelet-tunables ignores entries kubelet only reads", async () => {
  const facts = await hostFacts();
  markMissing(facts, "fs/inotify/max_user_watches");
  assert.deepEqual(added(facts), []);
});

test("dev-kmsg: /dev/kmsg absent", async () => {
  const facts = await hostFacts();
  facts.devKmsg = { exists: false, kind: null, code: "ENOENT" };
  const a = only(facts, "dev-kmsg");
  assert.equal(a.because, "/dev/kmsg is absent (ENOENT)");
  assert.deepEqual(a.facts, ["devKmsg.exists"]);
});

test("native-snapshotter: overlay on the data dir fails, and says when tmpfs works", async () => {
  const facts = await hostFacts();
  facts.overlay.onDataDir = { result: "no", code: "EINVAL", detail: "mount" };
  const a = only(facts, "native-snapshotter");
  assert.equal(a.because, "overlayfs on /var/lib/sandkube (ext4) fails: EINVAL");
  assert.match(a.action, /"native"/);
  assert.match(a.action, /tmpfs upper layer does work/);
});

test("native-snapshotter: not switched on when overlay could not be tried", async () => {
  const facts = await hostFacts();
  facts.overlay.onDataDir = { result: "not-run", detail: "not root" };
  assert.deepEqual(added(facts), []);
});

test("cgroup-v1 follows cgroups.mode; a cgroup2 /sys/fs/cgroup needs nothing", async () => {
  const facts = await hostFacts();
  facts.cgroups.mode = "v2";
  assert.deepEqual(
    planAdaptations(facts as Facts).map((a) => a.id),
    ["mount-propagation", "preloaded-images"],
  );
  facts.cgroups.mode = "v1";
  const a = planAdaptations(facts as Facts).find((x) => x.id === "cgroup-v1");
  assert.equal(a?.because, "cgroups are v1: /sys/fs/cgroup is not a cgroup2 mount");
  assert.match(a?.action ?? "", /failCgroupV1: false, cgroupDriver: cgroupfs/);
});

test("mount-cgroups: nothing mounted but scratch v1 mounts work", async () => {
  const facts = await hostFacts();
  facts.cgroups.mode = "none";
  facts.cgroups.hierarchies = [];
  facts.cgroups.scratchV1MountCheck = { result: "yes" };
  facts.cgroups.scratchV1Mounts = [
    { controllers: ["cpu"], mount: { result: "yes" }, hierarchy: null, unmount: { result: "yes" } },
    {
      controllers: ["blkio"],
      mount: { result: "no", code: "EINVAL", detail: "" },
      hierarchy: null,
      unmount: { result: "yes" },
    },
  ];
  const ids = planAdaptations(facts as Facts).map((a) => a.id);
  assert.ok(ids.includes("cgroup-v1"));
  const a = planAdaptations(facts as Facts).find((x) => x.id === "mount-cgroups");
  assert.equal(a?.because, "no cgroup filesystem is mounted; v1 mounts of cpu work");
});

test("cgroups-unenforced: a process cannot be moved into a child cgroup", async () => {
  const facts = await hostFacts();
  const memory = facts.cgroups.hierarchies.find((h) => h.mountPoint === "/sys/fs/cgroup/memory");
  assert.ok(memory);
  memory.moveProcess = { result: "no", code: "ENOENT", detail: "" };
  const a = only(facts, "cgroups-unenforced");
  assert.equal(a.because, "/sys/fs/cgroup/memory: create child works, move process ENOENT");
  assert.match(a.action, /cgroupsPerQOS: false/);
});

test("no-unprivileged-ports-icmp: a missing sysctl, or a kernel below 4.11", async () => {
  const facts = await hostFacts();
  markMissing(facts, "net/ipv4/ip_unprivileged_port_start");
  const a = only(facts, "no-unprivileged-ports-icmp");
  assert.equal(a.because, "/proc/sys/net/ipv4/ip_unprivileged_port_start is missing");
  assert.match(a.action, /enable_unprivileged_ports = false, enable_unprivileged_icmp = false/);

  const old = await hostFacts();
  old.kernel.release = "4.4.0";
  const b = only(old, "no-unprivileged-ports-icmp");
  assert.equal(b.because, "kernel release 4.4.0 is below 4.11");
  assert.deepEqual(b.facts, ["kernel.release"]);
});

test("releaseAtLeast compares major and minor numerically", () => {
  assert.equal(releaseAtLeast("4.4.0", 4, 11), false);
  assert.equal(releaseAtLeast("4.19.0-gvisor", 4, 11), true);
  assert.equal(releaseAtLeast("4.11", 4, 11), true);
  assert.equal(releaseAtLeast("6.18.44-fc-v595", 4, 11), true);
  assert.equal(releaseAtLeast("3.99.1", 4, 11), false);
  assert.equal(releaseAtLeast(null, 4, 11), false);
});

test("cap-last-cap: missing cap_last_cap", async () => {
  const facts = await hostFacts();
  markMissing(facts, "kernel/cap_last_cap");
  const a = only(facts, "cap-last-cap");
  assert.equal(a.because, "/proc/sys/kernel/cap_last_cap is missing");
  assert.match(a.action, /sandkube-runtime/);
});

test("no-cgroup-namespace: unshare(CLONE_NEWCGROUP) fails", async () => {
  const facts = await hostFacts();
  const cgroup = facts.namespaces.find((n) => n.type === "cgroup");
  assert.ok(cgroup);
  cgroup.create = { result: "no", code: "EINVAL", detail: "" };
  cgroup.joinByPath = { result: "not-run", detail: "" };
  assert.equal(
    only(facts, "no-cgroup-namespace").because,
    "unshare(CLONE_NEWCGROUP) fails: EINVAL",
  );
});

test("no-setns: sandkube-runtime forks into namespaces it cannot join, so it no longer blocks", async () => {
  const facts = await hostFacts();
  const net = facts.namespaces.find((n) => n.type === "net");
  assert.ok(net);
  net.joinByPath = { result: "no", code: "EOPNOTSUPP", detail: "" };
  assert.deepEqual(judge(facts).blockers, []);
  const rule = only(facts, "no-setns");
  assert.equal(rule.because, "setns(net) by path fails: EOPNOTSUPP");
  assert.deepEqual(rule.facts, ["namespaces[net].joinByPath"]);
  assert.match(rule.action, /agent inside the container/);
});

test("no-mount-namespace: unshare -m succeeds but nothing shows a mount namespace", async () => {
  const facts = await hostFacts();
  const mnt = facts.namespaces.find((n) => n.type === "mnt");
  assert.ok(mnt);
  assert.equal(planAdaptations(facts).filter((a) => a.id === "no-mount-namespace").length, 0);
  mnt.inProc = false;
  assert.match(only(facts, "no-mount-namespace").action, /withholds CAP_SYS_CHROOT/);
});

test("no-recursive-bind: sandkube unpacks images itself where overlayfs works; blocks where it does not", async () => {
  const facts = await hostFacts();
  assert.ok(!planAdaptations(facts).some((a) => a.id === "no-recursive-bind"));
  facts.mountPropagation.makePrivateInNewNamespace = {
    result: "no",
    code: "EINVAL",
    detail: "unshare: cannot change root filesystem propagation: Invalid argument",
  };
  const adaptation = only(facts, "no-recursive-bind");
  assert.match(adaptation.because, /refuses MS_REC/);
  assert.match(adaptation.action, /unpacks each layer itself into the overlayfs snapshotter/);
  assert.equal(judge(facts).canRun, true);

  // The native snapshotter hands every container root out as an `rbind`: nothing helps then.
  facts.overlay.onDataDir = { result: "no", code: "EINVAL", detail: "mount: wrong fs type" };
  assert.ok(!planAdaptations(facts).some((a) => a.id === "no-recursive-bind"));
  const verdict = judge(facts);
  assert.equal(verdict.canRun, false);
  assert.deepEqual(
    verdict.blockers.map((b) => b.id),
    ["no-recursive-bind"],
  );
  assert.match(verdict.blockers[0]?.because ?? "", /overlayfs is not usable on the data dir/);
});

test("no-new-keyring: joining a session keyring fails", async () => {
  const facts = await hostFacts();
  facts.keyrings.joinSessionKeyring = { result: "no", code: "EACCES", detail: "" };
  assert.equal(
    only(facts, "no-new-keyring").because,
    "joining a new session keyring fails: EACCES",
  );
});

test("mount-propagation: shared / needs nothing; a fixed propagation changes the action", async () => {
  const facts = await hostFacts();
  facts.mountPropagation.root = "shared";
  assert.ok(!planAdaptations(facts as Facts).some((a) => a.id === "mount-propagation"));
  facts.mountPropagation.makeSharedInNewNamespace = { result: "no", code: "EINVAL", detail: "" };
  const a = planAdaptations(facts as Facts).find((x) => x.id === "mount-propagation");
  assert.equal(a?.because, "making / shared in a new mount namespace fails: EINVAL");
  assert.match(a?.action ?? "", /cannot be changed here/);
});

test("iptables-legacy: nf_tables by default but nftables fails while legacy works", async () => {
  const facts = await hostFacts();
  assert.equal(facts.iptables.defaultBackend, "nf_tables");
  facts.iptables.nftables = {
    result: "no",
    code: "EPROTONOSUPPORT",
    detail: "Protocol not supported",
  };
  const a = only(facts, "iptables-legacy");
  assert.equal(
    a.because,
    "iptables defaults to nf_tables, but nftables fails: Protocol not supported",
  );
});

// Issue 8: on a host without the nft tool, doctor switched to iptables-legacy because "nftables
// fails: not tried: nft is not installed", although iptables-nft wrote every rule kind.
test("iptables-legacy: an nft probe that did not run is not a failure", async () => {
  const facts = await hostFacts();
  facts.iptables.tools.nft = { found: false, error: "spawn nft ENOENT" };
  facts.iptables.nftables = { result: "not-run", detail: "nft is not installed" };
  assert.ok(isYesCheck(facts.iptables.nfTables?.capabilities.filter));
  assert.deepEqual(
    added(facts).map((a) => a.id),
    [],
    "iptables-nft passed, so no adaptation is needed",
  );
});

test("iptables-legacy: with nft not installed, iptables-nft failing its filter rule decides", async () => {
  const facts = await hostFacts();
  facts.iptables.nftables = { result: "not-run", detail: "nft is not installed" };
  assert.ok(facts.iptables.nfTables);
  facts.iptables.nfTables.capabilities.filter = {
    result: "no",
    code: "EPROTONOSUPPORT",
    detail: "iptables: Failed to initialize nft: Protocol not supported",
  };
  const a = only(facts, "iptables-legacy");
  assert.equal(
    a.because,
    "iptables defaults to nf_tables, but iptables-nft cannot write a filter rule: " +
      "iptables: Failed to initialize nft: Protocol not supported",
  );
  assert.deepEqual(a.facts, [
    "iptables.defaultBackend",
    "iptables.nfTables.capabilities.filter",
    "iptables.legacy",
  ]);
});

test("iptables-legacy: nothing proven about nf_tables either way switches nothing", async () => {
  const facts = await hostFacts();
  facts.iptables.nftables = { result: "not-run", detail: "nft is not installed" };
  assert.ok(facts.iptables.nfTables);
  facts.iptables.nfTables.capabilities.filter = { result: "not-run", detail: "not root" };
  assert.ok(!planAdaptations(facts as Facts).some((a) => a.id === "iptables-legacy"));
});

test("service-proxy and no-ip-masq: iptables without MASQUERADE", async () => {
  const facts = await hostFacts();
  for (const backend of [facts.iptables.legacy, facts.iptables.nfTables]) {
    assert.ok(backend);
    backend.capabilities.masquerade = {
      result: "no",
      code: "EXIT_1",
      detail: "No chain/target/match by that name",
    };
  }
  const ids = added(facts).map((a) => a.id);
  assert.deepEqual(ids, ["service-proxy", "no-ip-masq"]);
  const proxy = added(facts)[0];
  assert.match(proxy?.because ?? "", /cannot write: masquerade$/);
});

test("cni-veth-routes: no promiscuous bridge; cni-host-network: no veth", async () => {
  const facts = await hostFacts();
  facts.network.bridgePromiscuous = {
    result: "no",
    code: "EINVAL",
    detail: "RTNETLINK answers: Invalid argument",
  };
  assert.equal(
    only(facts, "cni-veth-routes").because,
    "promiscuous mode on a bridge fails: RTNETLINK answers: Invalid argument",
  );
  facts.network.veth = {
    result: "no",
    code: "EOPNOTSUPP",
    detail: "RTNETLINK answers: Operation not supported",
  };
  assert.equal(only(facts, "cni-host-network").facts[0], "network.veth");
});

test("kube-proxy-sysctls: conntrack entries missing", async () => {
  const facts = await hostFacts();
  markMissing(facts, "net/netfilter/nf_conntrack_max");
  const a = only(facts, "kube-proxy-sysctls");
  assert.equal(a.because, "/proc/sys/net/netfilter/nf_conntrack_max is missing");
  assert.match(a.action, /conntrack.maxPerCore: 0/);
});

test("no-local-storage-isolation: gVisor, or a data dir cAdvisor does not measure", async () => {
  const facts = await hostFacts();
  facts.kernel.gvisor.verdict = true;
  assert.equal(
    only(facts, "no-local-storage-isolation").because,
    "this is gVisor and /var/lib/sandkube is on ext4",
  );
  const nineP = await hostFacts();
  nineP.overlay.dataDirFsType = "9p";
  assert.match(only(nineP, "no-local-storage-isolation").because, /on 9p, which cAdvisor/);
});

test("preloaded-images: off as soon as one default registry answers", async () => {
  const facts = await hostFacts();
  const first = facts.registries.registries[0];
  assert.ok(first);
  first.result = { reachable: true, httpStatus: 401 };
  assert.ok(!planAdaptations(facts as Facts).some((a) => a.id === "preloaded-images"));
});

test("network rules stay silent when the probes ran without root", async () => {
  const facts = await hostFacts();
  facts.identity.isRoot = false;
  facts.network.veth = {
    result: "no",
    code: "EPERM",
    detail: "unshare: unshare failed: Operation not permitted",
  };
  assert.ok(!planAdaptations(facts as Facts).some((a) => a.id.startsWith("cni-")));
});

test("verdict: root, mount and pid namespaces, and usable cgroups are required", async () => {
  assert.deepEqual(judge((await hostFacts()) as Facts).blockers, []);

  const user = await hostFacts();
  user.identity.isRoot = false;
  user.identity.uid = 1000;
  assert.deepEqual(
    judge(user as Facts).blockers.map((b) => b.id),
    ["not-root"],
  );

  const noNs = await hostFacts();
  for (const n of noNs.namespaces.filter((x) => x.type === "mnt" || x.type === "pid")) {
    n.create = { result: "no", code: "EPERM", detail: "" };
  }
  const verdict = judge(noNs as Facts);
  assert.equal(verdict.canRun, false);
  assert.deepEqual(
    verdict.blockers.map((b) => b.id),
    ["no-mnt-namespace", "no-pid-namespace"],
  );
  assert.equal(verdict.summary, "Kubernetes cannot run here: no-mnt-namespace, no-pid-namespace.");

  const noCgroups = await hostFacts();
  noCgroups.cgroups.mode = "none";
  noCgroups.cgroups.scratchV1MountCheck = { result: "no", code: "EPERM", detail: "mount" };
  assert.deepEqual(
    judge(noCgroups as Facts).blockers.map((b) => b.because),
    [
      "no cgroup filesystem is mounted and mounting the controllers kubelet requires fails (EPERM: mount)",
    ],
  );
});

const RECORDED: readonly DoctorFixture[] = ["host-kernel", "gvisor-runsc-new", "gvisor-runsc-old"];

for (const name of RECORDED) {
  test(`${name}: every adaptation names facts that exist, and planning is pure`, async () => {
    const facts = await replayFacts(name);
    const frozen = deepFreeze(structuredClone(facts));
    const first = planAdaptations(frozen);
    assert.deepEqual(planAdaptations(frozen), first);
    assert.deepEqual(frozen, facts);
    for (const a of first) {
      assert.ok(a.because.length > 0 && a.action.length > 0 && a.meaning.length > 0, a.id);
      assert.ok(a.facts.length > 0, a.id);
      for (const path of a.facts) {
        const root = /^[a-zA-Z]+/.exec(path)?.[0] ?? "";
        assert.ok(root in facts, `${a.id}: ${path}`);
      }
    }
    assert.equal(new Set(first.map((a) => a.id)).size, first.length);
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
