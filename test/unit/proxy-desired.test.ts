import assert from "node:assert/strict";
import { test } from "node:test";
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import { parseSubnet } from "../../src/cni/ipv4.js";
import {
  describeRuleChanges,
  desiredListeners,
  desiredRules,
  diffAddresses,
  diffListeners,
  type ServiceRule,
} from "../../src/proxy/desired.js";

// Objects shaped as the API server returns them (field names from the official client's models).

function service(
  name: string,
  spec: V1Service["spec"],
  labels: Record<string, string> = {},
  namespace = "default",
): V1Service {
  return { metadata: { name, namespace, labels }, spec };
}

interface EndpointInput {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

function slice(
  name: string,
  serviceName: string,
  ports: { name?: string; port: number; protocol?: string }[],
  endpoints: EndpointInput[],
  addressType = "IPv4",
  namespace = "default",
): V1EndpointSlice {
  return {
    addressType,
    metadata: { name, namespace, labels: { "kubernetes.io/service-name": serviceName } },
    ports,
    endpoints: endpoints.map(({ ip, ...conditions }) => ({
      addresses: [ip],
      conditions: Object.keys(conditions).length === 0 ? undefined : conditions,
    })),
  };
}

const web = service("web", {
  type: "ClusterIP",
  clusterIP: "10.96.12.3",
  clusterIPs: ["10.96.12.3"],
  ports: [
    { name: "http", port: 80, protocol: "TCP", targetPort: 8080 },
    { name: "metrics", port: 9090, protocol: "TCP", targetPort: 9090 },
  ],
});

test("Service ports are matched to EndpointSlice ports by name, over every slice of the Service", () => {
  const { rules, unsupported } = desiredRules(
    [web],
    [
      // Slices list ports in their own order; the name is what ties them to the Service port.
      slice(
        "web-a",
        "web",
        [
          { name: "metrics", port: 9090 },
          { name: "http", port: 8080 },
        ],
        [{ ip: "10.244.0.7" }, { ip: "10.244.0.5", ready: true }],
      ),
      slice(
        "web-b",
        "web",
        [{ name: "http", port: 8080, protocol: "TCP" }],
        [{ ip: "10.244.0.6" }],
      ),
      // Another Service's slice with the same port name is not mixed in.
      slice("other-a", "other", [{ name: "http", port: 8080 }], [{ ip: "10.244.0.99" }]),
    ],
  );
  assert.deepEqual(unsupported, []);
  assert.deepEqual(rules, [
    {
      namespace: "default",
      name: "web",
      portName: "http",
      protocol: "TCP",
      clusterIPs: ["10.96.12.3"],
      port: 80,
      backends: [
        { ip: "10.244.0.5", port: 8080 },
        { ip: "10.244.0.6", port: 8080 },
        { ip: "10.244.0.7", port: 8080 },
      ],
    },
    {
      namespace: "default",
      name: "web",
      portName: "metrics",
      protocol: "TCP",
      clusterIPs: ["10.96.12.3"],
      port: 9090,
      backends: [
        { ip: "10.244.0.5", port: 9090 },
        { ip: "10.244.0.7", port: 9090 },
      ],
    },
  ]);
});

test("not-ready and terminating endpoints are left out; duplicates across slices count once", () => {
  const { rules } = desiredRules(
    [web],
    [
      slice(
        "web-a",
        "web",
        [{ name: "http", port: 8080 }],
        [
          { ip: "10.244.0.5", ready: true, serving: true, terminating: false },
          { ip: "10.244.0.6", ready: false, serving: false },
          // Serving but terminating: the controller reports ready false, and it is not used.
          { ip: "10.244.0.7", ready: false, serving: true, terminating: true },
          { ip: "10.244.0.8", serving: true, terminating: true },
        ],
      ),
      slice("web-b", "web", [{ name: "http", port: 8080 }], [{ ip: "10.244.0.5" }]),
      // Only IPv4 slices feed an IPv4 proxy.
      slice("web-v6", "web", [{ name: "http", port: 8080 }], [{ ip: "fd00::5" }], "IPv6"),
    ],
  );
  assert.deepEqual(rules[0]?.backends, [{ ip: "10.244.0.5", port: 8080 }]);
});

test("headless, ExternalName and Services owned by another proxy are skipped; SCTP is reported", () => {
  const { rules, unsupported } = desiredRules(
    [
      service("headless", { clusterIP: "None", clusterIPs: ["None"], ports: [{ port: 80 }] }),
      service("external", { type: "ExternalName", externalName: "example.test" }),
      service(
        "elsewhere",
        { clusterIP: "10.96.0.50", ports: [{ port: 80 }] },
        { "service.kubernetes.io/service-proxy-name": "other-proxy" },
      ),
      service("signalling", {
        clusterIP: "10.96.0.60",
        ports: [
          { name: "sctp", port: 3868, protocol: "SCTP" },
          { name: "tcp", port: 3868, protocol: "TCP" },
        ],
      }),
      service("v6only", { clusterIPs: ["fd00:96::5"], ports: [{ port: 80 }] }),
    ],
    [],
  );
  assert.deepEqual(
    rules.map((rule) => `${rule.name}:${rule.portName}/${rule.protocol}`),
    ["signalling:tcp/TCP"],
  );
  assert.deepEqual(unsupported, [
    { namespace: "default", name: "signalling", portName: "sctp", reason: "protocol SCTP" },
    {
      namespace: "default",
      name: "v6only",
      portName: "",
      reason: "no IPv4 cluster IP (IPv4 only)",
    },
  ]);
});

test("a NodePort Service gets a socket on its cluster IP and one on every address; UDP is kept apart", () => {
  const dns = service("dns", {
    type: "NodePort",
    clusterIPs: ["10.96.0.10", "fd00:96::a"],
    ports: [
      { name: "dns", port: 53, protocol: "UDP", nodePort: 30053 },
      { name: "dns-tcp", port: 53, protocol: "TCP", nodePort: 30053 },
    ],
  });
  const { rules } = desiredRules(
    [dns],
    [
      slice(
        "dns-a",
        "dns",
        [
          { name: "dns", port: 5353, protocol: "UDP" },
          { name: "dns-tcp", port: 5353, protocol: "TCP" },
        ],
        [{ ip: "10.244.0.9" }],
      ),
    ],
  );
  assert.deepEqual(rules[0]?.clusterIPs, ["10.96.0.10"], "IPv6 cluster IPs are not served");
  assert.equal(rules[0]?.nodePort, 30053);
  const { listeners, conflicts } = desiredListeners(rules);
  assert.deepEqual(conflicts, []);
  assert.deepEqual(
    listeners.map((l) => [l.key, l.rule, l.backends]),
    [
      ["UDP 10.96.0.10:53", "default/dns:dns", [{ ip: "10.244.0.9", port: 5353 }]],
      ["UDP 0.0.0.0:30053", "default/dns:dns", [{ ip: "10.244.0.9", port: 5353 }]],
      ["TCP 10.96.0.10:53", "default/dns:dns-tcp", [{ ip: "10.244.0.9", port: 5353 }]],
      ["TCP 0.0.0.0:30053", "default/dns:dns-tcp", [{ ip: "10.244.0.9", port: 5353 }]],
    ],
  );
  // A ClusterIP Service that carries a stale nodePort field does not open one.
  const plain = desiredRules(
    [
      service("plain", {
        type: "ClusterIP",
        clusterIP: "10.96.0.11",
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    ],
    [],
  );
  assert.equal(plain.rules[0]?.nodePort, undefined);
  assert.deepEqual(plain.rules[0]?.backends, []);
});

test("two Services asking for the same NodePort: the first keeps it and the clash is reported", () => {
  const { rules } = desiredRules(
    [
      service("a", {
        type: "NodePort",
        clusterIP: "10.96.0.21",
        ports: [{ port: 80, nodePort: 30080 }],
      }),
      service("b", {
        type: "NodePort",
        clusterIP: "10.96.0.22",
        ports: [{ port: 80, nodePort: 30080 }],
      }),
    ],
    [],
  );
  const { listeners, conflicts } = desiredListeners(rules);
  assert.deepEqual(
    listeners.map((l) => `${l.key} ${l.rule}`),
    ["TCP 10.96.0.21:80 default/a", "TCP 0.0.0.0:30080 default/a", "TCP 10.96.0.22:80 default/b"],
  );
  assert.deepEqual(conflicts, ["TCP 0.0.0.0:30080 is wanted by default/b and by default/a"]);
});

test("the listener diff opens, closes and swaps backends in place", () => {
  const rules = (backends: string[]): ServiceRule[] => [
    {
      namespace: "default",
      name: "web",
      portName: "",
      protocol: "TCP",
      clusterIPs: ["10.96.0.30"],
      port: 80,
      backends: backends.map((ip) => ({ ip, port: 8080 })),
    },
  ];
  const { listeners } = desiredListeners(rules(["10.244.0.5", "10.244.0.6"]));
  const empty = diffListeners(new Map(), listeners);
  assert.deepEqual(
    empty.open.map((l) => l.key),
    ["TCP 10.96.0.30:80"],
  );
  assert.deepEqual([empty.close, empty.update], [[], []]);

  const current = new Map([
    [
      "TCP 10.96.0.30:80",
      [
        { ip: "10.244.0.5", port: 8080 },
        { ip: "10.244.0.6", port: 8080 },
      ],
    ],
    ["UDP 10.96.0.31:53", [{ ip: "10.244.0.9", port: 53 }]],
  ]);
  const same = diffListeners(current, listeners);
  assert.deepEqual([same.open, same.update, same.close], [[], [], ["UDP 10.96.0.31:53"]]);

  const changed = diffListeners(current, desiredListeners(rules(["10.244.0.6"])).listeners);
  assert.deepEqual(changed.open, []);
  assert.deepEqual(
    changed.update.map((l) => [l.key, l.backends]),
    [["TCP 10.96.0.30:80", [{ ip: "10.244.0.6", port: 8080 }]]],
  );
});

test("the address diff only ever touches addresses inside the service range", () => {
  const range = parseSubnet("10.96.0.0/16");
  assert.ok(range);
  const rule = (ip: string): ServiceRule => ({
    namespace: "default",
    name: ip,
    portName: "",
    protocol: "TCP",
    clusterIPs: [ip],
    port: 80,
    backends: [],
  });
  const diff = diffAddresses(
    // The node's own address and a stranger outside the range are on the link too.
    ["10.244.0.1", "192.168.7.7", "10.96.0.1", "10.96.0.40"],
    [rule("10.96.0.1"), rule("10.96.0.10"), rule("172.16.0.5")],
    range,
  );
  assert.deepEqual(diff, { add: ["10.96.0.10"], remove: ["10.96.0.40"] });
});

test("rule changes are logged one line per Service port", () => {
  const before: ServiceRule[] = [
    {
      namespace: "default",
      name: "web",
      portName: "http",
      protocol: "TCP",
      clusterIPs: ["10.96.12.3"],
      port: 80,
      backends: [
        { ip: "10.244.0.5", port: 8080 },
        { ip: "10.244.0.6", port: 8080 },
      ],
    },
    {
      namespace: "default",
      name: "gone",
      portName: "",
      protocol: "UDP",
      clusterIPs: ["10.96.0.50"],
      port: 53,
      backends: [],
    },
  ];
  const web3 = {
    ...(before[0] as ServiceRule),
    backends: [
      { ip: "10.244.0.5", port: 8080 },
      { ip: "10.244.0.6", port: 8080 },
      { ip: "10.244.0.7", port: 8080 },
    ],
  };
  assert.deepEqual(describeRuleChanges(before, [web3]), [
    "service default/web:http 10.96.12.3:80/TCP -> 3 endpoints",
    "service default/gone 10.96.0.50:53/UDP removed",
  ]);
  assert.deepEqual(describeRuleChanges([web3], [web3]), []);
  assert.deepEqual(describeRuleChanges([], [{ ...web3, nodePort: 30080, backends: [] }]), [
    "service default/web:http 10.96.12.3:80/TCP nodePort 30080 -> 0 endpoints",
  ]);
});
