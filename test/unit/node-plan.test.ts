import { test } from "node:test";
import assert from "node:assert/strict";
import { planAdaptations, type Adaptation } from "../../src/plan/adaptations.js";
import type { BinaryPaths } from "../../src/plan/cluster-config.js";
import type { Facts } from "../../src/probe/facts.js";
import { nodeLayout } from "../../src/node/layout.js";
import {
  buildClusterConfig,
  chooseRuntime,
  chooseServiceProxy,
  nodeNameFrom,
} from "../../src/node/node-config.js";
import { planProvisioning, uplinksFromIpJson } from "../../src/node/provision-plan.js";
import { planComponents, stopOrder } from "../../src/node/components.js";
import { restartDelayMs } from "../../src/node/supervisor.js";
import { mountsBelow } from "../../src/node/down.js";
import { replayFacts, type DoctorFixture } from "../fixtures/doctor-fixtures.js";

// Pure node planning from real recordings: the host kernel and both lab runsc builds.

const BINARIES: BinaryPaths = {
  etcd: "/b/etcd",
  kubeApiserver: "/b/kube-apiserver",
  kubeControllerManager: "/b/kube-controller-manager",
  kubeScheduler: "/b/kube-scheduler",
  kubelet: "/b/kubelet",
  kubectl: "/b/kubectl",
  containerd: "/b/containerd",
  containerdShim: "/b/containerd-shim-runc-v2",
  ctr: "/b/ctr",
  ociRuntime: "/b/runc",
  cniBinDir: "/var/lib/sandkube/cni/bin",
  kubeProxy: null,
};
const layout = nodeLayout("/var/lib/sandkube");

const UPLINKS = [{ name: "eth0", address: "192.0.2.2" }];

async function plan(fixture: DoctorFixture, ipForward = "0") {
  const facts: Facts = await replayFacts(fixture);
  const adaptations = planAdaptations(facts);
  const config = buildClusterConfig(
    { dataDir: "/var/lib/sandkube", runtime: "auto", bindAddress: null, serviceProxy: "auto" },
    facts,
    adaptations,
    BINARIES,
    1500,
    "Sandkube-Lab",
  );
  return {
    facts,
    adaptations,
    config,
    steps: planProvisioning(facts, adaptations, config, layout, { ipForward, uplinks: UPLINKS }),
  };
}

test("the host kernel gets runc, overlayfs and no gVisor provisioning", async () => {
  const { config, steps } = await plan("host-kernel");
  assert.equal(config.runtime, "runc");
  assert.equal(config.snapshotter, "overlayfs");
  assert.equal(config.nodeName, "sandkube-lab");
  const kinds = steps.map((s) => s.kind);
  assert.ok(kinds.includes("node-link"));
  assert.ok(kinds.includes("ip-forward"));
  for (const gvisorOnly of ["dev-kmsg", "cgroup-v1", "proc-sys-copy"]) {
    assert.ok(
      !kinds.includes(gvisorOnly as never),
      `${gvisorOnly} must not be planned on the host`,
    );
  }
});

test("runsc new gets sandkube-runtime, /dev/kmsg, cgroup mounts and the /proc/sys copy", async () => {
  const { config, steps } = await plan("gvisor-runsc-new");
  assert.equal(config.runtime, "sandkube");
  const kinds = steps.map((s) => s.kind);
  for (const needed of ["node-link", "ip-forward", "dev-kmsg", "cgroup-v1", "proc-sys-copy"]) {
    assert.ok(kinds.includes(needed as never), `${needed} is planned: ${kinds.join(",")}`);
  }
  // ip_forward is written before the copy hides the real /proc/sys.
  assert.ok(kinds.indexOf("ip-forward") < kinds.indexOf("proc-sys-copy"));
  const copy = steps.find((s) => s.kind === "proc-sys-copy");
  assert.ok(copy?.kind === "proc-sys-copy");
  assert.equal(copy.entries["kernel/keys/root_maxkeys"], "1000000");
  assert.equal(copy.entries["vm/overcommit_memory"], "1");
  const cgroups = steps.find((s) => s.kind === "cgroup-v1");
  assert.ok(cgroups?.kind === "cgroup-v1");
  assert.ok(cgroups.hierarchies.some((h) => h.includes("memory")));
  assert.ok(cgroups.hierarchies.some((h) => h.includes("devices")));
});

