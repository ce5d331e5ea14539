import assert from "node:assert/strict";
import { test } from "node:test";
import {
  parseAttachmentArgs,
  parseCommand,
  parsePluginConf,
  type PluginConf,
} from "../../src/cni/conf.js";
import { CNI_ERROR, CniError } from "../../src/cni/errors.js";
import { DEFAULT_NETWORK } from "../../src/plan/cluster-config.js";
import { renderCniConflist } from "../../src/plan/cni-config.js";
import { nodeLayout } from "../../src/node/layout.js";
import {
  formatIpv4,
  parseIpv4,
  parseSubnet,
  podAddressCandidates,
  type Ipv4Subnet,
} from "../../src/cni/ipv4.js";
import {
  addResult,
  batchInput,
  failedStep,
  kernelMessage,
  linkNames,
  parseMac,
  planAdd,
  planDel,
  podBatchArgv,
} from "../../src/cni/plan.js";

const NET_CONF = {
  cniVersion: "1.1.0",
  name: "sandkube",
  type: "sandkube-cni",
  subnet: "10.244.0.0/24",
  gateway: "10.244.0.1",
  mtu: 1400,
  ipamDir: "/var/lib/sandkube/cni/ipam",
};

function conf(extra: Record<string, unknown> = {}): PluginConf {
  return parsePluginConf({ ...NET_CONF, ...extra });
}

function subnet(text: string): Ipv4Subnet {
  const parsed = parseSubnet(text);
  assert.ok(parsed, text);
  return parsed;
}

function rejects(extra: Record<string, unknown>, code: number, pattern: RegExp): void {
  assert.throws(
    () => conf(extra),
    (error: unknown) =>
      error instanceof CniError && error.code === code && pattern.test(error.message),
    JSON.stringify(extra),
  );
}

test("ipv4: parses, formats and masks", () => {
  assert.equal(parseIpv4("10.244.0.1"), 0x0af40001);
  assert.equal(formatIpv4(0x0af400ff), "10.244.0.255");
  assert.equal(formatIpv4(0xffffffff), "255.255.255.255");
  for (const bad of ["10.244.0", "10.244.0.256", "1.2.3.04", "a.b.c.d", "10.244.0.1 "]) {
    assert.equal(parseIpv4(bad), undefined, bad);
  }
  assert.deepEqual(parseSubnet("10.244.0.0/24"), { network: 0x0af40000, prefix: 24 });
  assert.equal(parseSubnet("10.244.0.5/24"), undefined, "host bits set");
  assert.equal(parseSubnet("10.244.0.0/33"), undefined);
  assert.equal(parseSubnet("10.244.0.0"), undefined);
});

