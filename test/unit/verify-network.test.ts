import { test } from "node:test";
import assert from "node:assert/strict";
import type { CommandResult, CommandRunner } from "../../src/common/exec.js";
import {
  dataPathBlocker,
  podBlocker,
  proxyRemedy,
  type PodSummary,
} from "../../src/verify/cluster.js";
import {
  dnsBlocker,
  formatLookup,
  judgeLookup,
  requestBlocker,
  service,
  type DnsDiagnosis,
} from "../../src/verify/network-checks.js";

test("data path blockers name the proxy and whether it runs, as the remedy says where to look", () => {
  const proxy = { name: "sandkube-proxy", running: false };
  assert.equal(dataPathBlocker(proxy), "no Service data path: sandkube-proxy is not running");
  assert.equal(proxyRemedy(proxy), "`sandkube logs sandkube-proxy`");
  assert.equal(
    dataPathBlocker({ name: "kube-proxy", running: true }),
    "no Service data path: kube-proxy runs but does not forward",
  );
  assert.equal(dataPathBlocker(null), "no Service data path: this node runs no Service proxy");
  assert.match(proxyRemedy(null), /sandkube doctor/);
  assert.match(proxyRemedy(undefined), /sandkube status/);
});

test("requestBlocker: wget's bad address points at DNS, anything else at the data path", () => {
  const dnsFirst = requestBlocker(
    [["bad address 'web.ns.svc.cluster.local:80'", 10]],
    "web.ns.svc.cluster.local",
    null,
  );
  assert.match(dnsFirst.blocker, /cluster DNS does not resolve web\.ns\.svc\.cluster\.local/);
  assert.match(dnsFirst.remedy, /logs deploy\/coredns/);
  const path = requestBlocker([["no answer within 5 s", 10]], "web", {
    name: "sandkube-proxy",
    running: false,
  });
  assert.equal(path.blocker, "no Service data path: sandkube-proxy is not running");
});

const pod = (name: string, ready: boolean, problems: string[] = []): PodSummary => ({
  name,
  phase: ready ? "Running" : "Pending",
  ready,
  ip: ready ? "10.244.0.9" : undefined,
  problems,
});

