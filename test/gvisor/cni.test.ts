import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { observed, type Observations } from "../../lab/gvisor-observations.js";
import { repoRootOfScript } from "../../lab/gvisor-run.js";
import { requireLab, scenario } from "./lab.js";

/**
 * lab/gvisor-scenarios/cni.sh inside real runsc: the compiled sandkube-cni invoked as containerd
 * invokes it, on gVisor's own netstack. docs/cni.md quotes the same observations.
 */

const PLUGIN = join(repoRootOfScript(), "dist/bin/sandkube-cni");

async function requirePlugin(t: TestContext): Promise<boolean> {
  try {
    await access(PLUGIN, constants.X_OK);
    return true;
  } catch {
    const reason = `SKIPPED: ${PLUGIN} is missing; run npm run build:cni`;
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return false;
  }
}

function value(obs: Observations, key: string): string {
  const found = observed(obs, key);
  assert.notEqual(found, undefined, `the scenario recorded no "${key}"`);
  return found as string;
}

/** The plugin's stdout and exit status, as cni.sh's `cni` prints them. */
function pluginRun(obs: Observations, key: string): { json: Record<string, unknown>; rc: number } {
  const match = /^(.*) rc=(\d+)$/s.exec(value(obs, key));
  assert.ok(match, `${key}: ${value(obs, key)}`);
  const text = match[1]?.trim() ?? "";
  return {
    json: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
    rc: Number(match[2]),
  };
}

test("runsc (new): two pods reach each other and the node over HTTP; DEL and 100 cycles leave nothing", async (t) => {
  if (!(await requireLab(t, ["runsc"])) || !(await requirePlugin(t))) return;
  const { result, observations: obs } = await scenario("new", "cni");
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(value(obs, "kernel.release"), "4.19.0-gvisor");
  assert.equal(value(obs, "ip_forward"), "1");
  assert.equal(value(obs, "netns.named"), "ok");

  const a = pluginRun(obs, "add:a");
  assert.equal(a.rc, 0, JSON.stringify(a.json));
  assert.deepEqual(a.json["ips"], [
    { address: "10.244.0.2/32", gateway: "10.244.0.1", interface: 1 },
  ]);
  assert.deepEqual(a.json["routes"], [{ dst: "0.0.0.0/0", gw: "10.244.0.1" }]);
  const interfaces = a.json["interfaces"] as { name: string; mac?: string; sandbox?: string }[];
  assert.match(interfaces[0]?.name ?? "", /^sk[0-9a-f]{11}$/);
  assert.equal(interfaces[1]?.sandbox, "/var/run/netns/cni-a");
  assert.match(interfaces[1]?.mac ?? "", /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  assert.equal(pluginRun(obs, "add:b").rc, 0);

  // The routed shape without `src`, which gVisor accepted.
  assert.match(value(obs, "route:a"), /default via 10\.244\.0\.1 dev eth0/);
  assert.match(value(obs, "route:node"), /10\.244\.0\.3 dev sk[0-9a-f]{11} /);
  // Both ends report the same MTU. gVisor reports 1386 for the configured 1400: the link's MTU
  // less the 14-byte Ethernet header, as it shows lo's 65536 as 65522 (docs/cni.md).
  assert.equal(value(obs, "mtu:a:eth0"), value(obs, "mtu:a:host"));
  assert.equal(value(obs, "mtu:a:eth0"), "1386");

  assert.equal(value(obs, "http:a-to-b"), "hello-from-b\n rc=0");
  assert.equal(value(obs, "http:b-to-a"), "hello-from-a\n rc=0");
  assert.equal(value(obs, "http:node-to-a"), "hello-from-a\n rc=0");
  assert.equal(value(obs, "http:node-to-b"), "hello-from-b\n rc=0");
  // Full-size segments with DF set, forwarded by the node from one veth to the other.
  assert.equal(value(obs, "http:a-to-b:big-bytes"), "1048576");

  for (const key of ["del:a", "del:a:again", "del:b:netns-gone"]) {
    assert.deepEqual(pluginRun(obs, key), { json: {}, rc: 0 }, key);
  }
  assert.equal(value(obs, "links.after-two"), value(obs, "links.before"));
  assert.equal(value(obs, "addr_files.after-two"), "0");

  assert.equal(value(obs, "cycles"), "100");
  assert.equal(value(obs, "cycles.failures"), "0");
  assert.equal(value(obs, "links.after"), value(obs, "links.before"));
  assert.equal(value(obs, "addr_files.after"), "0");
  assert.equal(value(obs, "netns.after"), "");
  assert.equal(value(obs, "routes.after"), "0");
});

test("runsc (old): ADD fails with a CNI error naming the missing veth and the netns statfs", async (t) => {
  if (!(await requireLab(t, ["runsc-old"])) || !(await requirePlugin(t))) return;
  const { result, observations: obs } = await scenario("old", "cni");
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(value(obs, "kernel.release"), "4.4.0");
  assert.match(value(obs, "netns.named"), /^failed: /);

  const veth = pluginRun(obs, "add:unshared");
  assert.equal(veth.rc, 1);
  assert.equal(veth.json["cniVersion"], "1.0.0");
  assert.equal(veth.json["code"], 100);
  assert.match(
    String(veth.json["msg"]),
    /^this kernel cannot create a veth pair .*Command "add" is unknown.*B9.*hostNetwork: true/,
  );
  assert.deepEqual(pluginRun(obs, "del:unshared"), { json: {}, rc: 0 });

  // A namespace pinned on a file, as containerd pins it: statfs is what fails first (B10).
  const bound = pluginRun(obs, "add:bound");
  assert.equal(bound.rc, 1, value(obs, "add:bound"));
  assert.equal(bound.json["code"], 100);
  assert.match(
    String(bound.json["msg"]),
    /statfs\(2\) on the network namespace file .*ENOSYS.*B10/,
  );
  assert.deepEqual(pluginRun(obs, "del:bound"), { json: {}, rc: 0 });
  assert.equal(value(obs, "addr_files.after"), "0");
});