test("ipv4: candidates skip network, gateway and broadcast, and start after the last reserved", () => {
  const net = subnet("10.0.0.0/29");
  const gateway = parseIpv4("10.0.0.1") ?? 0;
  const all = [...podAddressCandidates(net, gateway)].map(formatIpv4);
  assert.deepEqual(all, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  const afterFour = [...podAddressCandidates(net, gateway, parseIpv4("10.0.0.4"))].map(formatIpv4);
  assert.deepEqual(afterFour, ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
  const hintOutside = [...podAddressCandidates(net, gateway, parseIpv4("192.168.0.1"))];
  assert.deepEqual(hintOutside.map(formatIpv4), all);
  assert.deepEqual(
    [...podAddressCandidates(subnet("10.0.0.0/30"), parseIpv4("10.0.0.1") ?? 0)],
    [parseIpv4("10.0.0.2")],
  );
});

test("conf: accepts the rendered shape and names each bad field", () => {
  const parsed = conf();
  assert.equal(parsed.cniVersion, "1.1.0");
  assert.equal(parsed.mtu, 1400);
  assert.equal(formatIpv4(parsed.gateway), "10.244.0.1");
  rejects({ cniVersion: "0.4.0" }, CNI_ERROR.incompatibleVersion, /0\.4\.0 is not supported/);
  rejects({ type: "bridge" }, CNI_ERROR.invalidConfig, /"type" is "bridge"/);
  rejects({ subnet: "10.244.0.0/31" }, CNI_ERROR.invalidConfig, /"subnet"/);
  rejects({ subnet: "10.244.0.1/24" }, CNI_ERROR.invalidConfig, /"subnet"/);
  rejects({ gateway: "10.245.0.1" }, CNI_ERROR.invalidConfig, /"gateway".*inside "subnet"/);
  rejects({ gateway: "10.244.0.255" }, CNI_ERROR.invalidConfig, /"gateway"/);
  rejects({ mtu: 1400.5 }, CNI_ERROR.invalidConfig, /"mtu".*uplink/);
  rejects({ mtu: "1400" }, CNI_ERROR.invalidConfig, /"mtu"/);
  rejects({ ipamDir: "relative/dir" }, CNI_ERROR.invalidConfig, /"ipamDir".*absolute/);
  rejects(
    { "cni.dev/valid-attachments": [{ containerID: "a" }] },
    CNI_ERROR.invalidConfig,
    /valid-attachments/,
  );
});

test("args: the environment is checked as SPEC.md defines it; DEL may have no netns", () => {
  const env = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "abc123",
    CNI_NETNS: "/var/run/netns/cni-1234",
    CNI_IFNAME: "eth0",
  };
  assert.equal(parseCommand(env), "ADD");
  assert.deepEqual(parseAttachmentArgs("ADD", env), {
    command: "ADD",
    containerId: "abc123",
    netns: "/var/run/netns/cni-1234",
    ifname: "eth0",
  });
  const invalidEnv = (command: "ADD" | "DEL", extra: Record<string, string>): void =>
    assert.throws(
      () => parseAttachmentArgs(command, { ...env, ...extra }),
      (error: unknown) => error instanceof CniError && error.code === CNI_ERROR.invalidEnvironment,
      JSON.stringify(extra),
    );
  invalidEnv("ADD", { CNI_CONTAINERID: "-starts-with-dash" });
  invalidEnv("ADD", { CNI_IFNAME: "sixteen-chars-xx" });
  invalidEnv("ADD", { CNI_IFNAME: "eth:0" });
  invalidEnv("ADD", { CNI_NETNS: "" });
  invalidEnv("ADD", { CNI_NETNS: "relative/ns" });
  invalidEnv("ADD", { CNI_NETNS: "/var/run/netns/with space" });
  assert.equal(parseAttachmentArgs("DEL", { ...env, CNI_NETNS: "" }).netns, "");
  assert.throws(() => parseCommand({ CNI_COMMAND: "FROB" }), /CNI_COMMAND is "FROB"/);
});

test("names: deterministic per container and interface, short enough for the kernel", () => {
  const a = linkNames({ containerId: "abc", ifname: "eth0" });
  assert.deepEqual(a, linkNames({ containerId: "abc", ifname: "eth0" }));
  assert.match(a.host, /^sk[0-9a-f]{11}$/);
  assert.match(a.peer, /^sp[0-9a-f]{11}$/);
  assert.equal(a.host.slice(2), a.peer.slice(2));
  assert.notEqual(a.host, linkNames({ containerId: "abc", ifname: "net1" }).host);
  assert.notEqual(a.host, linkNames({ containerId: "abd", ifname: "eth0" }).host);
  // The separator keeps ("ab","ceth0") and ("abc","eth0") apart.
  assert.notEqual(a.host, linkNames({ containerId: "ab", ifname: "ceth0" }).host);
});

test("planAdd: routed veth, MTU on both ends, no route with a source address", () => {
  const attachment = { containerId: "abc", ifname: "eth0" };
  const plan = planAdd({
    conf: conf(),
    attachment,
    netns: "/var/run/netns/cni-1",
    podAddress: parseIpv4("10.244.0.7") ?? 0,
  });
  const { host, peer } = linkNames(attachment);
  assert.equal(
    batchInput(plan.node),
    [
      `link add ${host} type veth peer name ${peer}`,
      `link set ${peer} mtu 1400`,
      `link set ${host} mtu 1400`,
      `link set ${peer} netns /var/run/netns/cni-1`,
      `addr add 10.244.0.1/32 dev ${host}`,
      `link set ${host} up`,
      `route add 10.244.0.7/32 dev ${host}`,
      `link show dev ${host}`,
      "",
    ].join("\n"),
  );
  assert.equal(
    batchInput(plan.pod),
    [
      `link set ${peer} name eth0`,
      "addr add 10.244.0.7/32 dev eth0",
      "link set eth0 up",
      "route add 10.244.0.1/32 dev eth0",
      "route add default via 10.244.0.1 dev eth0",
      "link show dev eth0",
      "",
    ].join("\n"),
  );
  // gVisor refuses RTA_PREFSRC (EOPNOTSUPP), hairpin (IFLA_PROTINFO) and promiscuous mode (EINVAL).
  const words = [...plan.node, ...plan.pod].flatMap((step) => step.words);
  for (const refused of ["src", "hairpin", "promisc", "master", "bridge"]) {
    assert.ok(!words.includes(refused), refused);
  }
  assert.deepEqual(planDel(attachment).words, ["link", "del", host]);
  assert.deepEqual(podBatchArgv("/proc/42/ns/net"), [
    "nsenter",
    "--net=/proc/42/ns/net",
    "ip",
    "-batch",
    "-",
  ]);
});

test("failedStep and kernelMessage read iproute2's batch error", () => {
  const plan = planAdd({
    conf: conf(),
    attachment: { containerId: "abc", ifname: "eth0" },
    netns: "/run/netns/x",
    podAddress: parseIpv4("10.244.0.7") ?? 0,
  });
  // iproute2 6.1's words when the kernel refuses a step of `ip -batch -`.
  const stderr = "Error: Nexthop has invalid gateway.\nCommand failed -:5\n";
  assert.equal(
    failedStep(plan.pod, stderr)?.step.what,
    "route everything else through the gateway",
  );
  assert.equal(kernelMessage(stderr), "Error: Nexthop has invalid gateway.");
  assert.equal(failedStep(plan.pod, "nsenter: cannot open /x: No such file"), undefined);
  assert.equal(failedStep(plan.pod, "Command failed -:99"), undefined);
});

test("parseMac finds the named link's address in `ip link show` output", () => {
  const out =
    "6: sk3966178f504@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc noqueue state UP mode DEFAULT group default qlen 1000\n" +
    "    link/ether 8a:73:88:51:5f:4a brd ff:ff:ff:ff:ff:ff link-netns skcni-manual-a\n";
  assert.equal(parseMac(out, "sk3966178f504"), "8a:73:88:51:5f:4a");
  assert.equal(parseMac(out, "eth0"), undefined);
  assert.equal(
    parseMac(
      "5: eth0: <UP> mtu 1400\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n",
      "eth0",
    ),
    "02:00:00:00:00:01",
  );
});

test("addResult: the spec's shape; mtu on interfaces only from 1.1.0", () => {
  const attachment = { containerId: "abc", ifname: "eth0" };
  const inputs = {
    conf: conf(),
    attachment,
    netns: "/var/run/netns/cni-1",
    podAddress: parseIpv4("10.244.0.7") ?? 0,
  };
  const { host } = linkNames(attachment);
  assert.deepEqual(addResult(inputs, { host: "02:00:00:00:00:01", pod: "02:00:00:00:00:02" }), {
    cniVersion: "1.1.0",
    interfaces: [
      { name: host, mac: "02:00:00:00:00:01", mtu: 1400 },
      { name: "eth0", mac: "02:00:00:00:00:02", mtu: 1400, sandbox: "/var/run/netns/cni-1" },
    ],
    ips: [{ address: "10.244.0.7/32", gateway: "10.244.0.1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.244.0.1" }],
    dns: {},
  });
  const v100 = addResult({ ...inputs, conf: conf({ cniVersion: "1.0.0" }) }, {});
  assert.equal(v100.cniVersion, "1.0.0");
  assert.deepEqual(v100.interfaces, [
    { name: host },
    { name: "eth0", sandbox: "/var/run/netns/cni-1" },
  ]);
});

test("conf: the conflist sandkube up renders is what the plugin accepts", () => {
  const conflist = JSON.parse(
    renderCniConflist(
      { podCIDR: DEFAULT_NETWORK.podCIDR, nodeIP: DEFAULT_NETWORK.nodeIP, mtu: 1500 },
      nodeLayout("/var/lib/sandkube"),
    ),
  ) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  // libcni hands each plugin its entry plus the list's cniVersion and name.
  const parsed = parsePluginConf({
    ...conflist.plugins[0],
    cniVersion: conflist.cniVersion,
    name: conflist.name,
  });
  assert.equal(formatIpv4(parsed.gateway), DEFAULT_NETWORK.nodeIP);
  assert.equal(
    `${formatIpv4(parsed.subnet.network)}/${parsed.subnet.prefix}`,
    DEFAULT_NETWORK.podCIDR,
  );
  assert.equal(parsed.ipamDir, nodeLayout("/var/lib/sandkube").cniIpamDir);
  assert.equal(parsed.mtu, 1500);
});
