import assert from "node:assert/strict";
import { test } from "node:test";
import { ensureSuccess, runCommand, type CommandRunner } from "../../src/common/exec.js";
import { parseSubnet } from "../../src/cni/ipv4.js";
import { LinkAddresses } from "../../src/proxy/addresses.js";
import { diffAddresses, type ServiceRule } from "../../src/proxy/desired.js";

// The cluster IPs on a real link, through the real `ip`, inside a network namespace this test
// makes and deletes: the host's own links are never touched.

const isRoot = process.getuid?.() === 0;

function rule(ip: string): ServiceRule {
  return {
    namespace: "default",
    name: `svc-${ip}`,
    portName: "",
    protocol: "TCP",
    clusterIPs: [ip],
    port: 80,
    backends: [],
  };
}

test(
  "cluster IPs are added to and removed from the link; nothing outside the service range is touched",
  { skip: isRoot ? false : "SKIPPED: needs root to make a network namespace" },
  async (t) => {
    const netns = `sk-proxy-addr-${process.pid}`;
    ensureSuccess(await runCommand(["ip", "netns", "add", netns]));
    t.after(() => runCommand(["ip", "netns", "del", netns]));
    const inNetns: CommandRunner = (argv, options) =>
      runCommand(["ip", "netns", "exec", netns, ...argv], options);
    for (const command of [
      // Any link that holds addresses serves (this kernel has no dummy links; `up` uses a veth).
      ["ip", "link", "add", "sandkube0", "type", "bridge"],
      ["ip", "link", "set", "sandkube0", "up"],
      ["ip", "address", "add", "10.244.0.1/24", "dev", "sandkube0"],
      // A leftover of an earlier run inside the range, and a stranger outside it.
      ["ip", "address", "add", "10.96.0.99/32", "dev", "sandkube0"],
      ["ip", "address", "add", "192.168.77.1/32", "dev", "sandkube0"],
    ]) {
      ensureSuccess(await inNetns(command));
    }
    const range = parseSubnet("10.96.0.0/16");
    assert.ok(range);
    const link = new LinkAddresses("sandkube0", range, inNetns);

    assert.deepEqual(await link.current(), ["10.96.0.99"]);
    const wanted = [rule("10.96.0.1"), rule("10.96.0.10"), rule("10.96.3.7")];
    const first = diffAddresses(await link.current(), wanted, range);
    assert.deepEqual(first, {
      add: ["10.96.0.1", "10.96.0.10", "10.96.3.7"],
      remove: ["10.96.0.99"],
    });
    assert.deepEqual(await link.apply(first), ["10.96.0.1", "10.96.0.10", "10.96.3.7"]);

    // Applying a diff twice is harmless: "File exists" does not stop the batch.
    assert.deepEqual(
      await link.apply({ add: ["10.96.0.1", "10.96.0.20"], remove: ["10.96.0.77"] }),
      ["10.96.0.1", "10.96.0.10", "10.96.0.20", "10.96.3.7"],
    );
    assert.deepEqual(await link.apply({ add: [], remove: await link.current() }), []);
    const left = ensureSuccess(
      await inNetns(["ip", "-4", "-o", "address", "show", "dev", "sandkube0"]),
    ).stdout;
    assert.match(left, /inet 10\.244\.0\.1\/24/);
    assert.match(left, /inet 192\.168\.77\.1\/32/);
    assert.doesNotMatch(left, /10\.96\./);

    // A link that is not there is an error naming it.
    await assert.rejects(new LinkAddresses("nosuchlink0", range, inNetns).current(), /nosuchlink0/);
  },
);