test("ip_forward already on is left alone", async () => {
  const { steps } = await plan("host-kernel", "1");
  assert.ok(!steps.some((s) => s.kind === "ip-forward"));
});

test("runsc old's /proc/sys copy gets kernel/osrelease where it lacks one", async () => {
  const { steps } = await plan("gvisor-runsc-old");
  const copy = steps.find((s) => s.kind === "proc-sys-copy");
  assert.ok(copy?.kind === "proc-sys-copy");
  assert.equal(copy.fallbackEntries["kernel/osrelease"], "4.4.0");
  assert.equal(copy.entries["kernel/pid_max"], undefined, "read-only entries are not invented");
});

test("runsc old: images unpacked by sandkube, the node address on lo, no pod egress NAT", async () => {
  const { config, steps } = await plan("gvisor-runsc-old");
  assert.equal(config.imageUnpack, "without-mounts");
  assert.equal(config.snapshotter, "overlayfs");
  assert.equal(config.hostNetworkOnly, true);
  assert.equal(config.nodeLink, "lo");
  const link = steps.find((s) => s.kind === "node-link");
  assert.ok(link?.kind === "node-link");
  assert.equal(link.link, "lo");
  assert.equal(link.peer, null, "no veth can be made there");
  assert.match(link.because, /it goes on lo because creating a veth pair fails/);
  assert.ok(!steps.some((s) => s.kind === "egress-nat"), "pods leave by the node's own address");

  const newer = await plan("gvisor-runsc-new");
  assert.equal(newer.config.imageUnpack, "containerd");
  assert.equal(newer.config.nodeLink, "sandkube0");
  assert.equal(newer.config.hostNetworkOnly, false);
});

test("--runtime overrides the choice, and auto names its reason", async () => {
  const facts = await replayFacts("host-kernel");
  const adaptations = planAdaptations(facts);
  assert.equal(chooseRuntime("sandkube", facts, adaptations).runtime, "sandkube");
  assert.match(chooseRuntime("auto", facts, adaptations).because, /normal Linux kernel/);
});

test("node names become DNS-1123 names", () => {
  assert.equal(nodeNameFrom("My_Box.local"), "my-box.local");
  assert.equal(nodeNameFrom("__"), "sandkube");
  assert.equal(nodeNameFrom("a".repeat(80)).length, 63);
});

test("components start after what they need and stop in reverse", async () => {
  const { config } = await plan("gvisor-runsc-new");
  const specs = planComponents({
    config,
    layout,
    pathPrefix: ["/p"],
    basePath: "/usr/bin",
    pauseImageTar: "/i/pause.tar",
    sandkubeProxyCommand: ["/usr/bin/node", "/pkg/dist/src/proxy/main.js"],
    importWithoutMountsCommand: ["/usr/bin/node", "/pkg/dist/src/images/import-main.js"],
  });
  const names = specs.map((s) => s.name);
  for (const spec of specs) {
    for (const dependency of spec.after) {
      assert.ok(
        names.indexOf(dependency) < names.indexOf(spec.name),
        `${dependency} before ${spec.name}`,
      );
    }
  }
  assert.equal(stopOrder(specs)[0]?.name, "kubelet");
  const containerd = specs.find((s) => s.name === "containerd");
  assert.ok(
    containerd?.onReady[0]?.includes("/i/pause.tar"),
    "the pause image is imported once containerd is ready",
  );
  assert.ok(
    containerd?.env["PATH"]?.startsWith("/p:/b:"),
    "iptables dir, then the shim's folder, lead PATH",
  );
});

