import { test } from "node:test";
import assert from "node:assert/strict";
import { parseVerifyArgs, serviceProxyHint } from "../../src/cli/verify.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { OPTIONAL_CHECKS, partsFor, type CheckResult } from "../../src/verify/checks.js";
import { statusOf } from "../../src/verify/cluster.js";
import { checkLine, countResults, formatReport, reportJson } from "../../src/verify/report.js";

const results: CheckResult[] = [
  { id: "apply", ok: true, status: "ok", detail: "namespace created", durationMs: 1200 },
  {
    id: "service",
    ok: false,
    status: "failed",
    detail: "0 of 300 requests answered (web-a 0)\n  pods: web-a Running Ready",
    blocker: "no Service data path: sandkube-proxy is not running",
    remedy: "`sandkube logs sandkube-proxy`",
    durationMs: 31_000,
  },
  {
    id: "egress",
    ok: false,
    status: "skipped",
    detail: "this sandbox has no address outside the cluster's ranges; pass --egress-url",
    durationMs: 5,
  },
];
const report = { namespace: "sandkube-verify-x", ok: false, results };

test("one line per check, blocker and remedy on a failure's line, then the counts", () => {
  const text = formatReport(report);
  const lines = text.trimEnd().split("\n");
  assert.match(lines[0] ?? "", /^ok {3}apply +1\.2s {2}namespace created$/);
  assert.equal(
    lines[1],
    `FAIL ${"service".padEnd(16)} ${"31.0".padStart(6)}s  0 of 300 requests answered (web-a 0) — no Service data path: sandkube-proxy is not running (\`sandkube logs sandkube-proxy\`)`,
  );
  assert.equal(lines[2], "      pods: web-a Running Ready", "a failure's further detail, indented");
  assert.match(lines[3] ?? "", /^skip egress .*pass --egress-url$/);
  assert.equal(lines[4], "1 passed, 1 failed, 1 skipped (namespace sandkube-verify-x)");
  assert.deepEqual(countResults(results), { passed: 1, failed: 1, skipped: 1 });
  assert.doesNotMatch(checkLine(results[0] as CheckResult), /—/);
});

test("--json: check id, status, detail, blocker, remedy and durationMs for every check", () => {
  const json = reportJson(report);
  assert.equal(json.schema, "sandkube.verify/v1");
  assert.equal(json.ok, false);
  assert.equal(json.failed, 1);
  assert.equal(json.skipped, 1);
  assert.deepEqual(json.checks[1], {
    id: "service",
    status: "failed",
    detail: "0 of 300 requests answered (web-a 0)\n  pods: web-a Running Ready",
    blocker: "no Service data path: sandkube-proxy is not running",
    remedy: "`sandkube logs sandkube-proxy`",
    durationMs: 31_000,
  });
  assert.equal(json.checks[2]?.status, "skipped");
  assert.equal(json.checks[2]?.blocker, null);
  assert.deepEqual(JSON.parse(JSON.stringify(json)), json, "plain JSON");
});

test("a skipped outcome is never ok", () => {
  assert.equal(statusOf({ ok: false, skipped: true, detail: "" }), "skipped");
  assert.equal(statusOf({ ok: true, skipped: true, detail: "" }), "skipped");
  assert.equal(statusOf({ ok: true, detail: "" }), "ok");
  assert.equal(statusOf({ ok: false, detail: "" }), "failed");
});

test("partsFor renders only what the chosen checks use", () => {
  assert.deepEqual(partsFor(OPTIONAL_CHECKS), ["services", "udpService", "pvc"]);
  assert.deepEqual(partsFor(["logs", "exec"]), []);
  assert.deepEqual(partsFor(["dns"]), ["services"]);
  assert.deepEqual(partsFor(["udpService"]), ["udpService"]);
});

const ENV = { SANDKUBE_DATA_DIR: "/var/lib/sk-test" };

