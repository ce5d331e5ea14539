import { test } from "node:test";
import assert from "node:assert/strict";
import {
  accountStack,
  parseStatPpid,
  parseVmRssKb,
  readProcesses,
  type ProcessInfo,
} from "../../src/verify/stack-memory.js";

test("parseStatPpid reads field 4 even when the command name has spaces and parentheses", () => {
  assert.equal(parseStatPpid("1234 (kube (x) y) S 77 1234 1234 0 -1"), 77);
  assert.equal(parseStatPpid("garbage"), undefined);
});

test("parseVmRssKb reads VmRSS; kernel threads have none", () => {
  assert.equal(
    parseVmRssKb("Name:\tetcd\nVmPeak:\t 900 kB\nVmRSS:\t   66012 kB\nRssAnon:\t 1 kB\n"),
    66012,
  );
  assert.equal(parseVmRssKb("Name:\tkthreadd\nState:\tS (sleeping)\n"), undefined);
});

const SOCKET = "/var/lib/sk/run/containerd/containerd.sock";

function p(
  pid: number,
  ppid: number,
  rssKb: number | undefined,
  argv: string[],
  exe?: string,
): ProcessInfo {
  return { pid, ppid, rssKb, argv, exe: exe ?? argv[0] };
}

test("accountStack gives each process of the stack to one bucket and counts sandkube's own", () => {
  const processes = [
    p(1, 0, 10_000, ["/sbin/init"]),
    p(100, 1, 60_000, ["node", "/x/dist/src/node/supervisor-main.js"], "/usr/bin/node"),
    p(101, 100, 40_000, ["/c/etcd"]),
    p(102, 100, 250_000, ["/c/kube-apiserver"]),
    p(103, 100, 30_000, ["/c/containerd"]),
    p(104, 100, 80_000, ["/c/kubelet"]),
    // sandkube-runtime started by a shim that is still containerd's child: the pods' memory.
    p(200, 103, 12_000, [
      "/c/containerd-shim-runc-v2",
      "-namespace",
      "k8s.io",
      "-id",
      "a",
      "-address",
      SOCKET,
    ]),
    p(201, 200, 500, ["/pause"]),
    p(202, 200, 35_000, ["/bin/sandkube-runtime", "create"]),
    // A daemonized shim, reparented to init.
    p(300, 1, 11_000, [
      "/c/containerd-shim-runc-v2",
      "-namespace",
      "k8s.io",
      "-id",
      "b",
      "-address",
      SOCKET,
    ]),
    p(301, 300, 2_000, ["httpd", "-f"], "/bin/busybox"),
    // Another node's shim (another socket) and an unrelated process: not this stack.
    p(400, 1, 9_000, ["/c/containerd-shim-runc-v2", "-address", "/other/containerd.sock"]),
    p(500, 1, 5_000, ["bash"]),
    // A sandkube-cni run by containerd during a pod's setup, and a kernel-thread-like entry.
    p(105, 103, 20_000, ["/opt/cni/bin/sandkube-cni"]),
    p(106, 100, undefined, ["defunct"]),
  ];
  const m = accountStack(processes, {
    supervisorPid: 100,
    components: [
      { name: "etcd", pid: 101 },
      { name: "kube-apiserver", pid: 102 },
      { name: "containerd", pid: 103 },
      { name: "kubelet", pid: 104 },
    ],
    containerdSocket: SOCKET,
  });
  assert.deepEqual(m.bucketsKb, {
    supervisor: 60_000,
    pods: 12_000 + 500 + 35_000 + 11_000 + 2_000,
    etcd: 40_000,
    "kube-apiserver": 250_000,
    containerd: 30_000 + 20_000,
    kubelet: 80_000,
  });
  assert.equal(m.stackKb, 60_000 + 60_500 + 40_000 + 250_000 + 50_000 + 80_000);
  assert.deepEqual(m.sandkubeKb, {
    supervisor: 60_000,
    "sandkube-runtime": 35_000,
    "sandkube-cni": 20_000,
  });
  assert.equal(m.sandkubeTotalKb, 115_000);
  assert.equal(m.processCount, 12);
});

test("a component that died is simply absent; its bucket stays at zero", () => {
  const m = accountStack([p(100, 1, 1000, ["node"])], {
    supervisorPid: 100,
    components: [{ name: "etcd", pid: 999 }],
    containerdSocket: SOCKET,
  });
  assert.deepEqual(m.bucketsKb, { supervisor: 1000, pods: 0, etcd: 0 });
});

test("readProcesses sees this very process with its parent and memory", async () => {
  const all = await readProcesses();
  const self = all.find((x) => x.pid === process.pid);
  assert.ok(self, "this test's own pid is in the table");
  assert.equal(self.ppid, process.ppid);
  assert.ok((self.rssKb ?? 0) > 1000, "a node process holds more than 1 MB");
  assert.ok(self.argv.some((a) => a.includes("verify-stack-memory")));
});
