import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CommandResult, CommandRunner } from "../../src/common/exec.js";
import {
  describeCommand,
  exec,
  formatPods,
  jobState,
  kubectlSeconds,
  parseForwardedPort,
  portForward,
  runWorkloadChecks,
  summarisePods,
} from "../../src/verify/checks.js";
import { INIT_MARKER } from "../../src/verify/workload.js";

test("describeCommand names the command, how it ended and the end of stderr", () => {
  const d = describeCommand({
    argv: ["kubectl", "get", "pods"],
    exitCode: 1,
    stdout: "",
    stderr: "line1\nThe connection to the server 127.0.0.1:6443 was refused\n",
  });
  assert.match(d, /`kubectl get pods` ended with exit status 1/);
  assert.match(d, /was refused/);
  assert.match(
    describeCommand({
      argv: ["kubectl"],
      exitCode: 128,
      stdout: "",
      stderr: "",
      failure: "TIMEOUT",
    }),
    /ended with TIMEOUT/,
  );
});

test("parseForwardedPort reads kubectl port-forward's banner", () => {
  const out = "Forwarding from 127.0.0.1:41234 -> 8080\n";
  assert.equal(parseForwardedPort(out, 8080), 41234);
  assert.equal(parseForwardedPort("Forwarding from [::1]:41234 -> 8080\n", 8080), undefined);
  assert.equal(parseForwardedPort("Forwarding from 127.0.0.1:41234 -> 80\n", 8080), undefined);
  assert.equal(parseForwardedPort("", 8080), undefined);
});

test("summarisePods reports readiness, IPs and why a pod is not running", () => {
  const list = {
    items: [
      {
        metadata: { name: "web-1" },
        status: {
          phase: "Running",
          podIP: "10.244.0.5",
          conditions: [
            { type: "Ready", status: "True" },
            { type: "PodScheduled", status: "True" },
          ],
          initContainerStatuses: [
            { name: "prepare", state: { terminated: { exitCode: 0, reason: "Completed" } } },
          ],
          containerStatuses: [{ name: "web", ready: true, state: { running: {} } }],
        },
      },
      {
        metadata: { name: "web-2" },
        status: {
          phase: "Pending",
          conditions: [
            {
              type: "Ready",
              status: "False",
              reason: "ContainersNotReady",
              message: "web not ready",
            },
          ],
          initContainerStatuses: [
            {
              name: "prepare",
              restartCount: 3,
              state: { waiting: { reason: "CrashLoopBackOff", message: "back-off 40s" } },
            },
          ],
        },
      },
    ],
  };
  const pods = summarisePods(JSON.stringify(list));
  assert.equal(pods.length, 2);
  assert.deepEqual(pods[0], {
    name: "web-1",
    phase: "Running",
    ready: true,
    ip: "10.244.0.5",
    problems: [],
  });
  assert.equal(pods[1]?.ready, false);
  assert.equal(pods[1]?.ip, undefined);
  const text = formatPods(pods);
  assert.match(text, /web-1 Running Ready 10\.244\.0\.5/);
  assert.match(text, /Ready=False \(ContainersNotReady: web not ready\)/);
  assert.match(text, /init prepare waiting \(CrashLoopBackOff, back-off 40s\), 3 restarts/);
  assert.equal(formatPods([]), "no pods");
});

test("jobState tells complete, failed and still running apart", () => {
  assert.deepEqual(
    jobState(
      JSON.stringify({
        status: { succeeded: 1, conditions: [{ type: "Complete", status: "True" }] },
      }),
    ),
    { succeeded: 1, failed: 0, failedReason: undefined, complete: true },
  );
  const failed = jobState(
    JSON.stringify({
      status: {
        failed: 3,
        conditions: [
          {
            type: "Failed",
            status: "True",
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
          },
        ],
      },
    }),
  );
  assert.equal(failed.complete, false);
  assert.match(failed.failedReason ?? "", /^BackoffLimitExceeded: Job has reached/);
  assert.equal(jobState("{}").complete, false);
});

test("kubectlSeconds rounds up and never says 0 (which some verbs read as forever)", () => {
  assert.equal(kubectlSeconds(0), "1s");
  assert.equal(kubectlSeconds(1500), "2s");
  assert.equal(kubectlSeconds(120_000), "120s");
});

/**
 * A stand-in for kubectl against a running cluster, which the unit tier cannot have (the host and
 * gVisor `up` tests run the same check against real ones). It answers the two commands exec runs.
 */
