import assert from "node:assert/strict";
import { test } from "node:test";
import { UsageError } from "../../src/cli/usage-error.js";
import { parseSubnet } from "../../src/cni/ipv4.js";
import { addressBatch, parseServiceAddresses } from "../../src/proxy/addresses.js";
import { parseProxyArgs } from "../../src/proxy/args.js";
import { RoundRobin } from "../../src/proxy/tcp.js";

test("sandkube-proxy's flags and their defaults", () => {
  assert.deepEqual(parseProxyArgs(["--kubeconfig", "/etc/kp.conf"]), {
    kubeconfig: "/etc/kp.conf",
    link: "sandkube0",
    serviceCIDR: "10.96.0.0/16",
    serviceRange: parseSubnet("10.96.0.0/16"),
    healthz: { host: "127.0.0.1", port: 10256 },
  });
  const args = parseProxyArgs([
    "--kubeconfig=/k",
    "--link",
    "dummy1",
    "--service-cidr=10.100.0.0/24",
    "--healthz",
    "0.0.0.0:1234",
  ]);
  assert.equal(args.link, "dummy1");
  assert.equal(args.serviceCIDR, "10.100.0.0/24");
  assert.deepEqual(args.healthz, { host: "0.0.0.0", port: 1234 });
});

test("bad flags are usage errors that name the flag", () => {
  const cases: [string[], RegExp][] = [
    [[], /--kubeconfig FILE is required/],
    [["--kubeconfig"], /--kubeconfig needs a value/],
    [["--kubeconfig", "/k", "--bogus"], /unknown option "--bogus"/],
    [["--kubeconfig", "/k", "--service-cidr", "10.96.0.1/16"], /--service-cidr "10.96.0.1\/16"/],
    [["--kubeconfig", "/k", "--service-cidr", "fd00::/108"], /--service-cidr/],
    [["--kubeconfig", "/k", "--healthz", "10256"], /--healthz "10256"/],
    [["--kubeconfig", "/k", "--healthz", "localhost:10256"], /--healthz/],
    [["--kubeconfig", "/k", "--healthz", "127.0.0.1:70000"], /--healthz/],
    [["--kubeconfig", "/k", "--link", "a/b"], /--link "a\/b"/],
    [["--kubeconfig", "/k", "--link", "a-very-long-link-name"], /--link/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseProxyArgs(argv),
      (error: unknown) => error instanceof UsageError && message.test(error.message),
      argv.join(" "),
    );
  }
});

test("only /32 addresses inside the service range are read from `ip -j addr` as the proxy's", () => {
  // Shape of `ip -j -4 address show dev sandkube0` (iproute2 6.1, Debian 12).
  const json = JSON.stringify([
    {
      ifindex: 5,
      ifname: "sandkube0",
      addr_info: [
        { family: "inet", local: "10.244.0.1", prefixlen: 24, scope: "global" },
        { family: "inet", local: "10.96.0.10", prefixlen: 32, scope: "global" },
        { family: "inet", local: "10.96.0.1", prefixlen: 32, scope: "global" },
        { family: "inet", local: "10.96.5.0", prefixlen: 24, scope: "global" },
        { family: "inet", local: "10.97.0.1", prefixlen: 32, scope: "global" },
      ],
    },
  ]);
  const range = parseSubnet("10.96.0.0/16");
  assert.ok(range);
  assert.deepEqual(parseServiceAddresses(json, range), ["10.96.0.1", "10.96.0.10"]);
  assert.deepEqual(parseServiceAddresses("", range), []);
  assert.equal(
    addressBatch("sandkube0", { add: ["10.96.0.10"], remove: ["10.96.0.7"] }),
    "address add 10.96.0.10/32 dev sandkube0\naddress del 10.96.0.7/32 dev sandkube0\n",
  );
});

test("round-robin keeps its place when the backend list is replaced", () => {
  const b = (n: number) => ({ ip: `10.244.0.${n}`, port: 80 });
  const rr = new RoundRobin([b(1), b(2), b(3)]);
  assert.deepEqual(
    [rr.pick(1), rr.pick(1), rr.pick(1), rr.pick(1)].map((p) => p[0]?.ip),
    ["10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.0.1"],
  );
  // Retry candidates: the next ones in turn, each at most once.
  assert.deepEqual(
    rr.pick(5).map((x) => x.ip),
    ["10.244.0.2", "10.244.0.3", "10.244.0.1"],
  );
  rr.replace([b(1), b(3)]);
  assert.deepEqual(
    [rr.pick(1), rr.pick(1), rr.pick(1)].map((p) => p[0]?.ip),
    ["10.244.0.1", "10.244.0.3", "10.244.0.1"],
  );
  rr.replace([]);
  assert.deepEqual(rr.pick(3), []);
});