test("gVisor runs sandkube-proxy and SNATs per uplink; the host runs kube-proxy and masquerades", async () => {
  const gvisor = await plan("gvisor-runsc-new");
  assert.equal(gvisor.config.serviceProxy, "sandkube-proxy");
  const gvisorEgress = gvisor.steps.find((s) => s.kind === "egress-nat");
  assert.ok(gvisorEgress?.kind === "egress-nat");
  assert.match(gvisorEgress.iptables, /iptables-legacy$/);
  assert.deepEqual(gvisorEgress.rules, [
    ["-d", "10.244.0.0/16", "-j", "RETURN"],
    ["-s", "10.244.0.0/16", "-o", "eth0", "-p", "tcp", "-j", "SNAT", "--to-source", "192.0.2.2"],
    ["-s", "10.244.0.0/16", "-o", "eth0", "-p", "udp", "-j", "SNAT", "--to-source", "192.0.2.2"],
  ]);
  const specs = planComponents({
    config: gvisor.config,
    layout,
    pathPrefix: [],
    basePath: "/usr/bin",
    pauseImageTar: "/i/pause.tar",
    sandkubeProxyCommand: ["/usr/bin/node", "/pkg/dist/src/proxy/main.js"],
    importWithoutMountsCommand: ["/usr/bin/node", "/pkg/dist/src/images/import-main.js"],
  });
  const proxy = specs.find((s) => s.name === "sandkube-proxy");
  assert.deepEqual(proxy?.argv.slice(0, 4), [
    "/usr/bin/node",
    "/pkg/dist/src/proxy/main.js",
    "--kubeconfig",
    "/var/lib/sandkube/kubeconfig/kube-proxy.conf",
  ]);
  assert.ok(!specs.some((s) => s.name === "kube-proxy"));

  const host = await plan("host-kernel");
  assert.equal(host.config.serviceProxy, "kube-proxy");
  const hostEgress = host.steps.find((s) => s.kind === "egress-nat");
  assert.ok(hostEgress?.kind === "egress-nat");
  assert.deepEqual(hostEgress.rules[1], ["-s", "10.244.0.0/16", "-j", "MASQUERADE"]);
});

test("--service-proxy overrides the probe either way", () => {
  const missing = [{ id: "service-proxy", because: "no comment match" }] as unknown as Adaptation[];
  assert.deepEqual(chooseServiceProxy("auto", missing), {
    serviceProxy: "sandkube-proxy",
    because: "no comment match",
  });
  assert.equal(chooseServiceProxy("auto", []).serviceProxy, "kube-proxy");
  assert.equal(chooseServiceProxy("sandkube-proxy", []).serviceProxy, "sandkube-proxy");
  assert.equal(chooseServiceProxy("kube-proxy", missing).serviceProxy, "kube-proxy");
});

test("uplinks skip loopback, the node's links, pod links and cluster addresses", () => {
  const json = JSON.stringify([
    { ifname: "lo", addr_info: [{ family: "inet", local: "127.0.0.1" }] },
    {
      ifname: "eth0",
      addr_info: [
        { family: "inet6", local: "fe80::1" },
        { family: "inet", local: "172.16.0.5" },
      ],
    },
    { ifname: "sandkube0", addr_info: [{ family: "inet", local: "10.244.0.1" }] },
    { ifname: "sk0123456789a", addr_info: [{ family: "inet", local: "10.244.0.1" }] },
    { ifname: "wg0", addr_info: [{ family: "inet", local: "10.244.9.9" }] },
    { ifname: "ens4" },
  ]);
  assert.deepEqual(
    uplinksFromIpJson(json, (a) => a.startsWith("10.244.")),
    [{ name: "eth0", address: "172.16.0.5" }],
  );
});

test("restart delays double up to 30 s", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map(restartDelayMs),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000],
  );
});

test("mountsBelow lists the data dir's mounts deepest first and nothing outside it", () => {
  const mounts = [
    { target: "/var/lib/sandkube/kubelet", fsType: "ext4" },
    { target: "/var/lib/sandkube/kubelet/pods/x/volumes/y", fsType: "tmpfs" },
    { target: "/var/lib/sandkube-other", fsType: "tmpfs" },
    { target: "/proc/sys", fsType: "tmpfs" },
  ];
  assert.deepEqual(mountsBelow(mounts, "/var/lib/sandkube"), [
    "/var/lib/sandkube/kubelet/pods/x/volumes/y",
    "/var/lib/sandkube/kubelet",
  ]);
});