test("verify's arguments: defaults, and every option", () => {
  const d = parseVerifyArgs([], ENV);
  assert.equal(d.dataDir, "/var/lib/sk-test");
  assert.equal(d.kubeconfig, undefined, "the node's admin kubeconfig");
  assert.equal(d.timeoutMs, 180_000);
  assert.equal(d.replicas, 3);
  assert.equal(d.requests, 30);
  assert.deepEqual(d.checks, OPTIONAL_CHECKS);
  assert.equal(d.json, false);
  assert.equal(d.keep, false);
  const all = parseVerifyArgs(
    [
      "--json",
      "--kubeconfig=rel/kc",
      "--context",
      "sandkube",
      "--kubectl",
      "/bin/kubectl",
      "--timeout",
      "60",
      "--image",
      "x.local/bb:1",
      "--dns-image",
      "x.local/coredns:1",
      "--replicas",
      "4",
      "--requests",
      "300",
      "--outside-name",
      "example.test",
      "--egress-url",
      "http://192.0.2.10:8080/?q=1",
      "--egress-expect",
      "hello",
      "--checks",
      "dns,service,endpointChange,pvc",
      "--skip",
      "pvc",
      "--keep",
    ],
    ENV,
  );
  assert.equal(all.json, true);
  assert.match(all.kubeconfig ?? "", /^\/.*\/rel\/kc$/, "made absolute");
  assert.equal(all.context, "sandkube");
  assert.equal(all.kubectl, "/bin/kubectl");
  assert.equal(all.timeoutMs, 60_000);
  assert.equal(all.image, "x.local/bb:1");
  assert.equal(all.dnsImage, "x.local/coredns:1");
  assert.equal(all.replicas, 4);
  assert.equal(all.requests, 300);
  assert.equal(all.outsideName, "example.test");
  assert.equal(all.egressUrl, "http://192.0.2.10:8080/?q=1");
  assert.equal(all.egressExpect, "hello");
  assert.deepEqual(all.checks, ["service", "dns", "endpointChange"], "in run order, pvc skipped");
  assert.equal(all.keep, true);
});

test("verify's bad arguments are UsageErrors that say what to pass", () => {
  const bad: [string[], RegExp][] = [
    [["--nope"], /unknown flag --nope/],
    [["stray"], /unexpected argument "stray"/],
    [["--timeout", "0"], /--timeout takes a positive number/],
    [["--replicas", "1"], /--replicas takes a whole number from 2/],
    [["--requests", "ten"], /--requests takes a whole number/],
    [["--checks", "dns,teleport"], /unknown: teleport\. IDs: deploymentReady/],
    [["--skip", ""], /--skip needs a value|none given/],
    [["--outside-name", "a b"], /--outside-name takes a DNS name/],
    [["--egress-url", "ftp://x/"], /--egress-url takes an http/],
    [["--egress-expect", "x"], /--egress-expect needs --egress-url/],
    [["--kubeconfig"], /--kubeconfig needs a value/],
  ];
  for (const [argv, message] of bad) {
    assert.throws(
      () => parseVerifyArgs(argv, ENV),
      (e: unknown) => e instanceof UsageError && e.exitCode === 2 && message.test(e.message),
      argv.join(" "),
    );
  }
});

test("serviceProxyHint: the node's proxy component and whether the supervisor runs it", () => {
  assert.equal(
    serviceProxyHint(["etcd", "kubelet"], [], () => true),
    null,
  );
  assert.deepEqual(
    serviceProxyHint(
      ["kubelet", "sandkube-proxy"],
      [{ name: "kubelet", phase: "ready" }],
      () => true,
    ),
    { name: "sandkube-proxy", running: false },
  );
  assert.deepEqual(
    serviceProxyHint(
      ["kube-proxy"],
      [{ name: "kube-proxy", phase: "ready" }],
      (n) => n === "kube-proxy",
    ),
    { name: "kube-proxy", running: true },
  );
});