test("podBlocker names the pod that is not Ready and a remedy fit for why", () => {
  const image = podBlocker(
    [
      pod("web-a", true),
      pod("web-b", false, [
        "Ready=False (ContainersNotReady: containers with unready status: [web])",
        "container web waiting (ErrImageNeverPull, Container image is not present with pull policy of Never)",
      ]),
    ],
    "ns",
  );
  assert.match(
    image.blocker ?? "",
    /^pod web-b Pending, not Ready: container web waiting \(ErrImageNeverPull/,
  );
  assert.match(image.remedy ?? "", /sandkube images/);
  const crash = podBlocker(
    [pod("web-c", false, ["container web waiting (CrashLoopBackOff), 3 restarts"])],
    "ns",
  );
  assert.match(crash.remedy ?? "", /logs web-c --all-containers --previous/);
  assert.deepEqual(podBlocker([pod("web-a", true)], "ns"), {});
  assert.match(podBlocker([], "ns").blocker ?? "", /no pods were created/);
});

test("judgeLookup: nslookup answers, libc's banner, and a lookup killed by timeout", () => {
  const ok = judgeLookup(
    { name: "web", via: "nslookup" },
    "10.96.5.5",
    "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\tweb.ns.svc.cluster.local\nAddress: 10.96.5.5\n\nsk-exit 1\n",
  );
  assert.equal(ok.ok, true, "nslookup's exit status 1 (search-list NXDOMAINs) does not matter");
  const wrong = judgeLookup(
    { name: "web", via: "nslookup" },
    "10.96.5.6",
    "Name:\tweb\nAddress: 10.96.5.5\n",
  );
  assert.equal(wrong.ok, false);
  assert.equal(formatLookup(wrong), "web (nslookup) -> 10.96.5.5 [want 10.96.5.6]");
  const libc = judgeLookup(
    { name: "kubernetes.default", via: "libc", port: 443 },
    "10.96.0.1",
    "Connecting to kubernetes.default:443 (10.96.0.1:443)\nwget: server returned error: HTTP/1.0 400 Bad Request\nsk-exit 1\n",
  );
  assert.equal(libc.ok, true);
  const killed = judgeLookup(
    { name: "kubernetes.default", via: "libc" },
    "10.96.0.1",
    "sk-exit 143\n",
  );
  assert.equal(killed.ok, false);
  assert.match(killed.answer.errors.join(" "), /timed out/);
  const outside = judgeLookup(
    { name: "example.test", via: "nslookup" },
    undefined,
    "Name:\texample.test\nAddress: 198.51.100.7\n",
  );
  assert.equal(outside.ok, true, "an outside name passes on any address");
});

function diagnosis(overrides: Partial<DnsDiagnosis>): DnsDiagnosis {
  const timedOut = judgeLookup(
    { name: "web", via: "nslookup" },
    "10.96.5.5",
    ";; connection timed out; no servers could be reached\n",
  );
  return {
    namespace: "ns",
    lookups: [timedOut],
    clusterLookups: [timedOut],
    resolv: {
      nameservers: ["10.96.0.10"],
      search: ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"],
      options: ["ndots:5"],
    },
    dnsServiceIP: "10.96.0.10",
    coredns: [pod("coredns-1", true)],
    proxy: { name: "sandkube-proxy", running: false },
    ...overrides,
  };
}

test("dnsBlocker walks from kubelet's clusterDNS to CoreDNS to the UDP data path", () => {
  assert.match(dnsBlocker(diagnosis({ dnsServiceIP: undefined })).blocker, /no kube-dns Service/);
  const hostResolv = dnsBlocker(
    diagnosis({ resolv: { nameservers: ["192.168.1.1"], search: [], options: [] } }),
  );
  assert.match(hostResolv.blocker, /pods do not get cluster DNS: .*nameserver 192\.168\.1\.1/);
  assert.match(hostResolv.remedy, /sandkube logs kubelet/);
  const notReady = dnsBlocker(
    diagnosis({
      coredns: [pod("coredns-1", false, ["container coredns waiting (CrashLoopBackOff)"])],
    }),
  );
  assert.match(
    notReady.blocker,
    /^CoreDNS not Ready: coredns-1 Pending \(container coredns waiting \(CrashLoopBackOff\)\)/,
  );
  assert.equal(notReady.remedy, "`sandkube kubectl -n kube-system logs deploy/coredns`");
  assert.match(dnsBlocker(diagnosis({ coredns: [] })).blocker, /no CoreDNS pod/);
  const path = dnsBlocker(diagnosis({}));
  assert.match(
    path.blocker,
    /CoreDNS is Ready but its Service 10\.96\.0\.10 does not answer over UDP: .*sandkube-proxy is not running/,
  );
  assert.equal(path.remedy, "`sandkube logs sandkube-proxy`");
  const nx = judgeLookup(
    { name: "web", via: "nslookup" },
    "10.96.5.5",
    "** server can't find web.ns.svc.cluster.local: NXDOMAIN\n",
  );
  assert.match(
    dnsBlocker(diagnosis({ lookups: [nx], clusterLookups: [nx] })).blocker,
    /CoreDNS answers but does not resolve web: server can't find/,
  );
  const outside = judgeLookup(
    { name: "example.test", via: "nslookup" },
    undefined,
    ";; connection timed out; no servers could be reached\n",
  );
  assert.match(
    dnsBlocker(diagnosis({ lookups: [outside], clusterLookups: [] })).blocker,
    /resolves cluster names but not outside ones/,
  );
});

/**
 * A stand-in for kubectl against a cluster, which the unit tier cannot have (the host and gVisor
 * `up` tests run the same check against real ones): it answers each command the service check
 * runs, and the request loop's output comes from `loopOutput`.
 */
function fakeCluster(
  loopOutput: string,
  endpointsReady: boolean,
): { run: CommandRunner; seen: string[][] } {
  const seen: string[][] = [];
  const podList = {
    items: ["web-a", "web-b", "web-c"].map((name, i) => ({
      metadata: { name },
      status: {
        phase: "Running",
        podIP: `10.244.0.${String(5 + i)}`,
        conditions: [{ type: "Ready", status: "True" }],
      },
    })),
  };
  const slices = {
    items: [
      {
        endpoints: podList.items.map((p) => ({
          addresses: [p.status.podIP],
          conditions: { ready: endpointsReady },
          targetRef: { kind: "Pod", name: p.metadata.name },
        })),
      },
    ],
  };
  const run: CommandRunner = (argv) => {
    seen.push([...argv]);
    const ok = (stdout: string): Promise<CommandResult> =>
      Promise.resolve({ argv, exitCode: 0, stdout, stderr: "" });
    if (argv.includes("wait")) return ok("pod/client condition met\n");
    if (argv.includes("endpointslices")) return ok(JSON.stringify(slices));
    if (argv.includes("get") && argv.includes("pods")) return ok(JSON.stringify(podList));
    if (argv.includes("exec")) return ok(loopOutput);
    return Promise.resolve({ argv, exitCode: 1, stdout: "", stderr: "unexpected command" });
  };
  return { run, seen };
}

const TARGET = { kubectl: "kubectl", kubeconfig: "/k", namespace: "ns", timeoutMs: 1000 };

function loopOf(bodies: readonly string[], code = 0): string {
  return `${bodies.map((b, i) => `sk-req ${String(i)} - ${String(code)} ${b}`).join("\n")}\nsk-end ${String(bodies.length)}\n`;
}

test("service passes when every request is answered and every replica answered", async () => {
  const bodies = Array.from({ length: 30 }, (_, i) => ["web-a", "web-b", "web-c"][i % 3] ?? "");
  const cluster = fakeCluster(loopOf(bodies), true);
  const r = await service({ ...TARGET, run: cluster.run }, { replicas: 3, requests: 30 });
  assert.equal(r.status, "ok", r.detail);
  assert.match(
    r.detail,
    /^30 of 30 requests answered \(web-a 10, web-b 10, web-c 10\) from client to http:\/\/web\.ns\.svc\.cluster\.local:80\/hostname/,
  );
  const exec = cluster.seen.find((a) => a.includes("exec")) ?? [];
  assert.deepEqual(exec.slice(exec.indexOf("exec"), exec.indexOf("-c")), [
    "exec",
    "pod/client",
    "--",
    "sh",
  ]);
  assert.match(exec.at(-1) ?? "", /while \[ "\$i" -lt 30 \]/);
});

test("service fails, naming the data path, when nothing answers; and names the silent replica", async () => {
  const dead = fakeCluster(
    `${Array.from({ length: 10 }, (_, i) => `sk-req ${String(i)} - 143`).join("\n")}\nsk-gave-up 10\nsk-end 10\n`,
    true,
  );
  const r = await service(
    { ...TARGET, run: dead.run, serviceProxy: { name: "sandkube-proxy", running: false } },
    { replicas: 3, requests: 300 },
  );
  assert.equal(r.status, "failed");
  assert.match(
    r.detail,
    /^0 of 10 requests answered .*gave up after 10 failures in a row \(300 planned\)/,
  );
  assert.equal(r.blocker, "no Service data path: sandkube-proxy is not running");
  assert.equal(r.remedy, "`sandkube logs sandkube-proxy`");

  const lopsided = fakeCluster(
    loopOf(Array.from({ length: 30 }, (_, i) => (i % 2 ? "web-a" : "web-b"))),
    true,
  );
  const l = await service({ ...TARGET, run: lopsided.run }, { replicas: 3, requests: 30 });
  assert.equal(l.status, "failed");
  assert.match(l.blocker ?? "", /does not spread connections .*web-c never answered/);
});

test("service blames the EndpointSlice controller when the endpoints are not ready", async () => {
  const cluster = fakeCluster(loopOf(["web-a"]), false);
  const r = await service({ ...TARGET, run: cluster.run }, { replicas: 3, requests: 30 });
  assert.equal(r.status, "failed");
  assert.match(r.blocker ?? "", /EndpointSlice of Service web does not list its 3 Ready pods/);
  assert.match(r.remedy ?? "", /kube-controller-manager/);
  assert.equal(
    cluster.seen.some((a) => a.includes("exec")),
    false,
    "no requests without endpoints",
  );
});