function fakeCluster(execStdout: string): { run: CommandRunner; seen: string[][] } {
  const seen: string[][] = [];
  const run: CommandRunner = (argv) => {
    seen.push([...argv]);
    const ok = (stdout: string): Promise<CommandResult> =>
      Promise.resolve({ argv, exitCode: 0, stdout, stderr: "" });
    if (argv.includes("get") && argv.includes("pods")) {
      return ok(
        JSON.stringify({
          items: [
            {
              metadata: { name: "web-abc" },
              status: {
                phase: "Running",
                podIP: "10.244.0.7",
                conditions: [{ type: "Ready", status: "True" }],
              },
            },
          ],
        }),
      );
    }
    if (argv.includes("exec")) return ok(execStdout);
    return Promise.resolve({ argv, exitCode: 1, stdout: "", stderr: "unexpected command" });
  };
  return { run, seen };
}

test("exec passes only when hostname, Secret and the initContainer's file all match", async () => {
  const target = { kubectl: "kubectl", kubeconfig: "/k", namespace: "ns", timeoutMs: 1000 };
  const good = fakeCluster(`web-abc\nhunter2\n${INIT_MARKER}\n`);
  const passed = await exec({ ...target, run: good.run }, "hunter2");
  assert.equal(passed.ok, true, passed.detail);
  const execArgv = good.seen.find((a) => a.includes("exec")) ?? [];
  assert.deepEqual(execArgv.slice(0, 5), ["kubectl", "--kubeconfig", "/k", "--namespace", "ns"]);
  assert.ok(execArgv.includes("pod/web-abc"));

  const bad = fakeCluster(`web-abc\nwrong\n${INIT_MARKER}\n`);
  const failed = await exec({ ...target, run: bad.run }, "hunter2");
  assert.equal(failed.ok, false);
  assert.match(failed.detail, /SECRET_TOKEN is "wrong", not the Secret's value/);
});

const KUBECTL = [
  "/usr/bin/kubectl",
  "/usr/local/bin/kubectl",
  "/var/cache/sandkube-lab/bin/kubectl",
].find((p) => existsSync(p));

/** A loopback port nobody listens on: bound, read, released. */
async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

test("against an API server that refuses connections, the checks report it and never throw", async (t) => {
  if (KUBECTL === undefined) {
    const reason = "SKIPPED: no kubectl binary (/usr/bin/kubectl or the lab's)";
    process.stderr.write(`\n*** ${t.name}: ${reason}\n`);
    t.skip(reason);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), "sandkube-verify-"));
  try {
    const port = await refusedPort();
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:" +
          String(port) +
          "', insecure-skip-tls-verify: true}}]",
        "users: [{name: u, user: {token: nothing}}]",
        "contexts: [{name: x, context: {cluster: c, user: u}}]",
        "current-context: x",
        "",
      ].join("\n"),
    );
    const seen: string[] = [];
    const report = await runWorkloadChecks({
      kubectl: KUBECTL,
      kubeconfig,
      timeoutMs: 2000,
      suffix: "unreachable",
      onResult: (r) => seen.push(r.id),
    });
    assert.equal(report.ok, false);
    assert.equal(report.namespace, "sandkube-verify-unreachable");
    assert.deepEqual(
      seen,
      ["apply", "cleanup"],
      "nothing runs against a workload that was never applied",
    );
    const [apply, cleanup] = report.results;
    assert.equal(apply?.ok, false);
    assert.match(apply?.detail ?? "", /kubectl --kubeconfig .* apply --filename -/);
    assert.match(apply?.detail ?? "", new RegExp(`127\\.0\\.0\\.1:${String(port)}.*refused`));
    assert.equal(apply?.status, "failed");
    assert.equal(apply?.blocker, "kubectl cannot reach the API server");
    assert.match(apply?.remedy ?? "", /sandkube logs kube-apiserver/);
    assert.equal(cleanup?.ok, false, "a namespace that cannot be seen is not reported gone");
    assert.match(cleanup?.detail ?? "", /delete namespace sandkube-verify-unreachable/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * A stand-in for `kubectl` (the unit tier has no cluster): a script that lists one Ready web pod
 * and, for port-forward, serves `body` on a loopback port, prints kubectl's banner and records its
 * pid, then runs until killed, as the real port-forward does.
 */
const FAKE_KUBECTL = `#!/usr/bin/env node
const { createServer } = require("node:http");
const { writeFileSync } = require("node:fs");
const args = process.argv.slice(2);
if (args.includes("get")) {
  process.stdout.write(JSON.stringify({ items: [{ metadata: { name: "web-abc" },
    status: { phase: "Running", podIP: "10.244.0.7", conditions: [{ type: "Ready", status: "True" }] } }] }));
  process.exit(0);
}
if (args.includes("port-forward")) {
  writeFileSync(process.env.FAKE_PID_FILE, String(process.pid));
  const server = createServer((req, res) => res.end(process.env.FAKE_BODY));
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write("Forwarding from 127.0.0.1:" + server.address().port + " -> 8080\\n");
  });
} else {
  process.stderr.write("fake kubectl: unexpected " + args.join(" ") + "\\n");
  process.exit(1);
}
`;

async function withFakeKubectl(
  body: string,
  run: (kubectl: string, pidFile: string) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "sandkube-verify-pf-"));
  const kubectl = join(dir, "kubectl.cjs");
  await writeFile(kubectl, FAKE_KUBECTL, { mode: 0o755 });
  const pidFile = join(dir, "pid");
  const saved = { pid: process.env["FAKE_PID_FILE"], body: process.env["FAKE_BODY"] };
  process.env["FAKE_PID_FILE"] = pidFile;
  process.env["FAKE_BODY"] = body;
  try {
    await run(kubectl, pidFile);
  } finally {
    if (saved.pid === undefined) delete process.env["FAKE_PID_FILE"];
    else process.env["FAKE_PID_FILE"] = saved.pid;
    if (saved.body === undefined) delete process.env["FAKE_BODY"];
    else process.env["FAKE_BODY"] = saved.body;
    await rm(dir, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("portForward fetches through the forwarded port, compares the body and kills the forward", async () => {
  await withFakeKubectl("<h1>page</h1>\n", async (kubectl, pidFile) => {
    const target = { kubectl, kubeconfig: "/k", namespace: "ns", timeoutMs: 10_000 };
    const passed = await portForward(target, "<h1>page</h1>\n");
    assert.equal(passed.ok, true, passed.detail);
    assert.match(passed.detail, /http:\/\/127\.0\.0\.1:\d+\/ -> web-abc:8080/);
    const pid = Number(await readFile(pidFile, "utf8"));
    assert.equal(alive(pid), false, "the port-forward process is gone when the check returns");

    const failed = await portForward(target, "something else");
    assert.equal(failed.ok, false);
    assert.match(failed.detail, /is not the ConfigMap's index.html/);
    assert.match(failed.detail, /port-forward --address 127\.0\.0\.1 pod\/web-abc :8080/);
    assert.equal(alive(Number(await readFile(pidFile, "utf8"))), false);
  });
});

test("a web check chosen on its own still waits for the rollout first (deploymentReady runs)", async () => {
  // A stand-in kubectl (no cluster in the unit tier) that accepts everything and prints nothing:
  // only the order of the checks is under test.
  const dir = await mkdtemp(join(tmpdir(), "sandkube-verify-order-"));
  try {
    const kubectl = join(dir, "kubectl");
    await writeFile(kubectl, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const seen: string[] = [];
    await runWorkloadChecks({
      kubectl,
      kubeconfig: join(dir, "kubeconfig"),
      timeoutMs: 1000,
      suffix: "order",
      checks: ["service"],
      requests: 1,
      onResult: (r) => seen.push(r.id),
    });
    assert.deepEqual(seen, ["apply", "deploymentReady", "service", "cleanup"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("on a hostNetwork-only node, the checks that need pod networks fail naming the fact, without running", async () => {
  // The same stand-in kubectl (no cluster in the unit tier): the results and what was applied are
  // under test, not the cluster.
  const dir = await mkdtemp(join(tmpdir(), "sandkube-verify-hostonly-"));
  try {
    const kubectl = join(dir, "kubectl");
    const applied = join(dir, "applied.yaml");
    await writeFile(
      kubectl,
      `#!/bin/sh\ncase " $* " in *" apply "*) cat >> ${applied} ;; esac\nexit 0\n`,
      {
        mode: 0o755,
      },
    );
    const report = await runWorkloadChecks({
      kubectl,
      kubeconfig: join(dir, "kubeconfig"),
      timeoutMs: 1000,
      suffix: "hostonly",
      checks: ["podToPod", "pvc", "endpointChange"],
      requests: 1,
      hostNetworkOnly: "creating a veth pair fails",
    });
    const blocked = report.results.filter((r) =>
      ["podToPod", "pvc", "endpointChange"].includes(r.id),
    );
    assert.deepEqual(
      blocked.map((r) => [r.id, r.status, r.durationMs]),
      [
        ["podToPod", "failed", 0],
        ["pvc", "failed", 0],
        ["endpointChange", "failed", 0],
      ],
    );
    for (const r of blocked) {
      assert.equal(r.blocker, "cni-host-network: creating a veth pair fails");
      assert.match(r.remedy ?? "", /hostNetwork pods, or use a gVisor release from 2024/);
    }
    const yaml = await readFile(applied, "utf8").catch(() => "");
    assert.doesNotMatch(yaml, /PersistentVolumeClaim/, "no claim where no StorageClass can exist");
    assert.match(yaml, /hostNetwork: true/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
