import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "../../src/common/exec.js";
import {
  defaultRouteInterface,
  defaultStorageClasses,
  dnsScript,
  formatTally,
  isClusterLink,
  parseConnectingTo,
  parseEndpointSlices,
  parseLoopOutput,
  parseNslookup,
  parseResolvConf,
  parseSections,
  parseService,
  pickEgressAddress,
  readyEndpointPods,
  requestFailure,
  requestLoopScript,
  sectionExit,
  shellQuote,
  tally,
  waitForFileScript,
  type InterfaceAddress,
} from "../../src/verify/probes.js";

const BUSYBOX = "/usr/bin/busybox";

function needBusybox(t: TestContext): boolean {
  if (existsSync(BUSYBOX)) return true;
  const reason = `SKIPPED: no ${BUSYBOX} (Debian's busybox-static), which the pods run`;
  process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
  t.skip(reason);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Pure readers

test("parseLoopOutput reads request lines, phases and how the loop ended", () => {
  const out = [
    "sk-req 0 - 0 web-a",
    "sk-req 1 - 1 wget: can't connect to remote host (10.96.0.5): Connection refused",
    "Terminated",
    "sk-req 2 - 143",
    "sk-gave-up 10",
    "sk-end 3",
    "",
  ].join("\n");
  const loop = parseLoopOutput(out);
  assert.equal(loop.requests.length, 3);
  assert.deepEqual(loop.requests[0], { index: 0, phase: "-", exitCode: 0, body: "web-a" });
  assert.equal(
    loop.requests[1]?.body,
    "wget: can't connect to remote host (10.96.0.5): Connection refused",
  );
  assert.equal(loop.requests[2]?.body, "");
  assert.equal(loop.gaveUp, true);
  assert.equal(loop.ended, true);
  assert.equal(loop.stopped, false);
  const cut = parseLoopOutput(
    "sk-req 0 before 0 web-a\nsk-req 1 after 0 web-b\nsk-req 2 sideways 0 x\n",
  );
  assert.deepEqual(
    cut.requests.map((r) => r.phase),
    ["before", "after"],
    "a line with an unknown phase is not a request",
  );
  assert.equal(cut.ended, false, "no sk-end: kubectl exec ended first");
});

test("tally counts per replica, strangers and failures; formatTally says it in one line", () => {
  const loop = parseLoopOutput(
    [
      "sk-req 0 - 0 web-a",
      "sk-req 1 - 0 web-b",
      "sk-req 2 - 0 web-a",
      "sk-req 3 - 0 other-pod",
      "sk-req 4 - 1 wget: bad address 'web.ns.svc.cluster.local:80'",
      "sk-req 5 - 143",
      "sk-req 6 - 143",
      "sk-req 7 - 0",
    ].join("\n"),
  );
  const t = tally(loop.requests, ["web-a", "web-b", "web-c"], 5);
  assert.equal(t.total, 8);
  assert.equal(t.answered, 4);
  assert.equal(t.failed, 4);
  assert.deepEqual(t.perReplica, [
    ["web-a", 2],
    ["web-b", 1],
    ["web-c", 0],
  ]);
  assert.deepEqual(t.strangers, [["other-pod", 1]]);
  assert.deepEqual(t.failures, [
    ["no answer within 5 s", 2],
    ["bad address 'web.ns.svc.cluster.local:80'", 1],
    ["empty answer", 1],
  ]);
  const text = formatTally(t);
  assert.match(text, /^4 of 8 requests answered \(web-a 2, web-b 1, web-c 0\)/);
  assert.match(text, /answers from no Ready replica: "other-pod" x1/);
  assert.match(text, /failures: 2x no answer within 5 s; 1x bad address/);
  assert.equal(
    requestFailure({ index: 0, phase: "-", exitCode: 1, body: "" }, 5),
    "wget exit status 1",
  );
});

test("parseNslookup takes the answers, not the server's own address, and keeps the errors", () => {
  // busybox 1.35's output for `nslookup web` with a search list, as seen on this host.
  const out = [
    "Server:\t\t10.96.0.10",
    "Address:\t10.96.0.10:53",
    "",
    "Non-authoritative answer:",
    "Name:\tweb.ns1.svc.cluster.local",
    "Address: 10.96.5.5",
    "",
    "** server can't find web.svc.cluster.local: NXDOMAIN",
    "",
    "Non-authoritative answer:",
    "",
    "** server can't find web.svc.cluster.local: NXDOMAIN",
    "",
  ].join("\n");
  const answer = parseNslookup(out);
  assert.deepEqual(answer.addresses, ["10.96.5.5"]);
  assert.deepEqual(answer.errors, ["server can't find web.svc.cluster.local: NXDOMAIN"]);
  const none = parseNslookup(
    "nslookup: write to '127.0.0.2': Connection refused\n;; connection timed out; no servers could be reached\n",
  );
  assert.deepEqual(none.addresses, []);
  assert.deepEqual(none.errors, [
    "nslookup: write to '127.0.0.2': Connection refused",
    "connection timed out; no servers could be reached",
  ]);
  assert.deepEqual(
    parseNslookup("Name:\tx\nAddress: 2001:db8::1\nAddress: 192.0.2.1\n").addresses,
    ["192.0.2.1"],
    "IPv4 only",
  );
});

test("parseConnectingTo reads what libc resolved from busybox wget's banner", () => {
  assert.equal(
    parseConnectingTo(
      "Connecting to kubernetes.default:443 (10.96.0.1:443)\nwget: server returned error: HTTP/1.0 400 Bad Request\n",
    ),
    "10.96.0.1",
  );
  assert.equal(parseConnectingTo("wget: bad address 'kubernetes.default:443'\n"), undefined);
});

test("parseResolvConf, parseSections and sectionExit", () => {
  const r = parseResolvConf(
    "search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
  );
  assert.deepEqual(r.nameservers, ["10.96.0.10"]);
  assert.deepEqual(r.search, ["ns1.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
  assert.deepEqual(r.options, ["ndots:5"]);
  const sections = parseSections(
    "sk-section 0\nName:\tweb\nAddress: 10.96.5.5\nsk-exit 1\nsk-section 1\nsk-exit 143\nsk-section resolv\nnameserver 10.96.0.10\n",
  );
  assert.deepEqual([...sections.keys()], ["0", "1", "resolv"]);
  assert.equal(sectionExit(sections.get("0") ?? ""), 1);
  assert.equal(sectionExit(sections.get("1") ?? ""), 143);
  assert.equal(sectionExit("no status here"), undefined);
  assert.match(sections.get("resolv") ?? "", /nameserver 10\.96\.0\.10/);
});

test("parseService and parseEndpointSlices read what the checks need", () => {
  const svc = parseService(
    JSON.stringify({
      spec: {
        clusterIP: "10.96.3.4",
        ports: [{ name: "http", port: 80, protocol: "TCP", nodePort: 31234 }],
      },
    }),
  );
  assert.equal(svc.clusterIP, "10.96.3.4");
  assert.deepEqual(svc.ports, [{ name: "http", port: 80, protocol: "TCP", nodePort: 31234 }]);
  assert.equal(parseService(JSON.stringify({ spec: { clusterIP: "None" } })).clusterIP, undefined);
  const eps = parseEndpointSlices(
    JSON.stringify({
      items: [
        {
          endpoints: [
            {
              addresses: ["10.244.0.5"],
              conditions: { ready: true },
              targetRef: { kind: "Pod", name: "web-a" },
            },
            {
              addresses: ["10.244.0.6"],
              conditions: { ready: false, terminating: true },
              targetRef: { kind: "Pod", name: "web-b" },
            },
          ],
        },
        { endpoints: [{ addresses: ["10.244.0.7"], targetRef: { kind: "Pod", name: "web-c" } }] },
        {},
      ],
    }),
  );
  assert.equal(eps.length, 3);
  assert.equal(eps[1]?.terminating, true);
  assert.deepEqual(readyEndpointPods(eps), ["web-a", "web-c"], "no ready condition means ready");
});

test("defaultStorageClasses finds the annotated default", () => {
  const list = {
    items: [
      { metadata: { name: "slow" } },
      {
        metadata: {
          name: "local-path",
          annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
        },
      },
      {
        metadata: {
          name: "off",
          annotations: { "storageclass.kubernetes.io/is-default-class": "false" },
        },
      },
    ],
  };
  assert.deepEqual(defaultStorageClasses(JSON.stringify(list)), ["local-path"]);
  assert.deepEqual(defaultStorageClasses(JSON.stringify({ items: [] })), []);
});

test("egress: the default route's interface, and an address outside the cluster's ranges", () => {
  const route = [
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
    "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
    "eth1\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0",
  ].join("\n");
  assert.equal(defaultRouteInterface(route), "eth1");
  assert.equal(defaultRouteInterface(route.split("\n").slice(0, 2).join("\n")), undefined);
  assert.equal(isClusterLink("sandkube0"), true);
  assert.equal(isClusterLink("sandkube0p"), true);
  assert.equal(isClusterLink("sk0123456789a"), true);
  assert.equal(isClusterLink("eth0"), false);
  const a = (iface: string, address: string, internal = false): InterfaceAddress => ({
    interface: iface,
    address,
    family: address.includes(":") ? "IPv6" : "IPv4",
    internal,
  });
  const ranges = ["10.244.0.0/16", "10.96.0.0/16"];
  const addresses = [
    a("lo", "127.0.0.1", true),
    a("sandkube0", "10.244.0.1"),
    a("sk0123456789a", "10.244.0.1"),
    a("eth0", "192.168.0.5"),
    a("eth1", "fe80::1"),
    a("eth1", "192.168.1.7"),
    a("weird", "10.96.7.7"),
  ];
  assert.deepEqual(pickEgressAddress(addresses, "eth1", ranges), a("eth1", "192.168.1.7"));
  assert.deepEqual(pickEgressAddress(addresses, undefined, ranges), a("eth0", "192.168.0.5"));
  assert.equal(
    pickEgressAddress(addresses.slice(0, 3), "eth0", ranges),
    undefined,
    "the lab's gVisor sandbox: only lo and sandkube's links",
  );
  assert.throws(() => pickEgressAddress(addresses, "eth0", ["10.0.0.0/33"]), /not an IPv4 CIDR/);
});

test("scripts refuse words the shell would read differently; shellQuote quotes anything", () => {
  assert.throws(
    () =>
      requestLoopScript({
        url: "http://x/$(reboot)",
        count: 1,
        perRequestSeconds: 1,
        giveUpAfter: 1,
      }),
    /cannot go into the request loop unquoted/,
  );
  assert.throws(
    () => requestLoopScript({ url: "http://x/", count: 0, perRequestSeconds: 1, giveUpAfter: 1 }),
    /count must be a positive integer/,
  );
  assert.throws(() => dnsScript([{ name: "a b", via: "nslookup" }], 5), /unquoted/);
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
});

// ---------------------------------------------------------------------------------------------
// The scripts, run by the busybox the pods run, against servers on loopback

interface Names {
  server: Server;
  port: number;
  hits: () => number;
}

/** A loopback HTTP server answering /hostname with names in turn, as a Service's replicas would. */
async function replicaServer(names: readonly string[]): Promise<Names> {
  let n = 0;
  const server = createServer((req, res) => {
    if (req.url !== "/hostname") {
      res.statusCode = 404;
      res.end("no\n");
      return;
    }
    res.end(`${names[n++ % names.length] ?? "?"}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { server, port: address.port, hits: () => n };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

test("the request loop, run by busybox sh: one line per request, every replica counted", async (t) => {
  if (!needBusybox(t)) return;
  const s = await replicaServer(["web-a", "web-b", "web-c"]);
  try {
    const script = requestLoopScript({
      url: `http://127.0.0.1:${String(s.port)}/hostname`,
      count: 30,
      perRequestSeconds: 5,
      giveUpAfter: 3,
    });
    const result = await runCommand([BUSYBOX, "sh", "-c", script], { timeoutMs: 60_000 });
    assert.equal(result.exitCode, 0, result.stderr);
    const loop = parseLoopOutput(result.stdout);
    assert.equal(loop.ended, true);
    const tl = tally(loop.requests, ["web-a", "web-b", "web-c"], 5);
    assert.equal(tl.answered, 30, formatTally(tl));
    assert.deepEqual(tl.perReplica, [
      ["web-a", 10],
      ["web-b", 10],
      ["web-c", 10],
    ]);
    assert.equal(s.hits(), 30);
  } finally {
    await closeServer(s.server);
  }
});

test("the request loop gives up after failures in a row, and reports wget's words", async (t) => {
  if (!needBusybox(t)) return;
  const s = await replicaServer(["web-a"]);
  const port = s.port;
  await closeServer(s.server);
  const result = await runCommand(
    [
      BUSYBOX,
      "sh",
      "-c",
      requestLoopScript({
        url: `http://127.0.0.1:${String(port)}/hostname`,
        count: 300,
        perRequestSeconds: 5,
        giveUpAfter: 4,
      }),
    ],
    { timeoutMs: 60_000 },
  );
  const loop = parseLoopOutput(result.stdout);
  assert.equal(loop.gaveUp, true);
  assert.equal(loop.requests.length, 4);
  const tl = tally(loop.requests, ["web-a"], 5);
  assert.equal(tl.answered, 0);
  assert.match(
    tl.failures[0]?.[0] ?? "",
    /can't connect to remote host \(127\.0\.0\.1\): Connection refused/,
  );
});

test("the phased loop: under way, then told the update happened, then exactly afterCount more", async (t) => {
  if (!needBusybox(t)) return;
  const s = await replicaServer(["web-a", "web-b"]);
  const dir = await mkdtemp(join(tmpdir(), "sandkube-verify-loop-"));
  try {
    const phases = {
      afterFile: join(dir, "after"),
      stopFile: join(dir, "stop"),
      runningFile: join(dir, "running"),
      runningAfter: 5,
      afterCount: 20,
    };
    const script = requestLoopScript({
      url: `http://127.0.0.1:${String(s.port)}/hostname`,
      count: 1_000_000,
      perRequestSeconds: 5,
      giveUpAfter: 10,
      phases,
    });
    const loop = runCommand([BUSYBOX, "sh", "-c", script], { timeoutMs: 60_000 });
    const waited = await runCommand(
      [BUSYBOX, "sh", "-c", waitForFileScript(phases.runningFile, 30)],
      {
        timeoutMs: 40_000,
      },
    );
    assert.equal(waited.exitCode, 0, "the loop said it is under way");
    await runCommand([BUSYBOX, "touch", phases.afterFile]);
    const result = await loop;
    const out = parseLoopOutput(result.stdout);
    assert.equal(out.ended, true);
    const before = out.requests.filter((r) => r.phase === "before");
    const after = out.requests.filter((r) => r.phase === "after");
    assert.ok(
      before.length >= 5,
      `at least runningAfter requests before: ${String(before.length)}`,
    );
    assert.equal(after.length, 20);
    assert.ok(out.requests.every((r) => r.exitCode === 0));
    assert.equal((await stat(phases.runningFile)).isFile(), true);

    // The markers of the first run are still there; the script removes them, but the wait below
    // could see the old running file before it does.
    await rm(phases.runningFile);
    const stopped = runCommand([BUSYBOX, "sh", "-c", script], { timeoutMs: 60_000 });
    const underWay = await runCommand(
      [BUSYBOX, "sh", "-c", waitForFileScript(phases.runningFile, 30)],
      { timeoutMs: 40_000 },
    );
    assert.equal(underWay.exitCode, 0);
    await runCommand([BUSYBOX, "touch", phases.stopFile]);
    const stoppedOut = parseLoopOutput((await stopped).stdout);
    assert.equal(stoppedOut.stopped, true, "the stop file ends the loop");
    assert.ok(
      stoppedOut.requests.every((r) => r.phase === "before"),
      "the script cleared the old after file",
    );
  } finally {
    await closeServer(s.server);
    await rm(dir, { recursive: true, force: true });
  }
});

test("waitForFileScript gives up with a non-zero status when the file never appears", async (t) => {
  if (!needBusybox(t)) return;
  const result = await runCommand(
    [BUSYBOX, "sh", "-c", waitForFileScript(join(tmpdir(), "sandkube-verify-never-there"), 0.4)],
    { timeoutMs: 10_000 },
  );
  assert.notEqual(result.exitCode, 0);
});

/** A DNS server on a loopback port that answers A queries from a table and NXDOMAIN otherwise. */
async function tinyDns(
  table: Readonly<Record<string, string>>,
): Promise<{ port: number; close: () => void }> {
  const socket = createSocket("udp4");
  socket.on("message", (msg, rinfo) => {
    let off = 12;
    const labels: string[] = [];
    while (msg[off] !== 0 && off < msg.length) {
      const len = msg[off] ?? 0;
      labels.push(msg.subarray(off + 1, off + 1 + len).toString());
      off += len + 1;
    }
    const qtype = msg.readUInt16BE(off + 1);
    const question = msg.subarray(12, off + 5);
    const ip = table[labels.join(".").toLowerCase()];
    const header = Buffer.from(msg.subarray(0, 12));
    header[2] = 0x81;
    header[3] = ip === undefined ? 0x83 : 0x80;
    const answer = ip !== undefined && qtype === 1;
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answer ? 1 : 0, 6);
    header.writeUInt32BE(0, 8);
    const rr = Buffer.alloc(answer ? 16 : 0);
    if (answer) {
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(5, 6);
      rr.writeUInt16BE(4, 10);
      ip.split(".").forEach((o, i) => (rr[12 + i] = Number(o)));
    }
    socket.send(Buffer.concat([header, question, rr]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return { port: socket.address().port, close: () => socket.close() };
}

test("dnsScript's nslookup sections, run by busybox against a DNS server on loopback", async (t) => {
  if (!needBusybox(t)) return;
  const dns = await tinyDns({ "probe.verify": "192.0.2.53" });
  try {
    const server = `127.0.0.1:${String(dns.port)}`;
    const script = dnsScript(
      [
        { name: "probe.verify.", via: "nslookup", server },
        { name: "nothere.verify.", via: "nslookup", server },
      ],
      10,
    );
    // The script's own resolv.conf section reads the host's file here; only the lookups count.
    const child = spawn(BUSYBOX, ["sh", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    await new Promise<void>((resolve) => child.once("close", () => resolve()));
    const sections = parseSections(stdout);
    assert.deepEqual(parseNslookup(sections.get("0") ?? "").addresses, ["192.0.2.53"], stdout);
    const missing = parseNslookup(sections.get("1") ?? "");
    assert.deepEqual(missing.addresses, []);
    assert.match(missing.errors.join(" "), /can't find nothere\.verify.*NXDOMAIN/);
    assert.equal(sectionExit(sections.get("1") ?? ""), 1);
    assert.ok(sections.has("resolv"));
  } finally {
    dns.close();
  }
});
