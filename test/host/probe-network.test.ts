import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { runCommand, ensureSuccess } from "../../src/common/exec.js";
import { systemIO, type ProbeIO } from "../../src/probe/io.js";
import { probeNetwork } from "../../src/probe/network.js";
import { probeIptables } from "../../src/probe/iptables.js";
import { probeRegistries } from "../../src/probe/registries.js";

const isRoot = process.getuid?.() === 0;
const NOT_ROOT = "SKIPPED: needs root to create network namespaces (run the host tier as root)";

/**
 * What a probe could leave behind in the caller's namespace: its scratch namespaces (sknet*,
 * skipt*), its links (skveth*, skbr0) or its rules (10.254.0.0/16). Only those lines are kept, so
 * other engineers' tests creating namespaces on this machine at the same time cannot disturb it.
 */
async function scratchLeftovers(): Promise<string[]> {
  const leftovers: string[] = [];
  for (const argv of [
    ["ip", "netns", "list"],
    ["ip", "-o", "link", "show"],
    ["ip", "route", "show"],
    ["iptables-legacy-save"],
    ["iptables-nft-save"],
  ]) {
    const result = ensureSuccess(await runCommand(argv));
    for (const line of result.stdout.split("\n")) {
      if (/\bsk(net|ipt)[0-9a-f]{8}\b|\bsk(veth\d|br0)\b|10\.254\./.test(line)) {
        leftovers.push(`${argv.join(" ")}: ${line}`);
      }
    }
  }
  return leftovers;
}

test("the network probe finds every device operation working on this kernel, and leaves nothing", async (t) => {
  if (!isRoot) return t.skip(NOT_ROOT);
  const before = await scratchLeftovers();
  const facts = await probeNetwork(systemIO());
  assert.deepEqual(await scratchLeftovers(), before);
  assert.deepEqual(facts.scratchNamespace, {
    named: { result: "yes" },
    method: "ip-netns",
    cleanup: { result: "yes" },
  });
  for (const key of [
    "veth",
    "bridge",
    "bridgePromiscuous",
    "vethPromiscuous",
    "vethOnBridge",
    "address",
    "routeViaGateway",
    "routeWithSource",
  ] as const) {
    assert.deepEqual(facts[key], { result: "yes" }, key);
  }
  const forward = (await systemIO().read("/proc/sys/net/ipv4/ip_forward")).ok;
  assert.equal(facts.ipForward.value !== null, forward);
});

/**
 * 2023 gVisor refuses `ip netns add` (net-gvisor-2023 fixture). This host allows it, so the one
 * answer is replaced by that refusal; every other command runs for real in `unshare --net`.
 */
function refusingNamedNamespaces(inner: ProbeIO): ProbeIO {
  return {
    ...inner,
    run: async (argv, options) =>
      argv[0] === "ip" && argv[1] === "netns" && argv[2] === "add"
        ? {
            argv,
            exitCode: 1,
            stdout: "",
            stderr: "mount --bind /run/netns /run/netns failed: Invalid argument\n",
          }
        : inner.run(argv, options),
  };
}

test("without named namespaces the probes fall back to unshare and still see the real kernel", async (t) => {
  if (!isRoot) return t.skip(NOT_ROOT);
  const before = await scratchLeftovers();
  const io = refusingNamedNamespaces(systemIO());
  const network = await probeNetwork(io);
  const iptables = await probeIptables(io);
  assert.deepEqual(await scratchLeftovers(), before);
  assert.equal(network.scratchNamespace.method, "unshare");
  assert.deepEqual(network.scratchNamespace.cleanup, { result: "yes" });
  assert.deepEqual(network.veth, { result: "yes" });
  assert.deepEqual(network.routeWithSource, { result: "yes" });
  assert.deepEqual(network.ipForward.writableInScratch, { result: "yes" });
  assert.equal(iptables.scratchNamespace.method, "unshare");
  assert.deepEqual(iptables.legacy?.capabilities.masquerade, { result: "yes" });
});

test("the iptables probe finds both backends complete on this kernel, and leaves no rule behind", async (t) => {
  if (!isRoot) return t.skip(NOT_ROOT);
  const before = await scratchLeftovers();
  const facts = await probeIptables(systemIO());
  assert.deepEqual(await scratchLeftovers(), before);
  assert.deepEqual(facts.scratchNamespace.cleanup, { result: "yes" });
  const version = ensureSuccess(await runCommand(["iptables", "-V"])).stdout;
  assert.equal(facts.defaultBackend, /nf_tables/.test(version) ? "nf_tables" : "legacy");
  for (const backend of [facts.legacy, facts.nfTables]) {
    assert.ok(backend);
    for (const [name, check] of Object.entries(backend.capabilities)) {
      assert.deepEqual(check, { result: "yes" }, `${backend.binary} ${name}`);
    }
  }
  assert.deepEqual(facts.nftables, { result: "yes" });
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

test("registries: a loopback mirror that answers 401 is reachable, a refusing proxy is the proxy's fault", async (t) => {
  // Both servers are on loopback: this machine reaches no real registry.
  const registry = createServer((request, response) => {
    response.statusCode = request.url === "/v2/" ? 401 : 404;
    response.setHeader("WWW-Authenticate", 'Bearer realm="http://127.0.0.1/token"');
    response.end();
  });
  const proxy = createServer((_request, response) => {
    response.statusCode = 405;
    response.end();
  });
  proxy.on("connect", (_request, socket) => {
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
  });
  t.after(() => {
    registry.close();
    proxy.close();
  });
  const registryPort = await listen(registry);
  const proxyPort = await listen(proxy);
  const facts = await probeRegistries(systemIO(), {
    HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`,
    NO_PROXY: "ghcr.io",
    SANDKUBE_REGISTRY_MIRRORS: `http://127.0.0.1:${registryPort}`,
  });
  const byName = new Map(facts.registries.map((r) => [r.name, r]));
  const quay = byName.get("quay.io");
  assert.deepEqual(quay?.proxy, { proxy: `http://127.0.0.1:${proxyPort}`, source: "HTTPS_PROXY" });
  assert.equal(quay?.result.reachable, false);
  assert.equal(quay?.result.reachable === false ? quay.result.kind : "", "proxy");
  assert.match(quay?.result.reachable === false ? quay.result.error : "", /403/);
  const ghcr = byName.get("ghcr.io");
  assert.deepEqual(ghcr?.proxy, { proxy: null, reason: 'NO_PROXY entry "ghcr.io"' });
  const mirror = byName.get(`127.0.0.1:${registryPort}`);
  assert.equal(mirror?.mirror, true);
  assert.deepEqual(mirror?.result, { reachable: true, httpStatus: 401 });
});
